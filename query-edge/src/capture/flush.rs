//! The flusher: enriches queued clicks and appends them to the clicks topic in batches,
//! keyed by short code (one link's clicks stay in order on one partition).
//!
//! When an append fails, the clicks it did not place go to the spool ([`super::spool`]) and the
//! flusher stops trying the log for each batch: new batches go straight to the spool,
//! and every `PROBE` it tries to move the oldest spooled segment into the log. Once
//! that works the spool is drained, oldest first, and batches go to the log again. So a
//! log outage costs the redirects nothing and the clicks nothing, up to the spool's
//! size.

use super::enrich::Enricher;
use super::queue::ClickQueue;
use super::spool::{Spool, Spooled};
use super::RawClick;
use crate::metrics;
use kurz_schemas::click::leading_version;
use kurz_schemas::{topics, Click, ClickRecord};
use kurz_storage::log::append_spread;
use kurz_storage::{EventLog, NewRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 4096;
/// How long a batch may wait to fill before it is appended. Nobody waits on a click, so
/// a few milliseconds turn many small appends (each a commit) into a few large ones, and
/// spare the request path a wake-up of this task per click.
const LINGER: Duration = Duration::from_millis(20);
/// While the log is failing: how often the spool tries it again.
const PROBE: Duration = Duration::from_secs(1);

pub struct ClickFlusher {
    queue: Arc<ClickQueue>,
    log: Arc<dyn EventLog>,
    enricher: Enricher,
    spool: Option<Spool>,
    /// The last append failed: spool without trying the log until a probe succeeds.
    log_down: bool,
}

/// A click's log record: keyed by short code, with its schema version and its id. A
/// copy from the spool is marked `click-retry`: its first append failed, but an
/// ambiguous failure (a timeout after the broker wrote it) may have written it anyway,
/// so the projector counts it only if no record with its id came shortly before
/// (`kurz_projector::batch`).
fn record(key: String, id: u64, payload: Vec<u8>, retry: bool) -> NewRecord {
    // Every payload the flusher writes leads with its version ([`ClickRecord::encode`]).
    let version = leading_version(&payload).unwrap_or(Click::VERSION);
    let r = NewRecord::new(key, payload)
        .header(kurz_schemas::headers::SCHEMA_VERSION, version.to_string())
        .header(CLICK_ID, format!("{id:016x}"));
    if retry {
        r.header(CLICK_RETRY, "1")
    } else {
        r
    }
}

/// The header carrying a click's id (16 hex digits, random per click).
pub const CLICK_ID: &str = kurz_schemas::headers::CLICK_ID;
/// The header marking a click appended again from the spool.
pub const CLICK_RETRY: &str = kurz_schemas::headers::CLICK_RETRY;

impl ClickFlusher {
    pub(super) fn new(queue: Arc<ClickQueue>, log: Arc<dyn EventLog>, enricher: Enricher, spool: Option<Spool>) -> ClickFlusher {
        if let Some(s) = &spool {
            metrics::get().spool_bytes.set(s.bytes() as i64);
        }
        ClickFlusher { queue, log, enricher, spool, log_down: false }
    }

    /// Appends clicks until `stop` fires, then flushes what is queued and returns.
    /// Every [`LINGER`] it takes what the redirects queued meanwhile, in batches of at
    /// most [`BATCH`].
    pub async fn run_until_stopped(mut self, stop: CancellationToken) {
        let mut taken = Vec::new();
        let mut probe = tokio::time::interval(PROBE);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut linger = tokio::time::interval(LINGER);
        linger.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = tokio::select! {
                biased;
                _ = stop.cancelled() => true,
                _ = linger.tick() => false,
                _ = probe.tick() => {
                    self.drain().await;
                    continue;
                }
            };
            self.queue.take_all(&mut taken);
            while !taken.is_empty() {
                let n = taken.len().min(BATCH);
                self.flush(taken.drain(..n)).await;
            }
            if stopping {
                return;
            }
        }
    }

    async fn flush(&mut self, raws: std::vec::Drain<'_, RawClick>) {
        let clicks: Vec<(u64, ClickRecord)> = raws.map(|raw| (rand::random(), self.enricher.record(raw))).collect();
        if clicks.is_empty() {
            return;
        }
        let m = metrics::get();
        let batch: Vec<Spooled> = if self.log_down {
            clicks.iter().map(spooled).collect()
        } else {
            // The encoded clicks move into the records; the few a failed partition
            // did not take are encoded again for the spool.
            let (appended, rest, error) = append(&*self.log, clicks, |(id, c)| record(key(c), *id, c.encode(), false)).await;
            m.clicks.with_label_values(&["appended"]).inc_by(appended);
            let Some(e) = error else { return };
            tracing::warn!(event = "click_append_failed", clicks = rest.len(), error = %e, "spooling clicks until the log takes them again");
            self.log_down = true;
            rest.iter().map(spooled).collect()
        };
        let n = batch.len() as u64;
        match self.spool.as_mut().map(|s| s.push(&batch)) {
            Some(Ok(true)) => {
                m.clicks.with_label_values(&["spooled"]).inc_by(n);
                m.spool_bytes.set(self.spool.as_ref().map_or(0, |s| s.bytes()) as i64);
            }
            Some(Ok(false)) => m.clicks.with_label_values(&["dropped_spool_full"]).inc_by(n),
            Some(Err(e)) => {
                tracing::error!(event = "click_spool_failed", clicks = n, error = %e);
                m.clicks.with_label_values(&["failed"]).inc_by(n);
            }
            None => m.clicks.with_label_values(&["failed"]).inc_by(n),
        }
    }

    /// Moves spooled segments into the log, oldest first, until the spool is empty or
    /// an append fails.
    async fn drain(&mut self) {
        let Some(spool) = self.spool.as_mut() else {
            self.log_down = false;
            return;
        };
        let m = metrics::get();
        loop {
            let (path, batch) = match spool.oldest() {
                Ok(Some(seg)) => seg,
                Ok(None) => {
                    self.log_down = false;
                    return;
                }
                Err(e) => {
                    tracing::error!(event = "click_spool_unreadable", error = %e);
                    return;
                }
            };
            // Copies: the segment stays until the log has them.
            let (appended, rest, error) = append(&*self.log, batch, |(k, id, p)| record(k.clone(), *id, p.clone(), true)).await;
            m.clicks.with_label_values(&["unspooled"]).inc_by(appended);
            let Some(e) = error else {
                if let Err(e) = spool.remove(&path) {
                    tracing::error!(event = "click_spool_remove_failed", path = %path.display(), error = %e);
                    return;
                }
                m.spool_bytes.set(spool.bytes() as i64);
                if self.log_down {
                    tracing::info!(event = "click_log_back", "moving spooled clicks into the log");
                }
                continue;
            };
            // What reached the log leaves the segment, so it is not appended twice.
            if appended > 0 {
                if let Err(e) = spool.replace(&path, &rest) {
                    tracing::error!(event = "click_spool_rewrite_failed", path = %path.display(), error = %e);
                }
                m.spool_bytes.set(spool.bytes() as i64);
            }
            if !self.log_down {
                tracing::warn!(event = "click_append_failed", clicks = rest.len(), error = %e, "spooling clicks until the log takes them again");
            }
            tracing::debug!(event = "click_spool_probe_failed", error = %e);
            self.log_down = true;
            return;
        }
    }
}

