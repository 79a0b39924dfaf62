use prometheus::{register_int_counter_vec, register_int_gauge, IntCounter, IntCounterVec, IntGauge};
use std::sync::OnceLock;

pub struct Metrics {
    pub clicks: IntCounterVec,
    pub redirects: IntCounterVec,
    pub spool_bytes: IntGauge,
    pub unlocks: IntCounterVec,
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
            "Redirect lookups by result (found, not_found, inactive, expired, protected) and source (cache, store).",
            &["result", "source"]
        )
        .unwrap(),
        spool_bytes: register_int_gauge!("kurz_click_spool_bytes", "Bytes of clicks waiting in the spool for the log.").unwrap(),
        unlocks: register_int_counter_vec!(
            "kurz_link_unlocks_total",
            "Passwords checked for protected links, by result (right, wrong).",
            &["result"]
        )
        .unwrap(),
    })
}

/// What a redirect lookup found.
#[derive(Debug, Clone, Copy)]
pub enum Found {
    Found,
    NotFound,
    Inactive,
    /// Outside the link's validity window.
    Expired,
    /// Password protected: answered with the password form, not redirected.
    Protected,
}

/// Where the answer came from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Cache,
    Store,
    /// Not asked: the path cannot be a short code.
    Refused,
}

/// `kurz_redirects_total{result, source}`, resolved once: this runs on every redirect,
/// and a lookup by labels hashes them and takes the vector's shared lock.
pub fn redirect(found: Found, source: Source) -> &'static IntCounter {
    static C: OnceLock<[[IntCounter; 3]; 5]> = OnceLock::new();
    let c = C.get_or_init(|| {
        let by = |r: &str| ["cache", "store", "refused"].map(|s| get().redirects.with_label_values(&[r, s]));
        [by("found"), by("not_found"), by("inactive"), by("expired"), by("protected")]
    });
    &c[found as usize][source as usize]
}

/// `kurz_link_unlocks_total{result}`.
pub fn unlocks(result: &str) -> IntCounter {
    get().unlocks.with_label_values(&[result])
}
