//! The read-store port: the read models the projector writes and the edge serves.
//!
//! Writes arrive as a [`StoreBatch`]: absolute mutations plus the log positions they
//! bring each projection to, applied in one atomic step. A batch whose starting
//! positions do not match the stored ones is refused ([`ApplyError::PositionMismatch`]),
//! so a replayed or redelivered batch can never be applied twice.

pub mod embedded;
pub mod generations;
#[cfg(feature = "scylla")]
pub mod scylla;

use crate::{metrics, StorageError};
use async_trait::async_trait;
use kurz_schemas::event::Answer;
use kurz_schemas::{Domain, HistoryEvent, Id, Link, Ts, User};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionedLink {
    pub link: Link,
    /// Offset of the event that wrote this state; grows with every change of the link
    /// (all of a link's events share one partition).
    pub version: u64,
}

/// What a command's caller is answered, kept for idempotent retries and for the
/// request that is waiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub status: u16,
    pub answer: Answer,
    pub at: Ts,
    /// The request fingerprint the command was decided under (`Command::fingerprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    PutUser(User),
    DeleteUser(User),
    PutLink(VersionedLink),
    DeleteLink(VersionedLink),
    PutHistory(HistoryEvent),
    /// Registers a domain or replaces its entry ([`kurz_schemas::domain`]).
    PutDomain(Domain),
    DeleteDomain(Domain),
    /// Adds to a link's click count; exactly-once because it commits with its position.
    AddClicks {
        link_id: Id,
        n: u64,
    },
    PutOutcome {
        command_id: String,
        outcome: StoredOutcome,
    },
    /// Adds `n` to one named click aggregate of a link. Names are opaque here; they
    /// sort as bytes, and [`ReadStore::click_counts`] reads a name range (the clicks
    /// projection's names, `kurz_schemas::analytics`, make a time range a name range).
    /// Absolute values in every backend, kept exactly-once by the batch's positions; no
    /// counter columns.
    AddCount {
        link_id: Id,
        name: String,
        n: u64,
    },
    /// Records that `visitor` (a salted hash) clicked `link_id` on UTC day `day` (days
    /// since the Unix epoch). A set: recording twice changes nothing.
    AddVisitor {
        link_id: Id,
        day: i64,
        visitor: String,
    },
    /// Holds a record out of its partition's stream (written or updated in place): see
    /// [`ParkedRecord`].
    Park(ParkedRecord),
    /// Records the projector's delivery count for `topic`/`partition` (see [`Attempt`]).
    Attempt {
        topic: String,
        partition: u32,
        attempt: Attempt,
    },
}

/// A record the projector could not apply (a poison record), or one waiting behind a
/// poison record of its key. Its partition's stream moves on without it; the watchdog
/// re-drives a key's parked records in offset order once the cause clears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedRecord {
    pub topic: String,
    pub partition: u32,
    pub key: String,
    pub offset: u64,
    /// The projections that have not applied it.
    pub projections: Vec<String>,
    /// Failed deliveries so far; 0 for a record only waiting behind its key.
    pub attempts: u32,
    /// Why its last delivery failed ("waiting behind offset N" for a waiting record).
    pub reason: String,
    pub parked_at: Ts,
    pub last_attempt_at: Ts,
}

impl ParkedRecord {
    pub fn id(&self) -> ParkedId {
        ParkedId { topic: self.topic.clone(), partition: self.partition, key: self.key.clone(), offset: self.offset }
    }
}

/// Where a parked record sits in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ParkedId {
    pub topic: String,
    pub partition: u32,
    pub key: String,
    pub offset: u64,
}

impl std::fmt::Display for ParkedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// The projector's durable delivery count for one partition: the batch starting at
/// `offset` is on its `attempt`-th delivery. Written in the same step that moves the
/// positions to `offset` (attempt 1) and again, counted up, whenever a process takes
/// the partition over while the positions still stand there: a process that died on
/// the batch counted as one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub offset: u64,
    pub attempt: u32,
}

/// A projection's progress over one log partition: the batch moves it `from` → `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub projection: String,
    pub topic: String,
    pub partition: u32,
    pub from: u64,
    pub to: u64,
}

