//! One role process of a split deployment: its child process, across restarts, and
//! its captured output.

use super::{unix_now, Role};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};

/// Lines of each process's log kept (the tail), and of its notable lines (warnings,
/// errors, stderr, lifecycle).
const LOG_TAIL: usize = 5_000;
const NOTABLE_KEEP: usize = 2_000;

/// One process's captured output, kept across restarts.
#[derive(Default)]
pub struct ProcLog {
    /// (line number, line)
    pub tail: VecDeque<(u64, String)>,
    pub notable: VecDeque<(u64, String)>,
    pub lines: u64,
    /// Lines of the CQL driver's periodic complaints about the CQL double's system
    /// tables (kassandra has no `system.peers`/`system.local` the driver can read):
    /// counted, not kept, since they would drown everything else.
    pub driver_noise: u64,
    /// Every partition-ownership line and harness lifecycle line, never dropped.
    pub membership: Vec<String>,
    /// With `KURZ_SPLIT_LOG_DIR` set, every line also goes to `<dir>/<role>#<index>.log`.
    pub file: Option<std::fs::File>,
}

/// The CQL driver's repeated metadata complaints about the CQL double.
fn driver_noise(line: &str) -> bool {
    line.contains("\"logger\":\"scylla::cluster::metadata") || line.contains("No sharding information received")
}

impl ProcLog {
    /// A log that also goes to `<KURZ_SPLIT_LOG_DIR>/<role>#<index>.log` when that
    /// variable is set.
    pub fn for_process(role: Role, index: usize) -> ProcLog {
        ProcLog { file: log_file(role, index), ..ProcLog::default() }
    }

    pub fn push(&mut self, line: String) {
        self.lines += 1;
        if let Some(f) = &mut self.file {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
        if driver_noise(&line) {
            self.driver_noise += 1;
            return;
        }
        if line.starts_with("[harness]") || line.contains("\"event\":\"partitions_") {
            self.membership.push(line.clone());
        }
        let notable = line.starts_with("[stderr]")
            || line.starts_with("[harness]")
            || line.contains("\"level\":\"warn\"")
            || line.contains("\"level\":\"error\"")
            || line.contains("\"level\":\"WARN\"")
            || line.contains("\"level\":\"ERROR\"")
            || line.contains("\"event\":\"partitions_")
            || line.contains("\"event\":\"listening\"")
            || line.contains("panic");
        if notable {
            if self.notable.len() == NOTABLE_KEEP {
                self.notable.pop_front();
            }
            self.notable.push_back((self.lines, line.clone()));
        }
        if self.tail.len() == LOG_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back((self.lines, line));
    }
}

/// `<KURZ_SPLIT_LOG_DIR>/<role>#<index>.log`, when that variable is set.
fn log_file(role: Role, index: usize) -> Option<std::fs::File> {
    let dir = std::path::PathBuf::from(std::env::var_os("KURZ_SPLIT_LOG_DIR")?);
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{}#{index}.log", role.command()))).ok()
}

/// One role process (and its successors after restarts: same data dir, same index).
pub struct Proc {
    pub role: Role,
    pub index: usize,
    /// Starts so far (1 after the first start).
    pub generation: u32,
    pub(super) child: Option<Child>,
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    pub log: Arc<Mutex<ProcLog>>,
    /// Exits seen that the harness did not cause.
    pub unexpected_exits: Vec<String>,
}

impl Proc {
    /// A process not started yet, with a fresh data directory and `log`.
    pub(super) fn new(role: Role, index: usize, log: ProcLog) -> Proc {
        Proc {
            role,
            index,
            generation: 0,
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            data: tempfile::tempdir().expect("tempdir"),
            log: Arc::new(Mutex::new(log)),
            unexpected_exits: Vec::new(),
        }
    }

