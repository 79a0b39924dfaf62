//! kurz's query edge: redirects served from the hot cache over the read store, the
//! read half of the HTTP API, and click capture that never holds up a redirect.

pub mod capture;
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

/// How long a stopping edge lets in-flight requests finish when it runs alone.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Inner {
    pub store: Arc<dyn ReadStore>,
    pub cache: Arc<dyn LinkCache>,
    pub clicks: capture::ClickSink,
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
}

impl QueryEdge {
    pub fn build(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadStore>,
        cache: Arc<dyn LinkCache>,
        capture: &capture::CaptureSettings,
    ) -> Result<QueryEdge, Error> {
        let (sink, flusher) = capture::channel(log, capture)?;
        Ok(QueryEdge { state: EdgeState(Arc::new(Inner { store, cache, clicks: sink })), flusher })
    }

    pub fn state(&self) -> EdgeState {
        self.state.clone()
    }

    pub fn routes(&self) -> Vec<(&'static str, axum::routing::MethodRouter)> {
        routes::all(self.state.clone())
    }

    pub fn router(&self) -> axum::Router {
        let checks = vec![kurz_web::health::store_check(self.state.store.clone())];
        kurz_web::finish(kurz_web::assemble(self.routes()).merge(kurz_web::health::routes(checks)))
    }

    /// Redirects answered ahead of the router (`routes::fast_path`), for the server loop.
    pub fn fast_path(&self) -> kurz_web::serve::FastPath {
        routes::fast_path(self.state.clone())
    }

    /// The click flusher, for processes that assemble their own server.
    pub fn into_flusher(self) -> capture::ClickFlusher {
        self.flusher
    }

    pub async fn run_until_stopped(self, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
        let app = self.router();
        let fast = self.fast_path();
        let flusher_stop = CancellationToken::new();
        let flusher = tokio::spawn(self.flusher.run_until_stopped(flusher_stop.clone()));
        kurz_web::serve::serve_with(listener, app, Some(fast), stop, DRAIN).await?;
        // Requests have drained: flush the clicks they captured, then stop.
        flusher_stop.cancel();
        let _ = flusher.await;
        Ok(())
    }
}
