//! `osbuild repl` through a real pseudo-terminal: the tests type, press Tab,
//! Enter and Ctrl-C, and read the screen as a terminal (vt100) shows it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::Scratch;

const ROWS: u16 = 100;
const COLS: u16 = 160;
const TIMEOUT: Duration = Duration::from_secs(20);
const PROMPT: &str = "osbuild> ";

/// Answers what a terminal answers: the cursor position (`ESC [ 6 n`) and
/// device attributes (`ESC [ c`), which the line editor asks for.
#[derive(Default)]
struct Answers {
    replies: Vec<Vec<u8>>,
}

impl vt100::Callbacks for Answers {
    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        match (i1, c, params) {
            (None, 'n', [[6]]) => {
                let (row, col) = screen.cursor_position();
                self.replies.push(format!("\x1b[{};{}R", row + 1, col + 1).into_bytes());
            }
            (None, 'c', _) => self.replies.push(b"\x1b[?1;2c".to_vec()),
            _ => {}
        }
    }
}

/// `osbuild repl` on a pseudo-terminal.
struct Repl {
    master: File,
    child: Child,
    screen: Arc<Mutex<vt100::Parser<Answers>>>,
    reader: Option<JoinHandle<()>>,
}

fn cloexec(fd: &OwnedFd) {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).unwrap();
}

