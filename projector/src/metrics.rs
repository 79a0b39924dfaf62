use prometheus::{
    register_gauge_vec, register_int_counter, register_int_counter_vec, register_int_gauge, register_int_gauge_vec, GaugeVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec,
};
use std::sync::OnceLock;

pub struct Metrics {
    pub applied: IntCounterVec,
    pub undecodable: IntCounterVec,
    pub lag_records: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub retries: IntCounterVec,
    pub parked: IntCounterVec,
    pub redeliveries: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub parked_records: IntGaugeVec,
    pub stalled_partitions: IntGaugeVec,
    pub stalls: IntCounterVec,
    pub watchdog_redriven: IntCounterVec,
    pub commands_without_outcome: IntGauge,
    pub watchdog_errors: IntCounter,
    pub click_copies: IntCounter,
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        click_copies: register_int_counter!(
            "kurz_projector_click_copies_dropped_total",
            "Clicks appended again from an edge's spool that were already in the log (an append that failed after writing): not counted twice."
        )
        .unwrap(),
        applied: register_int_counter_vec!(
            "kurz_projector_records_applied_total",
            "Log records applied to the read models.",
            &["topic", "partition"]
        )
        .unwrap(),
        undecodable: register_int_counter_vec!(
            "kurz_projector_undecodable_total",
            "Log records no projection could decode (parked).",
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
        parked: register_int_counter_vec!(
            "kurz_projector_parked_total",
            "Records parked: poison records and the records of their keys that wait behind them.",
            &["topic"]
        )
        .unwrap(),
        redeliveries: register_int_counter_vec!(
            "kurz_projector_redeliveries_total",
            "Partitions taken over while a batch was still unapplied (a process stopped on it).",
            &["topic"]
        )
        .unwrap(),
        dead_letters: register_int_counter_vec!(
            "kurz_dead_letters_total",
            "Records sent to the dead-letter topic after their attempts ran out.",
            &["topic"]
        )
        .unwrap(),
        parked_records: register_int_gauge_vec!("kurz_parked_records", "Records parked now, as the watchdog last counted.", &["topic"])
            .unwrap(),
        stalled_partitions: register_int_gauge_vec!(
            "kurz_watchdog_stalled_partitions",
            "Partitions whose position stands still while records wait.",
            &["topic"]
        )
        .unwrap(),
        stalls: register_int_counter_vec!("kurz_watchdog_stalls_total", "Stalled-partition reports.", &["topic"]).unwrap(),
        watchdog_redriven: register_int_counter_vec!(
            "kurz_watchdog_redriven_total",
            "Work the watchdog re-drove: parked records delivered, stalled partitions driven, commands appended again.",
            &["kind"]
        )
        .unwrap(),
        commands_without_outcome: register_int_gauge!(
            "kurz_watchdog_commands_without_outcome",
            "Commands past their deadline without an outcome."
        )
        .unwrap(),
        watchdog_errors: register_int_counter!("kurz_watchdog_pass_errors_total", "Watchdog passes that failed.").unwrap(),
    })
}
