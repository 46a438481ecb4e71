//! The `osbuild` command: argument parsing only; the work is in `osbuild::cli`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use osbuild::cli::{self, BuildArgs, Common, StoreCommand};
use osbuild::script::cli::{self as script_cli, ScriptArgs};

/// Build operating-system images from pipelines of sandboxed stages.
///
/// `osbuild [--store DIR] [--libdir DIR] -o DIR PIPELINE.json` builds a
/// manifest, as `osbuild build` does.
#[derive(Parser)]
#[command(name = "osbuild", version, subcommand_negates_reqs = true)]
struct Cli {
    #[command(flatten)]
    common: CommonOpts,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    build: BuildOpts,
}

#[derive(Args)]
struct CommonOpts {
    /// The directory where trees and images are stored.
    #[arg(long, value_name = "DIRECTORY", default_value = ".osbuild", global = true)]
    store: PathBuf,
    /// A directory with extra stages (`stages/NAME`) and assemblers (`assemblers/NAME`).
    #[arg(short = 'l', long, value_name = "DIRECTORY", global = true)]
    libdir: Option<PathBuf>,
    /// Print JSON (for `build`: one event per line) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// What each stage's sandbox may take: memory=SIZE (default 4G), pids=N
    /// (4096), tmp=SIZE (1G, /tmp and /var/tmp each), shm=SIZE (256M); `max`
    /// for no limit. Repeat for several.
    #[arg(long = "limit", value_name = "NAME=VALUE", global = true, value_parser = parse_limit)]
    limits: Vec<String>,
    /// Build only with the lock beside the script or manifest (NAME.lock),
    /// and only if it fits; exit status 2 otherwise. Without it, a lock that
    /// fits is used and one that does not is ignored with a warning.
    #[arg(long, global = true)]
    locked: bool,
    /// Read the files locked stages install from DIR (as `osbuild fetch
    /// --sources DIR` fills it), verified, and fetch nothing.
    #[arg(long, value_name = "DIRECTORY", global = true)]
    sources: Option<PathBuf>,
    /// Share stored trees and images through an OCI registry: before a
    /// stage runs, pull it from there if it is there; after, push it.
    /// Credentials are Docker's (`docker login`).
    #[arg(long, value_name = "oci://HOST[:PORT]/REPOSITORY", global = true, value_parser = parse_cache)]
    cache: Option<String>,
    /// Allow plain HTTP to a registry that is not on this machine (one on a
    /// loopback address may always use it).
    #[arg(long, global = true)]
    insecure: bool,
    /// Keep each image in the store as well as in the output directory, so a
    /// re-run hands it over without assembling. Without it a new image is
    /// moved into the output directory (where the file system cannot share
    /// blocks with a reflink): the store keeps its tree, not a second copy.
    #[arg(long, global = true)]
    keep_image: bool,
    /// Internal, for child builds: the osbuild that started this one has
    /// checked the signature chain of the sources (each file is still
    /// checked by its SHA256).
    #[arg(long, global = true, hide = true)]
    sources_checked: bool,
}

fn parse_cache(url: &str) -> Result<String, String> {
    osbuild::oci::Target::parse(url, false)?;
    Ok(url.to_string())
}

fn parse_limit(spec: &str) -> Result<String, String> {
    osbuild::sandbox::Limits::default().set(spec)?;
    Ok(spec.to_string())
}

fn limits(specs: &[String]) -> osbuild::sandbox::Limits {
    let mut limits = osbuild::sandbox::Limits::default();
    for spec in specs {
        limits.set(spec).expect("checked by clap");
    }
    limits
}

