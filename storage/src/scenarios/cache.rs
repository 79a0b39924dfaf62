//! The hot-cache scenario suite.

use crate::cache::{CachedLink, LinkCache};
use kurz_schemas::{Id, Link, Ts};
use std::sync::Arc;

fn entry(url: &str, version: u64) -> CachedLink {
    CachedLink {
        link: Some(Arc::new(Link {
            id: Id::new(1).unwrap(),
            short_code: "abc".into(),
            original_url: url.into(),
            title: None,
            is_active: true,
            user_id: None,
            created_at: Ts(0),
            updated_at: Ts(0),
        })),
        version,
    }
}

pub async fn run(cache: Arc<dyn LinkCache>) {
    assert_eq!(cache.get("abc").await, None);
    cache.offer("abc", entry("https://v2.io", 2)).await;
    assert_eq!(cache.get("abc").await, Some(entry("https://v2.io", 2)));
    // A reader that read an older state from the store cannot put it back.
    cache.offer("abc", entry("https://v1.io", 1)).await;
    assert_eq!(cache.get("abc").await.unwrap().version, 2);
    // A newer state (here a delete) replaces it.
    cache.offer("abc", CachedLink { link: None, version: 3 }).await;
    assert_eq!(cache.get("abc").await, Some(CachedLink { link: None, version: 3 }));
    cache.offer("abc", entry("https://v2.io", 2)).await;
    assert_eq!(cache.get("abc").await.unwrap().link, None, "a tombstone is not undone by an older state");
    assert!(cache.ping().await);
}
