//! The embedded event log: append-only files of record batches, one file per partition,
//! as Kafka lays out a log; topics and consumer positions in a small redb file.
//!
//! Layout, next to the redb file `<name>.redb` (topics and `consumer_offsets`):
//! `<name>.data/<topic>/<partition>.log`, a sequence of batches, one per append:
//!
//! ```text
//! batch  = magic u32 "KZB1" | body_len u32 | crc32 u32 (of body) | body
//! body   = first_offset u64 | count u32 | (record_len u32 | record)*
//! record = ts i64 | key_len u32 | key | n_headers u16 | (name_len u16 | name | value_len u32 | value)* | payload
//! ```
//! (little endian). An append of 500 clicks is one `write` of one batch, and a read is
//! a `pread` of whole batches: no B-tree, no page copies.
//!
//! **Durability (fsync policy).** An append is acknowledged only after its batch was
//! written and the file `fdatasync`ed. Appends from all callers go through one writer
//! thread that takes every request waiting at that moment into one group: one write
//! and one fsync per touched partition, shared by all the group's appends. Records
//! become visible to readers (end offset, `read`) only after that. A group that fails
//! is cut off again (the files are truncated to their last good length) and every
//! append in it answers an error. On open, each file is walked batch by batch; a torn
//! or corrupt tail (a crash mid-write, never acknowledged) is truncated away.
//! Consumer-position commits are redb transactions with `Durability::Immediate`.
//!
//! **Deferred sync** ([`RedbLog::defer_sync`]), Kafka's per-topic `flush.ms`: a topic
//! whose records may be lost on power failure (clicks: the redirect never waited for
//! them, and the edge's queue already holds the last few milliseconds in memory only)
//! is written by every group commit but `fdatasync`ed by a syncer thread at most every
//! interval. Its records survive a killed process (they are in the page cache) and
//! become visible to readers only once synced, so no reader ever sees a record that a
//! power failure could take back.
//!
//! redb for the metadata because position commits are small random updates that want
//! atomic, crash-safe replacement; the records are append-only and read in order,
//! which plain files do best.

mod batch;
mod partition;
#[cfg(test)]
mod tests;
mod writer;

use super::{EventLog, NewRecord, Record};
use crate::StorageError;
use async_trait::async_trait;
pub use partition::{create_dir_durable, sync_dir};
use partition::{open_partition, read_partition, Partition};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use writer::{sync_deferred, syncer_loop, writer_loop};

const TOPICS: TableDefinition<&str, u32> = TableDefinition::new("topics");
const OFFSETS: TableDefinition<&str, u64> = TableDefinition::new("consumer_offsets");

type TopicMap = RwLock<HashMap<String, Arc<Vec<Partition>>>>;
type Topics = Arc<TopicMap>;

struct AppendReq {
    topic: String,
    partition: u32,
    records: Vec<NewRecord>,
    /// Append only if the partition ends here ([`EventLog::append_at`]).
    expect: Option<u64>,
    reply: oneshot::Sender<Result<Vec<u64>, StorageError>>,
}

pub struct RedbLog {
    db: Arc<Database>,
    data: PathBuf,
    topics: Topics,
    writer: mpsc::Sender<AppendReq>,
    deferred: Deferred,
}

/// Topics whose appends are synced by the syncer thread, with their interval.
type DeferredMap = RwLock<HashMap<String, Duration>>;
type Deferred = Arc<DeferredMap>;

