//! Group membership on Kafka: a consumer subscribed with the cooperative-sticky
//! assignor, used only for ownership (its partitions stay paused; data is read by
//! offset). On revoke, the rebalance callback publishes the smaller assignment and
//! blocks until the owner says the revoked partitions' work has stopped (bounded by the
//! drain limit), so the next owner never overlaps with this one.

use super::config::KafkaConfig;
use super::kerr;
use crate::log::membership::{Assignment, Membership};
use crate::StorageError;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio::sync::watch;

pub struct MemberCtx {
    topic: String,
    /// Set when the membership is dropped: its owner has already stopped every
    /// partition's work, so a revoke on leaving need not wait.
    closing: Arc<AtomicBool>,
    tx: watch::Sender<Assignment>,
    released: Arc<(Mutex<u64>, Condvar)>,
    drain: Duration,
}

impl ClientContext for MemberCtx {}

fn partitions_of(topic: &str, tpl: &TopicPartitionList) -> Vec<u32> {
    tpl.elements_for_topic(topic).iter().map(|e| e.partition() as u32).collect()
}

impl ConsumerContext for MemberCtx {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let revoked = partitions_of(&self.topic, tpl);
            let mut next = self.tx.borrow().clone();
            next.partitions.retain(|p| !revoked.contains(p));
            next.generation += 1;
            let generation = next.generation;
            tracing::info!(event = "partitions_revoked", topic = %self.topic, partitions = ?revoked, generation);
            self.tx.send_replace(next);
            if self.closing.load(Ordering::Relaxed) {
                return;
            }
            let (lock, cv) = &*self.released;
            let guard = lock.lock().expect("released poisoned");
            let (_guard, timeout) = cv.wait_timeout_while(guard, self.drain, |g| *g < generation).expect("released poisoned");
            if timeout.timed_out() {
                tracing::warn!(event = "revoke_drain_timeout", topic = %self.topic, generation);
            }
        }
    }

    fn post_rebalance(&self, c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                // Membership only: the data is read by offset, so fetch nothing here.
                let _ = c.pause(tpl);
                let gained = partitions_of(&self.topic, tpl);
                let mut next = self.tx.borrow().clone();
                next.partitions.extend(gained.iter().copied());
                next.partitions.sort_unstable();
                next.partitions.dedup();
                next.generation += 1;
                tracing::info!(event = "partitions_assigned", topic = %self.topic, partitions = ?gained, generation = next.generation);
                self.tx.send_replace(next);
            }
            Rebalance::Error(e) => tracing::warn!(event = "rebalance_error", topic = %self.topic, error = %e),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Group offsets through any consumer of the group.
pub trait Offsets: Send + Sync {
    fn commit_offset(&self, topic: &str, partition: u32, next: u64) -> Result<(), StorageError>;
    fn committed_offset(&self, topic: &str, partition: u32) -> Result<Option<u64>, StorageError>;
}

impl<C: ConsumerContext> Offsets for BaseConsumer<C> {
    fn commit_offset(&self, topic: &str, partition: u32, next: u64) -> Result<(), StorageError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(next as i64)).map_err(|e| kerr("commit", e))?;
        self.commit(&tpl, CommitMode::Sync).map_err(|e| kerr("commit", e))
    }

    fn committed_offset(&self, topic: &str, partition: u32) -> Result<Option<u64>, StorageError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition as i32);
        let got = self.committed_offsets(tpl, Duration::from_secs(10)).map_err(|e| kerr("committed offsets", e))?;
        Ok(match got.find_partition(topic, partition as i32).map(|e| e.offset()) {
            Some(Offset::Offset(n)) if n >= 0 => Some(n as u64),
            _ => None,
        })
    }
}

/// Stops the polling thread and leaves the group when the membership is dropped.
struct Guard {
    stop: Arc<AtomicBool>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn join(cfg: &KafkaConfig, group: &str, topic: &str, drain: Duration) -> Result<(Membership, Arc<dyn Offsets>), StorageError> {
    let (tx, rx) = watch::channel(Assignment::default());
    let released = Arc::new((Mutex::new(0u64), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = MemberCtx { topic: topic.to_string(), closing: stop.clone(), tx, released: released.clone(), drain };
    let consumer: BaseConsumer<MemberCtx> = cfg
        .client()
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", (cfg.session_timeout_ms / 5).max(100).to_string())
        .create_with_context(ctx)
        .map_err(|e| kerr("group member", e))?;
    consumer.subscribe(&[topic]).map_err(|e| kerr("subscribe", e))?;
    let consumer = Arc::new(consumer);
    {
        let (consumer, stop) = (consumer.clone(), stop.clone());
        let name = format!("kurz-member-{group}");
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Drives heartbeats and rebalance callbacks; partitions are paused.
                    let _ = consumer.poll(Duration::from_millis(100));
                }
                consumer.unsubscribe();
            })
            .map_err(StorageError::Io)?;
    }
    let on_released: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |g| {
        let (lock, cv) = &*released;
        let mut cur = lock.lock().expect("released poisoned");
        if g > *cur {
            *cur = g;
        }
        cv.notify_all();
    });
    let offsets: Arc<dyn Offsets> = consumer;
    Ok((Membership::new(rx, on_released, Box::new(Guard { stop })), offsets))
}
