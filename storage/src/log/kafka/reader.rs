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

    fn push(&mut self, r: Record) {
        if r.offset >= self.next {
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

    async fn high_watermark(&self) -> Result<u64, StorageError> {
        let (c, t, p) = (self.consumer.clone(), self.topic.clone(), self.partition as i32);
        tokio::task::spawn_blocking(move || c.fetch_watermarks(&t, p, Duration::from_secs(10)))
            .await
            .map_err(StorageError::engine)?
            .map(|(_, hi)| hi.max(0) as u64)
            .map_err(|e| kerr("watermarks", e))
    }

    async fn read(&mut self, max: usize) -> Result<Vec<Record>, StorageError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if self.buf.is_empty() {
            let hi = self.high_watermark().await?;
            let target = hi.min(self.next.saturating_add(max as u64));
            while self.next < target {
                if !self.recv_one(FETCH_TIMEOUT).await? {
                    return Err(kerr("fetch", format!("{}/{} offset {} not delivered in time", self.topic, self.partition, self.next)));
                }
            }
        }
        self.drain_ready(max);
        let n = self.buf.len().min(max);
        Ok(self.buf.drain(..n).collect())
    }
}

impl Readers {
    pub fn new(cfg: KafkaConfig) -> Readers {
        Readers { cfg, pool: Mutex::new(HashMap::new()) }
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

    pub async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        let slot = self.pick(topic, partition, from)?;
        let mut r = slot.lock().await;
        r.seek(from)?;
        r.read(max).await
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
