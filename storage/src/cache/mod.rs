//! The hot-cache port: redirect entries by short code.
//!
//! Entries carry the version (log offset) of the state they hold, and an entry only
//! ever replaces an older one. The projector offers the state each event produces, and
//! a reader that missed offers what it read from the store; whichever is newer stays,
//! so a slow reader can never put back a state an event already replaced.
//!
//! A cache is an optimisation: callers treat an error as a miss and go to the store.

pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;
pub mod tiered;

/// No cache: every lookup misses and goes to the read store.
pub struct NoCache;

#[async_trait]
impl LinkCache for NoCache {
    async fn get(&self, _code: &str) -> Result<Option<CachedLink>, StorageError> {
        Ok(None)
    }
    async fn offer(&self, _code: &str, _entry: CachedLink) -> Result<(), StorageError> {
        Ok(())
    }
}

use crate::{metrics, StorageError};
use async_trait::async_trait;
/// Entries are built in `kurz_schemas::cache`, where every writer finds the same mapping.
pub use kurz_schemas::cache::CachedLink;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// How long a negative entry (a code known not to resolve) answers, on every backend.
/// Odd paths never reach a cache (the edge answers what cannot be a code at once), and
/// each negative entry's key is a code of at most 64 bytes: negative entries are bounded
/// in number by the cache's capacity, in bytes by that, and in time by this.
pub const NEGATIVE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

#[async_trait]
pub trait LinkCache: Send + Sync + 'static {
    async fn get(&self, code: &str) -> Result<Option<CachedLink>, StorageError>;
    /// The entry for `code` if this cache holds it in process memory, answered at once:
    /// no I/O and no future to box, for the redirect fast path, which tries it before
    /// [`get`](LinkCache::get). `None` means "not held here", not "unknown code": the
    /// caller goes on to `get`. A cache with no in-process tier holds nothing here.
    fn get_local(&self, _code: &str) -> Option<CachedLink> {
        None
    }
    /// Stores `entry` unless the cache holds a newer version for `code`.
    async fn offer(&self, code: &str, entry: CachedLink) -> Result<(), StorageError>;
    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// Counts hits, negative hits, misses and errors once, whatever the backend, and logs a
/// failing cache at most once every 10 s.
pub struct Instrumented {
    inner: Arc<dyn LinkCache>,
    last_error_log: AtomicI64,
    /// `kurz_cache_lookups_total` by result, resolved once: a lookup by label on every
    /// get would hash the label and take the vector's shared lock.
    lookups: [prometheus::IntCounter; 4],
}

impl Instrumented {
    pub fn new(inner: Arc<dyn LinkCache>) -> Instrumented {
        let by = |r: &str| metrics::get().cache_lookups.with_label_values(&[r]);
        let lookups = [by("hit"), by("negative_hit"), by("miss"), by("error")];
        Instrumented { inner, last_error_log: AtomicI64::new(0), lookups }
    }

    fn failed(&self, op: &'static str, e: &StorageError) {
        metrics::get().cache_errors.with_label_values(&[op]).inc();
        let now = kurz_schemas::Ts::now().0;
        let last = self.last_error_log.load(Ordering::Relaxed);
        if now - last > 10_000 && self.last_error_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(event = "cache_unavailable", op, error = %e, "serving from the read store");
        }
    }
}

#[async_trait]
impl LinkCache for Instrumented {
    async fn get(&self, code: &str) -> Result<Option<CachedLink>, StorageError> {
        let r = self.inner.get(code).await;
        let result = match &r {
            Ok(Some(CachedLink { link: Some(_), .. })) => 0,
            Ok(Some(_)) => 1,
            Ok(None) => 2,
            Err(e) => {
                self.failed("get", e);
                3
            }
        };
        self.lookups[result].inc();
        r
    }
    fn get_local(&self, code: &str) -> Option<CachedLink> {
        // Counted only when it answers: a local miss goes on to `get`, which counts it.
        let r = self.inner.get_local(code);
        if let Some(hit) = &r {
            self.lookups[if hit.link.is_some() { 0 } else { 1 }].inc();
        }
        r
    }
    async fn offer(&self, code: &str, entry: CachedLink) -> Result<(), StorageError> {
        let r = self.inner.offer(code, entry).await;
        if let Err(e) = &r {
            self.failed("offer", e);
        }
        r
    }
    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }
}
