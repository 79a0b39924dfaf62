//! In-process cache on quick_cache: S3-FIFO eviction, bounded by entry count, sharded
//! by key hash.
//!
//! A read takes its shard's read lock and sets the entry's reference bit: nothing is
//! queued, no housekeeping runs on the reader's thread. It replaced moka here, whose
//! `get` (TinyLFU sketch update, read-buffer push, inline housekeeping) cost more than
//! a third of kurz's own redirect path (`bench/results/redirects.md`).

use super::{CachedLink, LinkCache};
use crate::StorageError;
use async_trait::async_trait;
use quick_cache::sync::{Cache, EntryAction, EntryResult};

pub struct MemoryCache {
    inner: Cache<String, CachedLink>,
}

impl MemoryCache {
    pub fn new(capacity: u64) -> MemoryCache {
        MemoryCache { inner: Cache::new(capacity.clamp(1, usize::MAX as u64) as usize) }
    }
}

#[async_trait]
impl LinkCache for MemoryCache {
    async fn get(&self, code: &str) -> Result<Option<CachedLink>, StorageError> {
        Ok(self.inner.get(code))
    }

    fn get_local(&self, code: &str) -> Option<CachedLink> {
        self.inner.get(code)
    }

    async fn offer(&self, code: &str, entry: CachedLink) -> Result<(), StorageError> {
        // Compare and replace under the shard's write lock, so of two racing offers the
        // newer version stays whichever lands last.
        let version = entry.version;
        let mut entry = Some(entry);
        let found = self.inner.entry(code, None, |_, cur| {
            if cur.version <= version {
                *cur = entry.take().expect("the callback runs at most once");
            }
            EntryAction::Retain(())
        });
        if let (EntryResult::Vacant(slot), Some(entry)) = (found, entry) {
            // Err: a concurrent remove took the slot; the next reader reloads.
            let _ = slot.insert(entry);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kurz_schemas::{Id, Link, Ts};
    use std::sync::Arc;

    fn entry(version: u64, url: &str) -> CachedLink {
        let link = Link {
            id: Id::new(1).unwrap(),
            short_code: "abc".into(),
            original_url: url.into(),
            title: None,
            is_active: true,
            user_id: None,
            created_at: Ts(0),
            updated_at: Ts(0),
        };
        CachedLink { link: Some(Arc::new(link)), version }
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
        c.offer("gone", CachedLink { link: None, version: 4 }).await.unwrap();
        let hits = || crate::metrics::get().cache_lookups.with_label_values(&["hit"]).get();
        let negative = || crate::metrics::get().cache_lookups.with_label_values(&["negative_hit"]).get();
        let (h0, n0) = (hits(), negative());
        assert_eq!(c.get_local("abc"), c.get("abc").await.unwrap());
        assert_eq!(c.get_local("abc").unwrap().link.unwrap().original_url, "https://example.com/3");
        assert_eq!(c.get_local("gone"), Some(CachedLink { link: None, version: 4 }), "a tombstone is held too");
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
}
