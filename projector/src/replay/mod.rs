//! Replay: applies the log from offset zero to another store (a new generation, see
//! `kurz_storage::store::generations`), every partition at once, with the same mapping
//! as the live projector ([`crate::batch::project`]), poison records parked the same way. Progress is the target store's
//! own positions, committed with each batch: a replay that is killed resumes where its
//! last batch landed, and the position guard keeps every record applied exactly once,
//! so the result equals an uninterrupted replay.

mod job;
mod rebuild;

pub use job::{ReplayStatus, Replayer};
pub use rebuild::{pick_generation, rebuild, ReplayReport, ReplayRequest, Sources, GRACE};

use crate::batch::{project, store_batch, ParkedKeys};
use crate::projections::{self, Projection};
use crate::Error;
use kurz_schemas::topics;
use kurz_storage::store::ApplyError;
use kurz_storage::vault::Keyring;
use kurz_storage::{EventLog, ReadStore};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Records per batch: large, since nobody waits on a replay's individual records, and
/// a bigger step shares its page writes (and sums its clicks per aggregate row) over
/// more records (`kurz-bench replay`: 1.3-1.5x the rate of 8,192).
const BATCH: usize = 65_536;

/// How far a replay is, for progress bars: records applied and records to apply.
#[derive(Debug, Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
}

impl Progress {
    pub fn get(&self) -> (u64, u64) {
        (self.done.load(Ordering::Relaxed), self.total.load(Ordering::Relaxed))
    }
}

pub struct Replay {
    log: Arc<dyn EventLog>,
    target: Arc<dyn ReadStore>,
    projections: Arc<Vec<Box<dyn Projection>>>,
    keys: Arc<Keyring>,
    /// Each partition's claim in the target, taken once when it first has work (so a
    /// replay that follows the log does not claim again on every pass); `None` once
    /// the live projectors overtook it.
    claims: Arc<Claims>,
}

type Claims = std::sync::Mutex<std::collections::HashMap<(&'static str, u32), Option<u64>>>;

/// One partition of a replay pass and the replay's claims.
struct Part<'a> {
    topic: &'static str,
    p: u32,
    claims: &'a Claims,
}

impl Replay {
    /// A replay of the named projections (`all`, or none named: every one) into `target`.
    pub fn new(log: Arc<dyn EventLog>, target: Arc<dyn ReadStore>, keys: Arc<Keyring>, names: &[String]) -> Result<Replay, Error> {
        let every = projections::all();
        let known: Vec<&str> = every.iter().map(|p| p.name()).collect();
        if let Some(bad) = names.iter().find(|n| *n != "all" && !known.contains(&n.as_str())) {
            return Err(Error::UnknownProjection { name: bad.clone(), known: known.join(", ") });
        }
        let all = names.is_empty() || names.iter().any(|n| n == "all");
        let chosen = every.into_iter().filter(|p| all || names.iter().any(|n| n == p.name())).collect();
        Ok(Replay { log, target, projections: Arc::new(chosen), keys, claims: Arc::default() })
    }

    fn topics(&self) -> Vec<&'static str> {
        [topics::EVENTS, topics::CLICKS].into_iter().filter(|t| self.projections.iter().any(|p| p.topic() == *t)).collect()
    }

    /// Applies everything up to the log's end, every partition at once, and returns once
    /// a pass over all partitions found nothing left (caught up).
    pub async fn catch_up(&self, progress: &Arc<Progress>) -> Result<(), Error> {
        loop {
            let mut tasks = tokio::task::JoinSet::new();
            for topic in self.topics() {
                for p in 0..self.log.partitions(topic).await? {
                    let (log, target, projections, progress, keys, claims) = (
                        self.log.clone(),
                        self.target.clone(),
                        self.projections.clone(),
                        progress.clone(),
                        self.keys.clone(),
                        self.claims.clone(),
                    );
                    tasks.spawn(async move {
                        let part = Part { topic, p, claims: &claims };
                        partition(&*log, &*target, &projections, &keys, part, &progress).await
                    });
                }
            }
            let mut applied = 0;
            while let Some(r) = tasks.join_next().await {
                applied += r.map_err(|e| Error::Replay(e.to_string()))??;
            }
            if applied == 0 {
                return Ok(());
            }
        }
    }

    /// Keeps applying what the log gets until `stop` (after a switch, so the new
    /// generation stays current while every process moves to it).
    pub async fn follow_until(&self, progress: &Arc<Progress>, stop: CancellationToken) -> Result<(), Error> {
        while !stop.is_cancelled() {
            self.catch_up(progress).await?;
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        Ok(())
    }
}