impl Position {
    /// The guard every backend applies: a batch must start where the projection's
    /// stored position is, or nothing of it is written.
    pub fn check(&self, stored: u64) -> Result<(), ApplyError> {
        if stored == self.from {
            return Ok(());
        }
        Err(ApplyError::PositionMismatch {
            projection: self.projection.clone(),
            topic: self.topic.clone(),
            partition: self.partition,
            stored,
            expected: self.from,
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreBatch {
    pub positions: Vec<Position>,
    pub mutations: Vec<Mutation>,
    /// Parked records this batch delivers (or drops): each must still be parked, or
    /// nothing of the batch is written ([`ApplyError::NotParked`]); they are removed
    /// with it. Two re-drives of one record therefore apply it once. A record released
    /// and parked again in the same batch stays parked with its new body: that is how
    /// a delivery attempt is counted without racing another re-drive.
    pub release: Vec<ParkedId>,
    /// The claim ([`ReadStore::claim`]) of its positions' partition this batch is
    /// written under; 0 for a writer that never claimed. A batch with positions whose
    /// epoch is not the partition's latest claim is refused ([`ApplyError::Fenced`]).
    pub epoch: u64,
}

/// Bits of an epoch that count claims within one store generation; the bits above
/// name the generation that issued it ([`generations::Generations`]).
pub const EPOCH_BITS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("position mismatch for {projection} {topic}/{partition}: stored {stored}, batch starts at {expected}")]
    PositionMismatch { projection: String, topic: String, partition: u32, stored: u64, expected: u64 },
    /// Another writer claimed the partition after this batch's writer did: the batch's
    /// writer is stale (it was paused, cut off, or a replay was overtaken by the live
    /// projectors) and must claim again before it writes.
    #[error("{topic}/{partition} was claimed by epoch {claimed}; this batch was written under epoch {epoch}")]
    Fenced { topic: String, partition: u32, claimed: u64, epoch: u64 },
    #[error("{0} is not parked (already re-driven or skipped)")]
    NotParked(ParkedId),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Whether a link is listed in `robots.txt` ([`ReadStore::crawlable_codes`]): active
/// and marked crawlable. Every backend indexes exactly these.
pub fn is_listed_crawlable(l: &Link) -> bool {
    l.is_active && l.options.is_crawlable()
}

#[derive(Debug, Clone, Default)]
pub struct LinkQuery {
    pub user_id: Option<Id>,
    pub is_active: Option<bool>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub url_id: Option<Id>,
    pub user_id: Option<Id>,
    pub event_type: Option<String>,
    pub limit: usize,
}

#[async_trait]
pub trait ReadStore: Send + Sync + 'static {
    /// The next offset `projection` will apply from `topic`/`partition` (0 if none).
    async fn position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError>;
    /// Claims `topic`/`partition` for the caller's writes: returns an epoch above every
    /// earlier claim's. From then on a batch for that partition carrying an older epoch
    /// is refused ([`ApplyError::Fenced`]): a writer that was paused or cut off past
    /// its lease and wakes cannot land a decision made before another took over.
    async fn claim(&self, topic: &str, partition: u32) -> Result<u64, StorageError>;
    async fn apply(&self, batch: StoreBatch) -> Result<(), ApplyError>;

    async fn user(&self, id: Id) -> Result<Option<User>, StorageError>;
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StorageError>;
    /// Users ordered by id; `page` starts at 1.
    async fn users(&self, page: usize, per_page: usize) -> Result<Vec<User>, StorageError>;

    async fn link(&self, id: Id) -> Result<Option<VersionedLink>, StorageError>;
    async fn link_by_code(&self, code: &str) -> Result<Option<VersionedLink>, StorageError>;
    /// The lowest-id active link of `owner` (None: anonymous) that targets `url`.
    async fn active_link_for(&self, owner: Option<Id>, url: &str) -> Result<Option<Link>, StorageError>;
    async fn links(&self, q: &LinkQuery) -> Result<Vec<Link>, StorageError>;
    /// The lookup keys (`code`, or `domain/code`) of active links marked crawlable, in key order, at most `limit`
    /// (for `robots.txt`).
    async fn crawlable_codes(&self, limit: usize) -> Result<Vec<String>, StorageError>;
    /// The domain registry: at most `MAX_DOMAINS` hosts and the default entry.
    async fn domains(&self) -> Result<Vec<Domain>, StorageError>;
    /// One registry entry, by host (or `default`).
    async fn domain(&self, host: &str) -> Result<Option<Domain>, StorageError>;

    async fn history_event(&self, id: Id) -> Result<Option<HistoryEvent>, StorageError>;
    async fn history(&self, q: &EventQuery) -> Result<Vec<HistoryEvent>, StorageError>;
    async fn click_count(&self, link_id: Id) -> Result<u64, StorageError>;
    /// A link's click aggregates whose names fall in `[from, to)`, in name order.
    async fn click_counts(&self, link_id: Id, from: &str, to: &str) -> Result<Vec<(String, u64)>, StorageError>;
    /// Distinct visitors of a link per UTC day, for days in `[from_day, to_day)`; days
    /// without visitors are left out.
    async fn visitors_per_day(&self, link_id: Id, from_day: i64, to_day: i64) -> Result<Vec<(i64, u64)>, StorageError>;

    async fn outcome(&self, command_id: &str) -> Result<Option<StoredOutcome>, StorageError>;
    /// Waits until the outcome of `command_id` is stored, or `timeout` passes.
    async fn wait_outcome(&self, command_id: &str, timeout: Duration) -> Result<Option<StoredOutcome>, StorageError>;
    /// Answers if the backend is reachable.
    async fn ping(&self) -> Result<(), StorageError>;

    /// Every parked record, ordered by topic, partition, key and offset.
    async fn parked(&self) -> Result<Vec<ParkedRecord>, StorageError>;
    /// The projector's delivery count for `topic`/`partition`, if one was written.
    async fn attempt(&self, topic: &str, partition: u32) -> Result<Option<Attempt>, StorageError>;
}

/// Counts every store operation once, whatever the backend.
pub struct Instrumented {
    inner: Arc<dyn ReadStore>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn ReadStore>) -> Instrumented {
        Instrumented { inner }
    }
}

macro_rules! timed {
    ($op:literal, $e:expr) => {{
        let t = std::time::Instant::now();
        let r = $e.await;
        let m = metrics::get();
        m.store_ops.with_label_values(&[$op, if r.is_ok() { "ok" } else { "error" }]).inc();
        m.store_seconds.with_label_values(&[$op]).observe(t.elapsed().as_secs_f64());
        r
    }};
}

#[async_trait]
impl ReadStore for Instrumented {
    async fn position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError> {
        timed!("position", self.inner.position(projection, topic, partition))
    }
    async fn claim(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        timed!("claim", self.inner.claim(topic, partition))
    }
    async fn apply(&self, batch: StoreBatch) -> Result<(), ApplyError> {
        let r = timed!("apply", self.inner.apply(batch));
        if let Err(ApplyError::Fenced { topic, .. }) = &r {
            metrics::get().store_fenced.with_label_values(&[topic]).inc();
        }
        r
    }
    async fn user(&self, id: Id) -> Result<Option<User>, StorageError> {
        timed!("user", self.inner.user(id))
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StorageError> {
        timed!("user_by_email", self.inner.user_by_email(email))
    }
    async fn users(&self, page: usize, per_page: usize) -> Result<Vec<User>, StorageError> {
        timed!("users", self.inner.users(page, per_page))
    }
    async fn link(&self, id: Id) -> Result<Option<VersionedLink>, StorageError> {
        timed!("link", self.inner.link(id))
    }
    async fn link_by_code(&self, code: &str) -> Result<Option<VersionedLink>, StorageError> {
        timed!("link_by_code", self.inner.link_by_code(code))
    }
    async fn active_link_for(&self, owner: Option<Id>, url: &str) -> Result<Option<Link>, StorageError> {
        timed!("active_link_for", self.inner.active_link_for(owner, url))
    }
    async fn links(&self, q: &LinkQuery) -> Result<Vec<Link>, StorageError> {
        timed!("links", self.inner.links(q))
    }
    async fn domains(&self) -> Result<Vec<Domain>, StorageError> {
        timed!("domains", self.inner.domains())
    }
    async fn domain(&self, host: &str) -> Result<Option<Domain>, StorageError> {
        timed!("domain", self.inner.domain(host))
    }
    async fn crawlable_codes(&self, limit: usize) -> Result<Vec<String>, StorageError> {
        timed!("crawlable_codes", self.inner.crawlable_codes(limit))
    }
    async fn history_event(&self, id: Id) -> Result<Option<HistoryEvent>, StorageError> {
        timed!("history_event", self.inner.history_event(id))
    }
    async fn history(&self, q: &EventQuery) -> Result<Vec<HistoryEvent>, StorageError> {
        timed!("history", self.inner.history(q))
    }
    async fn click_count(&self, link_id: Id) -> Result<u64, StorageError> {
        timed!("click_count", self.inner.click_count(link_id))
    }
    async fn click_counts(&self, link_id: Id, from: &str, to: &str) -> Result<Vec<(String, u64)>, StorageError> {
        timed!("click_counts", self.inner.click_counts(link_id, from, to))
    }
    async fn visitors_per_day(&self, link_id: Id, from_day: i64, to_day: i64) -> Result<Vec<(i64, u64)>, StorageError> {
        timed!("visitors_per_day", self.inner.visitors_per_day(link_id, from_day, to_day))
    }
    async fn outcome(&self, command_id: &str) -> Result<Option<StoredOutcome>, StorageError> {
        timed!("outcome", self.inner.outcome(command_id))
    }
    async fn wait_outcome(&self, command_id: &str, timeout: Duration) -> Result<Option<StoredOutcome>, StorageError> {
        self.inner.wait_outcome(command_id, timeout).await
    }
    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }
    async fn parked(&self) -> Result<Vec<ParkedRecord>, StorageError> {
        timed!("parked", self.inner.parked())
    }
    async fn attempt(&self, topic: &str, partition: u32) -> Result<Option<Attempt>, StorageError> {
        timed!("attempt", self.inner.attempt(topic, partition))
    }
}
