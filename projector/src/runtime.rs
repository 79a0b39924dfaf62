//! The projector's runtime: one task per log partition. Each task reads a batch, maps
//! it through every projection of that topic, offers link states to the hot cache, and
//! applies the batch with the positions it reaches in one read-store step.
//!
//! Shutdown: the stop token is only watched while waiting for records, so a batch that
//! was read is always applied, with its positions, before the task returns.
//!
//! Poison records are parked by key (`crate::batch`). A process that dies on a batch
//! cannot park anything, so deliveries are also counted durably: each step that moves
//! a partition's positions to `n` records "attempt 1 of the batch at `n`", and a task
//! that takes the partition over while the positions still stand at `n` counts one
//! more before it reads. A task that lets go cleanly between batches (a revoke, a
//! shutdown) sets the count back to 0, so a handoff is not taken for a death. From the
//! second attempt on it goes *carefully* through the span the failed batch could have
//! covered: one record, then two, four, … per step, so each further death starts a
//! step no longer than half the distance to the poison record, and the deaths close in
//! on it (a handful of them for a record thousands deep, where one record per step
//! would crawl through the whole span after every pause or kill); when a record's
//! count reaches `max_attempts` (the one-record step at it died every time) it goes to
//! the dead-letter topic
//! (`crate::deadletter`) and the partition moves on. Errors the task sees (a store
//! that is down) are retried with backoff and count no attempt.

use crate::batch::{project, store_batch, ParkedKeys};
use crate::projections::{self, Projection};
use crate::{deadletter, metrics, Error};
use kurz_schemas::{topics, Ts};
use kurz_storage::cache::LinkCache;
use kurz_storage::store::{ApplyError, Attempt, Mutation, StoreBatch};
use kurz_storage::vault::Keyring;
use kurz_storage::{EventLog, ReadStore};
use std::sync::Arc;
use std::time::Duration;

/// How long a fenced partition task waits before it claims again: long enough that two
/// writers that each believe they own a partition do not trade it batch by batch.
const FENCED_PAUSE: Duration = Duration::from_millis(250);
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

const BATCH: usize = 1024;
/// Clicks come in volume and each touches several aggregate rows spread over the
/// store: bigger batches let one store transaction share its page writes among more of
/// them (about 2x the throughput of 1024 on the embedded store, see
/// `bench/results/clicks.md`).
const CLICK_BATCH: usize = 8192;

/// Deliveries of one record before it goes to the dead-letter topic.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Clone)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    cache: Option<Arc<dyn LinkCache>>,
    projections: Arc<Vec<Box<dyn Projection>>>,
    max_attempts: u32,
    /// Users' data keys, to open their personal data in events.
    keys: Arc<Keyring>,
}

impl Projector {
    /// `cache`: the hot cache to keep in step with the store, if this process has one.
    pub fn new(log: Arc<dyn EventLog>, store: Arc<dyn ReadStore>, cache: Option<Arc<dyn LinkCache>>, keys: Arc<Keyring>) -> Projector {
        Projector::with_projections(log, store, cache, keys, projections::all())
    }

    /// A projector of other projections than kurz's own (tests of the runtime).
    pub fn with_projections(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadStore>,
        cache: Option<Arc<dyn LinkCache>>,
        keys: Arc<Keyring>,
        projections: Vec<Box<dyn Projection>>,
    ) -> Projector {
        Projector { log, store, cache, projections: Arc::new(projections), max_attempts: MAX_ATTEMPTS, keys }
    }

    pub fn keys(&self) -> &Arc<Keyring> {
        &self.keys
    }

    /// Deliveries of one record before it is dead-lettered (at least 2).
    pub fn max_attempts(mut self, n: u32) -> Projector {
        self.max_attempts = n.max(2);
        self
    }

    pub fn projections(&self) -> &[Box<dyn Projection>] {
        &self.projections
    }

    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    pub fn store(&self) -> &Arc<dyn ReadStore> {
        &self.store
    }

    pub fn attempts_limit(&self) -> u32 {
        self.max_attempts
    }

    fn mine(&self, topic: &str) -> Vec<&dyn Projection> {
        self.projections.iter().filter(|pr| pr.topic() == topic).map(|b| &**b).collect()
    }

