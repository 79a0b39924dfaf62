//! A role's background work: the deciders, the projector, the watchdog, the click
//! flusher, a cache follower. Every role runs and stops it the same way: the workers
//! start with the role; on shutdown the listener stops accepting and its in-flight
//! requests drain first (they may still need the workers: a write waits for its
//! decider); then the workers are told to stop, finish their batch and store their
//! positions, and are waited for at most the drain limit. Past it they are aborted: a
//! batch cut off there is applied again by whoever owns the partition next (every
//! write a worker makes is fenced or idempotent).

use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a worker ended with: `()` or a `Result` whose error is logged.
pub trait Outcome: Send + 'static {
    fn failure(&self) -> Option<String>;
}

impl Outcome for () {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl<T: Send + 'static, E: std::fmt::Display + Send + 'static> Outcome for Result<T, E> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(ToString::to_string)
    }
}

/// The background tasks of one role (module docs).
#[derive(Default)]
pub struct Workers {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Workers {
    pub fn new() -> Workers {
        Workers::default()
    }

    /// Starts `work`, handing it the token that [`stop`](Workers::stop) cancels.
    pub fn spawn<F, O>(&mut self, name: &'static str, work: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = O> + Send + 'static,
        O: Outcome,
    {
        let fut = work(self.stop.clone());
        self.tasks.spawn(async move {
            if let Some(e) = fut.await.failure() {
                tracing::error!(event = "worker_failed", worker = name, error = %e);
            }
        });
    }

    /// Tells every worker to stop and waits for them for at most `limit`; the ones
    /// still running then are aborted. Returns whether all of them finished.
    pub async fn stop(mut self, limit: Duration) -> bool {
        self.stop.cancel();
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_ok() {
            return true;
        }
        tracing::warn!(event = "drain_limit_reached", workers = self.tasks.len(), "background work cut off");
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn workers_finish_after_stop_and_a_stuck_one_is_cut_off_at_the_limit() {
        let mut w = Workers::new();
        let finished = Arc::new(AtomicBool::new(false));
        let f = finished.clone();
        w.spawn("polite", move |stop| async move {
            stop.cancelled().await;
            f.store(true, Ordering::SeqCst);
        });
        assert!(w.stop(Duration::from_secs(30)).await, "a worker that stops when told finishes");
        assert!(finished.load(Ordering::SeqCst));

        let mut w = Workers::new();
        w.spawn("stuck", |_stop| async move { std::future::pending::<Result<(), String>>().await });
        assert!(!w.stop(Duration::from_millis(50)).await, "a worker that ignores stop is cut off");
    }
}
