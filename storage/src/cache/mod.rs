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

/// No cache: every lookup misses and goes to the read store. Visit counts are still
/// kept in process ([`LocalVisits`]): they are not link entries, and without them a
/// visit limit would be checked against the lagging projected count.
#[derive(Default)]
pub struct NoCache {
    visits: LocalVisits,
}

/// Visit counts of links with a visit limit, by link id, in process memory: exact
/// within the process. One entry per such link, never evicted (evicting one would
/// seed it again from the projected count, which lags).
#[derive(Default)]
pub struct LocalVisits(std::sync::Mutex<std::collections::HashMap<u64, u64>>);

impl LocalVisits {
    pub fn count(&self, link: Id, max: u64) -> Option<u64> {
        let mut v = self.0.lock().expect("visits poisoned");
        v.get_mut(&link.get()).map(|n| next_visit(n, max))
    }

    pub fn seed(&self, link: Id, seed: u64, max: u64) -> u64 {
        let mut v = self.0.lock().expect("visits poisoned");
        next_visit(v.entry(link.get()).or_insert(seed), max)
    }

    pub fn get(&self, link: Id) -> Option<u64> {
        self.0.lock().expect("visits poisoned").get(&link.get()).copied()
    }
}

#[async_trait]
impl LinkCache for NoCache {
    async fn get(&self, _code: &str) -> Result<Option<CachedLink>, StorageError> {
        Ok(None)
    }
    async fn offer(&self, _code: &str, _entry: CachedLink) -> Result<(), StorageError> {
        Ok(())
    }
    async fn count_visit(&self, link: Id, max: u64) -> Result<Option<u64>, StorageError> {
        Ok(self.visits.count(link, max))
    }
    async fn seed_visits(&self, link: Id, seed: u64, max: u64) -> Result<u64, StorageError> {
        Ok(self.visits.seed(link, seed, max))
    }
    async fn visits(&self, link: Id) -> Result<Option<u64>, StorageError> {
        Ok(self.visits.get(link))
    }
}

use crate::{metrics, StorageError};
use async_trait::async_trait;
/// Entries are built in `kurz_schemas::cache`, where every writer finds the same mapping.
pub use kurz_schemas::cache::CachedLink;
use kurz_schemas::Id;
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

    /// Counts one visit of a link that allows `max` visits and returns its number (1
    /// for the first); a number above `max` means the visit is refused and not counted,
    /// so the count never passes `max` (a later, higher limit opens exactly the visits
    /// it adds). `None` when this cache holds no count for the link: the caller then
    /// reads the projected count and calls [`seed_visits`](LinkCache::seed_visits).
    /// Every backend keeps counts ([`LocalVisits`] in process, or shared); the default
    /// keeps none and answers `None`, which checks every visit against the lagging
    /// projected count. Counts are kept by link id, so a code reused by a new link
    /// starts from zero.
    async fn count_visit(&self, _link: Id, _max: u64) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }

    /// Starts the link's count at `seed` unless a count was started meanwhile (by
    /// another edge, or a racing visit), then counts one visit as
    /// [`count_visit`](LinkCache::count_visit) does.
    async fn seed_visits(&self, _link: Id, seed: u64, _max: u64) -> Result<u64, StorageError> {
        Ok(seed.saturating_add(1))
    }

    /// The link's count without counting (for visits that do not count: bots, HEAD),
    /// or `None` when none is held.
    async fn visits(&self, _link: Id) -> Result<Option<u64>, StorageError> {
        Ok(None)
    }
}

/// One visit against a count of `count` visits of a link that allows `max`: the
/// visit's number, counted only if within `max` (the rule every backend keeps).
pub fn next_visit(count: &mut u64, max: u64) -> u64 {
    let n = count.saturating_add(1);
    if n <= max {
        *count = n;
    }
    n
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

    /// `kurz_cache_visit_counts_total{op, result}` for a visit count, and the error log.
    fn visit_result<T>(&self, op: &'static str, r: &Result<T, StorageError>) {
        metrics::get().cache_visit_counts.with_label_values(&[op, if r.is_ok() { "ok" } else { "error" }]).inc();
        if let Err(e) = r {
            self.failed(op, e);
        }
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

    async fn count_visit(&self, link: Id, max: u64) -> Result<Option<u64>, StorageError> {
        let r = self.inner.count_visit(link, max).await;
        self.visit_result("count_visit", &r);
        r
    }

    async fn seed_visits(&self, link: Id, seed: u64, max: u64) -> Result<u64, StorageError> {
        let r = self.inner.seed_visits(link, seed, max).await;
        self.visit_result("seed_visits", &r);
        r
    }

    async fn visits(&self, link: Id) -> Result<Option<u64>, StorageError> {
        let r = self.inner.visits(link).await;
        self.visit_result("visits", &r);
        r
    }
}
