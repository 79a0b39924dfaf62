use prometheus::{register_int_counter_vec, register_int_gauge, IntCounterVec, IntGauge};
use std::sync::OnceLock;

pub struct Metrics {
    pub clicks: IntCounterVec,
    pub redirects: IntCounterVec,
    pub spool_bytes: IntGauge,
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        clicks: register_int_counter_vec!(
            "kurz_clicks_total",
            "Clicks captured at the edge, by fate (appended; spooled and unspooled around a log outage; dropped when the queue or the spool is full; failed).",
            &["result"]
        )
        .unwrap(),
        redirects: register_int_counter_vec!(
            "kurz_redirects_total",
            "Redirect lookups by result (found, not_found, inactive) and source (cache, store).",
            &["result", "source"]
        )
        .unwrap(),
        spool_bytes: register_int_gauge!("kurz_click_spool_bytes", "Bytes of clicks waiting in the spool for the log.").unwrap(),
    })
}
