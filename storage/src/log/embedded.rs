//! The embedded event log, on redb.
//!
//! One redb file holds every topic: a table per topic, a `topics` table with partition
//! counts and a `consumer_offsets` table. A topic's table holds one row per append (a
//! batch, as a Kafka log segment holds record batches), keyed by `(partition, offset of
//! its first record)`: an append of 500 clicks is one B-tree insert, not 500, and a read
//! decodes whole batches. A batch row is `count u32 | (len u32 | record)*`.
//!
//! **Durability (fsync policy).** An append is acknowledged only after the write
//! transaction holding it has committed with `Durability::Immediate`, which fsyncs.
//! Appends from all callers go through one writer thread that takes every request
//! waiting at that moment into one transaction (group commit): under load many appends
//! share one fsync, and an idle log still fsyncs each append before answering.
//! Consumer-position commits are durable the same way.
//!
//! redb, not fjall: kurz needs multi-table atomic commits (the read store writes rows and
//! its position in one transaction) and ordered range reads more than LSM write
//! throughput; redb is a single-file, pure-Rust, copy-on-write B-tree with a stable file
//! format, crash safety without a WAL to replay, and no background compaction threads.

use super::{EventLog, NewRecord, Record};
use crate::StorageError;
use async_trait::async_trait;
use kurz_schemas::Ts;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

const TOPICS: TableDefinition<&str, u32> = TableDefinition::new("topics");
const OFFSETS: TableDefinition<&str, u64> = TableDefinition::new("consumer_offsets");

/// The table of a topic's batches. (`b:` keeps it apart from the per-record tables of
/// kurz before 0.1's batched layout.)
fn table_name(topic: &str) -> String {
    format!("b:{topic}")
}

fn topic_table(name: &str) -> TableDefinition<'_, (u32, u64), &'static [u8]> {
    TableDefinition::new(name)
}

struct Partition {
    /// End offset, published after the commit that made records durable.
    end: watch::Sender<u64>,
}

struct AppendReq {
    topic: String,
    partition: u32,
    records: Vec<NewRecord>,
    reply: oneshot::Sender<Result<Vec<u64>, StorageError>>,
}

pub struct RedbLog {
    db: Arc<Database>,
    topics: Arc<RwLock<HashMap<String, Arc<Vec<Partition>>>>>,
    writer: mpsc::Sender<AppendReq>,
}

impl RedbLog {
    pub fn open(path: &Path) -> Result<RedbLog, StorageError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = Arc::new(Database::create(path)?);
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
                let table = table_name(&name);
                let data = r.open_table(topic_table(&table))?;
                let mut ps = Vec::new();
                for p in 0..parts.value() {
                    let end = match data.range((p, 0)..=(p, u64::MAX))?.next_back() {
                        Some(last) => {
                            let (k, v) = last?;
                            k.value().1
                                + batch_len(v.value()).ok_or_else(|| StorageError::Corrupt(format!("{name} batch {p}/{}", k.value().1)))?
                                    as u64
                        }
                        None => 0,
                    };
                    ps.push(Partition { end: watch::Sender::new(end) });
                }
                topics.insert(name, Arc::new(ps));
            }
        }
        let topics = Arc::new(RwLock::new(topics));
        let (tx, rx) = mpsc::channel(1024);
        let (wdb, wtopics) = (db.clone(), topics.clone());
        std::thread::Builder::new().name("kurz-log-writer".into()).spawn(move || writer_loop(wdb, wtopics, rx))?;
        Ok(RedbLog { db, topics, writer: tx })
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

fn writer_loop(db: Arc<Database>, topics: Arc<RwLock<HashMap<String, Arc<Vec<Partition>>>>>, mut rx: mpsc::Receiver<AppendReq>) {
    const MAX_BATCH: usize = 512;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let result = write_batch(&db, &topics, &batch);
        match result {
            Ok((offsets, ends)) => {
                {
                    let topics = topics.read().expect("topic map poisoned");
                    for ((topic, partition), end) in ends {
                        if let Some(t) = topics.get(&topic) {
                            t[partition as usize].end.send_replace(end);
                        }
                    }
                }
                for (req, offs) in batch.into_iter().zip(offsets) {
                    let _ = req.reply.send(Ok(offs));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for req in batch {
                    let _ = req.reply.send(Err(StorageError::Engine(msg.clone())));
                }
            }
        }
    }
}

type Ends = HashMap<(String, u32), u64>;

fn write_batch(
    db: &Database,
    topics: &RwLock<HashMap<String, Arc<Vec<Partition>>>>,
    batch: &[AppendReq],
) -> Result<(Vec<Vec<u64>>, Ends), StorageError> {
    let now = Ts::now();
    let mut ends: Ends = HashMap::new();
    let mut offsets = Vec::with_capacity(batch.len());
    let mut w = db.begin_write()?;
    w.set_durability(Durability::Immediate)?;
    {
        let topics = topics.read().expect("topic map poisoned");
        let mut buf = Vec::new();
        for req in batch {
            let parts = topics.get(&req.topic).ok_or_else(|| StorageError::UnknownTopic(req.topic.clone()))?;
            let p = parts
                .get(req.partition as usize)
                .ok_or_else(|| StorageError::UnknownPartition { topic: req.topic.clone(), partition: req.partition })?;
            let next = ends.entry((req.topic.clone(), req.partition)).or_insert_with(|| *p.end.borrow());
            let name = table_name(&req.topic);
            let mut table = w.open_table(topic_table(&name))?;
            encode_batch(&mut buf, now, &req.records);
            table.insert((req.partition, *next), buf.as_slice())?;
            offsets.push((*next..*next + req.records.len() as u64).collect());
            *next += req.records.len() as u64;
        }
    }
    w.commit()?;
    Ok((offsets, ends))
}

