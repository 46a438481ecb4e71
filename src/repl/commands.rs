//! The REPL's commands: every input that starts with `:`.

use std::path::{Path, PathBuf};

use osbuild_stages::Kind;

use crate::cli::print_plan;
use crate::manifest::Manifest;
use crate::monitor::Terminal;
use crate::plan::{plan, PlanError};
use crate::run::Images;
use crate::store::Store;

use super::completer::COMMANDS;
use super::session::Failure;
use super::{plain, report, Repl};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Quit,
}

/// Runs one input: a command, or Rhai code for the session.
pub fn handle(repl: &mut Repl, input: &str) -> Outcome {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Outcome::Continue;
    }
    if !trimmed.starts_with(':') {
        repl.input(input);
        return Outcome::Continue;
    }
    let (command, rest) = match trimmed.find(char::is_whitespace) {
        Some(i) => (&trimmed[..i], trimmed[i..].trim()),
        None => (trimmed, ""),
    };
    match command {
        ":help" | ":h" | ":?" => help(),
        ":quit" | ":q" | ":exit" => return Outcome::Quit,
        ":stages" => stages(repl, rest),
        ":json" => {
            if let Err(d) = json(repl, rest) {
                report(d);
            }
        }
        ":inspect" => {
            if let Err(d) = inspect(repl, rest) {
                report(d);
            }
        }
        ":build" => build(repl, rest),
        ":load" => {
            if rest.is_empty() {
                report(plain("repl", ":load needs a file: :load FILE"));
            } else {
                repl.load(Path::new(rest));
            }
        }
        ":reset" => match repl.session.reset() {
            Ok(()) => println!("session cleared: no variables, functions, imports or images"),
            Err(d) => report(d),
        },
        other => {
            let known = COMMANDS.iter().map(|(c, _)| *c);
            let help = match crate::diagnostic::suggest(other, known) {
                Some(s) => format!("did you mean {s}? :help lists the commands"),
                None => ":help lists the commands".to_string(),
            };
            report(Box::new(crate::script::ScriptDiagnostic::plain(
                "repl",
                format!("unknown command {other}"),
                Some(help),
            )));
        }
    }
    Outcome::Continue
}

fn help() {
    println!("Type Rhai to build pipelines; variables, functions and imports stay for the next input.");
    println!("An unfinished input (open brace, bracket or string) continues on the next line.");
    println!();
    println!("  let p = pipeline(\"web\");");
    println!("  p.stage(\"org.osbuild.hostname\", #{{ hostname: \"web\" }});");
    println!("  import \"debian\" as debian;");
    println!();
    println!("Commands:");
    let width = COMMANDS.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, doc) in COMMANDS {
        println!("  {command:width$}  {doc}");
    }
    println!();
    println!("Without EXPR, :json and :inspect show the images emitted with emit(p).");
    println!("Tab completes names, stage names in stage(\"...\") and option keys in #{{ }}.");
    println!("Ctrl-C clears the line (or stops a build); Ctrl-D or :quit leaves.");
}

fn stages(repl: &Repl, name: &str) {
    let registry = repl.session.registry();
    if name.is_empty() {
        for kind in [Kind::Stage, Kind::Assembler] {
            println!("{}s:", kind.noun());
            let defs: Vec<_> = registry.all(kind).collect();
            let width = defs.iter().map(|d| d.name.len()).max().unwrap_or(0);
            for def in defs {
                let origin = if def.is_builtin() { "" } else { " [libdir]" };
                println!("  {:width$}  {}{origin}", def.name, def.summary);
            }
        }
        return;
    }
    let defs: Vec<_> = [Kind::Stage, Kind::Assembler]
        .into_iter()
        .filter_map(|k| registry.get(k, name))
        .collect();
    if defs.is_empty() {
        let unknown = crate::check::unknown_name(registry, Kind::Stage, name);
        report(Box::new(crate::script::ScriptDiagnostic::plain(
            "repl",
            unknown.message,
            Some(unknown.help),
        )));
    }
    for def in defs {
        print!("{}", crate::docs::render(def));
    }
}

/// The manifests an EXPR names, or every emitted image without one.
fn manifests(repl: &mut Repl, expr: &str, what: &str) -> Result<Vec<(Option<String>, Manifest)>, Failure> {
    if !expr.is_empty() {
        return Ok(vec![(None, repl.manifest(expr)?)]);
    }
    let images = repl.session.images();
    if images.is_empty() {
        return Err(Box::new(crate::script::ScriptDiagnostic::plain(
            "repl",
            format!("{what} needs a pipeline: {what} EXPR"),
            Some("without EXPR it shows the images emitted with emit(p), and there are none yet".into()),
        )));
    }
    let mut all: Vec<(Option<String>, Manifest)> = images
        .iter()
        .map(|i| {
            (
                Some(i.name.clone()),
                Manifest {
                    pipeline: i.pipeline.clone(),
                    sources: None,
                },
            )
        })
        .collect();
    // As `osbuild lower` of the same script would give them.
    crate::script::set_assembly_bases(&mut all.iter_mut().map(|(_, m)| m).collect::<Vec<_>>());
    Ok(all)
}

