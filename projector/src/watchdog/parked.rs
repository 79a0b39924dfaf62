//! Re-driving parked records (see `crate::batch` for how records get parked).
//!
//! A key's parked records are delivered in offset order, each through the projections
//! it is pending for, in one store step that also releases it; the release is guarded,
//! so two re-drives (two watchdogs, a watchdog and `kurz parked redrive`) deliver a
//! record once. Every delivery is counted durably before it is tried: the count is
//! written by releasing the record and parking it again with one more attempt, so a
//! process that dies while delivering it has still counted it. A delivery that fails
//! leaves the record parked with its reason, and the key's later records wait behind
//! it; once it has had `max_attempts` deliveries it goes to the dead-letter topic and
//! the key's later records follow.

use crate::batch::map_record;
use crate::projections::Projection;
use crate::{deadletter, Error, Projector};
use kurz_schemas::Ts;
use kurz_storage::store::{ApplyError, Mutation, ParkedId, ParkedRecord, StoreBatch};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What a re-drive did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Redriven {
    /// Records applied and released.
    pub delivered: usize,
    /// Records that failed again (their keys stay parked).
    pub failed: usize,
    /// Records sent to the dead-letter topic (attempts ran out, or skipped).
    pub dead_lettered: usize,
}

impl Redriven {
    fn add(&mut self, o: Redriven) {
        self.delivered += o.delivered;
        self.failed += o.failed;
        self.dead_lettered += o.dead_lettered;
    }
}

/// Which parked records to act on.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Selector {
    pub topic: Option<String>,
    pub partition: Option<u32>,
    pub key: Option<String>,
}

impl Selector {
    fn matches(&self, r: &ParkedRecord) -> bool {
        self.topic.as_ref().is_none_or(|t| *t == r.topic)
            && self.partition.is_none_or(|p| p == r.partition)
            && self.key.as_ref().is_none_or(|k| *k == r.key)
    }
}

/// The parked records grouped by (topic, partition, key), each group in offset order.
pub fn by_key(all: Vec<ParkedRecord>) -> BTreeMap<(String, u32, String), Vec<ParkedRecord>> {
    let mut keys: BTreeMap<(String, u32, String), Vec<ParkedRecord>> = BTreeMap::new();
    for r in all {
        keys.entry((r.topic.clone(), r.partition, r.key.clone())).or_default().push(r);
    }
    for v in keys.values_mut() {
        v.sort_by_key(|r| r.offset);
    }
    keys
}

/// How long after a failed delivery the next one is due: 1, 2, 4, … times `base`,
/// at most 5 minutes.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1u32 << attempts.saturating_sub(1).min(16)).min(Duration::from_secs(300))
}

/// Whether a key whose first parked record is `head` is due for a re-drive at `now`.
pub fn due(head: &ParkedRecord, base: Duration, now: Ts) -> bool {
    head.attempts == 0 || now.0 - head.last_attempt_at.0 >= backoff(base, head.attempts).as_millis() as i64
}

/// Re-drives every selected key now, whether due or not (`kurz parked redrive`).
pub async fn redrive(projector: &Projector, sel: &Selector) -> Result<Redriven, Error> {
    let mut total = Redriven::default();
    for (_, records) in by_key(projector.store().parked().await?) {
        if records.first().is_some_and(|r| sel.matches(r)) {
            total.add(redrive_key(projector, records).await?);
        }
    }
    Ok(total)
}

/// Sends one parked record to the dead-letter topic without delivering it, then
/// re-drives the rest of its key (`kurz parked skip`).
pub async fn skip(projector: &Projector, id: &ParkedId) -> Result<Redriven, Error> {
    let all = projector.store().parked().await?;
    let Some(record) = all.iter().find(|r| r.id() == *id).cloned() else {
        return Err(Error::NotParked(id.to_string()));
    };
    let mut out = Redriven::default();
    if dead_letter(projector, &record, "skipped by an operator").await? {
        out.dead_lettered += 1;
    }
    let sel = Selector { topic: Some(id.topic.clone()), partition: Some(id.partition), key: Some(id.key.clone()) };
    out.add(redrive(projector, &sel).await?);
    Ok(out)
}

