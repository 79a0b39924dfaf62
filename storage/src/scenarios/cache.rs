//! The hot-cache scenario suite. `run` takes an empty cache.

use crate::cache::{CachedLink, LinkCache};
use kurz_schemas::{Id, Link, Ts};
use std::sync::Arc;

fn entry(code: &str, url: &str, version: u64) -> CachedLink {
    CachedLink::live(
        Link {
            domain: None,
            id: Id::new(1).unwrap(),
            short_code: code.into(),
            original_url: url.into(),
            title: Some("t".into()),
            is_active: true,
            user_id: Some(Id::new(9).unwrap()),
            created_at: Ts(1000),
            updated_at: Ts(2000),
            options: Default::default(),
        },
        version,
    )
}

pub async fn run(cache: Arc<dyn LinkCache>) {
    let get = |c: &'static str| {
        let cache = cache.clone();
        async move {
            // An in-process answer, where a backend has one, is the cache's answer.
            let local = cache.get_local(c);
            let got = cache.get(c).await.expect("cache get");
            if local.is_some() {
                assert_eq!(local, got, "get_local({c}) agrees with get");
            }
            got
        }
    };
    assert_eq!(get("abc").await, None);
    cache.offer("abc", entry("abc", "https://v2.io", 2)).await.unwrap();
    assert_eq!(get("abc").await, Some(entry("abc", "https://v2.io", 2)), "the whole link round-trips");
    // A reader that read an older state from the store cannot put it back.
    cache.offer("abc", entry("abc", "https://v1.io", 1)).await.unwrap();
    assert_eq!(get("abc").await.unwrap().version, 2);
    // A newer state (here a delete) replaces it.
    cache.offer("abc", CachedLink::gone(3)).await.unwrap();
    assert_eq!(get("abc").await, Some(CachedLink::gone(3)));
    cache.offer("abc", entry("abc", "https://v2.io", 2)).await.unwrap();
    assert_eq!(get("abc").await.unwrap().link, None, "a tombstone is not undone by an older state");
    // Codes are independent, and equal versions may be rewritten (replay is idempotent).
    cache.offer("other", entry("other", "https://o.io", 1)).await.unwrap();
    cache.offer("other", entry("other", "https://o.io", 1)).await.unwrap();
    assert_eq!(get("other").await.unwrap().link.unwrap().original_url, "https://o.io");
    assert_eq!(get("abc").await.unwrap().version, 3);

    // Concurrent offers of many versions: the newest always stays.
    let tasks: Vec<_> = (0..50u64)
        .map(|v| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.offer("race", entry("race", &format!("https://v{v}.io"), v)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let won = get("race").await.unwrap();
    assert_eq!(won.version, 49);
    assert_eq!(won.link.unwrap().original_url, "https://v49.io");
    cache.ping().await.unwrap();
    visit_counts_are_seeded_once_and_exact(cache).await;
}

/// A link's visit count: none until seeded, seeded once however many race to seed it,
/// then every visit gets its own number. A caller counts through the port, as the
/// edge does (`count_visit`, then `seed_visits` on `None`).
pub async fn visit_counts_are_seeded_once_and_exact(cache: Arc<dyn LinkCache>) {
    // A link id no earlier run on a shared server used.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let link = Id::new(1 + nanos % (1 << 40)).unwrap();
    assert_eq!(cache.count_visit(link, 100).await.unwrap(), None, "no count before a seed");
    assert_eq!(cache.visits(link).await.unwrap(), None);
    let count = |cache: Arc<dyn LinkCache>, max: u64| async move {
        match cache.count_visit(link, max).await.unwrap() {
            Some(n) => n,
            None => cache.seed_visits(link, 10, max).await.unwrap(),
        }
    };
    let tasks: Vec<_> = (0..40).map(|_| tokio::spawn(count(cache.clone(), 45))).collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort_unstable();
    let mut want: Vec<u64> = (11..=45).collect();
    want.extend([46; 5]);
    assert_eq!(got, want, "seeded at 10 once, one number per visit up to 45, then refusals that count nothing");
    assert_eq!(cache.visits(link).await.unwrap(), Some(45), "refused visits are not counted");
    assert_eq!(cache.seed_visits(link, 0, 50).await.unwrap(), 46, "a late seed does not reset the count");
    assert_eq!(count(cache.clone(), 50).await, 47, "a higher limit opens exactly the visits it adds");
    let other = Id::new(link.get() + 1).unwrap();
    assert_eq!(cache.count_visit(other, 100).await.unwrap(), None, "counts are per link");
}
