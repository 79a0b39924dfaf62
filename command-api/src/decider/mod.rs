//! The deciders: one writer per partition of the commands topic.
//!
//! A partition's decider restores its state by folding its partition of the events
//! topic, then reads commands from its stored position. For each batch of commands it
//! decides every command in order against the state, appends all resulting events to
//! the same partition of the events topic in one append, and only then stores its
//! position in the commands topic.
//!
//! Exactly-once: if the decider dies after appending events but before storing its
//! position, it re-reads those commands on restart; their ids are already in the
//! restored state (every command ends with a `Decided` event carrying its id), so they
//! are skipped. A command id retried by a client is skipped the same way.
//!
//! Fail closed: a restore that meets an event it cannot decode (one a newer build
//! wrote, say) stops the partition instead of folding on without it, since a state
//! missing a link or a decision would grant what that event took. The partition is
//! retried with backoff and `kurz_decider_blocked` is 1 until the event reads.
//!
//! Fencing: only the decider should append to its events partition, but a group can
//! briefly give a partition to two processes (a member thought dead that is only
//! paused). So a decider knows where the partition ends after its own last append and
//! appends *conditionally*: `append_at` that end (atomic on the embedded log, checked
//! first on Kafka), with every record claiming its offset ([`claims`]). Readers,
//! this decider's own restore included, skip an append that did not land whole at its
//! claims, so a stale owner that wakes after its check and appends late writes records
//! nobody folds; it finds its offsets wrong, counts `kurz_decider_fenced_total`, and
//! restores. The commands of a skipped append are decided by the real owner.
//!
//! Position: every event carries the offset of the command it decides
//! (`command-offset`); a decider starts at the later of its stored position and the
//! last decided command plus one, so no time window bounds exactly-once.

pub mod check;
pub mod decide;
pub mod state;

use crate::Error as ApiErrorKind;
use kurz_schemas::personal::OpenError;
use kurz_schemas::{topics, Command, Event, Ts};
use kurz_storage::log::claims;
use kurz_storage::vault::Keyring;
use kurz_storage::{EventLog, NewRecord};
use state::PartitionState;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const GROUP: &str = "kurz-decider";
const BATCH: usize = 256;

#[derive(Clone)]
pub struct Deciders {
    log: Arc<dyn EventLog>,
    keys: Arc<Keyring>,
}

impl Deciders {
    pub fn new(log: Arc<dyn EventLog>, keys: Arc<Keyring>) -> Deciders {
        Deciders { log, keys }
    }

    /// Runs one decider per command partition this process owns (all of them alone;
    /// its share of the `kurz-decider` group on a shared log) until `stop` fires. A
    /// partition whose decider fails is restored from the log and restarted with
    /// backoff; a partition taken away is drained before it is released.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<(), ApiErrorKind> {
        let membership = self.log.join(GROUP, topics::COMMANDS).await?;
        let (log, keys) = (self.log.clone(), self.keys.clone());
        kurz_storage::log::run_owned(membership, stop, DRAIN, move |p, stop| supervise(log.clone(), keys.clone(), p, stop)).await;
        Ok(())
    }
}

/// How long a decider partition that is being stopped may take to finish its batch.
const DRAIN: Duration = Duration::from_secs(30);

