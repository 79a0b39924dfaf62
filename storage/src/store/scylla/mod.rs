//! The read store on ScyllaDB (or Cassandra), through the `scylla` driver.
//!
//! # URL
//!
//! `scylla://host[:port][,host[:port]…][/keyspace][?param=value&…]`, port 9042 by
//! default, keyspace `kurz` by default. Parameters (no percent-encoding needed):
//!
//! | parameter | values | default |
//! | --- | --- | --- |
//! | `consistency` | `one`, `two`, `three`, `quorum`, `all`, `local_quorum`, `each_quorum`, `local_one`, `any` | `local_quorum` |
//! | `replication` | `N` (SimpleStrategy, N replicas) or `dc:N[,dc:N…]` (NetworkTopologyStrategy) | the one in `infra/cql/schema.cql` (SimpleStrategy, 1) |
//! | `page_size` | rows per page of every listing, 1..=10000 | 100 |
//!
//! The consistency applies to every read and write. `replication` only matters when
//! kurz creates the keyspace; an existing keyspace is never altered. Production wants
//! `replication=<dc>:3` and a quorum consistency: below quorum (with more than one
//! replica) a read may miss the previous write, and the read-before-write steps below
//! (position check, link versions, click counts, first outcome) lose their guarantee.
//!
//! # Schema
//!
//! `infra/cql/schema.cql` is the reviewed source of truth; [`schema::migrate`] runs it
//! (compiled in with `include_str!`) at every start: keyspace and tables `IF NOT
//! EXISTS`. Every read names a full partition key, no `ALLOW FILTERING`. Each read
//! model is stored once per query shape, with the JSON body in every copy (one round
//! trip per read): links by id, by code, by owner, by (owner, url) and "all links";
//! history by id, link, user, type and "all"; users by id, email and "all". The "all"
//! tables keep every row of a kind in one partition (`bucket = 0`) clustered by id,
//! which gives id order on Scylla (a token-ordered full scan would not) and is fine at
//! kurz's scale; see `infra/scylla-unproven.md`. Lists are read a page at a time with
//! the driver's paging and stop as soon as they have enough rows. `users(page, n)`
//! skips `(page-1)*n` rows (offset paging). Outcomes expire after 24 h by table TTL.
//!
//! # Writes
//!
//! [`ReadStore::apply`] has no transaction to lean on (and no BATCH; see below). It
//! 1. reads the partition's latest claim ([`ReadStore::claim`], table `fences`) and
//!    refuses the batch with [`ApplyError::Fenced`] if it is not the batch's epoch, takes
//!    the stored position of every [`Position`](super::Position) in the batch for that
//!    claim and refuses the batch with [`ApplyError::PositionMismatch`] if one differs
//!    from `from`, before writing anything;
//! 2. writes the mutations in order, each as absolute rows: index rows first, the
//!    source row (`links`, `users`) last, a link only if its `version` is not older
//!    than the stored one, click counts as read + n (no counter columns), every row with
//!    a timestamp from the claim's lease, so a stale writer's rows lose ([`fence`]);
//! 3. moves each position last, by a lightweight transaction
//!    (`… IF next_offset = :from AND epoch <= :mine`, [`fence`]).
//!
//! A position therefore never goes backwards, never moves twice from one offset, and
//! cannot be moved by a writer whose claim was overtaken once the new owner wrote it.
//! If the projector dies between its rows and its position, the position still says
//! `from`, the batch is redelivered and re-applied, and applying it again gives the
//! same state (inserts overwrite with the same values; a link's source row is written
//! last, so the re-run still sees the old version and redoes its index changes;
//! history rows are keyed by event id; the first outcome of a command is kept). Click
//! counts are the one read-add-write: a plain "count + n" would count a re-applied batch
//! twice, so each count row also keeps the count from before the batch that last moved
//! it and that batch's starting offset; rows an unsettled attempt wrote are recognised
//! and recomputed as "that base + n", however far the attempt and the re-run reach
//! (`Tally` in `apply.rs`). Readers may see a batch half applied for a moment, which an
//! eventually consistent read model allows. Rows are written with client-side
//! timestamps (the claim's lease, or the driver's monotonic clock for unclaimed
//! writers), so a delete and a later re-insert of one row keep their order.
//!
//! # Test double
//!
//! `storage/tests/scylla.rs` runs the store scenario suite over a real CQL socket
//! against kassandra, an in-memory single-node CQL v4 server. What the double cannot
//! prove is listed in `infra/scylla-unproven.md`. kassandra ignores `IF` clauses, so the
//! test node runs the adapter's lightweight transactions itself, atomically under its
//! one lock (`testkit/src/cql/lwt.rs`). Because of it: the driver's automatic
//! schema-agreement wait is off (its metadata refresh fails on the double with
//! "Peers list is empty"; the migration calls `await_schema_agreement` itself, bounded
//! and best effort), there are no BATCH statements
//! and no counter columns, and every statement keeps to the CQL the double parses.

