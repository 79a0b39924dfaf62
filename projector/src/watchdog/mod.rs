//! The watchdog: finds stuck work and re-drives it, like a sync farm's watchdog that
//! frees a stranded job. It runs as its own role (`kurz watchdog`) and inside
//! `kurz serve`, and every pass ([`Watchdog::pass`]) does three things:
//!
//! 1. **Parked records** ([`parked`]): keys whose first parked record is due (backoff
//!    1, 2, 4, … × `backoff` after its last failed delivery) are re-driven in order;
//!    a record out of attempts goes to the dead-letter topic.
//! 2. **Stalled partitions** ([`stalls`]): a projector partition whose position stands
//!    still for `stall_after` while records wait is reported, and the watchdog applies
//!    it itself up to the end it saw ([`Projector::drive`]): the stored positions guard
//!    every step, so the owner, if it wakes up, finds its batch applied and reloads.
//!    A drive that takes longer than `stall_after` is abandoned (a hang counts as a
//!    delivery attempt at the next takeover, so a record that hangs the projector ends
//!    in the dead-letter topic). Decider partitions (commands not consumed) are
//!    reported; only their owner may decide, so the group's rebalance re-drives them.
//! 3. **Commands without an outcome** ([`commands`]) past `command_deadline` are
//!    appended again.
//!
//! Several watchdogs are safe (every re-drive is guarded), just redundant.

pub mod commands;
pub mod parked;
pub mod stalls;

use crate::{metrics, Error, Projector};
use kurz_schemas::{topics, Ts};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Time between passes.
    pub interval: Duration,
    /// How long a partition's position may stand still with records waiting.
    pub stall_after: Duration,
    /// How long a command may go without an outcome.
    pub command_deadline: Duration,
    /// The first re-drive delay of a parked record; it doubles with each attempt.
    pub backoff: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            interval: Duration::from_secs(1),
            stall_after: Duration::from_secs(15),
            command_deadline: Duration::from_secs(30),
            backoff: Duration::from_secs(1),
        }
    }
}

/// What one pass saw and did.
#[derive(Debug, Default, Clone)]
pub struct Pass {
    pub parked: parked::Redriven,
    pub parked_records: usize,
    pub stalled: Vec<stalls::Stalled>,
    pub commands: commands::Pass,
}

