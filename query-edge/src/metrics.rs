use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::OnceLock;

pub struct Metrics {
    pub clicks: IntCounterVec,
    pub redirects: IntCounterVec,
}

pub fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        clicks: register_int_counter_vec!(
            "kurz_clicks_total",
            "Clicks captured at the edge, by fate (appended, dropped, failed).",
            &["result"]
        )
        .unwrap(),
        redirects: register_int_counter_vec!(
            "kurz_redirects_total",
            "Redirect lookups by result (found, not_found, inactive) and source (cache, store).",
            &["result", "source"]
        )
        .unwrap(),
    })
}
