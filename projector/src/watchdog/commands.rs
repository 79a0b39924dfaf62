//! Commands without an outcome: a command appended to the commands topic is answered
//! once its outcome is stored (decider, then projector). One that has none `deadline`
//! after it was appended is re-driven: appended again, same id, to the same partition.
//! The decider skips a command id it has decided, so a re-drive never decides twice; it
//! only helps a command that was never decided. One whose events are parked is
//! re-driven by the parked-record re-drive instead.
//!
//! The scan keeps its place per partition in the log's `kurz-watchdog` group, committed
//! no further than the oldest command still pending, so a restarted watchdog finds the
//! pending ones again. Records older than the outcome retention are passed over: their
//! outcomes are gone whether or not they were decided.

use crate::{metrics, Error};
use kurz_schemas::{topics, Ts};
use kurz_storage::{EventLog, NewRecord, ReadStore, Record};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub const GROUP: &str = "kurz-watchdog";
/// Header marking a re-driven command (the scan does not track it a second time).
pub const REDRIVE_HEADER: &str = kurz_schemas::headers::REDRIVE;
/// Re-drives of one command before it is only reported.
const MAX_REDRIVES: u32 = 3;
/// Outcomes are kept 24 h; commands older than this are not checked.
const RETENTION_MS: i64 = 23 * 3600 * 1000;

struct Pending {
    id: String,
    record: Record,
    redrives: u32,
    next_check: Ts,
}

#[derive(Default)]
pub struct Commands {
    cursor: HashMap<u32, u64>,
    committed: HashMap<u32, u64>,
    pending: BTreeMap<(u32, u64), Pending>,
}

/// What one pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Commands re-appended this pass.
    pub redriven: usize,
    /// Commands past their deadline still without an outcome.
    pub without_outcome: usize,
}

impl Commands {
    pub async fn check(&mut self, log: &dyn EventLog, store: &dyn ReadStore, deadline: Duration, now: Ts) -> Result<Pass, Error> {
        let due_before = now.0 - deadline.as_millis() as i64;
        for p in 0..log.partitions(topics::COMMANDS).await? {
            let mut cursor = match self.cursor.get(&p) {
                Some(c) => *c,
                None => log.committed(GROUP, topics::COMMANDS, p).await?.unwrap_or(0),
            };
            'scan: loop {
                let recs = log.read(topics::COMMANDS, p, cursor, 512).await?;
                if recs.is_empty() {
                    break;
                }
                for r in recs {
                    if r.timestamp.0 > due_before {
                        break 'scan;
                    }
                    cursor = r.offset + 1;
                    if r.timestamp.0 < now.0 - RETENTION_MS || r.header(REDRIVE_HEADER).is_some() {
                        continue;
                    }
                    let Some(id) =
                        r.header(kurz_schemas::headers::COMMAND_ID).and_then(|v| std::str::from_utf8(v).ok()).map(str::to_string)
                    else {
                        continue;
                    };
                    if store.outcome(&id).await?.is_none() {
                        self.pending.insert((p, r.offset), Pending { id, record: r, redrives: 0, next_check: now });
                    }
                }
            }
            self.cursor.insert(p, cursor);
        }
        let mut pass = Pass::default();
        let m = metrics::get();
        let mut answered = Vec::new();
        for (&(p, offset), c) in self.pending.iter_mut() {
            if c.next_check.0 > now.0 {
                continue;
            }
            if store.outcome(&c.id).await?.is_some() {
                answered.push((p, offset));
                continue;
            }
            if c.redrives >= MAX_REDRIVES {
                if c.redrives == MAX_REDRIVES {
                    tracing::error!(event = "command_stuck", command_id = %c.id, partition = p, offset, "no outcome after {MAX_REDRIVES} re-drives");
                    c.redrives += 1;
                }
                continue;
            }
            c.redrives += 1;
            let mut again = NewRecord::new(c.record.key.clone(), c.record.payload.clone());
            again.headers = c.record.headers.clone();
            let again = again.header(REDRIVE_HEADER, c.redrives.to_string());
            log.append(topics::COMMANDS, p, vec![again]).await?;
            tracing::warn!(event = "command_redriven", command_id = %c.id, partition = p, offset, redrive = c.redrives);
            m.watchdog_redriven.with_label_values(&["command"]).inc();
            c.next_check = Ts(now.0 + (deadline.as_millis() as i64) * (1 << c.redrives));
            pass.redriven += 1;
        }
        for k in answered {
            self.pending.remove(&k);
        }
        for (&p, &cursor) in &self.cursor {
            let keep = self.pending.range((p, 0)..(p + 1, 0)).next().map(|((_, o), _)| *o).unwrap_or(cursor);
            if self.committed.get(&p) != Some(&keep) {
                log.commit(GROUP, topics::COMMANDS, p, keep).await?;
                self.committed.insert(p, keep);
            }
        }
        pass.without_outcome = self.pending.len();
        m.commands_without_outcome.set(pass.without_outcome as i64);
        Ok(pass)
    }
}
