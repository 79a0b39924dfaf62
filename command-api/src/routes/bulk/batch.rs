//! Rows grouped by the partition that owns them and submitted in chunks of
//! [`CHUNK_ROWS`] as they fill, at most [`PARALLEL_CHUNKS`] at a time: a load holds at
//! most a chunk per partition and the chunks in flight, whatever its size.
//!
//! Chunk command ids derive from the request's command id, the partition and the
//! chunk's number within it, so a retry of the same load with the same
//! `Idempotency-Key` makes the same chunks, and chunks already decided are answered
//! from their outcomes instead of loading twice.
//!
//! Explicit ids are owned: before a chunk of links or history rows is submitted, the
//! ids its rows bring are reserved with the partitions that own them
//! ([`CommandBody::ReserveIds`], [`kurz_schemas::id_key`]), so two rows with one id
//! never both load, even when their codes route them to different partitions; a row
//! whose id was refused is left out and reported.

use crate::submit::Idempotency;
use crate::{AppState, Principal};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use kurz_schemas::command::link_key;
use kurz_schemas::event::Answer;
use kurz_schemas::{id_key, CommandBody, CommandId, DomainHost, EventRow, Id, IdKind, LinkRow, ShortCode, UserRow};
use kurz_storage::log::partition_for;
use kurz_storage::store::StoredOutcome;
use kurz_web::ApiError;
use std::collections::{BTreeMap, HashSet};

pub(super) const CHUNK_ROWS: usize = 500;
const PARALLEL_CHUNKS: usize = 4;
/// Problems a response lists (all are counted).
pub(super) const LISTED_PROBLEMS: usize = 100;

/// The problems of a load: counted, the first [`LISTED_PROBLEMS`] kept.
#[derive(Default)]
pub(super) struct Problems {
    pub count: usize,
    pub listed: Vec<String>,
}

impl Problems {
    pub fn add(&mut self, p: String) {
        self.count += 1;
        if self.listed.len() < LISTED_PROBLEMS {
            self.listed.push(p);
        }
    }
}

/// The explicit id a row brings, if any, and its kind.
pub(super) trait Explicit {
    fn explicit_id(&self) -> Option<(IdKind, Id)>;
}

impl Explicit for UserRow {
    /// Users need no reservation: one partition decides every user.
    fn explicit_id(&self) -> Option<(IdKind, Id)> {
        None
    }
}

impl Explicit for LinkRow {
    fn explicit_id(&self) -> Option<(IdKind, Id)> {
        self.id.map(|id| (IdKind::Link, id))
    }
}

impl Explicit for EventRow {
    fn explicit_id(&self) -> Option<(IdKind, Id)> {
        self.id.map(|id| (IdKind::Event, id))
    }
}

/// Reserves the explicit ids of `rows` with their owning partitions (command ids derive
/// from the chunk's, so a retried load asks the same and is answered the same), and
/// returns the rows whose ids were granted, or that bring none, with a problem for each
/// row left out.
async fn reserve<R: Explicit>(
    s: &AppState,
    chunk: &Idempotency,
    actor: kurz_schemas::Actor,
    rows: Vec<R>,
) -> Result<(Vec<R>, Vec<String>), ApiError> {
    let mut asked = HashSet::new();
    let mut by_owner: BTreeMap<u32, (IdKind, Vec<Id>)> = BTreeMap::new();
    for (kind, id) in rows.iter().filter_map(Explicit::explicit_id) {
        if asked.insert(id) {
            by_owner.entry(partition_for(&id_key(kind, id), s.command_partitions)).or_insert_with(|| (kind, Vec::new())).1.push(id);
        }
    }
    if by_owner.is_empty() {
        return Ok((rows, Vec::new()));
    }
    let asks = by_owner.into_iter().map(|(owner, (kind, ids))| {
        let ask = Idempotency { id: CommandId(format!("{}/ids/p{owner}", chunk.id.as_str())), ..chunk.clone() };
        let cmd = ask.command(actor.clone(), CommandBody::ReserveIds { kind, ids });
        let s = s.clone();
        async move { s.submit(cmd).await }
    });
    let mut refused = HashSet::new();
    for o in futures::future::join_all(asks).await {
        let o = o?;
        match o.answer {
            Answer::Reserved { refused: r } => refused.extend(r),
            Answer::Rejected { message } => return Err(ApiError::Status(o.status, message)),
            other => return Err(ApiError::internal(format!("unexpected answer to an id reservation: {other:?}"))),
        }
    }
    let (mut kept, mut problems, mut used) = (Vec::with_capacity(rows.len()), Vec::new(), HashSet::new());
    for r in rows {
        match r.explicit_id() {
            Some((kind, id)) if refused.contains(&id) || !used.insert(id) => {
                problems.push(format!("{} id {id} already exists", if kind == IdKind::Link { "url" } else { "event" }))
            }
            _ => kept.push(r),
        }
    }
    Ok((kept, problems))
}

