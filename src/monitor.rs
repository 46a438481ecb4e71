//! Progress: lines for people, JSON lines for machines.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

/// One thing that happened during a build.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event<'a> {
    PipelineBegin {
        role: &'a str,
        name: Option<&'a str>,
        /// The build root's tree id, or null for the host.
        build_root: Option<&'a str>,
        stages: usize,
    },
    StageBegin {
        name: &'a str,
        id: &'a str,
        kind: &'a str,
    },
    Log {
        id: &'a str,
        text: &'a str,
    },
    /// How far a long step of a running stage is (its log lines that
    /// start with `progress: `, without that prefix).
    Progress {
        id: &'a str,
        text: &'a str,
    },
    StageEnd {
        name: &'a str,
        id: &'a str,
        kind: &'a str,
        /// "cached", "pulled" (from the cache), "success", "failure" or
        /// "interrupted".
        status: &'a str,
        duration_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
    },
    /// How the sources step is getting on: the files locked stages
    /// install, fetched and verified before any stage runs.
    Sources {
        text: &'a str,
    },
    /// Something the user should know that does not stop the build.
    Warning {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        text: &'a str,
    },
    BuildEnd {
        /// "success", "failure" or "interrupted".
        status: &'a str,
        duration_ms: u64,
        built: usize,
        /// Stored already or pulled from the cache.
        cached: usize,
        /// Of those cached, the ones pulled.
        pulled: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<&'a str>,
    },
}

/// Where events go.
pub trait Monitor {
    fn event(&mut self, event: &Event<'_>);
}

/// One JSON object per line on stdout.
pub struct JsonLines;

impl Monitor for JsonLines {
    fn event(&mut self, event: &Event<'_>) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, event);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// Lines for a person on stderr; stage logs are shown only when a stage fails
/// (they are always kept in the store), or live with `verbose`.
pub struct Terminal {
    pub verbose: bool,
}

impl Monitor for Terminal {
    fn event(&mut self, event: &Event<'_>) {
        let mut err = std::io::stderr().lock();
        let _ = match event {
            Event::PipelineBegin {
                role,
                name,
                build_root,
                stages,
            } => writeln!(
                err,
                "{role} pipeline{} ({stages} {}, build root: {})",
                name.map(|n| format!(" {n:?}")).unwrap_or_default(),
                if *stages == 1 { "stage" } else { "stages" },
                build_root.map_or("host".to_string(), short),
            ),
            Event::StageBegin { name, id, kind } => writeln!(err, "  {} {name} {} ...", arrow(kind), short(id)),
            Event::Log { text, .. } if self.verbose => write!(err, "{text}"),
            Event::Log { .. } => Ok(()),
            // With the log shown live, the progress line is in it already.
            Event::Progress { text, .. } if !self.verbose => writeln!(err, "       {text}"),
            Event::Progress { .. } => Ok(()),
            Event::StageEnd {
                name,
                id,
                kind,
                status,
                duration_ms,
                ..
            } => {
                let how = match *status {
                    "cached" => "cached".to_string(),
                    "pulled" => "pulled from the cache".to_string(),
                    "success" => format!("ran in {}", human(*duration_ms)),
                    other => format!("{other} after {}", human(*duration_ms)),
                };
                writeln!(err, "  {} {name} {} {how}", arrow(kind), short(id))
            }
            Event::Sources { text } => writeln!(err, "{text}"),
            Event::Warning { text, .. } => writeln!(err, "warning: {text}"),
            Event::BuildEnd {
                status,
                duration_ms,
                built,
                cached,
                pulled,
                output,
            } => writeln!(
                err,
                "build {status} in {}: {built} ran, {cached} cached{}{}",
                human(*duration_ms),
                if *pulled > 0 {
                    format!(" ({pulled} pulled)")
                } else {
                    String::new()
                },
                output.map(|o| format!(", output in {o}")).unwrap_or_default()
            ),
        };
    }
}

fn arrow(kind: &str) -> &'static str {
    if kind == "assembler" {
        "=>"
    } else {
        "->"
    }
}

/// The first 12 hex digits of an id: enough to tell stages apart.
pub fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

pub fn human(ms: u64) -> String {
    let d = Duration::from_millis(ms);
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}
