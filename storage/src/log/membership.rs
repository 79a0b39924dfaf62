//! Partition ownership: which partitions of a topic this process works on, for one
//! group of workers (the deciders, the projectors). One process alone owns every
//! partition; on Kafka, a consumer group divides them and moves them on rebalance.
//!
//! [`run_owned`] keeps one task per owned partition: it starts tasks for partitions
//! gained, and for partitions lost it cancels their tasks and waits for them (they
//! finish their batch and store their position) before telling the log the partitions
//! are released, so two processes never work on one partition at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub partitions: Vec<u32>,
    /// Grows with every change.
    pub generation: u64,
}

/// Reports the owned partitions as they change.
pub struct Membership {
    rx: watch::Receiver<Assignment>,
    released: Arc<dyn Fn(u64) + Send + Sync>,
    /// Keeps the backend's member alive while the membership is held.
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Membership {
    /// Every partition, forever: a single process.
    pub fn fixed(partitions: u32) -> Membership {
        let (tx, rx) = watch::channel(Assignment { partitions: (0..partitions).collect(), generation: 1 });
        Membership { rx, released: Arc::new(|_| {}), _keep: Some(Box::new(tx)) }
    }

    pub fn new(
        rx: watch::Receiver<Assignment>,
        released: Arc<dyn Fn(u64) + Send + Sync>,
        keep: Box<dyn std::any::Any + Send + Sync>,
    ) -> Membership {
        Membership { rx, released, _keep: Some(keep) }
    }

    pub fn current(&self) -> Assignment {
        self.rx.borrow().clone()
    }

    /// Another view of the assignment, e.g. for status reports while `run_owned` holds
    /// the membership.
    pub fn watch(&self) -> watch::Receiver<Assignment> {
        self.rx.clone()
    }
}

/// Runs `work(partition, stop)` for every partition the membership assigns, until
/// `stop` fires. `drain` bounds how long a lost partition's task may take to finish.
pub async fn run_owned<F, Fut>(mut m: Membership, stop: CancellationToken, drain: Duration, work: F)
where
    F: Fn(u32, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running: HashMap<u32, (CancellationToken, tokio::task::JoinHandle<()>)> = HashMap::new();
    loop {
        let a = m.rx.borrow_and_update().clone();
        // Lost partitions first: they must be released before anyone else starts them.
        let lost: Vec<u32> = running.keys().copied().filter(|p| !a.partitions.contains(p)).collect();
        for p in lost {
            if let Some((token, handle)) = running.remove(&p) {
                token.cancel();
                stop_within(p, drain, handle).await;
                tracing::info!(event = "partition_released", partition = p, generation = a.generation);
            }
        }
        for p in &a.partitions {
            if !running.contains_key(p) {
                let token = stop.child_token();
                let handle = tokio::spawn(work(*p, token.clone()));
                running.insert(*p, (token, handle));
                tracing::info!(event = "partition_owned", partition = p, generation = a.generation);
            }
        }
        (m.released)(a.generation);
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = m.rx.changed() => if changed.is_err() { break },
        }
    }
    let stopping: Vec<_> = running
        .drain()
        .map(|(p, (token, handle))| {
            token.cancel();
            stop_within(p, drain, handle)
        })
        .collect();
    futures::future::join_all(stopping).await;
}

/// Waits up to `drain` for a partition's task to finish, then stops it where it
/// waits: a task that outlived its drain must not go on writing after the partition
/// is released to another owner. Counts `kurz_partition_drain_timeouts_total`.
async fn stop_within(p: u32, drain: Duration, mut handle: tokio::task::JoinHandle<()>) {
    if tokio::time::timeout(drain, &mut handle).await.is_err() {
        tracing::warn!(event = "partition_drain_timeout", partition = p, "stopping its task");
        crate::metrics::get().drain_timeouts.inc();
        handle.abort();
        let _ = handle.await;
    }
}