#[derive(Args)]
struct BuildOpts {
    /// Where to put the image: an empty or absent directory.
    #[arg(short = 'o', long = "output", value_name = "DIRECTORY")]
    output: Option<PathBuf>,
    /// Show every stage's log as it runs.
    #[arg(short, long)]
    verbose: bool,
    /// The manifest (JSON) to build.
    #[arg(value_name = "PIPELINE")]
    manifest: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Executor {
    Local,
    Slurm,
}

#[derive(Subcommand)]
enum Command {
    /// Build a manifest.
    Build(BuildOpts),
    /// Show every pipeline's stages, their ids and whether each is stored, without building.
    Inspect {
        /// `-D key=value`: a script parameter (for a .rhai script).
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = osbuild::script::lower::parse_define)]
        define: Vec<(String, String)>,
        /// The manifest (JSON) or script (.rhai) to inspect.
        manifest: PathBuf,
    },
    /// Lower a Rhai script to manifests: print them, or write DIR/<image>.json with -o.
    Lower {
        /// `-D key=value`: a parameter the script reads with param(key, default);
        /// the value is JSON when it parses, else a string.
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = osbuild::script::lower::parse_define)]
        define: Vec<(String, String)>,
        /// Write one canonical manifest per image as DIR/<image name>.json.
        #[arg(short = 'o', long = "output", value_name = "DIRECTORY")]
        output: Option<PathBuf>,
        /// The script.
        script: PathBuf,
    },
    /// Lower a Rhai script and build every image it emits into DIR/<image name>/.
    Run {
        /// `-D key=value`: a parameter the script reads with param(key, default).
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = osbuild::script::lower::parse_define)]
        define: Vec<(String, String)>,
        /// Where the images go: an empty or absent directory.
        #[arg(short = 'o', long = "output", value_name = "DIRECTORY")]
        output: PathBuf,
        /// Show every stage's log as it runs.
        #[arg(short, long)]
        verbose: bool,
        /// Build the other images when one fails (exit status 1 at the end).
        #[arg(short = 'k', long)]
        keep_going: bool,
        /// Build up to N images at once, each a child build on the same store
        /// (shared stages are still built once); default: the machine's cores.
        #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        /// Where the images are built: here (`local`), or as jobs of a Slurm
        /// cluster (`slurm`: needs --cache, which the jobs share work through).
        #[arg(long, value_enum, default_value_t = Executor::Local)]
        executor: Executor,
        /// `--executor slurm`: the partition to submit to.
        #[arg(long, value_name = "PARTITION", requires_if("slurm", "executor"))]
        partition: Option<String>,
        /// `--executor slurm`: an option for every `sbatch` (repeat for several),
        /// for example --slurm-option=--time=30.
        #[arg(long = "slurm-option", value_name = "ARG", allow_hyphen_values = true)]
        slurm_options: Vec<String>,
        /// The script.
        script: PathBuf,
    },
    /// Pin every package each image installs: resolve the package stages of a
    /// script or manifest against the mirror and write NAME.lock beside it.
    Lock {
        /// `-D key=value`: a script parameter (for a .rhai script).
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = osbuild::script::lower::parse_define)]
        define: Vec<(String, String)>,
        /// Write the lock here instead of beside the input.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Resolve every package again, even when the lock is current, and
        /// print what changed.
        #[arg(long)]
        update: bool,
        /// Print the JSON Schema of lock files, and nothing else.
        #[arg(long, exclusive = true)]
        schema: bool,
        /// The script (.rhai) or manifest (JSON).
        #[arg(required_unless_present = "schema")]
        input: Option<PathBuf>,
    },
    /// Fetch every file the locked images install (the lock beside the
    /// input must fit), verified by SHA256: into the store, or with
    /// `--sources DIR` into DIR, for builds without network.
    Fetch {
        /// `-D key=value`: a script parameter (for a .rhai script).
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = osbuild::script::lower::parse_define)]
        define: Vec<(String, String)>,
        /// The script (.rhai) or manifest (JSON).
        input: PathBuf,
    },
    /// Write an SPDX 2.3 JSON document of what an image installs, from the
    /// lock beside the script or manifest (which must fit).
    Sbom {
        /// `-D key=value`: a script parameter (for a .rhai script).
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = osbuild::script::lower::parse_define)]
        define: Vec<(String, String)>,
        /// Only this image (needed without -o when there are several).
        #[arg(long, value_name = "NAME")]
        image: Option<String>,
        /// A file for one image's document, or a directory for NAME.spdx.json of each.
        #[arg(short = 'o', long = "output", value_name = "FILE|DIRECTORY")]
        output: Option<PathBuf>,
        /// The script (.rhai) or manifest (JSON).
        input: PathBuf,
    },
    /// Build every image twice, in two fresh stores under different
    /// conditions (directory, time zone, locale, umask, time), and say
    /// whether the images are the same bytes; if not, which stage first made
    /// a different tree, and how (exit status 1).
    Verify {
        /// `-D key=value`: a script parameter (for a .rhai script).
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = osbuild::script::lower::parse_define)]
        define: Vec<(String, String)>,
        /// Keep both builds' stores and images (printed at the end).
        #[arg(long)]
        keep: bool,
        /// The script (.rhai) or manifest (JSON).
        input: PathBuf,
    },
    /// Write a stored tree as an OCI image (its layers are the store's), into
    /// an OCI layout directory or a registry, for container tools.
    Export {
        /// An OCI layout directory (absent or empty), or oci://HOST[:PORT]/REPOSITORY.
        #[arg(long, value_name = "DIRECTORY|oci://HOST[:PORT]/REPOSITORY")]
        oci: String,
        /// The image's tag.
        #[arg(long, default_value = "latest")]
        tag: String,
        /// The tree: a name a pipeline gave it, or its id.
        tree: String,
    },
    /// Explore interactively: build pipelines line by line, see what they lower
    /// to and what is stored, and try a build (Rhai, as in scripts).
    Repl {
        /// `-D key=value`: a parameter inputs read with param(key, default).
        #[arg(short = 'D', value_name = "KEY=VALUE", value_parser = osbuild::script::lower::parse_define)]
        define: Vec<(String, String)>,
        /// A script to load first.
        script: Option<PathBuf>,
    },
    /// List the stages and assemblers, or show one's options.
    Stages {
        /// A stage or assembler name.
        name: Option<String>,
    },
    /// Look after the store.
    Store {
        #[command(subcommand)]
        command: StoreCmd,
    },
}

