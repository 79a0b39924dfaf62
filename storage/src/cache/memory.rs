//! In-process cache on quick_cache: S3-FIFO eviction, bounded by entry count, sharded
//! by key hash.
//!
//! A read takes its shard's read lock and sets the entry's reference bit: nothing is
//! queued, no housekeeping runs on the reader's thread. It replaced moka here, whose
//! `get` (TinyLFU sketch update, read-buffer push, inline housekeeping) cost more than
//! a third of kurz's own redirect path (`bench/results/redirects.md`).

use super::{CachedLink, LinkCache, NEGATIVE_TTL};
use crate::StorageError;
use async_trait::async_trait;
use kurz_schemas::Id;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use std::sync::OnceLock;
use std::time::Instant;

/// An entry and, for a negative one, when it stops answering: negative entries are
/// bounded in time as well as in number (a code that is unknown now may be created
/// later by a process whose events this cache does not see).
#[derive(Clone)]
struct Entry {
    cached: CachedLink,
    /// Milliseconds since [`epoch`] after which a negative entry is a miss; unused for a
    /// link.
    expires: u64,
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Entry {
    fn new(cached: CachedLink, negative_ttl_ms: u64) -> Entry {
        let expires = if !cached.is_live() { now_ms().saturating_add(negative_ttl_ms) } else { 0 };
        Entry { cached, expires }
    }
    fn live(self) -> Option<CachedLink> {
        (self.cached.is_live() || now_ms() < self.expires).then_some(self.cached)
    }
}

pub struct MemoryCache {
    inner: Cache<String, Entry>,
    negative_ttl_ms: u64,
    visits: super::LocalVisits,
}

impl MemoryCache {
    pub fn new(capacity: u64) -> MemoryCache {
        MemoryCache {
            inner: Cache::new(capacity.clamp(1, usize::MAX as u64) as usize),
            negative_ttl_ms: NEGATIVE_TTL.as_millis() as u64,
            visits: Default::default(),
        }
    }

    /// How long negative entries answer ([`NEGATIVE_TTL`] unless set).
    pub fn with_negative_ttl(mut self, ttl: std::time::Duration) -> MemoryCache {
        self.negative_ttl_ms = ttl.as_millis() as u64;
        self
    }
}

#[async_trait]
impl LinkCache for MemoryCache {
    async fn get(&self, code: &str) -> Result<Option<CachedLink>, StorageError> {
        Ok(self.get_local(code))
    }

    fn get_local(&self, code: &str) -> Option<CachedLink> {
        self.inner.get(code).and_then(Entry::live)
    }

    async fn offer(&self, code: &str, entry: CachedLink) -> Result<(), StorageError> {
        // Compare and replace under the shard's write lock, so of two racing offers the
        // newer version stays whichever lands last.
        let version = entry.version;
        let mut entry = Some(entry);
        let found = self.inner.entry(code, None, |_, cur| {
            if cur.cached.version <= version {
                *cur = Entry::new(entry.take().expect("the callback runs at most once"), self.negative_ttl_ms);
            }
            EntryAction::Retain(())
        });
        if let (EntryResult::Vacant(slot), Some(entry)) = (found, entry) {
            // Err: a concurrent remove took the slot; the next reader reloads.
            let _ = slot.insert(Entry::new(entry, self.negative_ttl_ms));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kurz_schemas::{Link, Ts};
    use std::sync::Arc;

    fn entry(version: u64, url: &str) -> CachedLink {
        let link = Link {
            domain: None,
            id: Id::new(1).unwrap(),
            short_code: "abc".into(),
            original_url: url.into(),
            title: None,
            is_active: true,
            user_id: None,
            created_at: Ts(0),
            updated_at: Ts(0),
            options: Default::default(),
        };
        CachedLink::live(link, version)
    }

    #[tokio::test]
    async fn it_holds_at_most_about_its_capacity() {
        let c = MemoryCache::new(100);
        for i in 0..1000 {
            c.offer(&format!("c{i}"), entry(i, "https://example.com/")).await.unwrap();
        }
        let mut held = 0;
        for i in 0..1000 {
            held += c.get(&format!("c{i}")).await.unwrap().is_some() as usize;
        }
        assert!(held > 0 && held <= 110, "{held} of 1000 held with a capacity of 100");
    }

    #[tokio::test]
    async fn the_local_lookup_answers_what_get_answers_and_is_counted_once() {
        let c = crate::cache::Instrumented::new(Arc::new(MemoryCache::new(100)));
        assert_eq!(c.get_local("abc"), None, "nothing held yet");
        c.offer("abc", entry(3, "https://example.com/3")).await.unwrap();
        c.offer("gone", CachedLink::gone(4)).await.unwrap();
        let hits = || crate::metrics::get().cache_lookups.with_label_values(&["hit"]).get();
        let negative = || crate::metrics::get().cache_lookups.with_label_values(&["negative_hit"]).get();
        let (h0, n0) = (hits(), negative());
        assert_eq!(c.get_local("abc"), c.get("abc").await.unwrap());
        assert_eq!(c.get_local("abc").unwrap().link.unwrap().original_url, "https://example.com/3");
        assert_eq!(c.get_local("gone"), Some(CachedLink::gone(4)), "a tombstone is held too");
        assert!(c.get_local("other").is_none());
        // No other unit test here goes through `Instrumented`, so the counts are ours alone.
        assert_eq!(hits() - h0, 3, "two local hits and one get hit, each counted once");
        assert_eq!(negative() - n0, 1, "the tombstone");
    }

    #[tokio::test]
    async fn racing_offers_leave_the_newest_version() {
        let c = Arc::new(MemoryCache::new(1000));
        let tasks: Vec<_> = (0..200u64)
            .map(|v| {
                let c = c.clone();
                tokio::spawn(async move { c.offer("abc", entry(v, &format!("https://example.com/{v}"))).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let got = c.get("abc").await.unwrap().unwrap();
        assert_eq!(got.version, 199);
        assert_eq!(got.link.unwrap().original_url, "https://example.com/199");
    }

    #[tokio::test]
    async fn negative_entries_answer_for_their_ttl_and_links_stay() {
        let c = MemoryCache::new(100).with_negative_ttl(std::time::Duration::from_millis(300));
        c.offer("gone", CachedLink::gone(1)).await.unwrap();
        c.offer("here", entry(1, "https://a.io")).await.unwrap();
        assert_eq!(c.get_local("gone"), Some(CachedLink::gone(1)), "a fresh negative entry answers");
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(c.get_local("gone"), None, "an expired negative entry is a miss");
        assert_eq!(c.get("gone").await.unwrap(), None);
        assert!(c.get_local("here").is_some(), "links do not expire");
        // A newer state replaces an expired tombstone as any other.
        c.offer("gone", entry(2, "https://b.io")).await.unwrap();
        assert_eq!(c.get_local("gone").unwrap().version, 2);
    }
}
