//! `org.osbuild.script`: runs a shell snippet inside the tree, like debos's
//! `run` action with `chroot: true` or mkosi's `postinst` scripts.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use crate::api::{option_path, Builtin, Context, Kind, Options, OptionsError, StageResult};

/// Runs a script with the tree as its root directory (`chroot`), so it uses the
/// tree's own programs (`apt-get`, `update-alternatives`, `locale-gen`, ...).
/// `/proc`, `/dev` and `/tmp` are mounted in the tree while it runs. The script
/// starts in `/` with a clean environment: `PATH`, `HOME=/root`, `LANG=C.UTF-8`,
/// `DEBIAN_FRONTEND=noninteractive`, then `environment`. Its output is the
/// stage's log; a non-zero exit status fails the stage.
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The script, passed to the interpreter as `-c SCRIPT`.
    #[schemars(example = "set -e\nsed -i 's/^#\\s*\\(en_US.UTF-8\\)/\\1/' /etc/locale.gen\nlocale-gen")]
    script: String,
    /// The program that runs the script, a path inside the tree; it must accept `-c`.
    #[serde(default = "default_interpreter")]
    #[schemars(default = "default_interpreter")]
    interpreter: String,
    /// Give the script the host's network (to download packages, say). Without
    /// it only loopback works.
    #[serde(default)]
    network: bool,
    /// Environment variables for the script, added to (or replacing) the defaults.
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

fn default_interpreter() -> String {
    "/bin/sh".into()
}

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Options for Script {
    fn validate(&self) -> Vec<OptionsError> {
        let mut problems = Vec::new();
        let interpreter = &self.interpreter;
        if interpreter.is_empty() {
            problems.push(OptionsError::invalid(crate::at!["interpreter"], "must not be empty"));
        } else if interpreter.starts_with('/') {
            if let Err(e) = option_path(interpreter) {
                problems.push(OptionsError::invalid(crate::at!["interpreter"], e.0));
            }
        }
        if self.script.contains('\0') {
            problems.push(OptionsError::invalid(
                crate::at!["script"],
                "must not contain NUL bytes",
            ));
        }
        for (key, value) in &self.environment {
            if key.is_empty() || key.contains(['=', '\0']) {
                problems.push(OptionsError::invalid(
                    crate::at!["environment", key],
                    format!("{key:?} is not a variable name"),
                ));
            }
            if value.contains('\0') {
                problems.push(OptionsError::invalid(
                    crate::at!["environment", key],
                    "must not contain NUL bytes",
                ));
            }
        }
        problems
    }

    fn run(self, ctx: &Context) -> StageResult {
        let interpreter = &self.interpreter;
        if interpreter.starts_with('/') {
            // Chrooted, the script's interpreter resolves in the tree as this does.
            if !ctx.open_tree()?.exists(option_path(interpreter)?) {
                return Err(format!("interpreter {interpreter} is not in the tree").into());
            }
        }

        let root = CString::new(ctx.tree.as_os_str().as_bytes()).map_err(|_| "tree path contains a NUL byte")?;
        let mut cmd = Command::new(interpreter);
        cmd.arg("-c")
            .arg(&self.script)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .envs(&self.environment)
            .stdin(Stdio::null());
        // SAFETY: between fork and exec the closure only makes the async-signal-safe
        // chroot(2) and chdir(2) calls, with a path allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        println!(
            "running a {}-line script with {interpreter} in the tree{}",
            self.script.lines().count(),
            if self.network { " (with network)" } else { "" }
        );
        let status = cmd
            .status()
            .map_err(|e| format!("cannot run {interpreter} in the tree: {e}"))?;
        match (status.code(), status.signal()) {
            (Some(0), _) => Ok(()),
            (Some(code), _) => Err(format!("script failed: {interpreter} exited with status {code}").into()),
            (None, Some(signal)) => Err(format!("script failed: {interpreter} was killed by signal {signal}").into()),
            (None, None) => Err(format!("script failed: {status}").into()),
        }
    }
}

pub static STAGE: Builtin = Builtin::new::<Script>(
    "org.osbuild.script",
    Kind::Stage,
    "Runs a shell script chrooted into the tree",
)
.with_network_option("network")
.with_tree_mounts();

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::STAGE;
    use crate::testutil::TempTree;

    /// A tree whose /bin/sh is the build root's static busybox, if there is one.
    /// A tree whose shell is the build root's static busybox (package busybox-static).
    fn tree() -> TempTree {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .expect("this test needs a static busybox (package busybox-static)");
        let t = TempTree::new("script");
        std::fs::create_dir_all(t.join("bin")).unwrap();
        std::fs::create_dir_all(t.join("root")).unwrap();
        std::fs::copy(busybox, t.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", t.join("bin/sh")).unwrap();
        t
    }

    #[test]
    fn options() {
        assert!(STAGE.check(&json!({"script": "echo hi"})).is_empty());
        assert!(STAGE
            .check(&json!({"script": "apt-get update", "interpreter": "/bin/bash", "network": true, "environment": {"A": "b"}}))
            .is_empty());
        assert!(STAGE.check(&json!({"script": "x", "interpreter": "bash"})).is_empty());
        assert!(!STAGE.check(&json!({})).is_empty());
        let bad =
            json!({"script": "x\0", "interpreter": "/usr/../bin/sh", "environment": {"A=B": "c", "": "d", "E": "\0"}});
        let paths: Vec<String> = STAGE
            .check(&bad)
            .iter()
            .map(|e| crate::api::path_text(&e.path))
            .collect();
        assert_eq!(
            paths,
            [
                "interpreter",
                "script",
                "environment.",
                "environment.A=B",
                "environment.E"
            ]
        );
        assert!(!STAGE.check(&json!({"script": "x", "interpreter": ""})).is_empty());
        assert!(STAGE.needs_network(&json!({"script": "x", "network": true})));
        assert!(!STAGE.needs_network(&json!({"script": "x"})));
        assert!(STAGE.tree_mounts);
    }

    #[test]
    fn runs_chrooted() {
        let t = tree();
        let options = json!({
            "script": "echo \"$GREETING from $(pwd)\" > /out\necho \"$PATH $HOME\" >> /out\n[ -z \"$CARGO_PKG_NAME\" ] && echo clean >> /out",
            "environment": {"GREETING": "hello world"}
        });
        STAGE.run(&t.ctx(), &options).unwrap();
        assert_eq!(
            t.read("out"),
            "hello world from /\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /root\nclean\n"
        );

        let e = STAGE.run(&t.ctx(), &json!({"script": "exit 3"})).unwrap_err();
        assert_eq!(e.0, "script failed: /bin/sh exited with status 3");
        let e = STAGE
            .run(&t.ctx(), &json!({"script": "true", "interpreter": "/bin/bash"}))
            .unwrap_err();
        assert_eq!(e.0, "interpreter /bin/bash is not in the tree");
    }
}
