//! The event-log port: topics split into partitions; records with the same key land in
//! the same partition, in append order; consumers read from any offset and store their
//! positions by group.

pub mod claims;
pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod membership;

pub use membership::{run_owned, Assignment, Membership};

use crate::{metrics, StorageError};
use async_trait::async_trait;
use kurz_schemas::Ts;
use std::sync::Arc;
use std::time::Duration;

/// A record to append. `key` picks the partition (see [`partition_for`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    pub key: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl NewRecord {
    pub fn new(key: impl Into<String>, payload: Vec<u8>) -> NewRecord {
        NewRecord { key: key.into(), headers: Vec::new(), payload }
    }
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> NewRecord {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: Ts,
    pub key: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Creates `topic` with `partitions` partitions if it does not exist; an existing
    /// topic keeps its partition count, which is returned.
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, StorageError>;

    async fn partitions(&self, topic: &str) -> Result<u32, StorageError>;

    /// Appends records to one partition and returns their offsets once durable.
    async fn append(&self, topic: &str, partition: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError>;

    /// Appends records to one partition only if it ends at `expected_end`; otherwise
    /// appends nothing and answers [`StorageError::Moved`]. Backends that cannot make
    /// an append conditional (Kafka without transactions) check the end first and
    /// append, which leaves a window: a writer that needs the condition also claims its
    /// offsets ([`claims`]), which readers check.
    async fn append_at(&self, topic: &str, partition: u32, expected_end: u64, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        let end = self.end_offset(topic, partition).await?;
        if end != expected_end {
            return Err(StorageError::Moved { topic: topic.to_string(), partition, expected: expected_end, found: end });
        }
        self.append(topic, partition, records).await
    }

    /// Reads up to `max` records of a partition starting at offset `from`.
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError>;

    /// The offset the next appended record will get (the high watermark).
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, StorageError>;

    /// Waits until the partition holds a record at `offset` or `timeout` passes; returns
    /// the end offset.
    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError>;

    /// Makes every record appended to `topic` so far visible to readers now (a
    /// deferred-sync topic syncs at once). Used at shutdown, so what was flushed last
    /// is projected before the process stops.
    async fn sync(&self, topic: &str) -> Result<(), StorageError> {
        let _ = topic;
        Ok(())
    }

    /// Stores a consumer group's position: the next offset it will read.
    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), StorageError>;

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, StorageError>;

    /// Joins `group` for `topic`: which of its partitions this process works on. One
    /// process owns them all; a shared log divides them among the group's members.
    async fn join(&self, group: &str, topic: &str) -> Result<Membership, StorageError> {
        let _ = group;
        Ok(Membership::fixed(self.partitions(topic).await?))
    }
}

/// Appends records to the partitions their keys hash to; returns `(partition, offset)`
/// per record, in input order. See [`append_spread`].
pub async fn append_keyed(log: &dyn EventLog, topic: &str, records: Vec<NewRecord>) -> Result<Vec<(u32, u64)>, StorageError> {
    let spread = append_spread(log, topic, records).await?;
    match spread.error {
        Some(e) => Err(e),
        None => Ok(spread.placed.into_iter().map(|p| p.expect("every partition's append succeeded")).collect()),
    }
}

/// What [`append_spread`] did with each record.
#[derive(Debug)]
pub struct Spread {
    /// Per record, in input order: where it was appended, or `None` if its partition's
    /// append failed.
    pub placed: Vec<Option<(u32, u64)>>,
    /// The first failed partition's error.
    pub error: Option<StorageError>,
}

