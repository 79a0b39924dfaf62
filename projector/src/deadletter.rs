//! The dead-letter topic ([`topics::DEAD_LETTERS`]): a record the projector gave up on
//! after its attempts ran out is appended there byte for byte (key, headers, payload),
//! with headers saying where it came from and why:
//!
//! | header | value |
//! | --- | --- |
//! | `kurz-dlq-topic`, `kurz-dlq-partition`, `kurz-dlq-offset` | its place in the log |
//! | `kurz-dlq-reason` | the last failure |
//! | `kurz-dlq-attempts` | deliveries tried |
//!
//! The append comes before the step that moves the stream past the record, so a crash
//! in between can append it twice: consumers dedupe by topic, partition and offset.

use crate::metrics;
use kurz_schemas::{headers, topics};
use kurz_storage::{EventLog, NewRecord, Record, StorageError};

pub async fn send(log: &dyn EventLog, topic: &str, rec: &Record, reason: &str, attempts: u32) -> Result<(), StorageError> {
    let mut out = NewRecord::new(rec.key.clone(), rec.payload.clone());
    out.headers = rec.headers.clone();
    let out = out
        .header(headers::DLQ_TOPIC, topic)
        .header(headers::DLQ_PARTITION, rec.partition.to_string())
        .header(headers::DLQ_OFFSET, rec.offset.to_string())
        .header(headers::DLQ_REASON, reason)
        .header(headers::DLQ_ATTEMPTS, attempts.to_string());
    log.append(topics::DEAD_LETTERS, 0, vec![out]).await?;
    metrics::get().dead_letters.with_label_values(&[topic]).inc();
    tracing::error!(event = "dead_lettered", topic, partition = rec.partition, offset = rec.offset, key = %rec.key, attempts, reason);
    Ok(())
}