/// Applies one partition up to its end offset as read now; returns how many records.
async fn partition(
    log: &dyn EventLog,
    target: &dyn ReadStore,
    projections: &[Box<dyn Projection>],
    keys: &Keyring,
    part: Part<'_>,
    progress: &Progress,
) -> Result<u64, Error> {
    let Part { topic, p, claims } = part;
    let held = |claims: &Claims| claims.lock().unwrap_or_else(|e| e.into_inner()).get(&(topic, p)).copied();
    if held(claims) == Some(None) {
        return Ok(0); // overtaken: the rest is the live projectors'
    }
    let mine: Vec<&dyn Projection> = projections.iter().filter(|pr| pr.topic() == topic).map(|b| &**b).collect();
    let load = || async {
        let mut out = Vec::with_capacity(mine.len());
        for pr in &mine {
            out.push(target.position(pr.name(), topic, p).await?);
        }
        Ok::<_, Error>(out)
    };
    let mut positions = load().await?;
    let parked_keys = || async {
        let all = target.parked().await?;
        Ok::<ParkedKeys, Error>(all.into_iter().filter(|r| r.topic == topic && r.partition == p).map(|r| r.key).collect())
    };
    let mut parked = parked_keys().await?;
    let end = log.end_offset(topic, p).await?;
    let start = positions.iter().copied().min().unwrap_or(end);
    if start >= end {
        return Ok(0);
    }
    // The replay claims the partition in the generation it builds, once; the live
    // projectors claim it again once they switch there, and from then on the replay
    // lands nothing. Positions are loaded again under the claim.
    let epoch = match held(claims) {
        Some(Some(epoch)) => epoch,
        _ => {
            let epoch = target.claim(topic, p).await?;
            claims.lock().unwrap_or_else(|e| e.into_inner()).insert((topic, p), Some(epoch));
            positions = load().await?;
            epoch
        }
    };
    // The first pass counts the log; later passes what it got while the replay ran.
    progress.total.fetch_add(end - start, Ordering::Relaxed);
    let mut applied = 0;
    loop {
        let from = positions.iter().copied().min().unwrap_or(end);
        if from >= end {
            return Ok(applied);
        }
        let (recs, next) = crate::batch::read(log, topic, p, from, BATCH.min((end - from) as usize)).await?;
        if next == from {
            return Ok(applied);
        }
        crate::batch::load_keys(keys, topic, &recs).await?;
        let mapped = project(&mine, &positions, topic, p, &recs, &mut parked, &|s| keys.key(s));
        match target.apply(store_batch(&mine, &positions, topic, p, next, mapped, epoch)).await {
            Ok(()) => {
                for pos in positions.iter_mut() {
                    *pos = (*pos).max(next);
                }
                applied += recs.len() as u64;
                progress.done.fetch_add(next - from, Ordering::Relaxed);
            }
            // Someone else (a live projector after the switch) got there first.
            Err(ApplyError::PositionMismatch { .. }) => {
                positions = load().await?;
                parked = parked_keys().await?;
            }
            // The live projectors took the partition over: the rest is theirs.
            Err(ApplyError::Fenced { claimed, .. }) => {
                tracing::info!(event = "replay_overtaken", topic, partition = p, epoch, claimed);
                claims.lock().unwrap_or_else(|e| e.into_inner()).insert((topic, p), None);
                return Ok(applied);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
