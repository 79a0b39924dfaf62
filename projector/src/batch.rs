//! Mapping a batch of one partition's records to a read-store step, holding poison
//! records out of it.
//!
//! A record is *poison* when this build cannot apply it: its payload does not decode,
//! or a projection panics on it. It is parked ([`ParkedRecord`]) instead of stopping the
//! partition, and so is every later record of its key: they wait behind it, in offset
//! order, while other keys keep flowing. The parks are written in the same store step
//! that moves the positions past them, so nothing is lost or applied out of order; the
//! watchdog re-drives them (`crate::watchdog::parked`).

use crate::metrics;
use crate::projections::{Input, Projection};
use kurz_schemas::personal::Keys;
use kurz_schemas::{topics, ClickRecord, Event, Id, Ts};
use kurz_storage::log::claims;
use kurz_storage::store::{Attempt, Mutation, ParkedRecord, Position, StoreBatch};
use kurz_storage::vault::Keyring;
use kurz_storage::{EventLog, Record};
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Keys of one partition that have parked records.
pub type ParkedKeys = HashSet<String>;

/// A batch mapped to store writes.
pub struct Mapped {
    pub mutations: Vec<Mutation>,
    pub parks: Vec<ParkedRecord>,
    /// The span of the first traced record: its trace continues into the store write.
    pub traced: Option<tracing::Span>,
}

enum Decoded {
    Event(Event),
    Click(ClickRecord),
}

/// Reads up to about `max` records of `topic` from `from`, and the position after
/// them: events by the claims rule ([`kurz_storage::log::claims`]), so a stale
/// decider's late append is skipped (the position moves past it) and an append still
/// open is waited for; other topics as they are.
pub async fn read(
    log: &dyn EventLog,
    topic: &str,
    p: u32,
    from: u64,
    max: usize,
) -> Result<(Vec<Record>, u64), kurz_storage::StorageError> {
    if topic != topics::EVENTS {
        let recs = log.read(topic, p, from, max).await?;
        let next = recs.last().map_or(from, |r| r.offset + 1);
        let recs = if topic == topics::CLICKS { drop_click_copies(log, p, recs).await? } else { recs };
        return Ok((recs, next));
    }
    let r = claims::read_settled(log, topic, p, from, max).await?;
    if !r.ignored.is_empty() {
        tracing::warn!(event = "projector_ignored_records", topic, partition = p, ignored = ?r.ignored, "a stale or broken append");
        kurz_storage::metrics::get().claims_ignored.with_label_values(&[topic]).inc_by(r.ignored.len() as u64);
    }
    Ok((r.records, r.next))
}

/// How far back a click appended again from the spool (header `click-retry`) looks for
/// a record with its `click-id`: the first append may have reached the log although it
/// answered an error (a timeout after the write). By log time, and by records.
pub const RETRY_WINDOW_MS: i64 = 5 * 60 * 1000;
pub const RETRY_SCAN: u64 = 1 << 18;

fn click_id(r: &Record) -> Option<u64> {
    let v = r.header(kurz_schemas::headers::CLICK_ID)?;
    if v.len() != 16 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
}

/// Drops the clicks in `recs` (consecutive records of clicks partition `p`) that are
/// spool copies of a click already in the log: a `click-retry` record whose `click-id`
/// a record at most [`RETRY_SCAN`] offsets and [`RETRY_WINDOW_MS`] earlier carries. The
/// rule depends only on the log, so a replay counts the same. Records without the
/// headers (older builds) are counted as they are.
pub async fn drop_click_copies(log: &dyn EventLog, p: u32, recs: Vec<Record>) -> Result<Vec<Record>, kurz_storage::StorageError> {
    let copies: Vec<&Record> =
        recs.iter().filter(|r| r.header(kurz_schemas::headers::CLICK_RETRY).is_some() && click_id(r).is_some()).collect();
    let (Some(first), Some(newest_cutoff)) = (copies.first(), copies.iter().map(|r| r.timestamp.0).min()) else { return Ok(recs) };
    let cutoff = newest_cutoff - RETRY_WINDOW_MS;
    let floor = first.offset.saturating_sub(RETRY_SCAN);
    // Where each id was last seen: (offset, log time).
    let mut seen: HashMap<u64, (u64, i64)> = HashMap::new();
    let mut hi = recs[0].offset;
    while hi > floor {
        let lo = hi.saturating_sub(4096).max(floor);
        let chunk = log.read(topics::CLICKS, p, lo, (hi - lo) as usize).await?;
        let mut newer = false;
        for r in chunk.iter().filter(|r| r.offset < hi && r.timestamp.0 >= cutoff) {
            newer = true;
            if let Some(id) = click_id(r) {
                let e = seen.entry(id).or_insert((r.offset, r.timestamp.0));
                *e = (*e).max((r.offset, r.timestamp.0));
            }
        }
        if chunk.is_empty() || !newer {
            break;
        }
        hi = lo;
    }
    let mut out = Vec::with_capacity(recs.len());
    let mut dropped = 0u64;
    for r in recs {
        let id = click_id(&r);
        if r.header(kurz_schemas::headers::CLICK_RETRY).is_some() {
            let original = id
                .and_then(|id| seen.get(&id))
                .is_some_and(|&(offset, at)| offset + RETRY_SCAN >= r.offset && at >= r.timestamp.0 - RETRY_WINDOW_MS);
            if original {
                dropped += 1;
                continue;
            }
        }
        if let Some(id) = id {
            seen.insert(id, (r.offset, r.timestamp.0));
        }
        out.push(r);
    }
    if dropped > 0 {
        tracing::info!(event = "click_copies_dropped", partition = p, dropped, "spool copies of clicks already in the log");
        metrics::get().click_copies.inc_by(dropped);
    }
    Ok(out)
}

