//! Click capture. A redirect takes what its click needs from the request (cheap copies
//! of a few headers, the peer address, the query string) and hands it to a bounded
//! in-memory [`queue`]; it never waits and wakes nobody. A flusher task turns queued clicks into click
//! events (user-agent class, bot flag, UTM parameters, salted visitor hash, country:
//! [`enrich`]) and appends them to the clicks topic in batches; while the log cannot
//! take them they wait in a bounded on-disk [`spool`]. When the queue is full a click is
//! dropped and counted.

pub mod agent;
pub mod enrich;
pub mod flush;
pub mod geo;
pub mod queue;
pub mod spool;
pub mod utm;
pub mod visitor;

use crate::metrics;
use kurz_schemas::{Id, Link, OrphanKind, Ts};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use flush::ClickFlusher;

pub const QUEUE: usize = 65_536;

/// What a visit reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Visited {
    /// A redirect of this link, as the cache holds it (shared, not copied).
    Link(Arc<Link>),
    /// No link ([`kurz_schemas::Orphan`]): its kind, the code asked for when the path
    /// can hold one, and for `expired` the link's id.
    Orphan { kind: OrphanKind, code: Option<Box<str>>, link_id: Option<Id> },
}

/// What the edge keeps of one visit for its click event.
#[derive(Debug, Clone, PartialEq)]
pub struct RawClick {
    pub visited: Visited,
    pub at: Ts,
    pub head: bool,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// The client's address: the peer, or the configured trusted header's.
    pub addr: Option<IpAddr>,
    pub query: Option<String>,
    /// The configured trusted country header's value.
    pub country: Option<String>,
}

/// How clicks are captured (`kurz --help`: `KURZ_CLICK_*`, `KURZ_CLIENT_IP_HEADER`,
/// `KURZ_COUNTRY_HEADER`, `KURZ_GEOIP_DB`).
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    /// Off: redirects record nothing (for benchmarks and edges that must not).
    pub enabled: bool,
    /// Keys the daily visitor salt. Never leaves the process.
    pub secret: Vec<u8>,
    /// How the client address is found: the peer's, or behind trusted proxies the
    /// rightmost untrusted address of their header (`kurz_web::ratelimit::ClientIp`).
    pub client_ip: kurz_web::ratelimit::ClientIp,
    /// A header set by a trusted proxy or CDN that holds the client's country code.
    pub country_header: Option<String>,
    /// A GeoLite2/GeoIP2 Country or City database, used when no country header is set.
    pub geoip_db: Option<PathBuf>,
    /// Where clicks wait while the log is down ([`spool`]); none: they are dropped.
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            enabled: true,
            secret: Vec::new(),
            client_ip: Default::default(),
            country_header: None,
            geoip_db: None,
            spool_dir: None,
            spool_max_bytes: 256 << 20,
        }
    }
}

/// An active link for tests that build raw clicks.
#[cfg(test)]
pub(crate) fn test_link(id: u64, code: &str) -> Arc<Link> {
    Arc::new(Link {
        domain: None,
        id: kurz_schemas::Id::new(id).unwrap(),
        short_code: code.into(),
        original_url: "https://example.com/".into(),
        title: None,
        is_active: true,
        user_id: None,
        created_at: Ts(0),
        updated_at: Ts(0),
        options: Default::default(),
    })
}

#[derive(Clone)]
pub struct ClickSink {
    queue: Option<Arc<queue::ClickQueue>>,
    pub client_ip: Arc<kurz_web::ratelimit::ClientIp>,
    pub country_header: Option<axum::http::HeaderName>,
}

impl ClickSink {
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    pub fn record(&self, click: RawClick) {
        if let Some(q) = &self.queue {
            if !q.push(click) {
                metrics::get().clicks.with_label_values(&["dropped"]).inc();
            }
        }
    }
}

pub fn channel(
    log: std::sync::Arc<dyn kurz_storage::EventLog>,
    settings: &CaptureSettings,
) -> Result<(ClickSink, ClickFlusher), crate::Error> {
    let header = |h: &Option<String>| -> Result<Option<axum::http::HeaderName>, crate::Error> {
        h.as_deref()
            .filter(|h| !h.is_empty())
            .map(|h| {
                axum::http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| crate::Error::Config(format!("'{h}' is not a header name")))
            })
            .transpose()
    };
    let queue = Arc::new(queue::ClickQueue::new(QUEUE));
    let enricher = enrich::Enricher::new(settings)?;
    let sink = ClickSink {
        queue: settings.enabled.then(|| queue.clone()),
        client_ip: Arc::new(settings.client_ip.clone()),
        country_header: header(&settings.country_header)?,
    };
    let spool = match &settings.spool_dir {
        Some(dir) => Some(spool::Spool::open(dir, settings.spool_max_bytes)?),
        None => None,
    };
    Ok((sink, ClickFlusher::new(queue, log, enricher, spool)))
}
