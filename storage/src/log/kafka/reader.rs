//! Reads by offset: assigned (not subscribed) consumers, pooled per partition.
//!
//! Each reader remembers the offset it will deliver next. A read at that offset streams
//! on; a read elsewhere takes another pooled reader (up to `PER_PARTITION`) or seeks
//! one. `read` returns every record in `[from, min(from + max, high watermark))`, as
//! the embedded log does, so a caller that reads until empty has read the partition.

use super::config::KafkaConfig;
use super::kerr;
use crate::log::Record;
use crate::StorageError;
use futures::FutureExt;
use kurz_schemas::Ts;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PER_PARTITION: usize = 4;
/// How long a read waits for records the high watermark says exist.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a read waits at an offset where records exist before fetching from further
/// back (see `Readers::read`).
const MID_BATCH_WAIT: Duration = Duration::from_millis(250);

struct Reader {
    consumer: Arc<StreamConsumer>,
    topic: String,
    partition: u32,
    /// Offset after the last buffered record (or where the reader was assigned).
    next: u64,
    buf: VecDeque<Record>,
}

type Slot = Arc<tokio::sync::Mutex<Reader>>;

pub struct Readers {
    cfg: KafkaConfig,
    pool: Mutex<HashMap<(String, u32), Vec<Slot>>>,
    meta: Arc<rdkafka::consumer::BaseConsumer>,
}