/// Waits for something [`read`] would return at `from`; returns the log's end.
pub async fn wait(
    log: &dyn EventLog,
    topic: &str,
    p: u32,
    from: u64,
    timeout: std::time::Duration,
) -> Result<u64, kurz_storage::StorageError> {
    if topic == topics::EVENTS {
        claims::wait_kept(log, topic, p, from, timeout).await
    } else {
        log.wait_for(topic, p, from, timeout).await
    }
}

/// Loads the data keys that opening `recs` needs (events carry users' personal data
/// sealed). A subject the vault does not know is left out: its record parks.
pub async fn load_keys(keys: &Keyring, topic: &str, recs: &[Record]) -> Result<(), kurz_storage::StorageError> {
    if topic != topics::EVENTS {
        return Ok(());
    }
    let subjects: Vec<String> = recs.iter().flat_map(|r| Event::sealed_subjects(&r.payload)).collect();
    if !subjects.is_empty() {
        for s in keys.load(&subjects).await? {
            tracing::error!(event = "unknown_subject", subject = %s, "{}", kurz_storage::vault::keyring::unknown_subject(&s));
        }
    }
    Ok(())
}

/// Why `projections` could not apply `rec`, or its mutations. `keys`: the data keys
/// loaded for it ([`load_keys`]).
pub fn map_record(projections: &[&dyn Projection], topic: &str, rec: &Record, keys: Keys, out: &mut Vec<Mutation>) -> Result<(), String> {
    let decoded = if topic == topics::CLICKS {
        ClickRecord::decode(&rec.payload).map(Decoded::Click)
    } else {
        Event::decode_opened(&rec.payload, keys).map(Decoded::Event)
    };
    let decoded = decoded.map_err(|e| {
        metrics::get().undecodable.with_label_values(&[topic]).inc();
        format!("undecodable: {e}")
    })?;
    let input = match &decoded {
        Decoded::Event(event) => Input::Event { event, partition: rec.partition, offset: rec.offset },
        Decoded::Click(ClickRecord::Link(click)) => Input::Click { click, partition: rec.partition, offset: rec.offset },
        Decoded::Click(ClickRecord::Orphan(orphan)) => Input::Orphan { orphan },
    };
    let before = out.len();
    // A panic is a bug that this record triggers: the record is parked, the process
    // and the partition's other keys go on. A process that dies outright on a record is
    // caught by the durable attempt count instead (`crate::runtime`).
    let applied = catch_unwind(AssertUnwindSafe(|| {
        for pr in projections {
            pr.apply(input, out);
        }
    }));
    applied.map_err(|panic| {
        out.truncate(before);
        let msg = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        format!("projection panicked: {}", msg.unwrap_or_else(|| "(no message)".into()))
    })
}

/// A parked record for `rec`, pending for `projections`.
pub fn park(topic: &str, rec: &Record, projections: &[&dyn Projection], attempts: u32, reason: String) -> ParkedRecord {
    let now = Ts::now();
    ParkedRecord {
        topic: topic.to_string(),
        partition: rec.partition,
        key: rec.key.clone(),
        offset: rec.offset,
        projections: projections.iter().map(|p| p.name().to_string()).collect(),
        attempts,
        reason,
        parked_at: now,
        last_attempt_at: now,
    }
}