    pub fn name(&self) -> String {
        format!("{}#{}", self.role.command(), self.index)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An HTTP test client on this process (not through the front).
    pub fn api(&self) -> crate::http::Api {
        crate::http::Api::new(self.base())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// A harness line in this process's log: `[harness] t=<unix seconds> <msg>`.
    pub(super) fn note(&self, msg: &str) {
        self.log.lock().unwrap().push(format!("[harness] t={:.6} {msg}", unix_now()));
    }

    /// The last `n` lines of this process's log, and every notable line before them.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        let skip = log.tail.len().saturating_sub(n);
        let tail: Vec<&String> = log.tail.iter().skip(skip).map(|(_, l)| l).collect();
        let first_tail = log.tail.get(skip).map(|(n, _)| *n).unwrap_or(u64::MAX);
        let earlier: Vec<&String> = log.notable.iter().filter(|(n, _)| *n < first_tail).map(|(_, l)| l).collect();
        let mut out = format!(
            "===== {} (pid {:?}, generation {}, {} lines, of which {} CQL-driver metadata complaints not shown) =====\n",
            self.name(),
            self.pid(),
            self.generation,
            log.lines,
            log.driver_noise
        );
        if !earlier.is_empty() {
            out.push_str("--- notable lines before the tail ---\n");
            for l in earlier.iter().rev().take(200).rev() {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("--- tail ---\n");
        }
        for l in tail {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Log lines (whole tail) that contain `needle`.
    pub fn grep(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        let mut v: Vec<(u64, String)> = log.notable.iter().filter(|(_, l)| l.contains(needle)).cloned().collect();
        for (n, l) in log.tail.iter().filter(|(_, l)| l.contains(needle)) {
            if !v.iter().any(|(m, _)| m == n) {
                v.push((*n, l.clone()));
            }
        }
        v.sort();
        v.into_iter().map(|(_, l)| l).collect()
    }

    /// Records an exit the harness did not cause, once.
    pub(super) fn poll_exit(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        let msg = format!("{} (generation {}) exited on its own: {st}", self.name(), self.generation);
        self.note(&msg);
        self.unexpected_exits.push(msg);
        Some(st)
    }

    pub(super) fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let st = c.wait();
            self.note(&format!("kill -9 (pid {}): {st:?}", c.id()));
        }
    }
}

/// Reads `src` line by line into `log` (each line prefixed by `prefix`) on a thread of
/// its own; the first `listening` line's address goes to `listening`.
pub(super) fn spawn_reader<R: Read + Send + 'static>(
    src: R,
    log: Arc<Mutex<ProcLog>>,
    prefix: &'static str,
    listening: Option<tokio::sync::oneshot::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut listening = listening;
        for line in BufReader::new(src).lines().map_while(Result::ok) {
            if line.contains("\"event\":\"listening\"") {
                if let Some(tx) = listening.take() {
                    let addr = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["addr"].as_str().or_else(|| v["fields"]["addr"].as_str()).map(str::to_string));
                    if let Some(a) = addr {
                        let _ = tx.send(a);
                    } else {
                        listening = Some(tx);
                    }
                }
            }
            log.lock().unwrap().push(if prefix.is_empty() { line } else { format!("{prefix}{line}") });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_keeps_membership_and_notable_lines_and_counts_driver_noise() {
        let mut log = ProcLog::default();
        log.push("[harness] t=1.0 started generation 1 (pid 7)".into());
        log.push(r#"{"level":"info","event":"partitions_assigned","topic":"kurz.events.v1","partitions":"[0, 1]"}"#.into());
        log.push(r#"{"level":"info","event":"answered"}"#.into());
        log.push(r#"{"level":"warn","logger":"scylla::cluster::metadata","msg":"no peers"}"#.into());
        log.push("[stderr] boom".into());
        assert_eq!((log.lines, log.driver_noise), (5, 1));
        assert_eq!(log.membership.len(), 2);
        assert_eq!(log.notable.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 2, 5]);
        assert_eq!(log.tail.len(), 4);
    }
}
