//! Rows grouped by the partition that owns them and submitted in chunks of
//! [`CHUNK_ROWS`] as they fill, at most [`PARALLEL_CHUNKS`] at a time: a load holds at
//! most a chunk per partition and the chunks in flight, whatever its size.
//!
//! Chunk command ids derive from the request's command id, the partition and the
//! chunk's number within it, so a retry of the same load with the same
//! `Idempotency-Key` makes the same chunks, and chunks already decided are answered
//! from their outcomes instead of loading twice.

use crate::submit::Idempotency;
use crate::{AppState, Principal};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use kurz_schemas::command::link_key;
use kurz_schemas::event::Answer;
use kurz_schemas::{CommandBody, CommandId, ShortCode};
use kurz_storage::log::partition_for;
use kurz_storage::store::StoredOutcome;
use kurz_web::ApiError;
use std::collections::BTreeMap;

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

pub(super) struct Batcher<R> {
    s: AppState,
    p: Principal,
    base: Idempotency,
    /// Rows waiting, by partition, with the routing key of their chunk.
    open: BTreeMap<u32, (String, Vec<R>)>,
    /// Chunks made so far, by partition.
    made: BTreeMap<u32, usize>,
    body: fn(String, Vec<R>) -> CommandBody,
    in_flight: FuturesUnordered<BoxFuture<'static, Result<StoredOutcome, ApiError>>>,
    pub count: u64,
    pub problems: Problems,
}

impl<R: Send + 'static> Batcher<R> {
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

    /// Adds a row of the link `code`, to the partition that owns it.
    pub async fn push_for_link(&mut self, code: &ShortCode, partitions: u32, row: R) -> Result<(), ApiError> {
        let key = link_key(code);
        self.push(partition_for(&key, partitions), || key, row).await
    }

    async fn send(&mut self, partition: u32, key: String, rows: Vec<R>) -> Result<(), ApiError> {
        while self.in_flight.len() >= PARALLEL_CHUNKS {
            self.settle().await?;
        }
        let n = self.made.entry(partition).or_default();
        let chunk = Idempotency { id: CommandId(format!("{}/p{partition}/{n}", self.base.id.as_str())), ..self.base.clone() };
        *n += 1;
        let cmd = chunk.command(self.p.actor(), (self.body)(key, rows));
        let s = self.s.clone();
        self.in_flight.push(Box::pin(async move { s.submit(cmd).await }));
        Ok(())
    }

    /// Waits for one chunk in flight and counts its outcome.
    async fn settle(&mut self) -> Result<(), ApiError> {
        let Some(o) = self.in_flight.next().await else { return Ok(()) };
        let o = o?;
        match o.answer {
            Answer::Count { count, skipped } => {
                self.count += count as u64;
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
