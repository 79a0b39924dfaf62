//! One writer per log partition without transactions: claims and fenced positions,
//! both moved only by lightweight transactions (Paxos on one partition).
//!
//! - [`ScyllaStore::claim_partition`] moves `claims.epoch` one up with a compare-and-
//!   set (`INSERT … IF NOT EXISTS` for the first claim, `UPDATE … IF epoch = :seen`
//!   after): each epoch is handed to one writer.
//! - A batch reads the partition's claim first and stops if it is not its own (a
//!   stale writer learns it cheaply, before writing rows).
//! - Each projection's position moves with `UPDATE … IF next_offset = :from AND
//!   epoch <= :mine`: a position never goes backwards, never moves twice from one
//!   offset, and once a writer with a later claim has moved it, a stale writer cannot.
//!   A stale writer can still land a batch the new owner has not applied yet; that
//!   batch is the same records from the same offset, so the new owner's position write
//!   then fails and it reloads.
//!
//! The rows of a batch are written before its positions and are not fenced by these:
//! a stale writer's row writes that land after the new owner's are what
//! `infra/scylla-unproven.md` lists under "Fencing".

use super::apply::log_partition;
use super::{engine, signed, unsigned, ScyllaStore};
use crate::store::{ApplyError, Position};
use crate::StorageError;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

/// Compare-and-set rounds a claim tries before giving up (each lost round means
/// another writer claimed in between).
const CLAIM_ROUNDS: usize = 100;

impl ScyllaStore {
    /// Runs a lightweight transaction; whether it applied.
    async fn lwt(&self, st: &PreparedStatement, values: impl SerializeRow) -> Result<bool, StorageError> {
        let rows = self.session.execute_unpaged(st, values).await.map_err(engine)?.into_rows_result().map_err(engine)?;
        // `[applied]` comes first; Scylla adds the row's current values after it.
        match rows.maybe_first_row::<Row>().map_err(engine)?.and_then(|r| r.columns.into_iter().next().flatten()) {
            Some(CqlValue::Boolean(applied)) => Ok(applied),
            other => Err(StorageError::Engine(format!("a lightweight transaction answered {other:?}, not [applied]"))),
        }
    }

    /// The latest claim of `topic`/`partition` (0: never claimed).
    pub(super) async fn claimed(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let row: Option<(Option<i64>,)> = self.one(&self.st.claim, (topic, log_partition(partition)?)).await?;
        row.and_then(|(e,)| e).map(|e| unsigned(e, "epoch")).unwrap_or(Ok(0))
    }

    pub(super) async fn claim_partition(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let p = log_partition(partition)?;
        for _ in 0..CLAIM_ROUNDS {
            let seen = self.claimed(topic, partition).await?;
            let next = seen + 1;
            let applied = if seen == 0 {
                self.lwt(&self.st.claim_first, (topic, p, signed(next, "epoch")?)).await?
            } else {
                self.lwt(&self.st.claim_next, (signed(next, "epoch")?, topic, p, signed(seen, "epoch")?)).await?
            };
            if applied {
                return Ok(next);
            }
        }
        Err(StorageError::Engine(format!("{topic}/{partition}: {CLAIM_ROUNDS} claims in a row lost to other writers")))
    }

    /// Refuses a batch whose writer no longer holds its partitions' latest claim.
    pub(super) async fn check_claims(&self, positions: &[Position], epoch: u64) -> Result<(), ApplyError> {
        let mut seen: Vec<(&str, u32)> = Vec::new();
        for p in positions {
            if seen.contains(&(p.topic.as_str(), p.partition)) {
                continue;
            }
            seen.push((p.topic.as_str(), p.partition));
            let claimed = self.claimed(&p.topic, p.partition).await?;
            if claimed != epoch {
                return Err(ApplyError::Fenced { topic: p.topic.clone(), partition: p.partition, claimed, epoch });
            }
        }
        Ok(())
    }

    /// A projection's position: the fenced one, or the one written before claims.
    pub(super) async fn stored_position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError> {
        Ok(self.position_row(projection, topic, partition).await?.0)
    }

    /// A projection's position, and whether it has a fenced row yet.
    pub(super) async fn position_row(&self, projection: &str, topic: &str, partition: u32) -> Result<(u64, bool), StorageError> {
        Ok(match self.fenced_position(projection, topic, partition).await? {
            Some((offset, _)) => (offset, true),
            None => (self.legacy_position(projection, topic, partition).await?, false),
        })
    }

    async fn fenced_position(&self, projection: &str, topic: &str, partition: u32) -> Result<Option<(u64, u64)>, StorageError> {
        let row: Option<(Option<i64>, Option<i64>)> =
            self.one(&self.st.fenced_position, (projection, topic, log_partition(partition)?)).await?;
        match row {
            Some((Some(offset), epoch)) => Ok(Some((unsigned(offset, "position")?, unsigned(epoch.unwrap_or(0), "epoch")?))),
            _ => Ok(None),
        }
    }

    async fn legacy_position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let row: Option<(i64,)> = self.one(&self.st.position, (projection, topic, log_partition(partition)?)).await?;
        row.map(|(n,)| unsigned(n, "position")).unwrap_or(Ok(0))
    }

    /// Moves one projection's position `from` → `to` under `epoch`, or says why not.
    /// `has_row`: whether the batch's check found a fenced row (without one, `from` was
    /// checked against the row written before claims).
    pub(super) async fn move_position(&self, p: &Position, epoch: u64, has_row: bool) -> Result<(), ApplyError> {
        let (to, from, mine) = (signed(p.to, "offset")?, signed(p.from, "offset")?, signed(epoch, "epoch")?);
        let part = log_partition(p.partition)?;
        let key = (p.projection.as_str(), p.topic.as_str(), part);
        let applied = if has_row {
            self.lwt(&self.st.move_position, (to, mine, key.0, key.1, key.2, from, mine)).await?
        } else {
            // The first fenced write of a partition: whoever writes it first wins.
            self.lwt(&self.st.first_position, (key.0, key.1, key.2, to, mine)).await?
        };
        if applied {
            return Ok(());
        }
        // Lost: to a later claim, or to a writer that moved it first.
        let (stored, by) = self.fenced_position(&p.projection, &p.topic, p.partition).await?.unwrap_or((0, 0));
        if by > epoch {
            return Err(ApplyError::Fenced { topic: p.topic.clone(), partition: p.partition, claimed: by, epoch });
        }
        p.check(stored)?;
        // A read that has not seen the round that beat this one yet: reload and retry.
        Err(ApplyError::PositionMismatch {
            projection: p.projection.clone(),
            topic: p.topic.clone(),
            partition: p.partition,
            stored,
            expected: p.from,
        })
    }
}
