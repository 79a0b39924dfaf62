use prometheus::{register_gauge_vec, register_int_counter_vec, register_int_gauge_vec, GaugeVec, IntCounterVec, IntGaugeVec};
use std::sync::OnceLock;

pub struct Metrics {
    pub applied: IntCounterVec,
    pub undecodable: IntCounterVec,
    pub lag_records: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub retries: IntCounterVec,
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        applied: register_int_counter_vec!(
            "kurz_projector_records_applied_total",
            "Log records applied to the read models.",
            &["topic", "partition"]
        )
        .unwrap(),
        undecodable: register_int_counter_vec!(
            "kurz_projector_undecodable_total",
            "Log records no projection could decode (skipped).",
            &["topic"]
        )
        .unwrap(),
        lag_records: register_int_gauge_vec!(
            "kurz_projector_lag_records",
            "Records in the log not yet applied, per partition.",
            &["topic", "partition"]
        )
        .unwrap(),
        lag_seconds: register_gauge_vec!(
            "kurz_projector_lag_seconds",
            "Age of the oldest record not yet applied, per partition.",
            &["topic", "partition"]
        )
        .unwrap(),
        retries: register_int_counter_vec!(
            "kurz_projector_retries_total",
            "Failed projection batches that were retried.",
            &["topic", "partition"]
        )
        .unwrap(),
    })
}