/// Sums a batch's additive mutations per row while they are made: a click makes
/// about ten (its link's count, its hour, its day's breakdowns, its visitor), and a
/// batch of clicks touches far fewer distinct rows. The rows they add to are read by
/// no other mutation, and a batch is applied as one step, so one summed mutation per
/// row, at the place of its first, applies the same as all of them, with a fraction of
/// the memory and of the store's work.
#[derive(Default)]
struct Additive {
    clicks: HashMap<Id, usize>,
    counts: HashMap<(Id, String), usize>,
    visitors: HashSet<(Id, i64, String)>,
}

impl Additive {
    fn push(&mut self, m: Mutation, out: &mut Vec<Mutation>) {
        match m {
            Mutation::AddClicks { link_id, n } => match self.clicks.get(&link_id) {
                Some(&i) => add(&mut out[i], n),
                None => {
                    self.clicks.insert(link_id, out.len());
                    out.push(Mutation::AddClicks { link_id, n });
                }
            },
            Mutation::AddCount { link_id, name, n } => match self.counts.entry((link_id, name)) {
                std::collections::hash_map::Entry::Occupied(e) => add(&mut out[*e.get()], n),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let name = e.key().1.clone();
                    e.insert(out.len());
                    out.push(Mutation::AddCount { link_id, name, n });
                }
            },
            Mutation::AddVisitor { link_id, day, visitor } => {
                if self.visitors.insert((link_id, day, visitor.clone())) {
                    out.push(Mutation::AddVisitor { link_id, day, visitor });
                }
            }
            other => out.push(other),
        }
    }
}

fn add(m: &mut Mutation, by: u64) {
    if let Mutation::AddClicks { n, .. } | Mutation::AddCount { n, .. } = m {
        *n += by;
    }
}

/// Maps a batch of one partition's records through the projections whose position
/// the record has not passed. Records of a key in `parked` wait behind it; a poison
/// record parks its key (added to `parked`).
pub fn project(
    mine: &[&dyn Projection],
    positions: &[u64],
    topic: &'static str,
    p: u32,
    recs: &[Record],
    parked: &mut ParkedKeys,
    keys: Keys,
) -> Mapped {
    let mut out = Mapped { mutations: Vec::with_capacity(recs.len() * 2), parks: Vec::new(), traced: None };
    let mut pending: Vec<&dyn Projection> = Vec::with_capacity(mine.len());
    let mut one = Vec::new();
    let mut additive = Additive::default();
    for rec in recs {
        pending.clear();
        pending.extend(mine.iter().zip(positions).filter(|(_, pos)| rec.offset >= **pos).map(|(pr, _)| *pr));
        if pending.is_empty() {
            continue;
        }
        if !parked.is_empty() && parked.contains(&rec.key) {
            let reason = "waiting behind an earlier parked record of its key".to_string();
            out.parks.push(park(topic, rec, &pending, 0, reason));
            continue;
        }
        // A traced record gets a span, child of the decision that wrote it.
        let span = match rec.header(kurz_schemas::headers::TRACEPARENT).and_then(|v| std::str::from_utf8(v).ok()) {
            Some(tp) => {
                let span = tracing::info_span!("project", topic, partition = p, offset = rec.offset);
                kurz_telemetry::continue_trace(&span, Some(tp));
                span
            }
            None => tracing::Span::none(),
        };
        if let Err(reason) = span.in_scope(|| map_record(&pending, topic, rec, keys, &mut one)) {
            tracing::error!(event = "record_parked", topic, partition = p, offset = rec.offset, key = %rec.key, reason = %reason);
            out.parks.push(park(topic, rec, &pending, 1, reason));
            parked.insert(rec.key.clone());
            continue;
        }
        for m in one.drain(..) {
            additive.push(m, &mut out.mutations);
        }
        if out.traced.is_none() && !span.is_none() {
            out.traced = Some(span);
        }
    }
    out
}

