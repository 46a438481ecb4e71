//! `osbuild repl`: build pipelines line by line, see what they lower to and
//! what is already stored, and try a build, without writing a file first.
//!
//! - [`session`] evaluates inputs with the script front-end's engine (same
//!   purity rules, limits, API and stdlib); variables, functions and imports
//!   persist from one input to the next;
//! - [`commands`] are the `:help`, `:stages`, `:json`, `:inspect`, `:build`,
//!   `:load`, `:reset` and `:quit` commands;
//! - [`completer`], [`highlighter`] and [`validator`] plug into reedline:
//!   Tab completion, colours, and multi-line input for unfinished expressions;
//!   hints come from the history, kept in a file between sessions.
//!
//! Errors are the script front-end's miette diagnostics, and the session goes
//! on. Ctrl-C at the prompt clears the line; during an evaluation it stops
//! the evaluation; during `:build` the executor cancels the build cleanly.

pub mod commands;
pub mod completer;
pub mod highlighter;
pub mod lexer;
pub mod session;
pub mod validator;

use std::borrow::Cow;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reedline::{
    default_emacs_keybindings, Color, ColumnarMenu, DefaultHinter, Emacs, FileBackedHistory, KeyCode, KeyModifiers,
    MenuBuilder, Prompt, PromptEditMode, PromptHistorySearch, PromptHistorySearchStatus, Reedline, ReedlineEvent,
    ReedlineMenu, Signal,
};
use rhai::Dynamic;

use crate::script::api::Param;

use crate::registry::Registry;
use crate::script::ScriptDiagnostic;
use crate::signals::Interrupts;

use self::commands::Outcome;
use self::session::{Failure, Names, Session};

/// What `osbuild repl` takes.
pub struct ReplArgs {
    pub store: PathBuf,
    pub libdir: Option<PathBuf>,
    /// What each stage's sandbox may take in `:build`.
    pub limits: crate::sandbox::Limits,
    /// `--cache`: the registry `:build` shares objects through.
    pub cache: Option<crate::oci::Target>,
    /// A script to load first.
    pub script: Option<PathBuf>,
    /// `-D key=value` parameters, as for `osbuild run` (in a session, a key
    /// no input reads is not an error: the next input may read it).
    pub params: Vec<(String, String)>,
}

/// The environment variable that names the history file (tests use a temporary one).
pub const HISTORY_ENV: &str = "OSBUILD_REPL_HISTORY";

/// Where the history is kept: `$OSBUILD_REPL_HISTORY`, else
/// `$XDG_STATE_HOME/osbuild/repl_history`, else `~/.local/state/osbuild/repl_history`.
pub fn history_path() -> Option<PathBuf> {
    let nonempty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    if let Some(p) = std::env::var_os(HISTORY_ENV).and_then(nonempty) {
        return Some(p);
    }
    let state = std::env::var_os("XDG_STATE_HOME").and_then(nonempty).or_else(|| {
        std::env::var_os("HOME")
            .and_then(nonempty)
            .map(|h| h.join(".local/state"))
    })?;
    Some(state.join("osbuild").join("repl_history"))
}

/// The REPL's state: the session and where the store is.
pub struct Repl {
    pub session: Session,
    pub store: PathBuf,
    pub limits: crate::sandbox::Limits,
    pub cache: Option<crate::oci::Target>,
}

impl Repl {
    /// Evaluates `text` in the session on a thread with room for deep calls;
    /// Ctrl-C (SIGINT, blocked meanwhile) stops the evaluation.
    pub fn eval(&mut self, name: &str, text: &str, dir: Option<PathBuf>) -> Result<Dynamic, Failure> {
        let cancel = self.session.cancel_flag();
        let interrupts = Interrupts::block().ok();
        let session = &mut self.session;
        let mut interrupted = false;
        let result = std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("rhai".into())
                .stack_size(crate::script::engine::STACK_SIZE)
                .spawn_scoped(scope, move || session.eval(name, text, dir));
            let handle = match spawned {
                Ok(h) => h,
                Err(e) => return Err(plain("internal", format!("cannot start the evaluation: {e}"))),
            };
            while !handle.is_finished() {
                match &interrupts {
                    Some(i) => {
                        let mut fds = [nix::poll::PollFd::new(i.fd(), nix::poll::PollFlags::POLLIN)];
                        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5u16));
                        if i.pending().is_some() {
                            cancel.store(true, Ordering::Relaxed);
                            interrupted = true;
                        }
                    }
                    None => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            handle
                .join()
                .unwrap_or_else(|_| Err(plain("internal", "the script engine panicked")))
        });
        if let Some(i) = &interrupts {
            while i.pending().is_some() {}
        }
        drop(interrupts);
        if interrupted {
            // After the terminal's `^C`.
            eprintln!();
        }
        result
    }

    /// Evaluates one input typed at the prompt and shows its value or its error.
    pub fn input(&mut self, text: &str) {
        let name = self.session.next_input_name();
        match self.eval(&name, text, None) {
            Ok(value) => {
                if let Some(shown) = session::show(&value) {
                    println!("=> {shown}");
                }
            }
            Err(d) => report(d),
        }
    }

    /// Loads a script file into the session.
    pub fn load(&mut self, path: &Path) -> bool {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                report(plain("read", format!("cannot read {}: {e}", path.display())));
                return false;
            }
        };
        let dir = path
            .parent()
            .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .and_then(|p| p.canonicalize().ok());
        let before = self.session.images().len();
        match self.eval(&path.display().to_string(), &text, dir) {
            Ok(_) => {
                let images: Vec<&str> = self.session.images().iter().map(|i| i.name.as_str()).collect();
                let new = images.len() - before;
                if images.is_empty() {
                    println!("loaded {}", path.display());
                } else {
                    println!(
                        "loaded {} ({new} new image{}; emitted: {})",
                        path.display(),
                        if new == 1 { "" } else { "s" },
                        images.join(", ")
                    );
                }
                true
            }
            Err(d) => {
                report(d);
                false
            }
        }
    }
}

