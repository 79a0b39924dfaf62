//! CPU time of this process (the servers) and of its waited-for children (wrk), from
//! `/proc/self/stat`, and waiting until this process is idle between runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Fields of `/proc/self/stat` after the command name, in seconds for the tick fields.
fn stat_seconds(index: usize) -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // state is field 3, so field n is at index n - 3; USER_HZ is 100 on Linux.
    rest.split_whitespace().nth(index).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0
}

/// User + system CPU seconds of this process (all threads; wrk is another process).
pub(super) fn cpu_seconds() -> f64 {
    stat_seconds(11) + stat_seconds(12) // utime (14), stime (15)
}

/// User + system CPU seconds of finished, waited-for children: wrk, during a run.
pub(super) fn children_cpu_seconds() -> f64 {
    stat_seconds(13) + stat_seconds(14) // cutime (16), cstime (17)
}

/// Waits until this process is idle (background work such as click projection from the
/// previous run has drained), so it does not bill the next run. Idle: a 500 ms window
/// with under 25 ms of CPU. Returns the seconds waited, the idle window included.
pub(super) async fn settle() -> f64 {
    let start = Instant::now();
    loop {
        let c0 = cpu_seconds();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let used = cpu_seconds() - c0;
        LAST_IDLE_WINDOW_CPU.store(used.to_bits(), Ordering::Relaxed);
        if used < 0.025 || start.elapsed() > Duration::from_secs(120) {
            return start.elapsed().as_secs_f64();
        }
    }
}

static LAST_IDLE_WINDOW_CPU: AtomicU64 = AtomicU64::new(0);

/// CPU of the final (idle) window of the last `settle`, not work of the run.
pub(super) fn settle_tail_cpu() -> f64 {
    f64::from_bits(LAST_IDLE_WINDOW_CPU.load(Ordering::Relaxed))
}
