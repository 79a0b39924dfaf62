//! One writer per log partition without transactions: claims with leases, fenced
//! positions and timestamped rows.
//!
//! - [`ScyllaStore::claim_partition`] moves `fences.epoch` one up with a compare-and-
//!   set (`INSERT … IF NOT EXISTS` for the first claim, `UPDATE … IF epoch = :seen AND
//!   ceiling = :seen` after): each epoch is handed to one writer. The claim also sets
//!   the epoch's lease: a **floor** above the previous holder's ceiling (and not below
//!   the clock) and a **ceiling** [`LEASE_MICROS`] above it.
//! - Every row a batch writes carries a timestamp from its writer's lease ([`Stamps`]):
//!   one per statement, increasing, at or above the floor and below the ceiling. The
//!   holder renews its ceiling (`UPDATE … IF epoch = :mine AND ceiling = :seen`)
//!   before it runs low; a renewal after a later claim fails, so a stale holder's
//!   timestamps stay below the ceiling the next claim started above. Scylla keeps the
//!   write with the highest timestamp of each row, so **a stale writer's late rows lose
//!   to the new owner's**, whatever order they arrive in. Timestamps stay within a lease
//!   of the clock (the floor is only ahead of it after a claim taken before the previous
//!   lease ran out), so writes of other partitions keep their clock order.
//! - A batch reads the partition's claim first and stops if it is not its own (a
//!   stale writer learns it cheaply, before writing rows). The first batch of a claim
//!   then **takes** each projection's position row (`UPDATE … SET epoch = :mine IF
//!   next_offset = :seen AND epoch <= :mine`) before it writes anything: from then on a
//!   stale writer cannot move that position, and the new owner starts where the last
//!   move left it.
//! - Each position moves with `UPDATE … IF next_offset = :from AND epoch <= :mine`: it
//!   never goes backwards and never moves twice from one offset.
//!
//! Writers that never claimed (epoch 0: tools, parked re-drives) write with the
//! driver's clock and are not fenced.

use super::apply::log_partition;
use super::{engine, signed, unsigned, ScyllaStore};
use crate::store::{ApplyError, Position};
use crate::StorageError;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};
use std::sync::atomic::{AtomicI64, Ordering};

/// Compare-and-set rounds a claim tries before giving up (each lost round means
/// another writer claimed in between).
const CLAIM_ROUNDS: usize = 100;

/// How far a lease reaches above its holder's timestamps when taken or renewed, in
/// microseconds. A claim taken while the previous lease runs writes at most this far
/// ahead of the clock; a holder renews when less than half of it is left.
pub(super) const LEASE_MICROS: i64 = 2_000_000;

/// Rounds a batch tries to take a position row (each lost round means a writer moved
/// it in between).
const TAKE_ROUNDS: usize = 3;

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// A claim this process holds: the epoch, the next timestamp it may give and the
/// ceiling it holds in `fences`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Lease {
    epoch: u64,
    next: i64,
    ceiling: i64,
}

/// The write timestamps of one batch: each statement takes the next, below the
/// lease's ceiling. Unfenced batches take none (the driver's clock stamps them).
#[derive(Debug)]
pub(crate) struct Stamps {
    next: AtomicI64,
    ceiling: i64,
    fenced: bool,
}

impl Stamps {
    pub(super) fn unfenced() -> Stamps {
        Stamps { next: AtomicI64::new(0), ceiling: i64::MAX, fenced: false }
    }

    fn within(lease: Lease) -> Stamps {
        Stamps { next: AtomicI64::new(lease.next), ceiling: lease.ceiling, fenced: true }
    }

    /// The next statement's timestamp, or `None` for the driver's.
    pub(super) fn take(&self) -> Result<Option<i64>, StorageError> {
        if !self.fenced {
            return Ok(None);
        }
        let t = self.next.fetch_add(1, Ordering::Relaxed);
        if t >= self.ceiling {
            // Half a lease of statements in one batch: a bug, not a load.
            return Err(StorageError::Engine(format!("a batch ran out of its lease (timestamp {t}, ceiling {})", self.ceiling)));
        }
        Ok(Some(t))
    }