pub fn plain(code: &str, message: impl Into<String>) -> Failure {
    Box::new(ScriptDiagnostic::plain(code, message, None))
}

/// Shows a diagnostic the way the other commands do.
pub fn report(d: Failure) {
    eprintln!("{:?}", miette::Report::new(*d));
}

struct ReplPrompt;

impl Prompt for ReplPrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Borrowed("osbuild")
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("> ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("      | ")
    }

    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        let failing = match search.status {
            PromptHistorySearchStatus::Passing => "",
            PromptHistorySearchStatus::Failing => "failing ",
        };
        Cow::Owned(format!("({failing}search: {}) ", search.term))
    }

    fn get_prompt_color(&self) -> Color {
        Color::Cyan
    }
}

fn editor(registry: Arc<Registry>, names: Arc<Mutex<Names>>) -> Reedline {
    let mut keybindings = default_emacs_keybindings();
    keybindings.add_binding(
        KeyModifiers::NONE,
        KeyCode::Tab,
        ReedlineEvent::UntilFound(vec![
            ReedlineEvent::Menu("completion_menu".to_string()),
            ReedlineEvent::MenuNext,
        ]),
    );
    let menu = ColumnarMenu::default().with_name("completion_menu");
    let mut editor = Reedline::create()
        .with_completer(Box::new(completer::ReplCompleter::new(registry, names)))
        .with_menu(ReedlineMenu::EngineCompleter(Box::new(menu)))
        .with_quick_completions(true)
        .with_partial_completions(true)
        .with_edit_mode(Box::new(Emacs::new(keybindings)))
        .with_highlighter(Box::new(highlighter::RhaiHighlighter))
        .with_hinter(Box::new(DefaultHinter::default().with_style(Color::DarkGray.italic())))
        .with_validator(Box::new(validator::RhaiValidator::default()));
    if let Some(path) = history_path() {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match FileBackedHistory::with_file(1000, path.clone()) {
            Ok(history) => editor = editor.with_history(Box::new(history)),
            Err(e) => eprintln!("warning: no history file ({}): {e}", path.display()),
        }
    }
    editor
}

/// `osbuild repl`: the exit status is 0 after `:quit` or Ctrl-D, 2 if it cannot start.
pub fn run(args: ReplArgs) -> i32 {
    let registry = match Registry::load(args.libdir.as_deref()) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("{:?}", miette::Report::new(e));
            return crate::cli::EXIT_INVALID;
        }
    };
    let dir = match &args.script {
        Some(script) => script
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        None => PathBuf::from("."),
    };
    let root = match dir.canonicalize() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot open {}: {e}", dir.display());
            return crate::cli::EXIT_INVALID;
        }
    };
    let names = Arc::new(Mutex::new(Names::default()));
    let params = args.params.iter().map(|(k, v)| (k.clone(), Param::parse(v))).collect();
    let session = match Session::new(registry.clone(), root, names.clone(), params) {
        Ok(s) => s,
        Err(d) => {
            report(d);
            return crate::cli::EXIT_INVALID;
        }
    };
    let mut repl = Repl {
        session,
        store: args.store,
        limits: args.limits,
        cache: args.cache,
    };
    if let Some(script) = &args.script {
        repl.load(script);
    }
    if !std::io::stdin().is_terminal() {
        return plain_loop(&mut repl);
    }
    ignore_stray_interrupts();
    println!("osbuild repl: Rhai with the osbuild API and stdlib. :help for help, :quit or Ctrl-D to leave.");
    let mut editor = editor(registry, names);
    let prompt = ReplPrompt;
    loop {
        match editor.read_line(&prompt) {
            Ok(Signal::Success(line)) => {
                if commands::handle(&mut repl, &line) == Outcome::Quit {
                    break;
                }
            }
            Ok(Signal::CtrlC) => continue,
            Ok(Signal::CtrlD) => break,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("the line editor failed: {e}");
                return crate::cli::EXIT_FAILED;
            }
        }
    }
    let _ = editor.sync_history();
    0
}

extern "C" fn on_interrupt(_: libc::c_int) {}

/// A Ctrl-C that lands between two reads of the line editor (when it is
/// neither a key nor blocked for an evaluation or a build) must not end the
/// REPL. A handler that does nothing, rather than ignoring SIGINT: an ignored
/// signal is discarded even while blocked, and the build reads it from a
/// signalfd. Programs the build runs start with the default again (exec).
fn ignore_stray_interrupts() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(SigHandler::Handler(on_interrupt), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler does nothing, so it is async-signal-safe.
    let _ = unsafe { sigaction(Signal::SIGINT, &action) };
}

/// Without a terminal (input from a pipe or file): the same inputs and
/// commands, one complete input after another, without editing.
fn plain_loop(repl: &mut Repl) -> i32 {
    let validator = validator::RhaiValidator::default();
    let mut pending = String::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        if validator.incomplete(&pending) {
            continue;
        }
        let input = std::mem::take(&mut pending);
        if commands::handle(repl, &input) == Outcome::Quit {
            return 0;
        }
    }
    if !pending.trim().is_empty() {
        commands::handle(repl, &pending);
    }
    0
}
