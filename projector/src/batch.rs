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
use kurz_schemas::{topics, Click, Event, Ts};
use kurz_storage::store::{Attempt, Mutation, ParkedRecord, Position, StoreBatch};
use kurz_storage::Record;
use std::collections::HashSet;
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
    Click(Click),
}

/// Why `projections` could not apply `rec`, or its mutations.
pub fn map_record(projections: &[&dyn Projection], topic: &str, rec: &Record, out: &mut Vec<Mutation>) -> Result<(), String> {
    let decoded = if topic == topics::CLICKS {
        Click::decode(&rec.payload).map(Decoded::Click)
    } else {
        Event::decode(&rec.payload).map(Decoded::Event)
    };
    let decoded = decoded.map_err(|e| {
        metrics::get().undecodable.with_label_values(&[topic]).inc();
        format!("undecodable: {e}")
    })?;
    let input = match &decoded {
        Decoded::Event(event) => Input::Event { event, partition: rec.partition, offset: rec.offset },
        Decoded::Click(click) => Input::Click { click, partition: rec.partition, offset: rec.offset },
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
) -> Mapped {
    let mut out = Mapped { mutations: Vec::with_capacity(recs.len() * 2), parks: Vec::new(), traced: None };
    let mut pending: Vec<&dyn Projection> = Vec::with_capacity(mine.len());
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
        let span = match rec.header("traceparent").and_then(|v| std::str::from_utf8(v).ok()) {
            Some(tp) => {
                let span = tracing::info_span!("project", topic, partition = p, offset = rec.offset);
                kurz_telemetry::continue_trace(&span, Some(tp));
                span
            }
            None => tracing::Span::none(),
        };
        if let Err(reason) = span.in_scope(|| map_record(&pending, topic, rec, &mut out.mutations)) {
            tracing::error!(event = "record_parked", topic, partition = p, offset = rec.offset, key = %rec.key, reason = %reason);
            out.parks.push(park(topic, rec, &pending, 1, reason));
            parked.insert(rec.key.clone());
            continue;
        }
        if out.traced.is_none() && !span.is_none() {
            out.traced = Some(span);
        }
    }
    out
}

/// The store step of a mapped batch: its mutations and parks, each projection's
/// position moved to `next` (projections already past it are left out), and the
/// delivery count of the batch that starts at `next` set to its first attempt.
pub fn store_batch(mine: &[&dyn Projection], positions: &[u64], topic: &str, p: u32, next: u64, mapped: Mapped) -> StoreBatch {
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
    }
}