fn encode_batch(buf: &mut Vec<u8>, ts: Ts, records: &[NewRecord]) {
    buf.clear();
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let at = buf.len();
        buf.extend_from_slice(&0u32.to_le_bytes());
        encode_record(buf, ts, r);
        let len = (buf.len() - at - 4) as u32;
        buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// How many records a batch row holds.
fn batch_len(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(..4)?.try_into().ok()?))
}

/// The records of the batch row that starts at `first`, with offsets in `from..=last`.
fn decode_batch(partition: u32, first: u64, b: &[u8], from: u64, last: u64, out: &mut Vec<Record>) -> Result<(), StorageError> {
    let corrupt = || StorageError::Corrupt(format!("batch {partition}/{first}"));
    let n = batch_len(b).ok_or_else(corrupt)?;
    let mut at = 4usize;
    for i in 0..n as u64 {
        let offset = first + i;
        if offset > last {
            break;
        }
        let len = u32::from_le_bytes(b.get(at..at + 4).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as usize;
        let rec = b.get(at + 4..at + 4 + len).ok_or_else(corrupt)?;
        at += 4 + len;
        if offset >= from {
            out.push(decode_record(partition, offset, rec)?);
        }
    }
    Ok(())
}

// Record layout: ts i64 | key_len u32 | key | n_headers u16 | (name_len u16 | name |
// value_len u32 | value)* | payload (rest). Little endian.
fn encode_record(buf: &mut Vec<u8>, ts: Ts, r: &NewRecord) {
    buf.extend_from_slice(&ts.0.to_le_bytes());
    buf.extend_from_slice(&(r.key.len() as u32).to_le_bytes());
    buf.extend_from_slice(r.key.as_bytes());
    buf.extend_from_slice(&(r.headers.len() as u16).to_le_bytes());
    for (k, v) in &r.headers {
        buf.extend_from_slice(&(k.len() as u16).to_le_bytes());
        buf.extend_from_slice(k.as_bytes());
        buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        buf.extend_from_slice(v);
    }
    buf.extend_from_slice(&r.payload);
}

fn decode_record(partition: u32, offset: u64, b: &[u8]) -> Result<Record, StorageError> {
    let corrupt = || StorageError::Corrupt(format!("record {partition}/{offset}"));
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], StorageError> {
        let s = b.get(at..at + n).ok_or_else(corrupt)?;
        at += n;
        Ok(s)
    };
    let ts = i64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt())?);
    let klen = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
    let key = String::from_utf8(take(klen)?.to_vec()).map_err(|_| corrupt())?;
    let nh = u16::from_le_bytes(take(2)?.try_into().map_err(|_| corrupt())?) as usize;
    let mut headers = Vec::with_capacity(nh);
    for _ in 0..nh {
        let kl = u16::from_le_bytes(take(2)?.try_into().map_err(|_| corrupt())?) as usize;
        let k = String::from_utf8(take(kl)?.to_vec()).map_err(|_| corrupt())?;
        let vl = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt())?) as usize;
        headers.push((k, take(vl)?.to_vec()));
    }
    let payload = b.get(at..).ok_or_else(corrupt)?.to_vec();
    Ok(Record { partition, offset, timestamp: Ts(ts), key, headers, payload })
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
            w.open_table(topic_table(&table_name(&name)))?;
            w.commit()?;
            Ok(n)
        })
        .await
        .map_err(StorageError::engine)??;
        let mut topics = self.topics.write().expect("topic map poisoned");
        let entry = topics
            .entry(topic.to_string())
            .or_insert_with(|| Arc::new((0..stored).map(|_| Partition { end: watch::Sender::new(0) }).collect()));
        Ok(entry.len() as u32)
    }

    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        let topics = self.topics.read().expect("topic map poisoned");
        topics.get(topic).map(|t| t.len() as u32).ok_or_else(|| StorageError::UnknownTopic(topic.to_string()))
    }

    async fn append(&self, topic: &str, partition: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        self.partition(topic, partition)?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(AppendReq { topic: topic.to_string(), partition, records, reply })
            .await
            .map_err(|_| StorageError::Closed("log writer"))?;
        rx.await.map_err(|_| StorageError::Closed("log writer"))?
    }

    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        let parts = self.partition(topic, partition)?;
        let end = *parts[partition as usize].end.borrow();
        if from >= end || max == 0 {
            return Ok(Vec::new());
        }
        // Only read below the published end: a record is visible once it is durable.
        let last = end.min(from.saturating_add(max as u64)) - 1;
        let r = self.db.begin_read()?;
        let name = table_name(topic);
        let t = r.open_table(topic_table(&name))?;
        let mut out = Vec::with_capacity((last - from + 1) as usize);
        // The batch holding `from` starts at or before it.
        let start = match t.range((partition, 0)..=(partition, from))?.next_back() {
            Some(row) => row?.0.value().1,
            None => from,
        };
        for entry in t.range((partition, start)..=(partition, last))? {
            let (k, v) = entry?;
            decode_batch(partition, k.value().1, v.value(), from, last, &mut out)?;
        }
        Ok(out)
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
