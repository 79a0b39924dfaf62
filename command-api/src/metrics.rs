use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::OnceLock;

pub struct Metrics {
    pub decider_commands: IntCounterVec,
    pub decider_restarts: IntCounterVec,
    pub decider_fenced: IntCounterVec,
    pub commands_submitted: IntCounterVec,
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
        commands_submitted: register_int_counter_vec!(
            "kurz_commands_submitted_total",
            "Commands submitted by the command-api, by outcome.",
            &["outcome"]
        )
        .unwrap(),
    })
}