fn partition_path(data: &Path, topic: &str, p: u32) -> PathBuf {
    data.join(topic).join(format!("{p}.log"))
}
impl RedbLog {
    /// Opens the log whose metadata lives in the redb file `path`; records live in the
    /// directory `path` with the extension `data`.
    pub fn open(path: &Path) -> Result<RedbLog, StorageError> {
        // Directories and new files are synced into their parents: a file whose entry
        // a power failure can take back is not durable, whatever its own fsyncs.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_dir_durable(dir)?;
        }
        let data = path.with_extension("data");
        create_dir_durable(&data)?;
        let existed = path.exists();
        let db = Arc::new(Database::create(path)?);
        if !existed {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                sync_dir(dir)?;
            }
        }
        let mut topics = HashMap::new();
        {
            let w = db.begin_write()?;
            w.open_table(TOPICS)?;
            w.open_table(OFFSETS)?;
            w.commit()?;
        }
        {
            let r = db.begin_read()?;
            let t = r.open_table(TOPICS)?;
            for entry in t.iter()? {
                let (name, parts) = entry?;
                let name = name.value().to_string();
                let ps = (0..parts.value()).map(|p| open_partition(&partition_path(&data, &name, p))).collect::<Result<Vec<_>, _>>()?;
                topics.insert(name, Arc::new(ps));
            }
        }
        let topics: Topics = Arc::new(RwLock::new(topics));
        let deferred: Deferred = Arc::default();
        let (tx, rx) = mpsc::channel(1024);
        let (wtopics, wdeferred) = (topics.clone(), deferred.clone());
        std::thread::Builder::new().name("kurz-log-writer".into()).spawn(move || writer_loop(wtopics, wdeferred, rx))?;
        Ok(RedbLog { db, data, topics, writer: tx, deferred })
    }

    /// Syncs `topic`'s appends at most every `every` instead of on each append (see the
    /// module docs); `Duration::ZERO` goes back to a sync per append. Appends answer
    /// once written; readers see the records after the next sync.
    pub fn defer_sync(&self, topic: &str, every: Duration) {
        let mut d = self.deferred.write().expect("deferred map poisoned");
        if every.is_zero() {
            d.remove(topic);
            drop(d);
            // What it wrote meanwhile is synced and shown now, not at its next append.
            let parts = self.topics.read().expect("topic map poisoned").get(topic).cloned();
            for part in parts.iter().flat_map(|p| p.iter()) {
                sync_deferred(part);
            }
            return;
        }
        let first = d.is_empty();
        d.insert(topic.to_string(), every);
        if first {
            let (topics, deferred) = (Arc::downgrade(&self.topics), Arc::downgrade(&self.deferred));
            let spawned = std::thread::Builder::new().name("kurz-log-syncer".into()).spawn(move || syncer_loop(topics, deferred));
            if let Err(e) = spawned {
                tracing::error!(event = "log_syncer_not_started", error = %e, "syncing every append instead");
                d.clear();
            }
        }
    }

    async fn submit(&self, topic: &str, partition: u32, records: Vec<NewRecord>, expect: Option<u64>) -> Result<Vec<u64>, StorageError> {
        self.partition(topic, partition)?;
        if records.is_empty() && expect.is_none() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(AppendReq { topic: topic.to_string(), partition, records, expect, reply })
            .await
            .map_err(|_| StorageError::Closed("log writer"))?;
        rx.await.map_err(|_| StorageError::Closed("log writer"))?
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Vec<Partition>>, StorageError> {
        let topics = self.topics.read().expect("topic map poisoned");
        let t = topics.get(topic).ok_or_else(|| StorageError::UnknownTopic(topic.to_string()))?;
        if partition as usize >= t.len() {
            return Err(StorageError::UnknownPartition { topic: topic.to_string(), partition });
        }
        Ok(t.clone())
    }
}

fn offset_key(group: &str, topic: &str, partition: u32) -> String {
    format!("{group}\u{0}{topic}\u{0}{partition}")
}