#[derive(Subcommand)]
enum StoreCmd {
    /// List stored objects and names.
    Ls,
    /// Show disk usage.
    Du,
    /// Remove objects no name needs that were not used recently.
    Gc {
        /// Remove every object no name needs, however recent.
        #[arg(long)]
        all: bool,
        /// Keep objects used within this many days.
        #[arg(long, default_value_t = 14)]
        keep_days: u64,
    },
    /// Rehash every object and report those that changed since they were
    /// stored (exit status 1 if any did).
    Verify {
        /// Remove the changed and unusable objects, and the trees built on
        /// them, so the next build makes them again.
        #[arg(long)]
        repair: bool,
    },
}

fn common(c: CommonOpts) -> Common {
    let cache = c
        .cache
        .as_deref()
        .map(|url| osbuild::oci::Target::parse(url, c.insecure).expect("checked by clap"));
    Common {
        cache,
        insecure: c.insecure,
        keep_image: c.keep_image,
        sources_checked: c.sources_checked,
        locked: c.locked,
        sources: c.sources,
        limits: limits(&c.limits),
        limit_args: c.limits.clone(),
        store: c.store,
        libdir: c.libdir,
        json: c.json,
    }
}

fn build_args(c: CommonOpts, b: BuildOpts) -> BuildArgs {
    BuildArgs {
        common: common(c),
        output: b.output,
        verbose: b.verbose,
        manifest: b.manifest,
    }
}

fn script_args(
    c: CommonOpts,
    defines: Vec<(String, String)>,
    script: PathBuf,
    output: Option<PathBuf>,
    verbose: bool,
) -> ScriptArgs {
    ScriptArgs {
        common: common(c),
        script,
        defines,
        output,
        verbose,
        keep_going: false,
        jobs: 1,
        slurm: None,
    }
}

fn main() {
    // Wrap long messages at spaces only, and never inside a word: a path in a
    // message (a log, a store object) stays one piece that can be copied.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .break_words(false)
                .word_separator(textwrap::WordSeparator::AsciiSpace)
                .word_splitter(textwrap::WordSplitter::NoHyphenation)
                .build(),
        )
    }));
    let cli = Cli::parse();
    let c = cli.common;
    let code = match cli.command {
        None => cli::build(build_args(c, cli.build)),
        Some(Command::Build(b)) => cli::build(build_args(c, b)),
        Some(Command::Inspect { define, manifest }) => {
            if osbuild::script::is_script(&manifest) {
                script_cli::inspect(script_args(c, define, manifest, None, false))
            } else {
                cli::inspect(common(c), &manifest)
            }
        }
        Some(Command::Lower { define, output, script }) => {
            script_cli::lower(script_args(c, define, script, output, false))
        }
        Some(Command::Run {
            define,
            output,
            verbose,
            keep_going,
            jobs,
            executor,
            partition,
            slurm_options,
            script,
        }) => script_cli::run(ScriptArgs {
            slurm: (executor == Executor::Slurm).then_some(osbuild::slurm::SlurmOptions {
                partition,
                options: slurm_options,
            }),
            keep_going,
            jobs: jobs.map_or_else(osbuild::parallel::default_jobs, usize::from),
            ..script_args(c, define, script, Some(output), verbose)
        }),
        Some(Command::Lock { schema: true, .. }) => {
            print!("{}", osbuild::lock::schema());
            0
        }
        Some(Command::Lock {
            define,
            output,
            update,
            input: Some(input),
            ..
        }) => osbuild::lock::cli::lock(osbuild::lock::cli::LockArgs {
            common: common(c),
            input,
            defines: define,
            output,
            update,
        }),
        Some(Command::Lock { input: None, .. }) => {
            // clap requires an input without --schema; said again, should it not.
            eprintln!("error: osbuild lock needs a script or manifest");
            2
        }
        Some(Command::Fetch { define, input }) => osbuild::lock::cli::fetch(osbuild::lock::cli::FetchArgs {
            common: common(c),
            input,
            defines: define,
        }),
        Some(Command::Sbom {
            define,
            image,
            output,
            input,
        }) => osbuild::sbom::sbom(osbuild::sbom::SbomArgs {
            common: common(c),
            input,
            defines: define,
            image,
            output,
        }),
        Some(Command::Verify { define, keep, input }) => osbuild::verify::verify(osbuild::verify::VerifyArgs {
            common: common(c),
            input,
            defines: define,
            keep,
        }),
        Some(Command::Repl { define, script }) => {
            let c = common(c);
            osbuild::repl::run(osbuild::repl::ReplArgs {
                cache: c.cache,
                limits: c.limits,
                store: c.store,
                libdir: c.libdir,
                script,
                params: define,
            })
        }
        Some(Command::Export { oci, tag, tree }) => cli::export(common(c), &oci, &tag, &tree),
        Some(Command::Stages { name }) => cli::stages(common(c), name.as_deref()),
        Some(Command::Store { command }) => cli::store(
            common(c),
            match command {
                StoreCmd::Ls => StoreCommand::Ls,
                StoreCmd::Du => StoreCommand::Du,
                StoreCmd::Gc { all, keep_days } => StoreCommand::Gc { all, keep_days },
                StoreCmd::Verify { repair } => StoreCommand::Verify { repair },
            },
        ),
    };
    std::process::exit(code);
}