fn to_record(partition: u32, m: &BorrowedMessage<'_>) -> Record {
    let headers = m
        .headers()
        .map(|h| h.iter().map(|x| (x.key.to_string(), x.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
        .unwrap_or_default();
    Record {
        partition,
        offset: m.offset().max(0) as u64,
        timestamp: Ts(m.timestamp().to_millis().unwrap_or(0)),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(),
        headers,
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

impl Reader {
    fn position(&self) -> u64 {
        self.buf.front().map(|r| r.offset).unwrap_or(self.next)
    }

    fn seek(&mut self, from: u64) -> Result<(), StorageError> {
        if self.position() == from {
            return Ok(());
        }
        if self.buf.front().is_some_and(|f| f.offset < from) && self.next > from {
            while self.buf.front().is_some_and(|f| f.offset < from) {
                self.buf.pop_front();
            }
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition as i32, Offset::Offset(from as i64)).map_err(|e| kerr("assign", e))?;
        self.consumer.assign(&tpl).map_err(|e| kerr("assign", e))?;
        self.buf.clear();
        self.next = from;
        Ok(())
    }

    /// Fetches again from `to` (below `next`), keeping what was already read: records
    /// below `next` are dropped as they arrive.
    fn rewind(&mut self, to: u64) -> Result<(), StorageError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition as i32, Offset::Offset(to as i64)).map_err(|e| kerr("assign", e))?;
        self.consumer.assign(&tpl).map_err(|e| kerr("assign", e))
    }

    /// Keeps `r` only if it is the record at `next`. Below it: a re-fetch from further
    /// back (see `rewind`). Above it: a record fetched for the reader's previous
    /// position, still queued when it was re-assigned (kurz's topics have no offset
    /// gaps: no transactions, no compaction), which must not pass for the record at `next`.
    fn push(&mut self, r: Record) {
        if r.offset == self.next {
            self.next = r.offset + 1;
            self.buf.push_back(r);
        }
    }

    async fn recv_one(&mut self, timeout: Duration) -> Result<bool, StorageError> {
        let consumer = self.consumer.clone();
        match tokio::time::timeout(timeout, consumer.recv()).await {
            Ok(Ok(m)) => {
                let r = to_record(self.partition, &m);
                self.push(r);
                Ok(true)
            }
            Ok(Err(e)) => Err(kerr("fetch", e)),
            Err(_) => Ok(false),
        }
    }

    fn drain_ready(&mut self, max: usize) {
        while self.buf.len() < max {
            let consumer = self.consumer.clone();
            let next = consumer.recv().now_or_never();
            match next {
                Some(Ok(m)) => {
                    let r = to_record(self.partition, &m);
                    self.push(r);
                }
                _ => break,
            }
        }
    }
}

impl Readers {
    pub fn new(cfg: KafkaConfig, meta: Arc<rdkafka::consumer::BaseConsumer>) -> Readers {
        Readers { cfg, pool: Mutex::new(HashMap::new()), meta }
    }

    fn new_reader(&self, topic: &str, partition: u32, from: u64) -> Result<Slot, StorageError> {
        let consumer: StreamConsumer = self
            .cfg
            .client()
            .set("group.id", "kurz-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "5")
            .set("queued.max.messages.kbytes", "4096")
            .set("queued.min.messages", "2000")
            .create()
            .map_err(|e| kerr("reader", e))?;
        let mut r = Reader { consumer: Arc::new(consumer), topic: topic.to_string(), partition, next: u64::MAX, buf: VecDeque::new() };
        r.seek(from)?;
        Ok(Arc::new(tokio::sync::Mutex::new(r)))
    }

    /// Like `pick`, but never a reader in use (the caller may hold one): a new, unpooled
    /// one when the pool is busy.
    fn pick_free(&self, topic: &str, partition: u32, from: u64) -> Result<Slot, StorageError> {
        {
            let pool = self.pool.lock().expect("reader pool poisoned");
            if let Some(slots) = pool.get(&(topic.to_string(), partition)) {
                if let Some(s) = slots.iter().find(|s| s.try_lock().is_ok_and(|r| r.position() == from)) {
                    return Ok(s.clone());
                }
                if slots.len() >= PER_PARTITION {
                    if let Some(s) = slots.iter().find(|s| s.try_lock().is_ok()) {
                        return Ok(s.clone());
                    }
                    drop(pool);
                    return self.new_reader(topic, partition, from);
                }
            }
        }
        self.pick(topic, partition, from)
    }

    /// A reader for `from`: one already there, else a new one, else any free one.
    fn pick(&self, topic: &str, partition: u32, from: u64) -> Result<Slot, StorageError> {
        let mut pool = self.pool.lock().expect("reader pool poisoned");
        let slots = pool.entry((topic.to_string(), partition)).or_default();
        for s in slots.iter() {
            if let Ok(r) = s.try_lock() {
                if r.position() == from {
                    return Ok(s.clone());
                }
            }
        }
        if slots.len() < PER_PARTITION {
            let s = self.new_reader(topic, partition, from)?;
            slots.push(s.clone());
            return Ok(s);
        }
        Ok(slots.iter().find(|s| s.try_lock().is_ok()).unwrap_or(&slots[0]).clone())
    }

    fn discard(&self, topic: &str, partition: u32, slot: &Slot) {
        let mut pool = self.pool.lock().expect("reader pool poisoned");
        if let Some(slots) = pool.get_mut(&(topic.to_string(), partition)) {
            slots.retain(|s| !Arc::ptr_eq(s, slot));
        }
        tracing::warn!(
            event = "kafka_reader_discarded",
            topic,
            partition,
            "a reader did not deliver in time; the next read takes a new one"
        );
    }

    /// Every record in `[from, min(from + max, end))`.
    pub async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let slot = self.pick(topic, partition, from)?;
        let mut r = slot.lock().await;
        r.seek(from)?;
        if r.buf.is_empty() {
            let target = self.end_offset(topic, partition).await?.min(from.saturating_add(max as u64));
            let mut deadline = tokio::time::Instant::now() + FETCH_TIMEOUT;
            let mut back = 8u64;
            let mut reached = r.next;
            while r.next < target {
                // Checked on every turn, and moved only by progress: records that arrive
                // but are not the one at `next` (re-fetched from further back, or queued
                // for an earlier position) must not keep a read going forever.
                if r.next > reached {
                    (reached, deadline) = (r.next, tokio::time::Instant::now() + FETCH_TIMEOUT);
                }
                if tokio::time::Instant::now() >= deadline {
                    // A reader that cannot deliver what exists is not used again: after
                    // a long pause of the process (SIGSTOP) one was seen never to fetch
                    // again, so every retry of the partition failed the same way.
                    drop(r);
                    self.discard(topic, partition, &slot);
                    return Err(kerr("fetch", format!("{topic}/{partition} offset {from} not delivered in time")));
                }
                if r.recv_one(MID_BATCH_WAIT).await? {
                    continue;
                }
                // Records exist past `next` but none came: tansu 0.6 returns nothing for a
                // fetch that starts inside a record batch (Kafka returns the batch). Fetch
                // from further back, doubling, and drop what is below `next`.
                let to = r.next.saturating_sub(back);
                r.rewind(to)?;
                back = back.saturating_mul(4);
            }
        }
        r.drain_ready(max);
        let n = r.buf.len().min(max);
        Ok(r.buf.drain(..n).collect())
    }

    /// The offset after the last record. Not the broker's high watermark as such:
    /// tansu 0.6 answers ListOffsets(latest) with the base offset of the last record
    /// batch plus one (a 10-record batch at 0 gives 1, not 10), so this reads the last
    /// batch from there and takes the offset after its last record. On a broker that
    /// answers correctly, that batch read returns exactly one record.
    pub async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let hi = self.watermark(topic, partition).await?;
        if hi == 0 {
            return Ok(0);
        }
        let slot = self.pick_free(topic, partition, hi - 1)?;
        let mut r = slot.lock().await;
        r.seek(hi - 1)?;
        if r.buf.is_empty() && !r.recv_one(FETCH_TIMEOUT).await? {
            drop(r);
            self.discard(topic, partition, &slot);
            return Err(kerr("fetch", format!("{topic}/{partition}: no record at {} below the high watermark", hi - 1)));
        }
        r.drain_ready(usize::MAX);
        Ok(r.next.max(hi))
    }

    /// The broker's high watermark. Right after a topic is created the client's metadata
    /// may not know its partitions yet ("Unknown partition"), so errors are retried for
    /// a few seconds before they count.
    async fn watermark(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let mut attempt = 0;
        loop {
            let meta = self.meta.clone();
            let t = topic.to_string();
            let r = tokio::task::spawn_blocking(move || meta.fetch_watermarks(&t, partition as i32, Duration::from_secs(10)))
                .await
                .map_err(StorageError::engine)?;
            match r {
                Ok((_, hi)) => return Ok(hi.max(0) as u64),
                Err(e) if attempt < 100 => {
                    attempt += 1;
                    tracing::debug!(event = "watermark_retry", topic, partition, attempt, error = %e);
                    // Ask for the topic's metadata again: the client's cache may predate it.
                    let (meta, t) = (self.meta.clone(), topic.to_string());
                    let _ = tokio::task::spawn_blocking(move || meta.fetch_metadata(Some(&t), Duration::from_secs(5))).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(kerr("watermarks", e)),
            }
        }
    }

    pub async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError> {
        let slot = self.pick(topic, partition, offset)?;
        let mut r = slot.lock().await;
        r.seek(offset)?;
        if r.buf.is_empty() {
            r.recv_one(timeout).await?;
            r.drain_ready(1024);
        }
        Ok(r.next.max(offset))
    }
}
