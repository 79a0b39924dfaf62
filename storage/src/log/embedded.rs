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

use super::{EventLog, NewRecord, Record};
use crate::StorageError;
use async_trait::async_trait;
use kurz_schemas::Ts;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
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
    /// What has been written, synced or not: where the next batch goes.
    tail: Mutex<Tail>,
}

/// The written end of a partition file. Ahead of [`Visible`] only in a deferred-sync
/// topic, by the batches written since the last sync.
struct Tail {
    len: u64,
    next: u64,
    /// `(first_offset, position)` of the batches written but not yet synced.
    unsynced: Vec<(u64, u64)>,
}

impl Partition {
    /// Publishes what was written up to `len`/`next`, with its batches, to readers.
    /// Never moves backwards (a sync that raced a later one publishes nothing new).
    fn publish(&self, batches: &[(u64, u64)], len: u64, next: u64) {
        {
            let mut v = self.visible.write().expect("index poisoned");
            if len <= v.len {
                return;
            }
            let from = v.len;
            for &(first, at) in batches.iter().filter(|&&(_, at)| at >= from) {
                v.add(first, at);
            }
            v.len = len;
        }
        self.end.send_if_modified(|end| {
            let moved = next > *end;
            *end = (*end).max(next);
            moved
        });
    }
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
    deferred: Deferred,
}

/// Topics whose appends are synced by the syncer thread, with their interval.
type Deferred = Arc<RwLock<HashMap<String, Duration>>>;

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
    let tail = Tail { len: pos, next: end, unsynced: Vec::new() };
    Ok(Partition { file, end: watch::Sender::new(end), visible: RwLock::new(visible), tail: Mutex::new(tail) })
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

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Vec<Partition>>, StorageError> {
        let topics = self.topics.read().expect("topic map poisoned");
        let t = topics.get(topic).ok_or_else(|| StorageError::UnknownTopic(topic.to_string()))?;
        if partition as usize >= t.len() {
            return Err(StorageError::UnknownPartition { topic: topic.to_string(), partition });
        }
        Ok(t.clone())
    }
}

/// Syncs the deferred topics' written batches and publishes them, each topic at its
/// interval, until the log is dropped (then once more, so nothing written stays
/// unpublished in a process that keeps running).
fn syncer_loop(
    topics: std::sync::Weak<RwLock<HashMap<String, Arc<Vec<Partition>>>>>,
    deferred: std::sync::Weak<RwLock<HashMap<String, Duration>>>,
) {
    let mut last: HashMap<String, std::time::Instant> = HashMap::new();
    loop {
        let (Some(topics), Some(deferred)) = (topics.upgrade(), deferred.upgrade()) else { return };
        let due: Vec<(String, Duration)> = deferred.read().expect("deferred map poisoned").iter().map(|(t, d)| (t.clone(), *d)).collect();
        let mut wait = Duration::from_millis(200);
        for (topic, every) in due {
            let at = last.entry(topic.clone()).or_insert_with(std::time::Instant::now);
            let left = every.saturating_sub(at.elapsed());
            if !left.is_zero() {
                wait = wait.min(left);
                continue;
            }
            *at = std::time::Instant::now();
            wait = wait.min(every);
            let parts = topics.read().expect("topic map poisoned").get(&topic).cloned();
            for part in parts.iter().flat_map(|p| p.iter()) {
                sync_deferred(part);
            }
        }
        drop((topics, deferred));
        std::thread::sleep(wait);
    }
}

/// Syncs what a deferred-sync partition has written and publishes it.
fn sync_deferred(part: &Partition) {
    let (batches, len, next) = {
        let mut t = part.tail.lock().expect("tail poisoned");
        if t.unsynced.is_empty() {
            return;
        }
        (std::mem::take(&mut t.unsynced), t.len, t.next)
    };
    match part.file.sync_data() {
        Ok(()) => part.publish(&batches, len, next),
        Err(e) => {
            tracing::error!(event = "log_sync_failed", error = %e, "retrying at the next interval");
            let mut t = part.tail.lock().expect("tail poisoned");
            let mut again = batches;
            again.append(&mut t.unsynced);
            t.unsynced = again;
        }
    }
}

