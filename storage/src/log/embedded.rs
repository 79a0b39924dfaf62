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
//! redb for the metadata because position commits are small random updates that want
//! atomic, crash-safe replacement; the records are append-only and read in order,
//! which plain files do best.

use super::{EventLog, NewRecord, Record};
use crate::StorageError;
use async_trait::async_trait;
use kurz_schemas::Ts;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

const TOPICS: TableDefinition<&str, u32> = TableDefinition::new("topics");
const OFFSETS: TableDefinition<&str, u64> = TableDefinition::new("consumer_offsets");

const MAGIC: [u8; 4] = *b"KZB1";
const HEADER: usize = 12;
/// A sparse index entry every this many bytes of a partition file.
const INDEX_EVERY: u64 = 64 << 10;
/// How far back from a file's end batches are checksummed on open: past the last
/// group commits, where a crash can leave a torn write. Older batches were fsynced
/// before anything after them was acknowledged.
const VERIFY_TAIL: u64 = 16 << 20;
/// How much a read fetches per `pread`.
const READ_CHUNK: usize = 256 << 10;

/// One partition's file and what readers may see of it.
struct Partition {
    file: File,
    /// End offset, published after the fsync that made records durable.
    end: watch::Sender<u64>,
    /// Published file length and sparse index `(first_offset, position)` of batches.
    visible: RwLock<Visible>,
}

#[derive(Default)]
struct Visible {
    len: u64,
    index: Vec<(u64, u64)>,
}

impl Visible {
    fn add(&mut self, first: u64, pos: u64) {
        if self.index.last().is_none_or(|&(_, p)| pos >= p + INDEX_EVERY) {
            self.index.push((first, pos));
        }
    }
    /// Where to start reading for `offset`: the last indexed batch at or before it.
    fn start(&self, offset: u64) -> u64 {
        match self.index.partition_point(|&(first, _)| first <= offset) {
            0 => 0,
            i => self.index[i - 1].1,
        }
    }
}

type Topics = Arc<RwLock<HashMap<String, Arc<Vec<Partition>>>>>;

struct AppendReq {
    topic: String,
    partition: u32,
    records: Vec<NewRecord>,
    reply: oneshot::Sender<Result<Vec<u64>, StorageError>>,
}

pub struct RedbLog {
    db: Arc<Database>,
    data: PathBuf,
    topics: Topics,
    writer: mpsc::Sender<AppendReq>,
}

fn partition_path(data: &Path, topic: &str, p: u32) -> PathBuf {
    data.join(topic).join(format!("{p}.log"))
}

/// Opens (creating) a partition file and recovers it: walks its batches, truncates a
/// torn or corrupt tail, and builds the sparse index.
fn open_partition(path: &Path) -> Result<Partition, StorageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    let file_len = file.metadata()?.len();
    let mut visible = Visible::default();
    let (mut pos, mut end) = (0u64, 0u64);
    let mut header = [0u8; HEADER + 12];
    while pos + (HEADER + 12) as u64 <= file_len {
        file.read_exact_at(&mut header, pos)?;
        let len = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as u64;
        if header[..4] != MAGIC || len < 12 || pos + HEADER as u64 + len > file_len {
            break;
        }
        let first = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes")) as u64;
        if first != end {
            break;
        }
        if pos + VERIFY_TAIL >= file_len {
            let mut body = vec![0u8; len as usize];
            file.read_exact_at(&mut body, pos + HEADER as u64)?;
            if crc32fast::hash(&body) != u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) {
                break;
            }
        }
        visible.add(first, pos);
        end = first + count;
        pos += HEADER as u64 + len;
    }
    if pos < file_len {
        tracing::warn!(event = "log_tail_truncated", path = %path.display(), kept = pos, dropped = file_len - pos, "a torn or corrupt tail (never acknowledged) was cut off");
        file.set_len(pos)?;
        file.sync_all()?;
    }
    visible.len = pos;
    Ok(Partition { file, end: watch::Sender::new(end), visible: RwLock::new(visible) })
}

impl RedbLog {
    /// Opens the log whose metadata lives in the redb file `path`; records live in the
    /// directory `path` with the extension `data`.
    pub fn open(path: &Path) -> Result<RedbLog, StorageError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let data = path.with_extension("data");
        std::fs::create_dir_all(&data)?;
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
                let ps = (0..parts.value()).map(|p| open_partition(&partition_path(&data, &name, p))).collect::<Result<Vec<_>, _>>()?;
                topics.insert(name, Arc::new(ps));
            }
        }
        let topics: Topics = Arc::new(RwLock::new(topics));
        let (tx, rx) = mpsc::channel(1024);
        let wtopics = topics.clone();
        std::thread::Builder::new().name("kurz-log-writer".into()).spawn(move || writer_loop(wtopics, rx))?;
        Ok(RedbLog { db, data, topics, writer: tx })
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