fn json(repl: &mut Repl, expr: &str) -> Result<(), Failure> {
    for (_, manifest) in manifests(repl, expr, ":json")? {
        println!("{}", manifest.canonical_json());
    }
    Ok(())
}

fn inspect(repl: &mut Repl, expr: &str) -> Result<(), Failure> {
    let manifests = manifests(repl, expr, ":inspect")?;
    let store = Store::open_existing(&repl.store)
        .map_err(|e| plain("store", format!("cannot open the store {}: {e}", repl.store.display())))?;
    if store.is_none() {
        println!("(no store at {} yet: nothing is stored)", repl.store.display());
    }
    for (name, manifest) in manifests {
        if let Some(name) = &name {
            println!("image {name}:");
        }
        let p = plan(&manifest, store.as_ref()).map_err(|e| plan_error(repl, name.as_deref(), e))?;
        print_plan(&p, false);
    }
    Ok(())
}

/// A plan error (of the image `name`); an unknown base points at the input
/// that named it.
fn plan_error(repl: &Repl, name: Option<&str>, e: PlanError) -> Failure {
    let message = match name {
        Some(name) => format!("{name}: {e}"),
        None => e.to_string(),
    };
    if let PlanError::UnknownBase(base) = &e {
        if let Some(d) = repl.session.bases().unknown(base, message.clone()) {
            return Box::new(d);
        }
    }
    plain("plan", message)
}

/// `EXPR [-o DIR]`: the expression and the output directory.
fn split_output(args: &str) -> (&str, Option<PathBuf>) {
    let words: Vec<&str> = args.split_whitespace().collect();
    if let [.., flag, dir] = words.as_slice() {
        if *flag == "-o" || *flag == "--output" {
            let at = args.rfind(flag).unwrap_or(args.len());
            return (args[..at].trim(), Some(PathBuf::from(dir)));
        }
    }
    (args.trim(), None)
}

/// `:build EXPR [-o DIR]` builds one pipeline (its files in DIR);
/// `:build [-o DIR]` every emitted image (each in DIR/<image>/), as `osbuild run`.
fn build(repl: &mut Repl, args: &str) {
    let (expr, output) = split_output(args);
    let manifests = match manifests(repl, expr, ":build") {
        Ok(m) => m,
        Err(d) => return report(d),
    };
    if let Some(out) = &output {
        if let Err(e) = crate::output::check_output_dir(out) {
            return report(plain("output", e.to_string()));
        }
    }
    let store = match Store::open(&repl.store) {
        Ok(s) => s,
        Err(e) => {
            return report(plain(
                "store",
                format!("cannot open the store {}: {e}", repl.store.display()),
            ))
        }
    };
    // Plan every image first: a bad base fails before anything is built.
    for (name, manifest) in &manifests {
        if let Err(e) = plan(manifest, Some(&store)) {
            return report(plan_error(repl, name.as_deref(), e));
        }
    }
    let mut monitor = Terminal { verbose: false };
    let images: Vec<(Option<&str>, &Manifest)> = manifests.iter().map(|(n, m)| (n.as_deref(), m)).collect();
    // The line editor is not reading now: the terminal is in its normal
    // mode, so Ctrl-C is a SIGINT, which the executor turns into a clean stop.
    let cache = match repl.cache.as_ref().map(crate::oci::Cache::connect).transpose() {
        Ok(cache) => cache,
        Err(e) => {
            report(plain("cache", format!("--cache: {e}")));
            return;
        }
    };
    let run = Images {
        store: &store,
        registry: repl.session.registry(),
        limits: repl.limits,
        cache: cache.as_ref(),
        keep_image: false,
        keep_going: false,
    }
    .run(&images, output.as_deref(), &mut monitor, |name| {
        if let Some(name) = name {
            println!("image {name}:");
        }
    });
    if let Some((failure, _)) = run.stopped {
        eprintln!("{:?}", failure.report);
    }
}

impl Repl {
    /// Evaluates an expression that must give a pipeline, as a manifest.
    pub fn manifest(&mut self, expr: &str) -> Result<Manifest, Failure> {
        let name = self.session.next_input_name();
        let value = self.eval(&name, expr, None)?;
        super::session::as_manifest(value, expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_flags_split_off() {
        assert_eq!(split_output("web -o out"), ("web", Some(PathBuf::from("out"))));
        assert_eq!(split_output("base.named(\"x\")"), ("base.named(\"x\")", None));
        assert_eq!(
            split_output("  web --output /tmp/o "),
            ("web", Some(PathBuf::from("/tmp/o")))
        );
    }
}