mod apply;
pub mod config;
mod fence;
pub mod schema;
mod statements;

pub use config::ScyllaConfig;

use super::{ApplyError, Attempt, EventQuery, LinkQuery, ParkedRecord, ReadStore, StoreBatch, StoredOutcome, VersionedLink};
use crate::StorageError;
use async_trait::async_trait;
use kurz_schemas::{HistoryEvent, Id, Link, User};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::deserialize::row::DeserializeRow;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::response::PagingState;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use statements::Statements;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// Partition of the single-partition "all rows ordered by id" tables.
const ALL: i32 = 0;

/// Points in a batch where a test can hold it, as a pause of the process would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The batch's claim and positions were checked; no row is written yet.
    BeforeRows,
    /// Every row is written; no position has moved yet.
    BeforePositions,
}

/// What a held batch awaits before it goes on; it is told the point and the batch's
/// topic (empty for a batch without positions).
pub type HoldHook = Arc<dyn Fn(Hold, &str) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Fault injection for the deployment tests' pauses, off unless `KURZ_FAULT_PAUSE_DIR`
/// is set: a batch of topic `T` stops this whole process (`SIGSTOP`, as a VM or GC
/// pause would) before its rows if the file `<dir>/<pid>.<T>.rows` exists, or between
/// its rows and its positions if `<dir>/<pid>.<T>.positions` does. The file is removed
/// first: one trigger, one pause.
fn pause_hook_from_env() -> Option<HoldHook> {
    let dir = std::path::PathBuf::from(std::env::var_os("KURZ_FAULT_PAUSE_DIR")?);
    Some(Arc::new(move |at, topic| {
        let point = match at {
            Hold::BeforeRows => "rows",
            Hold::BeforePositions => "positions",
        };
        let trigger = dir.join(format!("{}.{topic}.{point}", std::process::id()));
        Box::pin(async move {
            if std::fs::remove_file(&trigger).is_err() {
                return;
            }
            tracing::warn!(event = "fault_pause", topic = %trigger.display(), "stopping this process in a batch");
            let pid = std::process::id().to_string();
            // Returns once the process is continued.
            if let Err(e) = std::process::Command::new("kill").args(["-STOP", &pid]).status() {
                tracing::error!(event = "fault_pause_failed", error = %e);
            }
        })
    }))
}
/// Owner key of anonymous links.
const ANONYMOUS: i64 = 0;

pub struct ScyllaStore {
    session: Session,
    st: Statements,
    /// Claims this process holds, by (topic, partition) ([`fence`]).
    leases: std::sync::Mutex<std::collections::HashMap<(String, u32), fence::Lease>>,
    /// Fault injection for tests: where a batch waits ([`ScyllaStore::hold_at`]).
    hold: Option<HoldHook>,
    /// The runtime the driver's connections live on, when the store had to bring one
    /// (opened outside a multi-thread tokio runtime). Dropped after the session.
    _runtime: Option<OwnedRuntime>,
}

struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

pub(crate) fn engine(e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(e.to_string())
}

/// A kurz id as a CQL bigint (ids are below 2^53).
fn key(id: Id) -> i64 {
    id.get() as i64
}

fn owner_key(owner: Option<Id>) -> i64 {
    owner.map(key).unwrap_or(ANONYMOUS)
}

fn unsigned(v: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt(format!("negative {what}: {v}")))
}

fn signed(v: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Engine(format!("{what} {v} does not fit a CQL bigint")))
}