fn writer_loop(topics: Topics, mut rx: mpsc::Receiver<AppendReq>) {
    const MAX_BATCH: usize = 512;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match write_group(&topics, &batch) {
            Ok(offsets) => {
                for (req, offs) in batch.into_iter().zip(offsets) {
                    let _ = req.reply.send(Ok(offs));
                }
            }
            Err(e) => {
                tracing::error!(event = "log_append_failed", error = %e);
                let msg = e.to_string();
                for req in batch {
                    let _ = req.reply.send(Err(StorageError::Engine(msg.clone())));
                }
            }
        }
    }
}

/// One pending partition of a group: the bytes to append and the batches in them.
struct Pending {
    parts: Arc<Vec<Partition>>,
    p: usize,
    buf: Vec<u8>,
    /// `(first_offset, position)` of each batch, and the end offset after them.
    batches: Vec<(u64, u64)>,
    next: u64,
}

/// Writes a group of appends: each partition's batches in one write, then one fsync per
/// touched file, then publishes. On failure, truncates every touched file back.
fn write_group(topics: &Topics, group: &[AppendReq]) -> Result<Vec<Vec<u64>>, StorageError> {
    let now = Ts::now();
    let mut pending: Vec<((String, u32), Pending)> = Vec::new();
    let mut offsets = Vec::with_capacity(group.len());
    {
        let topics = topics.read().expect("topic map poisoned");
        for req in group {
            let parts = topics.get(&req.topic).ok_or_else(|| StorageError::UnknownTopic(req.topic.clone()))?;
            if req.partition as usize >= parts.len() {
                return Err(StorageError::UnknownPartition { topic: req.topic.clone(), partition: req.partition });
            }
            let key = (req.topic.clone(), req.partition);
            let i = match pending.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let part = &parts[req.partition as usize];
                    let next = *part.end.borrow();
                    pending.push((
                        key,
                        Pending { parts: parts.clone(), p: req.partition as usize, buf: Vec::new(), batches: Vec::new(), next },
                    ));
                    pending.len() - 1
                }
            };
            let pd = &mut pending[i].1;
            let first = pd.next;
            pd.batches.push((first, pd.buf.len() as u64));
            encode_batch(&mut pd.buf, now, first, &req.records);
            pd.next += req.records.len() as u64;
            offsets.push((first..pd.next).collect());
        }
    }
    let mut written: Vec<(&Pending, u64)> = Vec::new();
    let result = (|| -> Result<(), StorageError> {
        for (_, pd) in &pending {
            let part = &pd.parts[pd.p];
            let base = part.visible.read().expect("index poisoned").len;
            written.push((pd, base));
            part.file.write_all_at(&pd.buf, base)?;
        }
        for (_, pd) in &pending {
            pd.parts[pd.p].file.sync_data()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (pd, base) in written {
            let _ = pd.parts[pd.p].file.set_len(base);
        }
        return Err(e);
    }
    for (_, pd) in &pending {
        let part = &pd.parts[pd.p];
        {
            let mut v = part.visible.write().expect("index poisoned");
            let base = v.len;
            for &(first, at) in &pd.batches {
                v.add(first, base + at);
            }
            v.len = base + pd.buf.len() as u64;
        }
        part.end.send_replace(pd.next);
    }
    Ok(offsets)
}

fn encode_batch(buf: &mut Vec<u8>, ts: Ts, first: u64, records: &[NewRecord]) {
    let start = buf.len();
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&[0u8; 8]); // body length and checksum, filled in below
    buf.extend_from_slice(&first.to_le_bytes());
    buf.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        let at = buf.len();
        buf.extend_from_slice(&0u32.to_le_bytes());
        encode_record(buf, ts, r);
        let len = (buf.len() - at - 4) as u32;
        buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    let body = start + HEADER;
    let len = (buf.len() - body) as u32;
    let crc = crc32fast::hash(&buf[body..]);
    buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

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

/// The records of one batch body with offsets in `from..=last`.
fn decode_body(partition: u32, body: &[u8], from: u64, last: u64, out: &mut Vec<Record>) -> Result<(), StorageError> {
    let corrupt = || StorageError::Corrupt(format!("batch in partition {partition}"));
    let first = u64::from_le_bytes(body.get(..8).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?);
    let n = u32::from_le_bytes(body.get(8..12).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as u64;
    let mut at = 12usize;
    for i in 0..n {
        let offset = first + i;
        if offset > last {
            break;
        }
        let len = u32::from_le_bytes(body.get(at..at + 4).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?) as usize;
        let rec = body.get(at + 4..at + 4 + len).ok_or_else(corrupt)?;
        at += 4 + len;
        if offset >= from {
            out.push(decode_record(partition, offset, rec)?);
        }
    }
    Ok(())
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

/// Reads the records in `from..=last` of a partition, below its published length.
fn read_partition(part: &Partition, partition: u32, from: u64, last: u64) -> Result<Vec<Record>, StorageError> {
    let (mut pos, len) = {
        let v = part.visible.read().expect("index poisoned");
        (v.start(from), v.len)
    };
    let mut out = Vec::with_capacity((last - from + 1).min(65_536) as usize);
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = pos; // file position of buf[0]
    while pos < len && out.last().is_none_or(|r: &Record| r.offset < last) {
        // Make sure the batch header and body at `pos` are in the buffer.
        let need_header = (pos - buf_at) as usize + HEADER;
        if buf.len() < need_header {
            buf_at = pos;
            buf.resize(READ_CHUNK.min((len - pos) as usize).max(HEADER), 0);
            part.file.read_exact_at(&mut buf, pos)?;
        }
        let off = (pos - buf_at) as usize;
        if buf[off..off + 4] != MAGIC {
            return Err(StorageError::Corrupt(format!("partition {partition}: no batch at byte {pos}")));
        }
        let body_len = u32::from_le_bytes(buf[off + 4..off + 8].try_into().expect("4 bytes")) as usize;
        if buf.len() < off + HEADER + body_len {
            buf_at = pos;
            buf.resize((HEADER + body_len).max(READ_CHUNK.min((len - pos) as usize)), 0);
            part.file.read_exact_at(&mut buf, pos)?;
        }
        let off = (pos - buf_at) as usize;
        let body = &buf[off + HEADER..off + HEADER + body_len];
        let first = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
        let count = u64::from(u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")));
        if first > last {
            break;
        }
        if first + count > from {
            decode_body(partition, body, from, last, &mut out)?;
        }
        pos += (HEADER + body_len) as u64;
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn recs(n: usize, tag: u8) -> Vec<NewRecord> {
        (0..n).map(|i| NewRecord::new(format!("k{i}"), vec![tag; i + 1]).header("h", vec![tag])).collect()
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_on_open_and_appends_continue_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            let log = RedbLog::open(&path).unwrap();
            log.ensure_topic("t", 1).await.unwrap();
            log.append("t", 0, recs(3, 1)).await.unwrap();
            log.append("t", 0, recs(2, 2)).await.unwrap();
        }
        let file = partition_path(&path.with_extension("data"), "t", 0);
        let good = std::fs::metadata(&file).unwrap().len();
        // A crash mid-write: half a batch at the end, never acknowledged.
        let mut torn = Vec::new();
        encode_batch(&mut torn, Ts(1), 5, &recs(4, 3));
        std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(&torn[..torn.len() / 2]).unwrap();
        let log = RedbLog::open(&path).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().len(), good, "the torn batch is gone");
        assert_eq!(log.end_offset("t", 0).await.unwrap(), 5);
        assert_eq!(log.append("t", 0, recs(1, 4)).await.unwrap(), vec![5]);
        let all = log.read("t", 0, 0, 100).await.unwrap();
        assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
        assert_eq!(all[5].payload, vec![4]);
    }

    #[tokio::test]
    async fn a_corrupt_batch_near_the_end_is_cut_off_with_everything_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let first_len;
        {
            let log = RedbLog::open(&path).unwrap();
            log.ensure_topic("t", 1).await.unwrap();
            log.append("t", 0, recs(3, 1)).await.unwrap();
            first_len = std::fs::metadata(partition_path(&path.with_extension("data"), "t", 0)).unwrap().len();
            log.append("t", 0, recs(3, 2)).await.unwrap();
        }
        let file = partition_path(&path.with_extension("data"), "t", 0);
        let mut bytes = std::fs::read(&file).unwrap();
        let flip = first_len as usize + HEADER + 20;
        bytes[flip] ^= 0xff;
        std::fs::write(&file, &bytes).unwrap();
        let log = RedbLog::open(&path).unwrap();
        assert_eq!(log.end_offset("t", 0).await.unwrap(), 3, "the second batch fails its checksum");
        assert_eq!(log.read("t", 0, 0, 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn reads_across_many_batches_use_the_sparse_index() {
        let dir = tempfile::tempdir().unwrap();
        let log = RedbLog::open(&dir.path().join("log.redb")).unwrap();
        log.ensure_topic("t", 1).await.unwrap();
        // About 1 KiB per record: the index gets an entry every ~64 batches.
        let big = |i: u64| NewRecord::new("k", vec![(i % 251) as u8; 1000]);
        for chunk in 0..40u64 {
            log.append("t", 0, (0..100).map(|i| big(chunk * 100 + i)).collect()).await.unwrap();
        }
        let parts = log.partition("t", 0).unwrap();
        assert!(parts[0].visible.read().unwrap().index.len() > 10);
        for from in [0u64, 1, 99, 100, 1234, 3999] {
            let got = log.read("t", 0, from, 7).await.unwrap();
            let want: Vec<u64> = (from..4000.min(from + 7)).collect();
            assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), want);
            assert!(got.iter().all(|r| r.payload == vec![(r.offset % 251) as u8; 1000]));
        }
        assert_eq!(log.read("t", 0, 0, 10_000).await.unwrap().len(), 4000);
    }
}