    fn topics(&self) -> Vec<&'static str> {
        let mut t: Vec<&'static str> = self.projections.iter().map(|p| p.topic()).collect();
        t.dedup();
        t
    }

    /// Runs a task per owned partition of the events and clicks topics (all of them
    /// alone; this process's share of the projector groups on a shared log) until
    /// `stop` fires.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<(), Error> {
        let mut groups = tokio::task::JoinSet::new();
        for topic in [topics::EVENTS, topics::CLICKS] {
            let membership = self.log.join(&format!("kurz-projector.{topic}"), topic).await?;
            let me = self.clone();
            let stop = stop.clone();
            groups.spawn(async move {
                kurz_storage::log::run_owned(membership, stop, Duration::from_secs(30), move |p, stop| {
                    let me = me.clone();
                    async move { me.supervise(topic, p, stop).await }
                })
                .await
            });
        }
        while groups.join_next().await.is_some() {}
        Ok(())
    }

    async fn supervise(&self, topic: &'static str, p: u32, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        let mut takeover = true;
        while !stop.is_cancelled() {
            let r = self.run_partition(topic, p, &stop, takeover, None).await;
            takeover = false;
            match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(event = "projection_failed", topic, partition = p, error = %e, "retrying");
                    metrics::get().retries.with_label_values(&[topic, &p.to_string()]).inc();
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn positions(&self, projections: &[&dyn Projection], topic: &str, p: u32) -> Result<Vec<u64>, Error> {
        let mut out = Vec::with_capacity(projections.len());
        for pr in projections {
            out.push(self.store.position(pr.name(), topic, p).await?);
        }
        Ok(out)
    }

    /// Applies partition `p` of `topic` once (the watchdog re-driving a stalled
    /// partition): from its stored positions up to `until`, then returns. With
    /// `counts`, a takeover: the delivery count goes up if the positions stand where it
    /// was set.
    pub async fn drive(&self, topic: &'static str, p: u32, until: u64, counts: bool, stop: &CancellationToken) -> Result<(), Error> {
        self.run_partition(topic, p, stop, counts, Some(until)).await
    }

    /// The keys of `topic`/`p` with parked records.
    async fn parked_keys(&self, topic: &str, p: u32) -> Result<ParkedKeys, Error> {
        Ok(self.store.parked().await?.into_iter().filter(|r| r.topic == topic && r.partition == p).map(|r| r.key).collect())
    }

    /// The delivery count of the batch at `from`: one more than stored when taking the
    /// partition over (written before reading), as stored otherwise.
    async fn count_attempt(&self, topic: &str, p: u32, from: u64, takeover: bool) -> Result<u32, Error> {
        let stored = self.store.attempt(topic, p).await?.filter(|a| a.offset == from).map(|a| a.attempt).unwrap_or(0);
        if !takeover {
            return Ok(stored.max(1));
        }
        let attempt = stored + 1;
        let mark = Mutation::Attempt { topic: topic.into(), partition: p, attempt: Attempt { offset: from, attempt } };
        self.store.apply(StoreBatch { mutations: vec![mark], ..Default::default() }).await?;
        if attempt > 1 {
            tracing::warn!(event = "partition_redelivered", topic, partition = p, offset = from, attempt, "going one record at a time");
            metrics::get().redeliveries.with_label_values(&[topic]).inc();
        }
        Ok(attempt)
    }

    /// Records that this task let go of the partition between batches (a revoke, a
    /// shutdown): nothing is being delivered, so the next owner's takeover is the
    /// batch's first delivery, not a redelivery after a death. Without it a clean
    /// handoff would look like a crash and send the next owner one record at a time.
    /// Best effort: if it fails, the next owner only goes carefully for one batch.
    async fn release_cleanly(&self, topic: &str, p: u32, from: u64) {
        let mark = Mutation::Attempt { topic: topic.into(), partition: p, attempt: Attempt { offset: from, attempt: 0 } };
        if let Err(e) = self.store.apply(StoreBatch { mutations: vec![mark], ..Default::default() }).await {
            tracing::warn!(event = "partition_release_unrecorded", topic, partition = p, error = %e);
        }
    }

    /// Moves every projection of `topic`/`p` past the record at `from` (positions all
    /// at `from`) after sending it to the dead-letter topic.
    #[allow(clippy::too_many_arguments)] // the partition task's state, passed as it is
    async fn dead_letter_at(
        &self,
        mine: &[&dyn Projection],
        positions: &[u64],
        topic: &str,
        p: u32,
        from: u64,
        attempts: u32,
        epoch: u64,
    ) -> Result<(), Error> {
        if let Some(rec) = self.log.read(topic, p, from, 1).await?.into_iter().find(|r| r.offset == from) {
            let reason = format!("the projector stopped {attempts} times while applying it");
            deadletter::send(&*self.log, topic, &rec, &reason, attempts).await?;
        }
        let mapped = crate::batch::Mapped { mutations: Vec::new(), parks: Vec::new(), traced: None };
        self.store.apply(store_batch(mine, positions, topic, p, from + 1, mapped, epoch)).await?;
        Ok(())
    }

    async fn run_partition(
        &self,
        topic: &'static str,
        p: u32,
        stop: &CancellationToken,
        takeover: bool,
        until: Option<u64>,
    ) -> Result<(), Error> {
        let mine = self.mine(topic);
        // Every batch of this task is written under this claim: once another task or
        // process claims the partition, a batch of this one lands nothing.
        let mut epoch = self.store.claim(topic, p).await?;
        let mut positions = self.positions(&mine, topic, p).await?;
        let mut parked = self.parked_keys(topic, p).await?;
        let m = metrics::get();
        let plabel = p.to_string();
        let max = if topic == topics::CLICKS { CLICK_BATCH } else { BATCH };
        // Delivery counting: see the module doc.
        let start = positions.iter().copied().min().unwrap_or(0);
        let mut attempt = self.count_attempt(topic, p, start, takeover).await?;
        let careful_until = if attempt > 1 { start + max as u64 } else { 0 };
        let mut careful_step = 1usize;
        loop {
            let from = positions.iter().copied().min().unwrap_or(0);
            if until.is_some_and(|u| from >= u) {
                return Ok(());
            }
            if attempt >= self.max_attempts && from < careful_until {
                self.dead_letter_at(&mine, &positions, topic, p, from, attempt, epoch).await?;
                positions = self.positions(&mine, topic, p).await?;
                attempt = 1;
                continue;
            }
            let end = tokio::select! {
                _ = stop.cancelled() => {
                    self.release_cleanly(topic, p, from).await;
                    return Ok(());
                }
                r = crate::batch::wait(&*self.log, topic, p, from, Duration::from_secs(1)) => r?,
            };
            m.lag_records.with_label_values(&[topic, &plabel]).set(end.saturating_sub(from) as i64);
            if !parked.is_empty() {
                // The watchdog may have delivered some meanwhile.
                parked = self.parked_keys(topic, p).await?;
            }
            let n = if from < careful_until { careful_step.min(max) } else { max };
            let (recs, next) = crate::batch::read(&*self.log, topic, p, from, n).await?;
            if next == from {
                m.lag_seconds.with_label_values(&[topic, &plabel]).set(0.0);
                continue;
            }
            // Empty when only skipped records (a stale writer's) were read: the
            // position moves past them.
            let oldest = recs.first().map_or_else(Ts::now, |r| r.timestamp);
            crate::batch::load_keys(&self.keys, topic, &recs).await?;
            let mut mapped = project(&mine, &positions, topic, p, &recs, &mut parked, &|s| self.keys.key(s));
            m.parked.with_label_values(&[topic]).inc_by(mapped.parks.len() as u64);
            self.offer_to_cache(&mapped.mutations).await;
            let traced = mapped.traced.take();
            let batch = store_batch(&mine, &positions, topic, p, next, mapped, epoch);
            let apply_span = match &traced {
                Some(parent) => tracing::info_span!(parent: parent, "apply_read_model", mutations = batch.mutations.len()),
                None => tracing::Span::none(),
            };
            drop(traced);
            match self.store.apply(batch).instrument(apply_span).await {
                Ok(()) => {
                    for pos in positions.iter_mut() {
                        *pos = (*pos).max(next);
                    }
                    attempt = 1;
                    careful_step = careful_step.saturating_mul(2);
                    m.applied.with_label_values(&[topic, &plabel]).inc_by(recs.len() as u64);
                    let end = self.log.end_offset(topic, p).await?;
                    m.lag_records.with_label_values(&[topic, &plabel]).set(end.saturating_sub(next) as i64);
                    let lag = if end > next { (Ts::now().0 - oldest.0).max(0) as f64 / 1000.0 } else { 0.0 };
                    m.lag_seconds.with_label_values(&[topic, &plabel]).set(lag);
                }
                Err(ApplyError::PositionMismatch { .. }) => {
                    // Another projector got there first (or a replay moved it): reload.
                    positions = self.positions(&mine, topic, p).await?;
                    parked = self.parked_keys(topic, p).await?;
                }
                Err(ApplyError::Fenced { claimed, .. }) => {
                    // Claimed since by another writer: the watchdog driving a stall, a
                    // process that took the partition over while this one was paused,
                    // or the serving generation changed. This task still owns the
                    // partition as far as it knows, so it claims again and reloads;
                    // a writer that no longer owns it is stopped by its revoke.
                    tracing::warn!(event = "projector_fenced", topic, partition = p, epoch, claimed);
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(FENCED_PAUSE) => {}
                    }
                    epoch = self.store.claim(topic, p).await?;
                    positions = self.positions(&mine, topic, p).await?;
                    parked = self.parked_keys(topic, p).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Offers every link state of the batch to the hot cache. The cache keeps the newest
    /// version per code, so this may run before the store commit: the events are
    /// already durable facts, and a crash before the commit re-applies them. A failed
    /// offer is the cache's to repair; the read store stays the truth.
    pub(crate) async fn offer_to_cache(&self, mutations: &[Mutation]) {
        let Some(cache) = &self.cache else { return };
        for (code, entry) in mutations.iter().filter_map(projections::links::cache_entry) {
            let _ = cache.offer(&code, entry).await;
        }
    }

    /// Waits until every projection has applied everything the log held when called.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<bool, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        for topic in self.topics() {
            let mine = self.mine(topic);
            for p in 0..self.log.partitions(topic).await? {
                let end = self.log.end_offset(topic, p).await?;
                loop {
                    let pos = self.positions(&mine, topic, p).await?;
                    if pos.iter().all(|x| *x >= end) {
                        break;
                    }
                    // Only an append still open (or never completed) lies ahead: there
                    // is nothing to project until it completes or is overtaken.
                    let from = pos.iter().copied().min().unwrap_or(end);
                    if topic == topics::EVENTS {
                        let (recs, next) = crate::batch::read(&*self.log, topic, p, from, 64).await?;
                        if recs.is_empty() && next == from {
                            break;
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(false);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        Ok(true)
    }
}