pub struct Watchdog {
    projector: Projector,
    settings: Settings,
    stalls: stalls::Stalls,
    commands: commands::Commands,
    drives: HashMap<(&'static str, u32), tokio::task::JoinHandle<()>>,
    /// Partitions whose last drive failed with an error (a broker or store error, not
    /// a hang): the next drive is not a new delivery of the batch. Kept by the drives.
    failed: Arc<Mutex<HashSet<(&'static str, u32)>>>,
}

impl Watchdog {
    pub fn new(projector: Projector, settings: Settings) -> Watchdog {
        Watchdog {
            projector,
            settings,
            stalls: Default::default(),
            commands: Default::default(),
            drives: HashMap::new(),
            failed: Default::default(),
        }
    }

    /// Runs a pass every `interval` until `stop`; a failed pass is logged and retried.
    pub async fn run_until_stopped(mut self, stop: CancellationToken) {
        tracing::info!(event = "watchdog_started", settings = ?self.settings);
        while !stop.is_cancelled() {
            if let Err(e) = self.pass(&stop).await {
                tracing::warn!(event = "watchdog_pass_failed", error = %e);
                metrics::get().watchdog_errors.inc();
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(self.settings.interval) => {}
            }
        }
        for (_, d) in self.drives.drain() {
            d.abort();
        }
    }

    pub async fn pass(&mut self, stop: &CancellationToken) -> Result<Pass, Error> {
        let m = metrics::get();
        let mut pass = Pass::default();
        // 1. Parked records that are due.
        let all = self.projector.store().parked().await?;
        pass.parked_records = all.len();
        for topic in [topics::EVENTS, topics::CLICKS] {
            m.parked_records.with_label_values(&[topic]).set(all.iter().filter(|r| r.topic == topic).count() as i64);
        }
        let now = Ts::now();
        for (_, records) in parked::by_key(all) {
            if records.first().is_some_and(|head| parked::due(head, self.settings.backoff, now)) {
                let r = parked::redrive_key(&self.projector, records).await?;
                pass.parked.delivered += r.delivered;
                pass.parked.failed += r.failed;
                pass.parked.dead_lettered += r.dead_lettered;
            }
        }
        // 2. Stalled partitions.
        self.drives.retain(|_, d| !d.is_finished());
        let log = self.projector.log().clone();
        let store = self.projector.store().clone();
        let now_i = Instant::now();
        for topic in [topics::EVENTS, topics::CLICKS] {
            let names: Vec<&'static str> = self.projector.projections().iter().filter(|p| p.topic() == topic).map(|p| p.name()).collect();
            if names.is_empty() {
                continue;
            }
            for p in 0..log.partitions(topic).await? {
                let end = log.end_offset(topic, p).await?;
                let mut position = u64::MAX;
                for n in &names {
                    position = position.min(store.position(n, topic, p).await?);
                }
                if let Some(s) = self.stalls.observe(topic, p, position, end, now_i, self.settings.stall_after) {
                    self.report(&s);
                    if !self.drives.contains_key(&(topic, p)) {
                        // A drive counts as a delivery of the stalled batch (the owner
                        // may have died on it, or hang on it), unless the last drive
                        // only failed with an error: it did not die on the batch, and
                        // counting it would dead-letter a healthy record after a few
                        // broker hiccups.
                        let counts = !self.failed.lock().unwrap_or_else(|e| e.into_inner()).contains(&(topic, p));
                        self.drives.insert((topic, p), self.spawn_drive(topic, p, end, counts, stop.clone()));
                    }
                    pass.stalled.push(s);
                }
            }
            m.stalled_partitions.with_label_values(&[topic]).set(self.stalls.stalled_count(topic, now_i, self.settings.stall_after) as i64);
        }
        for p in 0..log.partitions(topics::COMMANDS).await? {
            let end = log.end_offset(topics::COMMANDS, p).await?;
            let position = log.committed("kurz-decider", topics::COMMANDS, p).await?.unwrap_or(0);
            if let Some(s) = self.stalls.observe(topics::COMMANDS, p, position, end, now_i, self.settings.stall_after) {
                self.report(&s);
                pass.stalled.push(s);
            }
        }
        m.stalled_partitions.with_label_values(&[topics::COMMANDS]).set(self.stalls.stalled_count(
            topics::COMMANDS,
            now_i,
            self.settings.stall_after,
        ) as i64);
        // 3. Commands without an outcome.
        pass.commands = self.commands.check(&*log, &*store, self.settings.command_deadline, Ts::now()).await?;
        Ok(pass)
    }

    fn report(&self, s: &stalls::Stalled) {
        tracing::warn!(
            event = "partition_stalled",
            topic = %s.topic,
            partition = s.partition,
            position = s.position,
            end = s.end,
            lag_growing = s.lag_growing,
            still_secs = s.still_for.as_secs_f64(),
        );
        metrics::get().stalls.with_label_values(&[&s.topic]).inc();
    }

    fn spawn_drive(&self, topic: &'static str, p: u32, until: u64, counts: bool, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let failed = self.failed.clone();
        let projector = self.projector.clone();
        let limit = self.settings.stall_after.max(Duration::from_secs(1));
        metrics::get().watchdog_redriven.with_label_values(&["partition"]).inc();
        tracing::warn!(event = "partition_redriven", topic, partition = p, until);
        tokio::spawn(async move {
            let errored = match tokio::time::timeout(limit, projector.drive(topic, p, until, counts, &stop)).await {
                Ok(Ok(())) => {
                    tracing::info!(event = "partition_redrive_done", topic, partition = p, until);
                    false
                }
                Ok(Err(e)) => {
                    tracing::warn!(event = "partition_redrive_failed", topic, partition = p, error = %e);
                    true
                }
                Err(_) => {
                    tracing::warn!(event = "partition_redrive_abandoned", topic, partition = p, "took longer than stall_after");
                    false
                }
            };
            let mut failed = failed.lock().unwrap_or_else(|e| e.into_inner());
            if errored {
                failed.insert((topic, p));
            } else {
                failed.remove(&(topic, p));
            }
        })
    }
}