fn writer_loop(topics: Topics, deferred: Deferred, mut rx: mpsc::Receiver<AppendReq>) {
    const MAX_BATCH: usize = 512;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match write_group(&topics, &deferred, &batch) {
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
    // The log is closing: what deferred topics wrote reaches the disk now.
    for parts in topics.read().expect("topic map poisoned").values() {
        for part in parts.iter() {
            sync_deferred(part);
        }
    }
}

/// One pending partition of a group: the bytes to append and the batches in them.
struct Pending {
    parts: Arc<Vec<Partition>>,
    p: usize,
    /// Synced by the syncer thread, not by the group.
    deferred: bool,
    /// Where the group's bytes go in the file, and the offset of its first record.
    base: u64,
    buf: Vec<u8>,
    /// `(first_offset, position in buf)` of each batch, and the end offset after them.
    batches: Vec<(u64, u64)>,
    next: u64,
}

/// Writes a group of appends: each partition's batches in one write, then one fsync per
/// touched file (deferred-sync topics: none), then publishes. On failure, truncates
/// every touched file back. The writer thread is the only one that moves a tail, so
/// the tails read here stay put until the group is done.
fn write_group(topics: &Topics, deferred: &Deferred, group: &[AppendReq]) -> Result<Vec<Vec<u64>>, StorageError> {
    let now = Ts::now();
    let mut pending: Vec<((String, u32), Pending)> = Vec::new();
    let mut offsets = Vec::with_capacity(group.len());
    {
        let topics = topics.read().expect("topic map poisoned");
        let deferred = deferred.read().expect("deferred map poisoned");
        for req in group {
            let parts = topics.get(&req.topic).ok_or_else(|| StorageError::UnknownTopic(req.topic.clone()))?;
            if req.partition as usize >= parts.len() {
                return Err(StorageError::UnknownPartition { topic: req.topic.clone(), partition: req.partition });
            }
            let key = (req.topic.clone(), req.partition);
            let i = match pending.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let (base, next) = {
                        let t = parts[req.partition as usize].tail.lock().expect("tail poisoned");
                        (t.len, t.next)
                    };
                    let deferred = deferred.contains_key(&req.topic);
                    let pd = Pending {
                        parts: parts.clone(),
                        p: req.partition as usize,
                        deferred,
                        base,
                        buf: Vec::new(),
                        batches: Vec::new(),
                        next,
                    };
                    pending.push((key, pd));
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
    let mut written: Vec<&Pending> = Vec::new();
    let result = (|| -> Result<(), StorageError> {
        for (_, pd) in &pending {
            written.push(pd);
            pd.parts[pd.p].file.write_all_at(&pd.buf, pd.base)?;
        }
        for (_, pd) in pending.iter().filter(|(_, pd)| !pd.deferred) {
            pd.parts[pd.p].file.sync_data()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for pd in written {
            let _ = pd.parts[pd.p].file.set_len(pd.base);
        }
        return Err(e);
    }
    for (_, pd) in &pending {
        let part = &pd.parts[pd.p];
        let batches: Vec<(u64, u64)> = pd.batches.iter().map(|&(first, at)| (first, pd.base + at)).collect();
        let len = pd.base + pd.buf.len() as u64;
        let mut t = part.tail.lock().expect("tail poisoned");
        t.len = len;
        t.next = pd.next;
        if pd.deferred {
            t.unsynced.extend(batches);
        } else {
            // Synced above, and so is anything a deferred sync had not yet published.
            let mut all = std::mem::take(&mut t.unsynced);
            all.extend(batches);
            drop(t);
            part.publish(&all, len, pd.next);
        }
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
    async fn a_deferred_sync_topic_answers_at_once_and_shows_records_after_its_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            let log = RedbLog::open(&path).unwrap();
            log.ensure_topic("lazy", 2).await.unwrap();
            log.ensure_topic("eager", 1).await.unwrap();
            log.defer_sync("lazy", Duration::from_secs(3600));
            // Offsets are handed out at once and stay dense; nothing is visible yet.
            assert_eq!(log.append("lazy", 1, recs(3, 1)).await.unwrap(), vec![0, 1, 2]);
            assert_eq!(log.append("lazy", 1, recs(2, 2)).await.unwrap(), vec![3, 4]);
            assert_eq!(log.end_offset("lazy", 1).await.unwrap(), 0, "unsynced records are not visible");
            assert!(log.read("lazy", 1, 0, 10).await.unwrap().is_empty());
            // Another topic in the same group commit is synced and visible as before.
            assert_eq!(log.append("eager", 0, recs(1, 9)).await.unwrap(), vec![0]);
            assert_eq!(log.end_offset("eager", 0).await.unwrap(), 1);
            // A short interval: the syncer publishes them.
            log.defer_sync("lazy", Duration::from_millis(20));
            assert_eq!(log.wait_for("lazy", 1, 4, Duration::from_secs(10)).await.unwrap(), 5);
            let all = log.read("lazy", 1, 0, 10).await.unwrap();
            assert_eq!(all.iter().map(|r| r.payload.len()).collect::<Vec<_>>(), vec![1, 2, 3, 1, 2]);
            // Written, not yet synced, when the process goes away (as after kill -9: the
            // page cache keeps the bytes)...
            log.defer_sync("lazy", Duration::from_secs(3600));
            std::thread::sleep(Duration::from_millis(300)); // the syncer takes the long interval
            assert_eq!(log.append("lazy", 0, recs(2, 5)).await.unwrap(), vec![0, 1]);
            assert_eq!(log.end_offset("lazy", 0).await.unwrap(), 0);
        }
        // ... the records are there when the log opens again, and appends continue after them.
        let log = RedbLog::open(&path).unwrap();
        assert_eq!(log.end_offset("lazy", 0).await.unwrap(), 2);
        assert_eq!(log.end_offset("lazy", 1).await.unwrap(), 5);
        assert_eq!(log.append("lazy", 1, recs(1, 6)).await.unwrap(), vec![5]);
        assert_eq!(log.read("lazy", 1, 5, 10).await.unwrap()[0].payload, vec![6]);
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