/// A driver session to the cluster `cfg` names: its consistency, credentials and TLS.
pub(crate) async fn connect_session(cfg: &ScyllaConfig, what: &str) -> Result<Session, StorageError> {
    let profile = ExecutionProfile::builder().consistency(cfg.consistency).build();
    let mut builder = SessionBuilder::new();
    if let Some(c) = &cfg.credentials {
        builder = builder.user(c.user.clone(), c.password.clone());
    }
    if let Some(tls) = &cfg.tls {
        builder = builder.tls_context(Some(Arc::new(crate::tls::client_config(tls.ca.as_deref())?)));
    }
    builder
        .known_nodes(&cfg.hosts)
        .default_execution_profile_handle(profile.into_handle())
        // The migration waits for agreement itself, bounded and best effort.
        .auto_await_schema_agreement(false)
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .build()
        .await
        .map_err(|e| StorageError::Engine(format!("scylla {what}: connect to {}: {e}", cfg.hosts.join(","))))
}

impl ScyllaStore {
    /// Connects, migrates the schema and prepares the statements. Blocks: inside a
    /// multi-thread tokio runtime it runs there (`block_in_place`); anywhere else the
    /// store brings a small runtime of its own for the driver.
    pub fn open(url: &str) -> Result<ScyllaStore, StorageError> {
        let cfg = ScyllaConfig::parse(url)?;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                return tokio::task::block_in_place(|| handle.block_on(ScyllaStore::connect(&cfg)));
            }
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("kurz-scylla").enable_all().build()?;
        let handle = rt.handle().clone();
        let runtime = OwnedRuntime(Some(rt));
        let mut store = std::thread::scope(|s| s.spawn(|| handle.block_on(ScyllaStore::connect(&cfg))).join())
            .map_err(|_| StorageError::Engine("scylla store: connect panicked".into()))??;
        store._runtime = Some(runtime);
        Ok(store)
    }

    /// Connects, migrates the schema and prepares the statements.
    pub async fn connect(cfg: &ScyllaConfig) -> Result<ScyllaStore, StorageError> {
        let session = connect_session(cfg, "store").await?;
        let st =
            schema::migrate_and_prepare(&session, cfg, schema::SCHEMA_CQL, || Statements::prepare(&session, &cfg.keyspace, cfg.page_size))
                .await?;
        Ok(ScyllaStore { session, st, leases: Default::default(), hold: pause_hook_from_env(), _runtime: None })
    }

    async fn exec(&self, st: &PreparedStatement, values: impl SerializeRow) -> Result<(), StorageError> {
        self.session.execute_unpaged(st, values).await.map_err(engine)?;
        Ok(())
    }

    /// The first row of a single-partition read.
    /// Fault injection for tests: every batch awaits `hook` at each [`Hold`] point, so a
    /// test can stall a writer exactly where a pause would hurt most.
    pub fn hold_at(&mut self, hook: HoldHook) {
        self.hold = Some(hook);
    }

    async fn held(&self, at: Hold, topic: &str) {
        if let Some(h) = &self.hold {
            h(at, topic).await;
        }
    }

    /// A row write under a batch's [`fence::Stamps`]: its own timestamp if the batch
    /// is fenced, the driver's clock if not.
    async fn write(&self, st: &PreparedStatement, at: &fence::Stamps, values: impl SerializeRow) -> Result<(), StorageError> {
        match at.take()? {
            None => self.exec(st, values).await,
            Some(ts) => {
                let mut st = st.clone();
                st.set_timestamp(Some(ts));
                self.exec(&st, values).await
            }
        }
    }

    async fn one<R>(&self, st: &PreparedStatement, values: impl SerializeRow) -> Result<Option<R>, StorageError>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
    {
        let rows = self.session.execute_unpaged(st, values).await.map_err(engine)?.into_rows_result().map_err(engine)?;
        rows.maybe_first_row::<R>().map_err(engine)
    }

    /// Feeds the rows of a paged read to `f` a page at a time, until the rows run out
    /// or `f` breaks.
    async fn each<R, F>(&self, st: &PreparedStatement, values: impl SerializeRow, mut f: F) -> Result<(), StorageError>
    where
        R: for<'f> DeserializeRow<'f, 'f>,
        F: FnMut(R) -> Result<ControlFlow<()>, StorageError>,
    {
        let mut paging = PagingState::start();
        loop {
            let (res, next) = self.session.execute_single_page(st, &values, paging).await.map_err(engine)?;
            let rows = res.into_rows_result().map_err(engine)?;
            for row in rows.rows::<R>().map_err(engine)? {
                if f(row.map_err(engine)?)?.is_break() {
                    return Ok(());
                }
            }
            match next.into_paging_control_flow() {
                ControlFlow::Break(()) => return Ok(()),
                ControlFlow::Continue(p) => paging = p,
            }
        }
    }

    /// Up to `limit` bodies of a paged `(id, body)` read that pass `keep`.
    async fn collect<T, K>(&self, st: &PreparedStatement, values: impl SerializeRow, limit: usize, keep: K) -> Result<Vec<T>, StorageError>
    where
        T: serde::de::DeserializeOwned,
        K: Fn(&T) -> bool,
    {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.each(st, values, |(_id, body): (i64, String)| {
            let v: T = serde_json::from_str(&body)?;
            if keep(&v) {
                out.push(v);
            }
            Ok(if out.len() >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
        .await?;
        Ok(out)
    }
}

#[async_trait]
impl ReadStore for ScyllaStore {
    async fn position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.stored_position(projection, topic, partition).await
    }

    async fn claim(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.claim_partition(topic, partition).await
    }

    async fn apply(&self, batch: StoreBatch) -> Result<(), ApplyError> {
        self.apply_batch(&batch).await
    }

    async fn user(&self, id: Id) -> Result<Option<User>, StorageError> {
        let row: Option<(String, String)> = self.one(&self.st.user, (key(id),)).await?;
        Ok(row.map(|(_, body)| serde_json::from_str(&body)).transpose()?)
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StorageError> {
        let row: Option<(i64,)> = self.one(&self.st.user_by_email, (email,)).await?;
        match row.map(|(id,)| Id::new(unsigned(id, "user id")?).map_err(|e| StorageError::Corrupt(e.to_string()))) {
            Some(id) => self.user(id?).await,
            None => Ok(None),
        }
    }

    async fn users(&self, page: usize, per_page: usize) -> Result<Vec<User>, StorageError> {
        let mut skip = page.saturating_sub(1).saturating_mul(per_page);
        let mut out = Vec::new();
        if per_page == 0 {
            return Ok(out);
        }
        self.each(&self.st.users_all, (ALL,), |(_id, body): (i64, String)| {
            if skip > 0 {
                skip -= 1;
            } else {
                out.push(serde_json::from_str(&body)?);
            }
            Ok(if out.len() >= per_page { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
        .await?;
        Ok(out)
    }

    async fn link(&self, id: Id) -> Result<Option<VersionedLink>, StorageError> {
        let row: Option<(i64, String)> = self.one(&self.st.link, (key(id),)).await?;
        row.map(|(version, body)| Ok(VersionedLink { link: serde_json::from_str(&body)?, version: unsigned(version, "link version")? }))
            .transpose()
    }

    async fn link_by_code(&self, code: &str) -> Result<Option<VersionedLink>, StorageError> {
        let row: Option<(i64, i64, String)> = self.one(&self.st.link_by_code, (code,)).await?;
        row.map(|(_, version, body)| Ok(VersionedLink { link: serde_json::from_str(&body)?, version: unsigned(version, "link version")? }))
            .transpose()
    }

    async fn active_link_for(&self, owner: Option<Id>, url: &str) -> Result<Option<Link>, StorageError> {
        let mut found = self.collect(&self.st.links_by_owner_url, (owner_key(owner), url), 1, |l: &Link| l.is_active).await?;
        Ok(found.pop())
    }

    async fn links(&self, q: &LinkQuery) -> Result<Vec<Link>, StorageError> {
        let keep = |l: &Link| q.is_active.is_none_or(|a| l.is_active == a);
        match q.user_id {
            Some(u) => self.collect(&self.st.links_by_owner, (key(u),), q.limit, keep).await,
            None => self.collect(&self.st.links_all, (ALL,), q.limit, keep).await,
        }
    }

    async fn domains(&self) -> Result<Vec<kurz_schemas::Domain>, StorageError> {
        let mut out = Vec::new();
        self.each(&self.st.domains, (ALL,), |(body,): (String,)| {
            out.push(serde_json::from_str(&body)?);
            // Bounded by the decider (MAX_DOMAINS and the default), with room to spare.
            Ok(if out.len() > 2 * kurz_schemas::domain::MAX_DOMAINS { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
        .await?;
        Ok(out)
    }

    async fn domain(&self, host: &str) -> Result<Option<kurz_schemas::Domain>, StorageError> {
        let row: Option<(String,)> = self.one(&self.st.domain, (ALL, host)).await?;
        Ok(row.map(|(body,)| serde_json::from_str(&body)).transpose()?)
    }

    async fn crawlable_codes(&self, limit: usize) -> Result<Vec<String>, StorageError> {
        let mut out: Vec<String> = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // A code held by two ids lists once (a deletion and a new link of that code in
        // one batch's lanes may briefly overlap).
        self.each(&self.st.links_crawlable, (ALL,), |(code, _id): (String, i64)| {
            if out.last() != Some(&code) {
                out.push(code);
            }
            Ok(if out.len() >= limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })
        .await?;
        Ok(out)
    }

    async fn history_event(&self, id: Id) -> Result<Option<HistoryEvent>, StorageError> {
        let row: Option<(String,)> = self.one(&self.st.history_event, (key(id),)).await?;
        Ok(row.map(|(body,)| serde_json::from_str(&body)).transpose()?)
    }

    async fn history(&self, q: &EventQuery) -> Result<Vec<HistoryEvent>, StorageError> {
        let keep = |e: &HistoryEvent| {
            q.url_id.is_none_or(|u| e.url_id == u)
                && q.user_id.is_none_or(|u| e.user_id == Some(u))
                && q.event_type.as_deref().is_none_or(|t| e.event_type == t)
        };
        // The narrowest table the query allows; the other filters on the way.
        if let Some(u) = q.url_id {
            self.collect(&self.st.history_by_link, (key(u),), q.limit, keep).await
        } else if let Some(u) = q.user_id {
            self.collect(&self.st.history_by_user, (key(u),), q.limit, keep).await
        } else if let Some(t) = q.event_type.as_deref() {
            self.collect(&self.st.history_by_type, (t,), q.limit, keep).await
        } else {
            self.collect(&self.st.history_all, (ALL,), q.limit, keep).await
        }
    }

    async fn click_count(&self, link_id: Id) -> Result<u64, StorageError> {
        let mut total = 0u64;
        for (_, clicks, ..) in self.click_rows(link_id).await? {
            total = total.saturating_add(unsigned(clicks, "click count")?);
        }
        Ok(total)
    }

    async fn click_counts(&self, link_id: Id, from: &str, to: &str) -> Result<Vec<(String, u64)>, StorageError> {
        // The link's partition, read whole and filtered here (no clustering ranges, as
        // everywhere in this adapter); rows of one name (one per source) are summed.
        let mut out: Vec<(String, u64)> = Vec::new();
        self.each(&self.st.aggregates, (key(link_id),), |(name, clicks): (String, i64)| {
            if name.as_str() >= from && name.as_str() < to {
                let n = unsigned(clicks, "click count")?;
                match out.last_mut() {
                    Some((last, total)) if *last == name => *total = total.saturating_add(n),
                    _ => out.push((name, n)),
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    async fn visitors_per_day(&self, link_id: Id, from_day: i64, to_day: i64) -> Result<Vec<(i64, u64)>, StorageError> {
        let mut out: Vec<(i64, u64)> = Vec::new();
        self.each(&self.st.visitors, (key(link_id),), |(day,): (i64,)| {
            if (from_day..to_day).contains(&day) {
                match out.last_mut() {
                    Some((d, n)) if *d == day => *n += 1,
                    _ => out.push((day, 1)),
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    async fn outcome(&self, command_id: &str) -> Result<Option<StoredOutcome>, StorageError> {
        let row: Option<(String,)> = self.one(&self.st.outcome, (command_id,)).await?;
        Ok(row.map(|(body,)| serde_json::from_str(&body)).transpose()?)
    }

    async fn wait_outcome(&self, command_id: &str, timeout: Duration) -> Result<Option<StoredOutcome>, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut delay = Duration::from_millis(2);
        loop {
            if let Some(o) = self.outcome(command_id).await? {
                return Ok(Some(o));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    async fn parked(&self) -> Result<Vec<ParkedRecord>, StorageError> {
        let mut out = Vec::new();
        self.each(&self.st.parked, (ALL,), |(body,): (String,)| {
            out.push(serde_json::from_str(&body)?);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    async fn attempt(&self, topic: &str, partition: u32) -> Result<Option<Attempt>, StorageError> {
        let row: Option<(i64, i32)> = self.one(&self.st.attempt, (topic, apply::log_partition(partition)?)).await?;
        row.map(|(offset, attempt)| Ok(Attempt { offset: unsigned(offset, "offset")?, attempt: attempt.max(0) as u32 })).transpose()
    }

    async fn ping(&self) -> Result<(), StorageError> {
        // A prepared read of our own keyspace: the node answers and the schema is there.
        self.stored_position("", "", 0).await.map(|_| ())
    }
}
