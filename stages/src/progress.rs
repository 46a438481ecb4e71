//! Progress of a long step (compressing an image, making a file system), as
//! log lines the executor recognizes by their prefix and shows while the
//! stage runs, even when its log is not shown (`progress: qcow2: 1.2 GiB of
//! 4.0 GiB, 31%`). At most one line per [`EVERY`], so a slow step says it
//! is alive without flooding the log.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a progress line starts with.
pub const PREFIX: &str = "progress: ";

/// The least time between two reports of one step.
pub const EVERY: Duration = Duration::from_secs(10);

/// A step whose amount of work is known: reports how much is done.
pub struct Progress {
    step: String,
    total: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    /// A step of `total` bytes, named `step` in its reports.
    pub fn new(step: &str, total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            step: step.to_string(),
            total,
            started: now,
            last: now,
        }
    }

    /// `done` of the total bytes are done: report it if the last report is
    /// long enough ago.
    pub fn update(&mut self, done: u64) {
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        println!("{}", self.line(done));
    }

    fn line(&self, done: u64) -> String {
        let percent = (done as u128 * 100).checked_div(self.total as u128).unwrap_or(100);
        format!(
            "{PREFIX}{}: {} of {}, {percent}%, {}s",
            self.step,
            human_bytes(done),
            human_bytes(self.total),
            self.started.elapsed().as_secs()
        )
    }
}

/// A step whose amount of work is not known (a tool that runs until it is
/// done): a thread reports what `status` says, every [`EVERY`], until the
/// heartbeat is dropped.
pub struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Reports `step: <status()>, <seconds>s` while the step runs.
    pub fn start(step: &str, status: impl Fn() -> String + Send + 'static) -> Heartbeat {
        let (stop, stopped) = mpsc::channel::<()>();
        let step = step.to_string();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                let status = status();
                let sep = if status.is_empty() { "" } else { ", " };
                println!("{PREFIX}{step}: {status}{sep}{}s", started.elapsed().as_secs());
            }
        });
        Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The size of a file so far, for a heartbeat's status: "1.2 GiB written".
pub fn written(path: &std::path::Path) -> String {
    match std::fs::metadata(path) {
        Ok(m) => format!("{} written", human_bytes(m.len())),
        Err(_) => String::new(),
    }
}

/// Bytes for a person, as every size osbuild prints: "512 B", "3.4 MiB", "1.2 GiB".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_how_much_of_what() {
        let p = Progress::new("qcow2", 4 << 30);
        assert!(p
            .line(1288490189)
            .starts_with("progress: qcow2: 1.2 GiB of 4.0 GiB, 30%, "));
        assert!(Progress::new("empty", 0).line(0).contains(", 100%, "));
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn a_heartbeat_stops_when_dropped() {
        let started = Instant::now();
        drop(Heartbeat::start("x", String::new));
        assert!(started.elapsed() < EVERY, "dropping waits for no report");
    }
}