impl Repl {
    fn start(s: &Scratch, args: &[&str]) -> Repl {
        let size = nix::pty::Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).unwrap();
        cloexec(&pty.master);
        cloexec(&pty.slave);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osbuild"));
        cmd.arg("--store")
            .arg(s.store())
            .arg("--libdir")
            .arg(s.libdir())
            .arg("repl")
            .args(args)
            .current_dir(&s.dir)
            .env("TERM", "xterm")
            .env("NO_COLOR", "1")
            .env("OSBUILD_REPL_HISTORY", s.path("history"))
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        // A session of its own with the pty as its controlling terminal, so
        // Ctrl-C reaches it as SIGINT.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(pty.slave);
        let master = File::from(pty.master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new_with_callbacks(
            ROWS.try_into().unwrap(),
            COLS.try_into().unwrap(),
            0,
            Answers::default(),
        )));
        let mut input = master.try_clone().unwrap();
        let mut answer = master.try_clone().unwrap();
        let shared = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends with EIO once the child (the last holder of the pty) exits.
            while let Ok(n @ 1..) = input.read(&mut buf) {
                let replies = {
                    let mut parser = shared.lock().unwrap();
                    parser.process(&buf[..n]);
                    std::mem::take(&mut parser.callbacks_mut().replies)
                };
                for reply in replies {
                    let _ = answer.write_all(&reply);
                }
            }
        });
        let repl = Repl {
            master,
            child,
            screen,
            reader: Some(reader),
        };
        repl.wait_for(PROMPT);
        repl
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `text` `times` times (or more).
    #[track_caller]
    fn wait_for_n(&self, text: &str, times: usize) -> String {
        let start = Instant::now();
        loop {
            let contents = self.contents();
            if contents.matches(text).count() >= times {
                return contents;
            }
            if start.elapsed() > TIMEOUT {
                panic!("the screen never showed {text:?} {times} times; it shows:\n{contents}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[track_caller]
    fn wait_for(&self, text: &str) -> String {
        self.wait_for_n(text, 1)
    }

    fn prompts(&self) -> usize {
        self.contents().matches(PROMPT).count()
    }

    fn send(&mut self, bytes: &str) {
        self.master.write_all(bytes.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    /// Types `text` and waits until it is on the screen (without pressing Enter).
    #[track_caller]
    fn type_text(&mut self, text: &str) {
        let before = self.contents().matches(text).count();
        self.send(text);
        self.wait_for_n(text, before + 1);
    }

    /// Presses Enter on a complete input and waits for the next prompt
    /// (typing on before it would race the terminal's switch back to raw mode).
    #[track_caller]
    fn enter(&mut self) -> String {
        let prompts = self.prompts();
        self.send("\r");
        self.wait_for_n(PROMPT, prompts + 1)
    }

    /// Types a line, presses Enter and waits for the next prompt.
    #[track_caller]
    fn line(&mut self, text: &str) -> String {
        self.type_text(text);
        self.enter()
    }

    /// Presses Ctrl-C at the prompt: the line is dropped for a fresh prompt.
    #[track_caller]
    fn ctrl_c(&mut self) {
        let prompts = self.prompts();
        self.send("\x03");
        self.wait_for_n(PROMPT, prompts + 1);
    }

    /// Sends `:quit` and waits for the process to exit successfully.
    #[track_caller]
    fn quit(mut self) {
        self.type_text(":quit");
        self.send("\r");
        self.wait_exit();
    }

    #[track_caller]
    fn wait_exit(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "osbuild repl exited with {status}:\n{}",
                    self.contents()
                );
                break;
            }
            if start.elapsed() > TIMEOUT {
                panic!("osbuild repl did not exit; the screen shows:\n{}", self.contents());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn tab_completes_stage_names_and_option_keys() {
    let s = Scratch::new("repl-complete");
    let mut r = Repl::start(&s, &[]);
    r.line("let p = pipeline(\"web\");");
    r.type_text("p.stage(\"org.osbuild.hostn");
    r.send("\t");
    r.wait_for("p.stage(\"org.osbuild.hostname\"");
    r.type_text(", #{ hostn");
    r.send("\t");
    r.wait_for("p.stage(\"org.osbuild.hostname\", #{ hostname");
    r.type_text(": \"web\" });");
    r.enter();
    r.line("p");
    r.wait_for("=> pipeline \"web\" (1 stage)");
    // Variables in scope complete too, and then the methods of a pipeline
    // (the prelude's too).
    r.line("let database = p.named(\"db\");");
    r.type_text("datab");
    r.send("\t");
    r.wait_for("osbuild> database");
    r.type_text(".hostn");
    r.send("\t");
    r.wait_for("database.hostname");
    r.ctrl_c();
    r.quit();
    let history = std::fs::read_to_string(s.path("history")).unwrap();
    assert!(history.contains("let p = pipeline(\"web\");"), "{history}");
}

#[test]
fn multi_line_input_continues_until_the_expression_ends() {
    let s = Scratch::new("repl-multiline");
    let mut r = Repl::start(&s, &[]);
    r.line("let p = pipeline(\"multi\");");
    let prompts = r.prompts();
    r.type_text("p.stage(\"org.osbuild.mkdir\", #{");
    r.send("\r");
    r.type_text("  paths: [#{ path: \"/srv\" }],");
    r.send("\r");
    r.type_text("});");
    // Still the same input: no new prompt, and no error for the open brace.
    assert_eq!(r.prompts(), prompts);
    r.send("\r");
    r.wait_for_n(PROMPT, prompts + 1);
    let screen = r.line(":json p");
    assert!(
        screen.contains(
            r#"{"name":"multi","stages":[{"name":"org.osbuild.mkdir","options":{"paths":[{"path":"/srv"}]}}]}"#
        ),
        "{screen}"
    );
    assert!(!screen.contains("osbuild::script"), "{screen}");
    r.quit();
}

#[test]
fn an_error_does_not_end_the_session() {
    let s = Scratch::new("repl-error");
    let mut r = Repl::start(&s, &[]);
    r.line("let p = pipeline(\"web\");");
    let screen = r.line("p.stage(\"org.osbuild.hostnme\", #{ hostname: \"web\" });");
    assert!(screen.contains("unknown stage `org.osbuild.hostnme`"), "{screen}");
    assert!(screen.contains("did you mean `org.osbuild.hostname`?"), "{screen}");
    let screen = r.line("let = ;");
    assert!(screen.contains("osbuild::script::syntax"), "{screen}");
    let screen = r.line("nope");
    assert!(
        screen.contains("unknown variable `nope`") || screen.contains("nope"),
        "{screen}"
    );
    // A function's error shows the call chain back to the line that called it.
    r.line("fn bad(p) { p.stage(\"org.osbuild.hostname\", #{ domain: 1 }) }");
    let screen = r.line("bad(p)");
    assert!(screen.contains("unknown option `domain`"), "{screen}");
    assert!(screen.contains("`bad` called here"), "{screen}");
    // Ctrl-C at the prompt clears the line and the session goes on, p intact.
    r.type_text("garbage garbage");
    r.ctrl_c();
    r.line("p");
    r.wait_for("=> pipeline \"web\" (0 stages)");
    r.line("40 + 2");
    r.wait_for("=> 42");
    // Ctrl-C during an evaluation stops it (or comes too late, when the
    // limit on operations already did); either way the session goes on.
    let prompts = r.prompts();
    r.type_text("loop { }");
    r.send("\r");
    r.send("\x03");
    let screen = r.wait_for_n(PROMPT, prompts + 1);
    assert!(
        screen.contains("interrupted") || screen.contains("the script ran too long"),
        "{screen}"
    );
    r.line("p");
    r.wait_for_n("=> pipeline \"web\" (0 stages)", 2);
    r.line(":nonsense");
    r.wait_for("unknown command :nonsense");
    r.quit();
}

#[test]
fn json_and_inspect_show_the_pipeline() {
    let s = Scratch::new("repl-json");
    let script = s.write(
        "image.rhai",
        "fn with_host(p, name) {\n    p.stage(\"org.osbuild.hostname\", #{ hostname: name });\n    p\n}\nlet base = pipeline(\"base\");\n",
    );
    let mut r = Repl::start(&s, &[script.to_str().unwrap()]);
    r.line("let web = with_host(base, \"web\");");
    let screen = r.line(":json web");
    assert!(
        screen.contains(r#"{"name":"base","stages":[{"name":"org.osbuild.hostname","options":{"hostname":"web"}}]}"#),
        "{screen}"
    );
    let screen = r.line(":inspect web");
    assert!(screen.contains("main pipeline \"base\" (build root: host)"), "{screen}");
    assert!(screen.contains("org.osbuild.hostname"), "{screen}");
    let screen = r.line(":json 42");
    assert!(screen.contains("not a pipeline"), "{screen}");
    let screen = r.line(":stages org.osbuild.hostname");
    assert!(screen.contains("hostname: string (required)"), "{screen}");
    r.line(":reset");
    let screen = r.line("web");
    assert!(screen.contains("web"), "{screen}");
    assert!(
        screen.contains("osbuild::script"),
        "after :reset `web` is gone:\n{screen}"
    );
    r.quit();
}

fn tiny_pipeline(r: &mut Repl) {
    r.line("let p = pipeline(\"tiny\");");
    r.line("p.stage(\"org.osbuild.mkdir\", #{ paths: [#{ path: \"/srv\" }] });");
    r.line("p.stage(\"org.osbuild.files\", #{ files: [#{ path: \"/srv/hello\", content: \"hi\" }] });");
    r.line("p.stage(\"org.osbuild.hostname\", #{ hostname: \"tiny\" });");
    r.line("p.assembler(\"org.osbuild.tar\", #{ filename: \"tiny.tar\" });");
}

#[test]
fn build_runs_a_pipeline_and_stores_it() {
    let s = Scratch::new("repl-build");
    let mut r = Repl::start(&s, &[]);
    tiny_pipeline(&mut r);
    let out = s.path("out");
    let screen = r.line(&format!(":build p -o {}", out.display()));
    assert!(screen.contains("build success"), "{screen}");
    assert!(out.join("tiny.tar").is_file(), "{screen}");
    // Every stage is stored now; the image was handed over, not kept.
    let screen = r.line(":inspect p");
    let stored = screen
        .lines()
        .filter(|l| l.contains("org.osbuild.") && l.contains("stored"))
        .count();
    assert_eq!(stored, 3, "{screen}");

    // Without EXPR: every emitted image, each in its own directory.
    r.line("emit(p);");
    r.line("let q = p; q.name = \"other\";");
    r.line("q.stage(\"org.osbuild.hostname\", #{ hostname: \"other\" }); emit(q);");
    let all = s.path("all");
    let screen = r.line(&format!(":build -o {}", all.display()));
    assert!(screen.contains("image other:"), "{screen}");
    assert!(all.join("tiny/tiny.tar").is_file(), "{screen}");
    assert!(all.join("other/tiny.tar").is_file(), "{screen}");
    r.line("1 + 1");
    r.wait_for("=> 2");
    r.quit();
}

#[test]
fn ctrl_c_cancels_a_build_and_returns_to_the_prompt() {
    let s = Scratch::new("repl-interrupt");
    let marker = format!("{}.{}", 200 + std::process::id() % 100, std::process::id());
    s.stage("stage", "test.sleep", &format!("#!/bin/sh\nsleep {marker}\n"), None);
    let mut r = Repl::start(&s, &[]);
    r.line("let p = pipeline(\"slow\");");
    r.line("p.stage(\"org.osbuild.noop\", #{ first: true });");
    r.line("p.stage(\"test.sleep\");");
    let prompts = r.prompts();
    r.type_text(":build p");
    r.send("\r");
    r.wait_for("-> test.sleep");
    r.send("\x03");
    let screen = r.wait_for_n(PROMPT, prompts + 1);
    assert!(screen.contains("interrupted"), "{screen}");
    assert!(!Path::new(&s.store())
        .join("objects")
        .read_dir()
        .is_ok_and(|mut d| d.any(|e| {
            let id = e.unwrap().file_name();
            std::fs::read_to_string(s.store().join("objects").join(&id).join("meta.json"))
                .unwrap_or_default()
                .contains("test.sleep")
        })));
    r.line("1 + 2");
    r.wait_for("=> 3");
    r.quit();
}

/// `osbuild repl ARGS` with `input` on a pipe, not a terminal.
fn piped_repl(s: &Scratch, args: &[&str], input: &[u8]) -> std::process::Output {
    piped_repl_in(s, &std::env::current_dir().unwrap(), args, input)
}

/// [`piped_repl`], started in `dir`.
fn piped_repl_in(s: &Scratch, dir: &std::path::Path, args: &[&str], input: &[u8]) -> std::process::Output {
    s.osbuild()
        .current_dir(dir)
        .arg("repl")
        .args(args)
        .env("OSBUILD_REPL_HISTORY", s.path("history"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(input)?;
            child.wait_with_output()
        })
        .unwrap()
}

#[test]
fn an_unknown_base_is_shown_at_the_input_that_names_it() {
    let s = Scratch::new("repl-base");
    let out = piped_repl(
        &s,
        &[],
        b"let p = pipeline(\"x\");\np.base(\"no-such-tree\");\n:inspect p\n:build p\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("not in the store").count(), 2, "{stderr}");
    assert!(
        stderr.contains("p.base(\"no-such-tree\")"),
        "the input line is shown: {stderr}"
    );
}

#[test]
fn without_a_terminal_it_reads_inputs_from_stdin() {
    let s = Scratch::new("repl-pipe");
    let out = piped_repl(
        &s,
        &["-D", "host=from-the-command-line"],
        b"let p = pipeline(\"x\");\np.stage(\"org.osbuild.hostname\", #{\n  hostname: param(\"host\", \"x\")\n});\n:json p\n",
    );
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            r#"{"name":"x","stages":[{"name":"org.osbuild.hostname","options":{"hostname":"from-the-command-line"}}]}"#
        ),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `:load FILE` reads files and imports relative to FILE, inside FILE's
/// directory, wherever the REPL was started.
#[test]
fn load_resolves_read_file_and_imports_relative_to_the_file() {
    let s = Scratch::new("repl-load");
    s.write("lib/motd.txt", "hello from motd\n");
    s.write(
        "lib/roles.rhai",
        "fn web(name) { let p = pipeline(name); p.file(\"/etc/motd\", read_file(\"motd.txt\")); p }\n",
    );
    let web = s.write(
        "lib/web.rhai",
        "import \"./roles\" as roles;\nlet p = roles::web(\"w\");\n",
    );
    let escape = s.write("lib/escape.rhai", "let q = read_file(\"../../../etc/passwd\");\n");
    let input = format!(":load {}\n:json p\n:load {}\n", web.display(), escape.display());
    let out = piped_repl(&s, &[], input.as_bytes());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains(r#""content":"hello from motd\n""#),
        "{stdout}\n{stderr}"
    );
    assert!(stderr.contains("leaves the script's directory"), "{stderr}");
}

/// A relative `:load` path is the REPL's working directory's; what the file
/// defines keeps reading relative to the file when called later at the prompt.
#[test]
fn functions_a_loaded_file_defines_read_relative_to_it_later() {
    let s = Scratch::new("repl-load-later");
    s.write("lib/motd.txt", "motd beside the module\n");
    s.write("motd.txt", "motd at the top\n");
    s.write("lib/roles.rhai", "fn motd() { read_file(\"motd.txt\") }\n");
    s.write("work/.keep", "");
    let out = piped_repl_in(&s, &s.path("work"), &[], b":load ../lib/roles.rhai\nmotd()\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("loaded ../lib/roles.rhai"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(r#"=> "motd beside the module\n""#),
        "{stdout}\n{stderr}"
    );
}
