//! The hot-cache port: redirect entries by short code.
//!
//! Entries carry the version (log offset) of the state they hold, and an entry only
//! ever replaces an older one. The projector offers the state each event produces, and
//! a reader that missed offers what it read from the store; whichever is newer stays,
//! so a slow reader can never put back a state an event already replaced.

pub mod memory;

use crate::metrics;
use async_trait::async_trait;
use kurz_schemas::Link;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct CachedLink {
    /// `None`: the code is known not to resolve (unknown or deleted).
    pub link: Option<Arc<Link>>,
    pub version: u64,
}

#[async_trait]
pub trait LinkCache: Send + Sync + 'static {
    async fn get(&self, code: &str) -> Option<CachedLink>;
    /// Stores `entry` unless the cache holds a newer version for `code`.
    async fn offer(&self, code: &str, entry: CachedLink);
    async fn ping(&self) -> bool {
        true
    }
}

/// Counts hits, negative hits and misses once, whatever the backend.
pub struct Instrumented {
    inner: Arc<dyn LinkCache>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn LinkCache>) -> Instrumented {
        Instrumented { inner }
    }
}

#[async_trait]
impl LinkCache for Instrumented {
    async fn get(&self, code: &str) -> Option<CachedLink> {
        let r = self.inner.get(code).await;
        let label = match &r {
            Some(CachedLink { link: Some(_), .. }) => "hit",
            Some(_) => "negative_hit",
            None => "miss",
        };
        metrics::get().cache_lookups.with_label_values(&[label]).inc();
        r
    }
    async fn offer(&self, code: &str, entry: CachedLink) {
        self.inner.offer(code, entry).await
    }
    async fn ping(&self) -> bool {
        self.inner.ping().await
    }
}
