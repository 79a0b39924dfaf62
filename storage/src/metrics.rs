//! Storage-port metrics, registered once in the process-wide default registry.

use prometheus::{register_histogram_vec, register_int_counter, register_int_counter_vec, HistogramVec, IntCounter, IntCounterVec};
use std::sync::OnceLock;

pub struct StorageMetrics {
    pub log_ops: IntCounterVec,
    pub log_seconds: HistogramVec,
    pub log_records_appended: IntCounterVec,
    pub store_ops: IntCounterVec,
    pub store_seconds: HistogramVec,
    pub cache_lookups: IntCounterVec,
    pub cache_errors: IntCounterVec,
    pub cache_visit_counts: IntCounterVec,
    pub vault_ops: IntCounterVec,
    pub drain_timeouts: IntCounter,
    pub claims_ignored: IntCounterVec,
    pub store_fenced: IntCounterVec,
}

pub fn get() -> &'static StorageMetrics {
    static M: OnceLock<StorageMetrics> = OnceLock::new();
    M.get_or_init(|| StorageMetrics {
        log_ops: register_int_counter_vec!(
            "kurz_log_operations_total",
            "Event-log operations by kind and result.",
            &["op", "topic", "result"]
        )
        .unwrap(),
        log_seconds: register_histogram_vec!(
            "kurz_log_operation_duration_seconds",
            "Event-log operation latency.",
            &["op"],
            vec![0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0]
        )
        .unwrap(),
        log_records_appended: register_int_counter_vec!(
            "kurz_log_records_appended_total",
            "Records appended to the event log.",
            &["topic"]
        )
        .unwrap(),
        store_ops: register_int_counter_vec!("kurz_store_operations_total", "Read-store operations by kind and result.", &["op", "result"])
            .unwrap(),
        store_seconds: register_histogram_vec!(
            "kurz_store_operation_duration_seconds",
            "Read-store operation latency.",
            &["op"],
            vec![0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5]
        )
        .unwrap(),
        cache_lookups: register_int_counter_vec!(
            "kurz_cache_lookups_total",
            "Hot-cache lookups by result (hit, negative_hit, miss, error).",
            &["result"]
        )
        .unwrap(),
        cache_errors: register_int_counter_vec!(
            "kurz_cache_errors_total",
            "Hot-cache operations that failed (served from the read store instead).",
            &["op"]
        )
        .unwrap(),
        cache_visit_counts: register_int_counter_vec!(
            "kurz_cache_visit_counts_total",
            "Visit-count operations of links with a visit limit, by op (count_visit, seed_visits, visits) and result (ok, error).",
            &["op", "result"]
        )
        .unwrap(),
        drain_timeouts: register_int_counter!(
            "kurz_partition_drain_timeouts_total",
            "Partition tasks (deciders, projectors) that did not stop within their drain limit and were stopped."
        )
        .unwrap(),
        claims_ignored: register_int_counter_vec!(
            "kurz_log_claims_ignored_total",
            "Records a reader skipped because they did not land at their claimed offsets (a stale writer's append) or their append is broken.",
            &["topic"]
        )
        .unwrap(),
        store_fenced: register_int_counter_vec!(
            "kurz_store_batches_fenced_total",
            "Read-store batches refused because another writer claimed their partition since (a paused or cut-off projector woke, a replay was overtaken).",
            &["topic"]
        )
        .unwrap(),
        vault_ops: register_int_counter_vec!(
            "kurz_vault_operations_total",
            "Key-vault operations (create, get, erase) by result.",
            &["op", "result"]
        )
        .unwrap(),
    })
}
