use prometheus::{register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec};
use std::sync::OnceLock;

pub struct Metrics {
    pub decider_commands: IntCounterVec,
    pub decider_restarts: IntCounterVec,
    pub decider_fenced: IntCounterVec,
    /// 1 while a decider partition cannot restore its state because an event does not
    /// decode: it decides nothing until the event can be read.
    pub decider_blocked: IntGaugeVec,
    pub commands_submitted: IntCounterVec,
    pub target_rejections: IntCounterVec,
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        decider_commands: register_int_counter_vec!(
            "kurz_decider_commands_total",
            "Commands seen by the deciders, by partition and result.",
            &["partition", "result"]
        )
        .unwrap(),
        decider_restarts: register_int_counter_vec!(
            "kurz_decider_restarts_total",
            "Decider partitions restored from the log after an error.",
            &["partition"]
        )
        .unwrap(),
        decider_fenced: register_int_counter_vec!(
            "kurz_decider_fenced_total",
            "Times a decider found another writer's events in its partition (two owners at once) and restored.",
            &["partition"]
        )
        .unwrap(),
        decider_blocked: register_int_gauge_vec!(
            "kurz_decider_blocked",
            "1 while a decider partition stops because an event of its partition does not decode (a newer build wrote it?); it decides nothing until it can read it.",
            &["partition"]
        )
        .unwrap(),
        commands_submitted: register_int_counter_vec!(
            "kurz_commands_submitted_total",
            "Commands submitted by the command-api, by outcome.",
            &["outcome"]
        )
        .unwrap(),
        target_rejections: register_int_counter_vec!(
            "kurz_target_rejections_total",
            "Redirect targets refused by policy (own host, deny-list), by reason.",
            &["reason"]
        )
        .unwrap(),
    })
}
