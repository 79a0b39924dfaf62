//! The projector's runtime: one task per log partition. Each task reads a batch, maps
//! it through every projection of that topic, offers link states to the hot cache, and
//! applies the batch with the positions it reaches in one read-store step.
//!
//! Shutdown: the stop token is only watched while waiting for records, so a batch that
//! was read is always applied, with its positions, before the task returns.

use crate::projections::{self, Input, Projection};
use crate::{metrics, Error};
use kurz_schemas::{topics, Click, Event, Ts};
use kurz_storage::cache::{offer_state, LinkCache};
use kurz_storage::store::{ApplyError, Mutation, Position, StoreBatch};
use kurz_storage::{EventLog, ReadStore, Record};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

const BATCH: usize = 1024;
/// Clicks come in volume and each touches several aggregate rows spread over the
/// store: bigger batches let one store transaction share its page writes among more of
/// them (about 2x the throughput of 1024 on the embedded store, see
/// `bench/results/clicks.md`).
const CLICK_BATCH: usize = 8192;

#[derive(Clone)]
pub struct Projector {
    log: Arc<dyn EventLog>,
    store: Arc<dyn ReadStore>,
    cache: Option<Arc<dyn LinkCache>>,
    projections: Arc<Vec<Box<dyn Projection>>>,
}

impl Projector {
    /// `cache`: the hot cache to keep in step with the store, if this process has one.
    pub fn new(log: Arc<dyn EventLog>, store: Arc<dyn ReadStore>, cache: Option<Arc<dyn LinkCache>>) -> Projector {
        Projector { log, store, cache, projections: Arc::new(projections::all()) }
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
        while !stop.is_cancelled() {
            match self.run_partition(topic, p, &stop).await {
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

    async fn run_partition(&self, topic: &'static str, p: u32, stop: &CancellationToken) -> Result<(), Error> {
        let mine: Vec<&dyn Projection> = self.projections.iter().filter(|pr| pr.topic() == topic).map(|b| &**b).collect();
        let mut positions = self.positions(&mine, topic, p).await?;
        let m = metrics::get();
        let plabel = p.to_string();
        loop {
            let from = positions.iter().copied().min().unwrap_or(0);
            let end = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = self.log.wait_for(topic, p, from, Duration::from_secs(1)) => r?,
            };
            m.lag_records.with_label_values(&[topic, &plabel]).set(end.saturating_sub(from) as i64);
            let max = if topic == topics::CLICKS { CLICK_BATCH } else { BATCH };
            let recs = self.log.read(topic, p, from, max).await?;
            let Some(last) = recs.last() else {
                m.lag_seconds.with_label_values(&[topic, &plabel]).set(0.0);
                continue;
            };
            let next = last.offset + 1;
            let oldest = recs[0].timestamp;
            let (mutations, traced) = project(&mine, &positions, topic, p, &recs);
            self.offer_to_cache(&mutations).await;
            let batch = store_batch(&mine, &positions, topic, p, next, mutations);
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
                    m.applied.with_label_values(&[topic, &plabel]).inc_by(recs.len() as u64);
                    let end = self.log.end_offset(topic, p).await?;
                    m.lag_records.with_label_values(&[topic, &plabel]).set(end.saturating_sub(next) as i64);
                    let lag = if end > next { (Ts::now().0 - oldest.0).max(0) as f64 / 1000.0 } else { 0.0 };
                    m.lag_seconds.with_label_values(&[topic, &plabel]).set(lag);
                }
                Err(ApplyError::PositionMismatch { .. }) => {
                    // Another projector got there first (or a replay moved it): reload.
                    positions = self.positions(&mine, topic, p).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Offers every link state of the batch to the hot cache. The cache keeps the newest
    /// version per code, so this may run before the store commit: the events are
    /// already durable facts, and a crash before the commit re-applies them.
    async fn offer_to_cache(&self, mutations: &[Mutation]) {
        let Some(cache) = &self.cache else { return };
        for m in mutations {
            match m {
                Mutation::PutLink(vl) => offer_state(&**cache, &vl.link, true, vl.version).await,
                Mutation::DeleteLink(vl) => offer_state(&**cache, &vl.link, false, vl.version).await,
                _ => {}
            }
        }
    }

    /// Waits until every projection has applied everything the log held when called.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<bool, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        for topic in self.topics() {
            let mine: Vec<&dyn Projection> = self.projections.iter().filter(|pr| pr.topic() == topic).map(|b| &**b).collect();
            for p in 0..self.log.partitions(topic).await? {
                let end = self.log.end_offset(topic, p).await?;
                loop {
                    let pos = self.positions(&mine, topic, p).await?;
                    if pos.iter().all(|x| *x >= end) {
                        break;
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

enum Decoded {
    Event(Event),
    Click(Click),
}

/// Maps a batch of one partition's records through the projections whose position the
/// record has not passed. Returns the mutations, and the span of the first traced
/// record (its trace continues into the store write).
pub(crate) fn project(
    mine: &[&dyn Projection],
    positions: &[u64],
    topic: &'static str,
    p: u32,
    recs: &[Record],
) -> (Vec<Mutation>, Option<tracing::Span>) {
    let m = metrics::get();
    let mut mutations = Vec::with_capacity(recs.len() * 2);
    let mut traced: Option<tracing::Span> = None;
    for rec in recs {
        let decoded = if topic == topics::CLICKS {
            Click::decode(&rec.payload).map(Decoded::Click)
        } else {
            Event::decode(&rec.payload).map(Decoded::Event)
        };
        let decoded = match decoded {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(event = "undecodable_record", topic, partition = p, offset = rec.offset, error = %e);
                m.undecodable.with_label_values(&[topic]).inc();
                continue;
            }
        };
        let input = match &decoded {
            Decoded::Event(event) => Input::Event { event, partition: p, offset: rec.offset },
            Decoded::Click(click) => Input::Click { click, partition: p, offset: rec.offset },
        };
        // A traced record gets a span, child of the decision that wrote it.
        let span = match rec.header("traceparent").and_then(|v| std::str::from_utf8(v).ok()) {
            Some(tp) => {
                let span = tracing::info_span!("project", topic, partition = p, offset = rec.offset);
                kurz_telemetry::continue_trace(&span, Some(tp));
                span
            }
            None => tracing::Span::none(),
        };
        span.in_scope(|| {
            for (pr, pos) in mine.iter().zip(positions) {
                if rec.offset >= *pos {
                    pr.apply(input, &mut mutations);
                }
            }
        });
        if traced.is_none() && !span.is_none() {
            traced = Some(span);
        }
    }
    (mutations, traced)
}

/// The store step of a mapped batch: its mutations, and each projection's position
/// moved to `next` (projections already past it are left out).
pub(crate) fn store_batch(
    mine: &[&dyn Projection],
    positions: &[u64],
    topic: &str,
    p: u32,
    next: u64,
    mutations: Vec<Mutation>,
) -> StoreBatch {
    StoreBatch {
        positions: mine
            .iter()
            .zip(positions)
            .filter(|(_, pos)| **pos < next)
            .map(|(pr, pos)| Position { projection: pr.name().into(), topic: topic.into(), partition: p, from: *pos, to: next })
            .collect(),
        mutations,
    }
}