type Settled = Result<(StoredOutcome, Vec<String>), ApiError>;

pub(super) struct Batcher<R> {
    s: AppState,
    p: Principal,
    base: Idempotency,
    /// Rows waiting, by partition, with the routing key of their chunk.
    open: BTreeMap<u32, (String, Vec<R>)>,
    /// Chunks made so far, by partition.
    made: BTreeMap<u32, usize>,
    body: fn(String, Vec<R>) -> CommandBody,
    in_flight: FuturesUnordered<BoxFuture<'static, Settled>>,
    pub count: u64,
    pub problems: Problems,
}

impl<R: Explicit + Send + 'static> Batcher<R> {
    pub fn new(s: &AppState, p: Principal, base: Idempotency, body: fn(String, Vec<R>) -> CommandBody) -> Batcher<R> {
        Batcher {
            s: s.clone(),
            p,
            base,
            open: BTreeMap::new(),
            made: BTreeMap::new(),
            body,
            in_flight: FuturesUnordered::new(),
            count: 0,
            problems: Problems::default(),
        }
    }

    /// Adds a row for `partition`; `key` routes its chunk there (the first row's).
    pub async fn push(&mut self, partition: u32, key: impl FnOnce() -> String, row: R) -> Result<(), ApiError> {
        let slot = self.open.entry(partition).or_insert_with(|| (key(), Vec::new()));
        slot.1.push(row);
        if slot.1.len() >= CHUNK_ROWS {
            let (key, rows) = self.open.remove(&partition).expect("just filled");
            self.send(partition, key, rows).await?;
        }
        Ok(())
    }

    /// Adds a row of the link `code` on `domain`, to the partition that owns it.
    pub async fn push_for_link(&mut self, domain: Option<&DomainHost>, code: &ShortCode, partitions: u32, row: R) -> Result<(), ApiError> {
        let key = link_key(domain, code);
        self.push(partition_for(&key, partitions), || key, row).await
    }

    async fn send(&mut self, partition: u32, key: String, rows: Vec<R>) -> Result<(), ApiError> {
        while self.in_flight.len() >= PARALLEL_CHUNKS {
            self.settle().await?;
        }
        let n = self.made.entry(partition).or_default();
        let chunk = Idempotency { id: CommandId(format!("{}/p{partition}/{n}", self.base.id.as_str())), ..self.base.clone() };
        *n += 1;
        let (s, actor, body) = (self.s.clone(), self.p.actor(), self.body);
        self.in_flight.push(Box::pin(async move {
            let (rows, problems) = reserve(&s, &chunk, actor.clone(), rows).await?;
            let cmd = chunk.command(actor, body(key, rows));
            Ok((s.submit(cmd).await?, problems))
        }));
        Ok(())
    }

    /// Waits for one chunk in flight and counts its outcome.
    async fn settle(&mut self) -> Result<(), ApiError> {
        let Some(o) = self.in_flight.next().await else { return Ok(()) };
        let (o, refused) = o?;
        for p in refused {
            self.problems.add(p);
        }
        match o.answer {
            Answer::Count { count, skipped } => {
                self.count += count;
                for p in skipped {
                    self.problems.add(p);
                }
                Ok(())
            }
            Answer::Rejected { message } => Err(ApiError::Status(o.status, message)),
            other => Err(ApiError::internal(format!("unexpected answer to an import: {other:?}"))),
        }
    }

    /// Submits the partial chunks and waits for every chunk.
    pub async fn finish(mut self) -> Result<(u64, Problems), ApiError> {
        let open = std::mem::take(&mut self.open);
        for (partition, (key, rows)) in open {
            self.send(partition, key, rows).await?;
        }
        while !self.in_flight.is_empty() {
            self.settle().await?;
        }
        Ok((self.count, self.problems))
    }
}
