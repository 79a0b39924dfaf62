//! kurz's query edge: redirects served from the hot cache over the read store, the
//! read half of the HTTP API, and click capture that never holds up a redirect.

pub mod capture;
pub mod domains;
pub mod follow;
pub mod metrics;
pub mod routes;

use kurz_storage::{EventLog, LinkCache, ReadStore};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] kurz_storage::StorageError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
}

pub struct Inner {
    pub store: Arc<dyn ReadStore>,
    pub cache: Arc<dyn LinkCache>,
    pub clicks: capture::ClickSink,
    /// Redirects per client address (`KURZ_RATE_REDIRECTS`); none by default.
    pub redirect_limit: Option<kurz_web::ratelimit::ByAddress>,
    /// Token mode: user e-mail addresses are shown to the admin token's holder only
    /// (`None`: open mode, where the contract lists them to anyone).
    pub private_emails: Option<kurz_web::admin::AdminToken>,
    /// The `Cache-Control` of every redirect answer.
    pub redirect_cache: RedirectCache,
    /// User-agent classes for redirect rules that ask about the device, OS or browser.
    pub agents: capture::agent::Classifier,
    /// Password-protected links: the key vault and the limits on guessing; `None` (an
    /// edge built without a vault) answers their `POST` with a 500.
    pub unlock: Option<routes::unlock::Unlock>,
    /// The last `robots.txt` answer.
    pub robots: routes::robots::Robots,
    /// The domain registry as this edge last read it.
    pub domains: Arc<domains::Domains>,
}

/// The `Cache-Control` a redirect answers with: `private` always (a shared cache
/// answering for the edge would hide clicks from it and serve one visitor's forwarded
/// query to another), `max-age=0` for 302 and 307, and a bounded lifetime for 301 and
/// 308 (`KURZ_REDIRECT_CACHE_SECONDS`, 30 by default as Shlink's): a browser that keeps
/// a permanent redirect forever would never see a later edit of the link, nor be
/// counted again.
#[derive(Debug, Clone)]
pub struct RedirectCache {
    pub temporary: axum::http::HeaderValue,
    pub permanent: axum::http::HeaderValue,
}

impl RedirectCache {
    /// The longest lifetime a permanent redirect may be given: a year.
    pub const MAX_SECONDS: u32 = 365 * 24 * 3600;
    pub const DEFAULT_SECONDS: u32 = 30;

    pub fn permanent_for(seconds: u32) -> RedirectCache {
        let seconds = seconds.min(Self::MAX_SECONDS);
        RedirectCache {
            temporary: axum::http::HeaderValue::from_static("private, max-age=0"),
            permanent: axum::http::HeaderValue::from_str(&format!("private, max-age={seconds}")).expect("digits are a valid header"),
        }
    }
}

impl Default for RedirectCache {
    fn default() -> Self {
        RedirectCache::permanent_for(Self::DEFAULT_SECONDS)
    }
}

impl Inner {
    /// Whether this request may read users' e-mail addresses.
    pub fn shows_emails(&self, headers: &axum::http::HeaderMap) -> bool {
        self.reads_as_admin(headers)
    }

    /// Whether this request may read what belongs to no user (orphan visits, users'
    /// e-mail addresses): anyone in open mode, the admin token's holder in token mode.
    pub fn reads_as_admin(&self, headers: &axum::http::HeaderMap) -> bool {
        self.private_emails.as_ref().is_none_or(|admin| admin.allows(headers))
    }
}

#[derive(Clone)]
pub struct EdgeState(Arc<Inner>);

impl std::ops::Deref for EdgeState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct QueryEdge {
    state: EdgeState,
    flusher: capture::ClickFlusher,
    reveal: kurz_web::admin::AdminToken,
}

impl QueryEdge {
    pub fn build(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadStore>,
        cache: Arc<dyn LinkCache>,
        capture: &capture::CaptureSettings,
    ) -> Result<QueryEdge, Error> {
        let (sink, flusher) = capture::channel(log, capture)?;
        Ok(QueryEdge {
            state: EdgeState(Arc::new(Inner {
                store,
                cache,
                clicks: sink,
                redirect_limit: None,
                private_emails: None,
                redirect_cache: RedirectCache::default(),
                agents: capture::agent::Classifier::new(),
                unlock: None,
                robots: Default::default(),
                domains: Default::default(),
            })),
            flusher,
            reveal: Default::default(),
        })
    }