    fn next(&self) -> i64 {
        self.next.load(Ordering::Relaxed)
    }
}

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

    /// The latest claim of `topic`/`partition` and its ceiling (`None`: never claimed
    /// under leases).
    async fn fence_row(&self, topic: &str, partition: u32) -> Result<Option<(u64, i64)>, StorageError> {
        let row: Option<(Option<i64>, Option<i64>)> = self.one(&self.st.fence, (topic, log_partition(partition)?)).await?;
        match row {
            Some((Some(e), c)) => Ok(Some((unsigned(e, "epoch")?, c.unwrap_or(0)))),
            _ => Ok(None),
        }
    }

    /// The epoch of a claim taken before leases existed (0: none).
    async fn legacy_claim(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let row: Option<(Option<i64>,)> = self.one(&self.st.legacy_claim, (topic, log_partition(partition)?)).await?;
        row.and_then(|(e,)| e).map(|e| unsigned(e, "epoch")).unwrap_or(Ok(0))
    }

    pub(super) async fn claim_partition(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let p = log_partition(partition)?;
        for _ in 0..CLAIM_ROUNDS {
            let seen = self.fence_row(topic, partition).await?;
            // Above every timestamp the previous holder may use.
            let floor = now_micros().max(seen.map_or(0, |(_, c)| c) + 1);
            let ceiling = floor + LEASE_MICROS;
            let (applied, epoch) = match seen {
                None => {
                    let epoch = self.legacy_claim(topic, partition).await? + 1;
                    (self.lwt(&self.st.fence_first, (topic, p, signed(epoch, "epoch")?, ceiling)).await?, epoch)
                }
                Some((e, c)) => {
                    let values = (signed(e + 1, "epoch")?, ceiling, topic, p, signed(e, "epoch")?, c);
                    (self.lwt(&self.st.fence_next, values).await?, e + 1)
                }
            };
            if applied {
                self.leases().insert((topic.to_string(), partition), Lease { epoch, next: floor, ceiling });
                return Ok(epoch);
            }
        }
        Err(StorageError::Engine(format!("{topic}/{partition}: {CLAIM_ROUNDS} claims in a row lost to other writers")))
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, u32), Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses a batch whose writer no longer holds its partitions' latest claim, and
    /// gives it the timestamps to write under (renewing the lease if it runs low).
    pub(super) async fn check_claims(&self, positions: &[Position], epoch: u64) -> Result<Stamps, ApplyError> {
        let mut seen: Vec<(&str, u32)> = Vec::new();
        let mut stamps = Stamps::unfenced();
        for p in positions {
            if seen.contains(&(p.topic.as_str(), p.partition)) {
                continue;
            }
            seen.push((p.topic.as_str(), p.partition));
            let row = self.fence_row(&p.topic, p.partition).await?;
            let claimed = row.map_or(0, |(e, _)| e);
            if claimed != epoch {
                return Err(ApplyError::Fenced { topic: p.topic.clone(), partition: p.partition, claimed, epoch });
            }
            if let (Some((_, ceiling)), false) = (row, stamps.fenced) {
                stamps = Stamps::within(self.lease(&p.topic, p.partition, epoch, ceiling).await?);
            }
        }
        Ok(stamps)
    }

    /// The lease a batch of `epoch` writes under; `ceiling`: the one stored now.
    async fn lease(&self, topic: &str, partition: u32, epoch: u64, ceiling: i64) -> Result<Lease, ApplyError> {
        let now = now_micros();
        let held = self.leases().get(&(topic.to_string(), partition)).copied().filter(|l| l.epoch == epoch);
        let mut lease = match held {
            Some(l) => Lease { epoch, next: now.max(l.next), ceiling: l.ceiling.min(ceiling) },
            // A claim this process did not take here (or forgot): above anything the
            // epoch may have written, which is all below the stored ceiling.
            None => Lease { epoch, next: now.max(ceiling + 1), ceiling },
        };
        if lease.ceiling - lease.next < LEASE_MICROS / 2 {
            let renewed = lease.next + LEASE_MICROS;
            let e = signed(epoch, "epoch")?;
            let values = (e, renewed, topic, log_partition(partition)?, e, ceiling);
            if !self.lwt(&self.st.fence_next, values).await? {
                let claimed = self.fence_row(topic, partition).await?.map_or(0, |(e, _)| e);
                self.leases().remove(&(topic.to_string(), partition));
                return Err(if claimed != epoch {
                    ApplyError::Fenced { topic: topic.to_string(), partition, claimed, epoch }
                } else {
                    StorageError::Engine(format!("{topic}/{partition}: the lease of epoch {epoch} moved under its holder")).into()
                });
            }
            lease.ceiling = renewed;
        }
        self.leases().insert((topic.to_string(), partition), lease);
        Ok(lease)
    }

    /// Keeps the timestamps a batch used from being given again, whether it landed or not.
    pub(super) fn spent(&self, positions: &[Position], epoch: u64, stamps: &Stamps) {
        if !stamps.fenced {
            return;
        }
        if let Some(p) = positions.first() {
            if let Some(l) = self.leases().get_mut(&(p.topic.clone(), p.partition)) {
                if l.epoch == epoch {
                    l.next = l.next.max(stamps.next());
                }
            }
        }
    }

    /// A projection's position: the fenced one, or the one written before claims.
    pub(super) async fn stored_position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError> {
        Ok(match self.fenced_position(projection, topic, partition).await? {
            Some((offset, _)) => offset,
            None => self.legacy_position(projection, topic, partition).await?,
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

    /// Makes `p`'s position row carry `epoch` (taking it from an earlier claim, or
    /// creating it from the pre-claims row) and checks that it stands at `p.from`.
    /// Nothing of the batch is written before this: once taken, no stale writer can
    /// move the position, and the new owner starts where the last move left it.
    pub(super) async fn take_position(&self, p: &Position, epoch: u64) -> Result<(), ApplyError> {
        let mine = signed(epoch, "epoch")?;
        let key = (p.projection.as_str(), p.topic.as_str(), log_partition(p.partition)?);
        for _ in 0..TAKE_ROUNDS {
            match self.fenced_position(&p.projection, &p.topic, p.partition).await? {
                None => {
                    // The first fenced write of a partition: whoever writes it first wins.
                    let legacy = signed(self.legacy_position(&p.projection, &p.topic, p.partition).await?, "position")?;
                    self.lwt(&self.st.first_position, (key.0, key.1, key.2, legacy, mine)).await?;
                }
                Some((_, by)) if by > epoch => {
                    return Err(ApplyError::Fenced { topic: p.topic.clone(), partition: p.partition, claimed: by, epoch })
                }
                Some((stored, by)) if by < epoch => {
                    let at = signed(stored, "offset")?;
                    self.lwt(&self.st.move_position, (at, mine, key.0, key.1, key.2, at, mine)).await?;
                }
                Some((stored, _)) => {
                    p.check(stored)?;
                    return Ok(());
                }
            }
        }
        Err(StorageError::Engine(format!("{}/{}: position of {} kept moving while taken", p.topic, p.partition, p.projection)).into())
    }

    /// Moves one projection's position `from` → `to` under `epoch`, or says why not.
    pub(super) async fn move_position(&self, p: &Position, epoch: u64) -> Result<(), ApplyError> {
        let (to, from, mine) = (signed(p.to, "offset")?, signed(p.from, "offset")?, signed(epoch, "epoch")?);
        let key = (p.projection.as_str(), p.topic.as_str(), log_partition(p.partition)?);
        if self.lwt(&self.st.move_position, (to, mine, key.0, key.1, key.2, from, mine)).await? {
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
