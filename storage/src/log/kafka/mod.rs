//! The event log on Kafka, through rdkafka (librdkafka).
//!
//! - **Producer**: idempotent (`enable.idempotence`, `acks=all`); an append returns only
//!   after every record's delivery report. Records of one append are enqueued under a
//!   per-partition lock, so they get contiguous offsets. A fatal producer error (e.g. a
//!   fenced idempotent producer) replaces the producer; the failing appends answer an
//!   error, which the HTTP layer turns into 503.
//! - **Reads by offset**: a small pool of assigned consumers per partition, each
//!   remembering where it is, so a tailing reader keeps streaming and a reader that
//!   jumps (a decider restoring from offset 0) gets its own consumer instead of making
//!   the tail seek back and forth.
//! - **Topics**: created by kurz (`AdminClient`) with the configured replication and
//!   `retention.ms` (default -1: event topics never expire); an existing topic keeps its
//!   partition count.
//! - **Consumer positions**: committed to Kafka's group offsets (`commit`,
//!   `committed_offsets`), by the group's member consumer when this process is one.
//!
//! Transactions are not used: the brokers kurz is tested against (tansu) answer EndTxn
//! with "not supported". Exactly-once for the decider rests on command-id deduplication
//! instead (see `command-api/src/decider/mod.rs`).

pub mod config;
mod member;
mod reader;

use super::{EventLog, Membership, NewRecord, Record};
use crate::StorageError;
use async_trait::async_trait;
use config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use reader::Readers;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

const META_TIMEOUT: Duration = Duration::from_secs(10);

/// Serialises the enqueueing of appends to one partition.
type SendLock = Arc<tokio::sync::Mutex<()>>;

fn kerr(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(format!("kafka {what}: {e}"))
}

pub struct KafkaLog {
    cfg: KafkaConfig,
    producer: RwLock<Arc<FutureProducer>>,
    admin: AdminClient<DefaultClientContext>,
    meta: Arc<BaseConsumer>,
    topics: RwLock<HashMap<String, u32>>,
    send_locks: Mutex<HashMap<(String, u32), SendLock>>,
    readers: Readers,
    committers: Mutex<HashMap<String, Arc<dyn member::Offsets>>>,
}

fn producer(cfg: &KafkaConfig) -> Result<FutureProducer, StorageError> {
    let mut c = cfg.client();
    // A batching delay the URL may tune (`linger.ms=…`); the rest kurz's ordering and
    // fencing rely on, whatever the URL says.
    if !cfg.extra.iter().any(|(k, _)| k == "linger.ms") {
        c.set("linger.ms", "1");
    }
    c.set("enable.idempotence", "true").set("acks", "all").set("message.timeout.ms", cfg.timeout_ms.to_string());
    c.create().map_err(|e| kerr("producer", e))
}

impl KafkaLog {
    pub fn open(url: &str) -> Result<KafkaLog, StorageError> {
        let cfg = KafkaConfig::parse(url)?;
        let admin = cfg.client().create().map_err(|e| kerr("admin client", e))?;
        let meta: BaseConsumer = cfg.client().set("group.id", "kurz-metadata").create().map_err(|e| kerr("metadata client", e))?;
        let meta = Arc::new(meta);
        Ok(KafkaLog {
            producer: RwLock::new(Arc::new(producer(&cfg)?)),
            admin,
            readers: Readers::new(cfg.clone(), meta.clone()),
            meta,
            topics: RwLock::new(HashMap::new()),
            send_locks: Mutex::new(HashMap::new()),
            committers: Mutex::new(HashMap::new()),
            cfg,
        })
    }

    /// Partition count from the cluster's metadata, `None` if the topic does not exist.
    async fn fetch_partitions(&self, topic: &str) -> Result<Option<u32>, StorageError> {
        let meta = self.meta.clone();
        let t = topic.to_string();
        tokio::task::spawn_blocking(move || -> Result<Option<u32>, StorageError> {
            let md = meta.fetch_metadata(Some(&t), META_TIMEOUT).map_err(|e| kerr("metadata", e))?;
            Ok(md
                .topics()
                .iter()
                .find(|x| x.name() == t)
                .filter(|x| x.error().is_none() && !x.partitions().is_empty())
                .map(|x| x.partitions().len() as u32))
        })
        .await
        .map_err(StorageError::engine)?
    }

    async fn known_partitions(&self, topic: &str) -> Result<u32, StorageError> {
        if let Some(n) = self.topics.read().expect("topics poisoned").get(topic) {
            return Ok(*n);
        }
        let n = self.fetch_partitions(topic).await?.ok_or_else(|| StorageError::UnknownTopic(topic.to_string()))?;
        self.topics.write().expect("topics poisoned").insert(topic.to_string(), n);
        Ok(n)
    }

    async fn check_partition(&self, topic: &str, partition: u32) -> Result<(), StorageError> {
        if partition >= self.known_partitions(topic).await? {
            return Err(StorageError::UnknownPartition { topic: topic.to_string(), partition });
        }
        Ok(())
    }

    fn send_lock(&self, topic: &str, partition: u32) -> SendLock {
        self.send_locks.lock().expect("send locks poisoned").entry((topic.to_string(), partition)).or_default().clone()
    }