async fn supervise(log: Arc<dyn EventLog>, keys: Arc<Keyring>, p: u32, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(50);
    while !stop.is_cancelled() {
        match run_partition(&*log, &keys, p, &stop).await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(event = "decider_failed", partition = p, error = %e, "restoring from the log");
                crate::metrics::get().decider_restarts.with_label_values(&[&p.to_string()]).inc();
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Folds partition `p` of the events topic into a fresh state.
pub async fn restore(log: &dyn EventLog, keys: &Keyring, p: u32) -> Result<PartitionState, ApiErrorKind> {
    Ok(restore_to_end(log, keys, p).await?.state)
}

/// Loads the data keys that opening `payloads` needs.
async fn load_keys<'a>(keys: &Keyring, payloads: impl Iterator<Item = &'a [u8]>, of: fn(&[u8]) -> Vec<String>) -> Result<(), ApiErrorKind> {
    let subjects: Vec<String> = payloads.flat_map(of).collect();
    if !subjects.is_empty() {
        keys.load_all(&subjects).await?;
    }
    Ok(())
}

/// What a restore found besides the state.
struct Restored {
    state: PartitionState,
    /// The offset after the last record read, kept or not: where this decider's next
    /// append claims to start.
    end: u64,
    /// The offset of the last command decided in the kept events.
    decided_through: Option<u64>,
}

/// [`restore`], by the claims rule ([`kurz_storage::log::claims`]): a stale owner's
/// late append and a half-landed append are not folded, exactly as every reader skips
/// them. Keys of users deleted in the kept events are erased if a decider died between
/// its append and the erasure.
async fn restore_to_end(log: &dyn EventLog, keys: &Keyring, p: u32) -> Result<Restored, ApiErrorKind> {
    let mut r = Restored { state: PartitionState::new(p), end: 0, decided_through: None };
    let mut at = 0;
    let lookup = |s: &str| keys.key(s);
    let mut deleted = Vec::new();
    loop {
        let read = claims::read_settled(log, topics::EVENTS, p, at, 4096).await?;
        r.end = r.end.max(read.seen);
        if !read.ignored.is_empty() {
            tracing::warn!(event = "decider_ignored_records", partition = p, ignored = ?read.ignored, "a stale or broken append");
            kurz_storage::metrics::get().claims_ignored.with_label_values(&[topics::EVENTS]).inc_by(read.ignored.len() as u64);
        }
        load_keys(keys, read.records.iter().map(|r| &r.payload[..]), Event::sealed_subjects).await?;
        for rec in &read.records {
            match Event::decode_opened(&rec.payload, &lookup) {
                Ok(ev) => {
                    if let kurz_schemas::EventBody::UserDeleted { user } = &ev.body {
                        deleted.extend(user.subject.clone());
                    }
                    r.state.evolve(&ev);
                }
                Err(e) => {
                    // Fail closed: a state without this event (a link, a decision) would
                    // grant what it took. Retried with backoff; an operator upgrades the
                    // build or repairs the record.
                    crate::metrics::get().decider_blocked.with_label_values(&[&p.to_string()]).set(1);
                    return Err(ApiErrorKind::Unreadable { partition: p, offset: rec.offset, reason: e.to_string() });
                }
            }
            if let Some(o) = command_offset(rec) {
                r.decided_through = Some(r.decided_through.map_or(o, |d| d.max(o)));
            }
        }
        if read.next == at && read.records.is_empty() {
            break;
        }
        at = read.next;
    }
    for s in deleted {
        if matches!(keys.key(&s), Some(kurz_schemas::personal::SubjectKey::Live(_))) {
            keys.erase(&s, Ts::now().0).await?;
        }
    }
    crate::metrics::get().decider_blocked.with_label_values(&[&p.to_string()]).set(0);
    Ok(r)
}

/// The header naming the commands-topic offset of the command an event decides.
pub const COMMAND_OFFSET: &str = kurz_schemas::headers::COMMAND_OFFSET;

fn command_offset(rec: &kurz_storage::Record) -> Option<u64> {
    std::str::from_utf8(rec.header(COMMAND_OFFSET)?).ok()?.parse().ok()
}

async fn run_partition(log: &dyn EventLog, keys: &Keyring, p: u32, stop: &CancellationToken) -> Result<(), ApiErrorKind> {
    let Restored { mut state, end: mut events_end, decided_through } = restore_to_end(log, keys, p).await?;
    let lookup = |s: &str| keys.key(s);
    // The stored position, or past the last command the events decided if that is
    // later (a decider that died between its append and its commit): a command is
    // never decided twice, however far back the stored position is.
    let committed = log.committed(GROUP, topics::COMMANDS, p).await?.unwrap_or(0);
    let mut pos = committed.max(decided_through.map_or(0, |o| o + 1));
    let m = crate::metrics::get();
    let plabel = p.to_string();
    tracing::info!(event = "decider_started", partition = p, position = pos);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            r = log.wait_for(topics::COMMANDS, p, pos, Duration::from_secs(1)) => { r?; }
        }
        let cmds = log.read(topics::COMMANDS, p, pos, BATCH).await?;
        let Some(last) = cmds.last() else { continue };
        let next = last.offset + 1;
        let now = Ts::now();
        let mut out = Vec::new();
        // Data keys that commands brought and no user took (erased after the append).
        let mut orphans = Vec::new();
        load_keys(keys, cmds.iter().map(|r| &r.payload[..]), Command::sealed_subjects).await?;
        for rec in &cmds {
            let cmd = match Command::decode_opened(&rec.payload, &lookup) {
                Ok(c) => c,
                Err(e) => {
                    // Nothing can decide a command this build cannot read, or whose
                    // personal data was erased before it was decided; it is answered
                    // so its caller does not wait, and logged.
                    let (status, message, outcome) = match e {
                        OpenError::Erased(_) => (410, "the command's personal data was erased before it was decided", "erased"),
                        _ => (400, "command could not be decoded", "undecodable"),
                    };
                    tracing::error!(event = "undecodable_command", partition = p, offset = rec.offset, error = %e);
                    m.decider_commands.with_label_values(&[&plabel, outcome]).inc();
                    if let Some(id) = rec.header(kurz_schemas::headers::COMMAND_ID).and_then(|v| std::str::from_utf8(v).ok()) {
                        if state.is_decided(&kurz_schemas::CommandId(id.to_string())) {
                            continue;
                        }
                        let ev = Event {
                            id: state.ids.next(now.0),
                            command_id: kurz_schemas::CommandId(id.to_string()),
                            at: now,
                            body: kurz_schemas::EventBody::Decided {
                                status,
                                answer: kurz_schemas::event::Answer::Rejected { message: message.into() },
                                fingerprint: None,
                            },
                        };
                        state.evolve(&ev);
                        out.push((rec.key.clone(), rec.offset, None, ev));
                    }
                    continue;
                }
            };
            let brought: Vec<String> = cmd.subjects().into_iter().map(str::to_string).collect();
            if state.is_decided(&cmd.id) {
                m.decider_commands.with_label_values(&[&plabel, "duplicate"]).inc();
                orphans.extend(decide::orphan_subjects(&state, &brought, &[]));
                continue;
            }
            // One span per traced command, child of the request that issued it; its
            // context travels on with the events.
            let span = tracing::info_span!("decide", partition = p, command_id = cmd.id.as_str());
            kurz_telemetry::continue_trace(&span, cmd.traceparent.as_deref());
            let (evs, tp) = span.in_scope(|| (decide::handle(&mut state, &cmd, now), kurz_telemetry::traceparent()));
            m.decider_commands.with_label_values(&[&plabel, "decided"]).inc();
            orphans.extend(decide::orphan_subjects(&state, &brought, &evs));
            for ev in evs {
                out.push((rec.key.clone(), rec.offset, tp.clone().or_else(|| cmd.traceparent.clone()), ev));
            }
        }
        if !out.is_empty() {
            // Personal data is sealed under its user's key; the keys of users deleted
            // in this batch are destroyed once the append is known to count (a restore
            // erases them if this process dies first), so a stale owner whose append
            // is ignored destroys nothing.
            let subjects: Vec<String> = out.iter().flat_map(|(_, _, _, ev)| ev.subjects()).map(str::to_string).collect();
            keys.load_all(&subjects).await?;
            let erase: Vec<String> = out
                .iter()
                .filter_map(|(_, _, _, ev)| match &ev.body {
                    kurz_schemas::EventBody::UserDeleted { user } => user.subject.clone(),
                    _ => None,
                })
                .collect();
            let mut records = Vec::with_capacity(out.len());
            for (key, offset, tp, ev) in out {
                let payload = ev.encode_sealed(&lookup, &mut Keyring::nonce)?;
                let mut r = NewRecord::new(key, payload)
                    .header(kurz_schemas::headers::COMMAND_ID, ev.command_id.as_str())
                    .header(COMMAND_OFFSET, offset.to_string())
                    .header(kurz_schemas::headers::SCHEMA_VERSION, ev.version().to_string());
                if let Some(tp) = tp {
                    r = r.header(kurz_schemas::headers::TRACEPARENT, tp);
                }
                records.push(r);
            }
            // The append claims the offsets after this decider's last one (readers
            // skip it unless it lands exactly there, whole), and is conditional where
            // the log can make it so.
            let fenced = |found| {
                crate::metrics::get().decider_fenced.with_label_values(&[&p.to_string()]).inc();
                ApiErrorKind::Fenced { partition: p, expected: events_end, found }
            };
            let n = records.len() as u64;
            let offsets = match log.append_at(topics::EVENTS, p, events_end, claims::claim(events_end, records)).await {
                Err(kurz_storage::StorageError::Moved { found, .. }) => return Err(fenced(found)),
                r => r?,
            };
            if offsets.len() as u64 != n || offsets.iter().enumerate().any(|(i, &o)| o != events_end + i as u64) {
                return Err(fenced(offsets.first().copied().unwrap_or(events_end)));
            }
            events_end += n;
            for s in &erase {
                keys.erase(s, now.0).await?;
            }
        }
        for s in &orphans {
            keys.erase(s, now.0).await?;
        }
        log.commit(GROUP, topics::COMMANDS, p, next).await?;
        pos = next;
    }
}

#[cfg(test)]
mod tests;