/// The store step of a mapped batch: its mutations and parks, each projection's
/// position moved to `next` (projections already past it are left out), and the
/// delivery count of the batch that starts at `next` set to its first attempt, written
/// under claim `epoch` of the partition.
pub fn store_batch(mine: &[&dyn Projection], positions: &[u64], topic: &str, p: u32, next: u64, mapped: Mapped, epoch: u64) -> StoreBatch {
    let mut mutations = mapped.mutations;
    mutations.extend(mapped.parks.into_iter().map(Mutation::Park));
    mutations.push(Mutation::Attempt { topic: topic.into(), partition: p, attempt: Attempt { offset: next, attempt: 1 } });
    StoreBatch {
        positions: mine
            .iter()
            .zip(positions)
            .filter(|(_, pos)| **pos < next)
            .map(|(pr, pos)| Position { projection: pr.name().into(), topic: topic.into(), partition: p, from: *pos, to: next })
            .collect(),
        mutations,
        release: Vec::new(),
        epoch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections;
    use kurz_schemas::Click;
    use std::collections::BTreeMap;

    /// What a list of mutations does to the additive rows, and everything else in order.
    #[derive(Debug, Default, PartialEq)]
    struct Effect {
        clicks: BTreeMap<Id, u64>,
        counts: BTreeMap<(Id, String), u64>,
        visitors: std::collections::BTreeSet<(Id, i64, String)>,
        rest: Vec<Mutation>,
    }

    fn effect(ms: &[Mutation]) -> Effect {
        let mut e = Effect::default();
        for m in ms {
            match m {
                Mutation::AddClicks { link_id, n } => *e.clicks.entry(*link_id).or_default() += n,
                Mutation::AddCount { link_id, name, n } => *e.counts.entry((*link_id, name.clone())).or_default() += n,
                Mutation::AddVisitor { link_id, day, visitor } => {
                    e.visitors.insert((*link_id, *day, visitor.clone()));
                }
                other => e.rest.push(other.clone()),
            }
        }
        e
    }

    fn click_record(offset: u64, link: u64, visitor: &str, hour: i64) -> Record {
        let c = Click {
            visitor: Some(visitor.into()),
            referrer_host: Some(format!("r{}.example", offset % 3)),
            ..Click::new(Id::new(link).unwrap(), format!("c{link}"), Ts(hour * 3_600_000 + offset as i64))
        };
        Record { partition: 0, offset, timestamp: c.at, key: c.code.clone(), headers: Vec::new(), payload: c.encode() }
    }

    #[test]
    fn a_batch_sums_its_additive_mutations_per_row_with_the_same_effect() {
        let all = projections::all();
        let mine: Vec<&dyn Projection> = all.iter().filter(|p| p.topic() == topics::CLICKS).map(|b| &**b).collect();
        let recs: Vec<Record> = (0..600).map(|i| click_record(i, 1 + i % 4, &format!("v{}", i % 7), (i / 200) as i64)).collect();
        let mut one_by_one = Vec::new();
        for r in &recs {
            map_record(&mine, topics::CLICKS, r, &|_| None, &mut one_by_one).unwrap();
        }
        let positions = vec![0; mine.len()];
        let folded = project(&mine, &positions, topics::CLICKS, 0, &recs, &mut ParkedKeys::new(), &|_| None).mutations;
        assert_eq!(effect(&folded), effect(&one_by_one), "summing per row changes nothing the store would see");
        assert!(folded.len() < one_by_one.len() / 5, "{} summed mutations from {}", folded.len(), one_by_one.len());
        let e = effect(&folded);
        assert_eq!(e.clicks.values().sum::<u64>(), 600);
        assert_eq!(e.rest.len(), 600, "one /events row per click, in log order");
        let additive = folded.iter().filter(|m| matches!(m, Mutation::AddClicks { .. } | Mutation::AddCount { .. })).count();
        assert_eq!(additive, e.clicks.len() + e.counts.len(), "each additive row once");
        assert_eq!(folded.iter().filter(|m| matches!(m, Mutation::AddVisitor { .. })).count(), e.visitors.len());
    }

    #[test]
    fn a_poison_record_contributes_nothing_to_the_sums() {
        let all = projections::all();
        let mine: Vec<&dyn Projection> = all.iter().filter(|p| p.topic() == topics::CLICKS).map(|b| &**b).collect();
        let mut recs: Vec<Record> = (0..10).map(|i| click_record(i, 1, "v", 0)).collect();
        recs[4].payload = b"{not json".to_vec();
        let positions = vec![0; mine.len()];
        let mut parked = ParkedKeys::new();
        let mapped = project(&mine, &positions, topics::CLICKS, 0, &recs, &mut parked, &|_| None);
        // The poison record parks its key, and the key's later records wait behind it.
        assert_eq!(mapped.parks.len(), 6);
        assert!(parked.contains("c1"));
        assert_eq!(effect(&mapped.mutations).clicks.values().sum::<u64>(), 4);
    }
}