/// Appends records to the partitions their keys hash to, every partition at once: on
/// the embedded log they share one group commit (one fsync), on Kafka the produce
/// requests overlap. A partition's failure does not undo the others', so the caller
/// learns which records were appended and can retry exactly the rest.
pub async fn append_spread(log: &dyn EventLog, topic: &str, records: Vec<NewRecord>) -> Result<Spread, StorageError> {
    let n = log.partitions(topic).await?;
    let mut by_partition: Vec<(Vec<usize>, Vec<NewRecord>)> = (0..n).map(|_| (Vec::new(), Vec::new())).collect();
    let total = records.len();
    for (i, r) in records.into_iter().enumerate() {
        let slot = &mut by_partition[partition_for(&r.key, n) as usize];
        slot.0.push(i);
        slot.1.push(r);
    }
    let appends = by_partition
        .into_iter()
        .enumerate()
        .filter(|(_, (idx, _))| !idx.is_empty())
        .map(|(p, (idx, recs))| async move { (p as u32, idx, log.append(topic, p as u32, recs).await) });
    let mut spread = Spread { placed: vec![None; total], error: None };
    for (p, idx, result) in futures::future::join_all(appends).await {
        match result {
            Ok(offsets) => {
                for (i, o) in idx.into_iter().zip(offsets) {
                    spread.placed[i] = Some((p, o));
                }
            }
            Err(e) => {
                spread.error.get_or_insert(e);
            }
        }
    }
    Ok(spread)
}

/// The partition for `key`: murmur2 as Kafka's default partitioner computes it, so
/// kurz and any Kafka client agree on where a key lives.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 (seed 0x9747b28c), as in `org.apache.kafka.common.utils.Utils`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ len as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Counts every log operation once, whatever the backend.
pub struct Instrumented {
    inner: Arc<dyn EventLog>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn EventLog>) -> Instrumented {
        Instrumented { inner }
    }
}

fn observe<T>(op: &str, topic: &str, started: std::time::Instant, r: &Result<T, StorageError>) {
    let m = metrics::get();
    m.log_ops.with_label_values(&[op, topic, if r.is_ok() { "ok" } else { "error" }]).inc();
    m.log_seconds.with_label_values(&[op]).observe(started.elapsed().as_secs_f64());
}

#[async_trait]
impl EventLog for Instrumented {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, StorageError> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        self.inner.partitions(topic).await
    }
    async fn append(&self, topic: &str, partition: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        let t = std::time::Instant::now();
        let n = records.len();
        let r = self.inner.append(topic, partition, records).await;
        observe("append", topic, t, &r);
        if r.is_ok() {
            metrics::get().log_records_appended.with_label_values(&[topic]).inc_by(n as u64);
        }
        r
    }
    async fn append_at(&self, topic: &str, partition: u32, expected_end: u64, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        let t = std::time::Instant::now();
        let n = records.len();
        let r = self.inner.append_at(topic, partition, expected_end, records).await;
        observe("append", topic, t, &r);
        if r.is_ok() {
            metrics::get().log_records_appended.with_label_values(&[topic]).inc_by(n as u64);
        }
        r
    }
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        let t = std::time::Instant::now();
        let r = self.inner.read(topic, partition, from, max).await;
        observe("read", topic, t, &r);
        r
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.inner.end_offset(topic, partition).await
    }
    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError> {
        self.inner.wait_for(topic, partition, offset, timeout).await
    }
    async fn sync(&self, topic: &str) -> Result<(), StorageError> {
        self.inner.sync(topic).await
    }
    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), StorageError> {
        let t = std::time::Instant::now();
        let r = self.inner.commit(group, topic, partition, next_offset).await;
        observe("commit", topic, t, &r);
        r
    }
    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, StorageError> {
        self.inner.committed(group, topic, partition).await
    }
    async fn join(&self, group: &str, topic: &str) -> Result<Membership, StorageError> {
        self.inner.join(group, topic).await
    }
}

/// Creates kurz's topics. Commands and events must have the same partition count: the
/// decider of command partition `p` writes events partition `p`.
pub async fn ensure_topics(log: &dyn EventLog, partitions: u32, click_partitions: u32) -> Result<(), StorageError> {
    use kurz_schemas::topics;
    let c = log.ensure_topic(topics::COMMANDS, partitions).await?;
    let e = log.ensure_topic(topics::EVENTS, c).await?;
    if c != e {
        return Err(StorageError::Engine(format!(
            "{} has {c} partitions but {} has {e}; they must match",
            topics::COMMANDS,
            topics::EVENTS
        )));
    }
    log.ensure_topic(topics::CLICKS, click_partitions).await?;
    log.ensure_topic(topics::CONTROL, 1).await?;
    log.ensure_topic(topics::DEAD_LETTERS, 1).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Vectors from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }
}