#[async_trait]
impl EventLog for RedbLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, StorageError> {
        if let Some(t) = self.topics.read().expect("topic map poisoned").get(topic) {
            return Ok(t.len() as u32);
        }
        let partitions = partitions.clamp(1, kurz_schemas::ids::MAX_PARTITIONS);
        let db = self.db.clone();
        let name = topic.to_string();
        let stored = tokio::task::spawn_blocking(move || -> Result<u32, StorageError> {
            let w = db.begin_write()?;
            let n = {
                let mut t = w.open_table(TOPICS)?;
                let existing = t.get(name.as_str())?.map(|v| v.value());
                match existing {
                    Some(n) => n,
                    None => {
                        t.insert(name.as_str(), partitions)?;
                        partitions
                    }
                }
            };
            w.commit()?;
            Ok(n)
        })
        .await
        .map_err(StorageError::engine)??;
        let parts = (0..stored).map(|p| open_partition(&partition_path(&self.data, topic, p))).collect::<Result<Vec<_>, _>>()?;
        let mut topics = self.topics.write().expect("topic map poisoned");
        let entry = topics.entry(topic.to_string()).or_insert_with(|| Arc::new(parts));
        Ok(entry.len() as u32)
    }

    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        let topics = self.topics.read().expect("topic map poisoned");
        topics.get(topic).map(|t| t.len() as u32).ok_or_else(|| StorageError::UnknownTopic(topic.to_string()))
    }

    async fn append(&self, topic: &str, partition: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        self.submit(topic, partition, records, None).await
    }

    /// Conditional for real: the writer thread, which alone moves a partition's end,
    /// compares the end it is about to write at.
    async fn append_at(&self, topic: &str, partition: u32, expected_end: u64, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        self.submit(topic, partition, records, Some(expected_end)).await
    }

    async fn sync(&self, topic: &str) -> Result<(), StorageError> {
        let parts = self.topics.read().expect("topic map poisoned").get(topic).cloned();
        if let Some(parts) = parts {
            tokio::task::spawn_blocking(move || parts.iter().for_each(sync_deferred)).await.map_err(StorageError::engine)?;
        }
        Ok(())
    }

    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        let parts = self.partition(topic, partition)?;
        let part = &parts[partition as usize];
        let end = *part.end.borrow();
        if from >= end || max == 0 {
            return Ok(Vec::new());
        }
        let last = end.min(from.saturating_add(max as u64)) - 1;
        // A few preads of whole batches; small enough to run on the caller's thread.
        read_partition(part, partition, from, last)
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let parts = self.partition(topic, partition)?;
        let end = *parts[partition as usize].end.borrow();
        Ok(end)
    }

    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError> {
        let parts = self.partition(topic, partition)?;
        let mut rx = parts[partition as usize].end.subscribe();
        let reached = match tokio::time::timeout(timeout, rx.wait_for(|end| *end > offset)).await {
            Ok(Ok(end)) => Some(*end),
            _ => None,
        };
        Ok(reached.unwrap_or_else(|| *rx.borrow()))
    }

    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), StorageError> {
        let db = self.db.clone();
        let key = offset_key(group, topic, partition);
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            let mut w = db.begin_write()?;
            w.set_durability(Durability::Immediate)?;
            w.open_table(OFFSETS)?.insert(key.as_str(), next_offset)?;
            w.commit()?;
            Ok(())
        })
        .await
        .map_err(StorageError::engine)?
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(OFFSETS)?;
        Ok(t.get(offset_key(group, topic, partition).as_str())?.map(|v| v.value()))
    }
}

/// Entry points for the fuzz targets (`fuzz/`): the partition file's recovery and the
/// batch decoder, over arbitrary bytes. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Recovers a partition file holding `bytes` (in `dir`), then reads every record it
    /// kept. Must never panic; whatever it keeps must read back.
    pub fn recover_and_read(dir: &Path, bytes: &[u8]) -> Result<usize, StorageError> {
        let path = dir.join("0.log");
        std::fs::write(&path, bytes)?;
        let part = open_partition(&path)?;
        let end = *part.end.borrow();
        if end == 0 {
            return Ok(0);
        }
        let records = read_partition(&part, 0, 0, end - 1)?;
        Ok(records.len())
    }

    /// Decodes one batch body, as reads do.
    pub fn decode_batch_body(body: &[u8]) -> Result<usize, StorageError> {
        let mut out = Vec::new();
        batch::decode_body(0, body, 0, u64::MAX, &mut out)?;
        Ok(out.len())
    }

    /// A well-formed batch of `records` starting at offset `first`, for seeding.
    pub fn encode_batch(first: u64, records: &[NewRecord]) -> Vec<u8> {
        let mut buf = Vec::new();
        batch::encode_batch(&mut buf, kurz_schemas::Ts(0), first, records);
        buf
    }
}