fn spooled((id, c): &(u64, ClickRecord)) -> Spooled {
    (key(c), *id, c.encode())
}

/// A record's key: the link's code, so one link's clicks stay in order; for an orphan
/// the code asked for, or `/`.
fn key(c: &ClickRecord) -> String {
    match c {
        ClickRecord::Link(c) => c.code.clone(),
        ClickRecord::Orphan(o) => o.code.clone().unwrap_or_else(|| "/".into()),
    }
}

/// Appends `items` over every partition at once, as the records `to_record` makes of
/// them. Returns how many reached the log, the items that did not (their partition's
/// append failed), and the first error.
async fn append<T>(
    log: &dyn EventLog,
    items: Vec<T>,
    to_record: impl Fn(&T) -> NewRecord,
) -> (u64, Vec<T>, Option<kurz_storage::StorageError>) {
    let records = items.iter().map(to_record).collect();
    match append_spread(log, topics::CLICKS, records).await {
        Ok(spread) => {
            let appended = spread.placed.iter().filter(|p| p.is_some()).count() as u64;
            let rest = items.into_iter().zip(spread.placed).filter(|(_, p)| p.is_none()).map(|(t, _)| t).collect();
            (appended, rest, spread.error)
        }
        Err(e) => (0, items, Some(e)),
    }
}