    /// Limits redirects per client address (`None`: no limit, the default).
    pub fn limit_redirects(mut self, limit: Option<kurz_web::ratelimit::ByAddress>) -> QueryEdge {
        Arc::get_mut(&mut self.state.0).expect("called right after build").redirect_limit = limit;
        self
    }

    /// Opens password-protected links with `unlock`'s vault, within its limits.
    pub fn protect_links(mut self, unlock: routes::unlock::Unlock) -> QueryEdge {
        Arc::get_mut(&mut self.state.0).expect("called right after build").unlock = Some(unlock);
        self
    }

    /// How long a browser may keep a permanent (301, 308) redirect
    /// ([`RedirectCache`]).
    pub fn redirect_cache_seconds(mut self, seconds: u32) -> QueryEdge {
        Arc::get_mut(&mut self.state.0).expect("called right after build").redirect_cache = RedirectCache::permanent_for(seconds);
        self
    }

    /// Token mode: e-mail addresses in `/users` only for `admin` (the admin token).
    pub fn private_emails(mut self, admin: kurz_web::admin::AdminToken) -> QueryEdge {
        Arc::get_mut(&mut self.state.0).expect("called right after build").private_emails = Some(admin);
        self
    }

    /// Who may read why `/health/ready` fails (the admin token's holder); nobody by
    /// default.
    pub fn reveal_health_to(mut self, reveal: kurz_web::admin::AdminToken) -> QueryEdge {
        self.reveal = reveal;
        self
    }

    pub fn state(&self) -> EdgeState {
        self.state.clone()
    }

    pub fn routes(&self) -> Vec<(&'static str, axum::routing::MethodRouter)> {
        routes::all(self.state.clone())
    }

    pub fn router(&self) -> axum::Router {
        let checks = vec![kurz_web::health::store_check(self.state.store.clone())];
        kurz_web::finish(kurz_web::assemble(self.routes()).merge(kurz_web::health::routes(checks, self.reveal.clone())))
    }

    /// Redirects answered ahead of the router (`routes::fast_path`), for the server loop.
    pub fn fast_path(&self) -> kurz_web::serve::FastPath {
        routes::fast_path(self.state.clone())
    }

    /// The click flusher, for processes that assemble their own server.
    pub fn into_flusher(self) -> capture::ClickFlusher {
        self.flusher
    }

    /// Reads the domain registry once, before serving: a failure is logged and the
    /// edge starts with none (its refresh, [`QueryEdge::domains_refresher`], retries).
    pub async fn load_domains(&self) {
        if let Err(e) = self.state.domains.load(self.state.store.as_ref()).await {
            tracing::warn!(event = "domains_not_read", error = %e, "serving without the domain registry until it can be read");
        }
    }

    /// The worker that keeps the registry current, reading it every `every`.
    pub fn domains_refresher(
        &self,
        every: std::time::Duration,
    ) -> impl FnOnce(CancellationToken) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let (domains, store) = (self.state.domains.clone(), self.state.store.clone());
        move |stop| Box::pin(domains.run_until_stopped(store, every, stop))
    }

    /// Serves until `stop` under `limits` (connection limits and the drain limit); once
    /// the requests have drained, flushes the clicks they captured (for at most the
    /// drain limit again, `kurz_web::workers`).
    pub async fn run_until_stopped(
        self,
        listener: tokio::net::TcpListener,
        limits: kurz_web::serve::Limits,
        stop: CancellationToken,
    ) -> Result<(), Error> {
        let app = self.router();
        let fast = self.fast_path();
        let drain = limits.drain;
        let mut workers = kurz_web::workers::Workers::new();
        self.load_domains().await;
        workers.spawn("domains", self.domains_refresher(domains::DEFAULT_REFRESH));
        let flusher = self.flusher;
        workers.spawn("click_flusher", |stop| flusher.run_until_stopped(stop));
        kurz_web::serve::serve_with(listener, app, Some(fast), limits, stop).await?;
        workers.stop(drain).await;
        Ok(())
    }
}