    /// Replaces a producer that hit a fatal error, or whose idempotence sequence may
    /// be broken (a record timed out, or the broker refused one after restarting: the
    /// broker would refuse every later record of that producer); later appends use the
    /// new one, with a fresh producer id.
    fn recover_producer(&self, failed: &Arc<FutureProducer>, error: Option<&rdkafka::error::KafkaError>) {
        let broken_sequence = error.and_then(|e| e.rdkafka_error_code()).is_some_and(|c| {
            matches!(
                c,
                RDKafkaErrorCode::MessageTimedOut
                    | RDKafkaErrorCode::Unknown
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::InvalidProducerEpoch
            )
        });
        let fatal = failed.client().fatal_error();
        if fatal.is_some() || broken_sequence {
            let mut p = self.producer.write().expect("producer poisoned");
            if Arc::ptr_eq(&p, failed) {
                match &fatal {
                    Some((code, reason)) => {
                        tracing::error!(event = "kafka_producer_fatal", code = ?code, reason, "recreating the producer")
                    }
                    None => tracing::warn!(
                        event = "kafka_producer_reset",
                        error = %error.map(|e| e.to_string()).unwrap_or_default(),
                        "recreating the producer with a fresh producer id"
                    ),
                }
                match producer(&self.cfg) {
                    Ok(new) => *p = Arc::new(new),
                    Err(e) => tracing::error!(event = "kafka_producer_recreate_failed", error = %e),
                }
            }
        }
    }

    /// The group's offsets client: its member consumer when this process joined the
    /// group (a group with members refuses commits from outsiders), else a plain one.
    fn committer(&self, group: &str) -> Result<Arc<dyn member::Offsets>, StorageError> {
        let mut c = self.committers.lock().expect("committers poisoned");
        if let Some(x) = c.get(group) {
            return Ok(x.clone());
        }
        let consumer: BaseConsumer = self
            .cfg
            .client()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .map_err(|e| kerr("offsets client", e))?;
        let consumer: Arc<dyn member::Offsets> = Arc::new(consumer);
        c.insert(group.to_string(), consumer.clone());
        Ok(consumer)
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, StorageError> {
        if let Some(n) = self.fetch_partitions(topic).await? {
            self.topics.write().expect("topics poisoned").insert(topic.to_string(), n);
            return Ok(n);
        }
        let partitions = partitions.clamp(1, kurz_schemas::ids::MAX_PARTITIONS);
        let retention = self.cfg.retention_ms.to_string();
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(self.cfg.replication)).set("retention.ms", &retention);
        let opts = AdminOptions::new().operation_timeout(Some(META_TIMEOUT));
        let results = self.admin.create_topics(&[new], &opts).await.map_err(|e| kerr("create topic", e))?;
        for r in results {
            match r {
                Ok(_) => tracing::info!(event = "kafka_topic_created", topic, partitions),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => return Err(kerr("create topic", format!("{t}: {code}"))),
            }
        }
        // Metadata can lag creation for a moment.
        for _ in 0..100 {
            if let Some(n) = self.fetch_partitions(topic).await? {
                self.topics.write().expect("topics poisoned").insert(topic.to_string(), n);
                return Ok(n);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(kerr("create topic", format!("{topic} did not appear in metadata")))
    }

    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        self.known_partitions(topic).await
    }

    async fn append(&self, topic: &str, partition: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        self.check_partition(topic, partition).await?;
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let producer = self.producer.read().expect("producer poisoned").clone();
        let lock = self.send_lock(topic, partition);
        let mut pending = Vec::with_capacity(records.len());
        {
            // Enqueue the whole append before any other append to this partition: with
            // the idempotent producer, enqueue order is offset order.
            let _guard = lock.lock().await;
            for r in &records {
                let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
                let mut rec = FutureRecord::to(topic).partition(partition as i32).key(&r.key).payload(&r.payload).headers(headers);
                loop {
                    match producer.send_result(rec) {
                        Ok(f) => {
                            pending.push(f);
                            break;
                        }
                        Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                            rec = back;
                            producer.poll(Duration::from_millis(5));
                        }
                        Err((e, _)) => {
                            self.recover_producer(&producer, Some(&e));
                            return Err(kerr("append", e));
                        }
                    }
                }
            }
        }
        let mut offsets = Vec::with_capacity(pending.len());
        for f in pending {
            match f.await {
                Ok(Ok(d)) => offsets.push(d.offset as u64),
                Ok(Err((e, _))) => {
                    self.recover_producer(&producer, Some(&e));
                    return Err(kerr("delivery", e));
                }
                Err(_) => return Err(kerr("delivery", "producer dropped the report")),
            }
        }
        Ok(offsets)
    }

    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        self.check_partition(topic, partition).await?;
        self.readers.read(topic, partition, from, max).await
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.check_partition(topic, partition).await?;
        self.readers.end_offset(topic, partition).await
    }

    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError> {
        self.check_partition(topic, partition).await?;
        self.readers.wait_for(topic, partition, offset, timeout).await
    }

    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), StorageError> {
        let c = self.committer(group)?;
        let t = topic.to_string();
        tokio::task::spawn_blocking(move || c.commit_offset(&t, partition, next_offset)).await.map_err(StorageError::engine)?
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, StorageError> {
        let c = self.committer(group)?;
        let t = topic.to_string();
        tokio::task::spawn_blocking(move || c.committed_offset(&t, partition)).await.map_err(StorageError::engine)?
    }

    async fn join(&self, group: &str, topic: &str) -> Result<Membership, StorageError> {
        self.known_partitions(topic).await?;
        let (membership, offsets) = member::join(&self.cfg, group, topic, Duration::from_millis(self.cfg.drain_ms))?;
        self.committers.lock().expect("committers poisoned").insert(group.to_string(), offsets);
        Ok(membership)
    }
}