/// Delivers a key's parked records (`records`, in offset order) until one fails.
pub async fn redrive_key(projector: &Projector, records: Vec<ParkedRecord>) -> Result<Redriven, Error> {
    let store = projector.store();
    let mut out = Redriven::default();
    for parked in records {
        // Count the delivery first, durably.
        let mut counted = parked.clone();
        counted.attempts += 1;
        counted.last_attempt_at = Ts::now();
        let count = StoreBatch { mutations: vec![Mutation::Park(counted.clone())], release: vec![parked.id()], ..Default::default() };
        match store.apply(count).await {
            Ok(()) => {}
            Err(ApplyError::NotParked(_)) => continue, // delivered meanwhile by another re-drive
            Err(e) => return Err(e.into()),
        }
        let rec =
            projector.log().read(&parked.topic, parked.partition, parked.offset, 1).await?.into_iter().find(|r| r.offset == parked.offset);
        let Some(rec) = rec else {
            // Gone from the log (retention): nothing left to deliver.
            tracing::error!(event = "parked_record_gone", record = %parked.id());
            release(projector, &counted, Vec::new()).await?;
            continue;
        };
        let pending: Vec<&dyn Projection> =
            projector.projections().iter().filter(|p| counted.projections.iter().any(|n| n == p.name())).map(|b| &**b).collect();
        let mut mutations = Vec::new();
        crate::batch::load_keys(projector.keys(), &counted.topic, std::slice::from_ref(&rec)).await?;
        match map_record(&pending, &counted.topic, &rec, &|s| projector.keys().key(s), &mut mutations) {
            Ok(()) => {
                projector.offer_to_cache(&mutations).await;
                if release(projector, &counted, mutations).await? {
                    out.delivered += 1;
                    crate::metrics::get().watchdog_redriven.with_label_values(&["parked"]).inc();
                    tracing::info!(event = "parked_record_delivered", record = %counted.id(), attempts = counted.attempts);
                }
            }
            Err(reason) if counted.attempts >= projector.attempts_limit() => {
                deadletter::send(&**projector.log(), &counted.topic, &rec, &reason, counted.attempts).await?;
                release(projector, &counted, Vec::new()).await?;
                out.dead_lettered += 1;
            }
            Err(reason) => {
                tracing::warn!(event = "parked_record_failed", record = %counted.id(), attempts = counted.attempts, reason = %reason);
                let mut failed = counted.clone();
                failed.reason = reason;
                let keep = StoreBatch { mutations: vec![Mutation::Park(failed)], release: vec![counted.id()], ..Default::default() };
                match store.apply(keep).await {
                    Ok(()) | Err(ApplyError::NotParked(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                out.failed += 1;
                return Ok(out); // the key's later records keep waiting
            }
        }
    }
    Ok(out)
}

/// Applies `mutations` and releases `record` in one step; false if it was no longer
/// parked (another re-drive delivered it).
async fn release(projector: &Projector, record: &ParkedRecord, mutations: Vec<Mutation>) -> Result<bool, Error> {
    match projector.store().apply(StoreBatch { mutations, release: vec![record.id()], ..Default::default() }).await {
        Ok(()) => Ok(true),
        Err(ApplyError::NotParked(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn dead_letter(projector: &Projector, record: &ParkedRecord, reason: &str) -> Result<bool, Error> {
    let rec =
        projector.log().read(&record.topic, record.partition, record.offset, 1).await?.into_iter().find(|r| r.offset == record.offset);
    if let Some(rec) = rec {
        deadletter::send(&**projector.log(), &record.topic, &rec, reason, record.attempts).await?;
    }
    release(projector, record, Vec::new()).await
}

/// What an operator asks of the parked records (`kurz parked`, `/admin/parked`).
#[derive(Debug, Clone)]
pub enum Action {
    List,
    Redrive(Selector),
    Skip(ParkedId),
}

/// The answer to an [`Action`].
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Report {
    List { count: usize, parked: Vec<ParkedRecord> },
    Redriven { delivered: usize, failed: usize, dead_lettered: usize },
}

impl From<Redriven> for Report {
    fn from(r: Redriven) -> Report {
        Report::Redriven { delivered: r.delivered, failed: r.failed, dead_lettered: r.dead_lettered }
    }
}

/// Carries out `action` with `projector`.
pub async fn act(projector: &Projector, action: Action) -> Result<Report, Error> {
    Ok(match action {
        Action::List => {
            let parked = projector.store().parked().await?;
            Report::List { count: parked.len(), parked }
        }
        Action::Redrive(sel) => redrive(projector, &sel).await?.into(),
        Action::Skip(id) => skip(projector, &id).await?.into(),
    })
}
