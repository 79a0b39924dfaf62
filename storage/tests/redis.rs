//! The cache scenario suite against a real `redis-server` (Debian's package, started
//! here on a free port), plus outage and repair behaviour. A missing redis-server is a
//! failure, not a skip.

use kurz_schemas::{Id, Link, Ts};
use kurz_storage::cache::redis::RedisCache;
use kurz_storage::cache::{CachedLink, LinkCache};
use kurz_storage::{open_cache, scenarios};
use kurz_testkit::{free_port, RedisServer as Redis};
use std::time::{Duration, Instant};

fn entry(url: &str, version: u64) -> CachedLink {
    CachedLink::live(
        Link {
            domain: None,
            id: Id::new(3).unwrap(),
            short_code: "code".into(),
            original_url: url.into(),
            title: None,
            is_active: true,
            user_id: None,
            created_at: Ts(1),
            updated_at: Ts(1),
            options: Default::default(),
        },
        version,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_scenarios_on_redis_alone() {
    let r = Redis::start();
    scenarios::cache::run(open_cache(&format!("{}?near_capacity=0", r.url())).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_scenarios_on_near_cache_over_redis() {
    let r = Redis::start();
    scenarios::cache::run(open_cache(&r.url()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_entries_through_redis() {
    let r = Redis::start();
    let a = open_cache(&format!("{}?near_capacity=0", r.url())).unwrap();
    let b = open_cache(&format!("{}?near_capacity=0", r.url())).unwrap();
    a.offer("code", entry("https://shared.io", 7)).await.unwrap();
    assert_eq!(b.get("code").await.unwrap(), Some(entry("https://shared.io", 7)));
    b.offer("code", entry("https://older.io", 6)).await.unwrap();
    assert_eq!(a.get("code").await.unwrap().unwrap().version, 7, "newer-wins holds across processes");
    // Separate prefixes are separate caches.
    let c = open_cache(&format!("{}?near_capacity=0&prefix=other:", r.url())).unwrap();
    assert_eq!(c.get("code").await.unwrap(), None);
}

/// The stored form is `kurz_schemas::cache::CachedLink::encode`'s, byte for byte: what
/// other processes (of this build or an older one) read and write under the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_stored_as_their_version_a_newline_and_the_link_json() {
    let r = Redis::start();
    let cache = open_cache(&format!("{}?near_capacity=0", r.url())).unwrap();
    let live = entry("https://stored.io", 7);
    cache.offer("code", live.clone()).await.unwrap();
    cache.offer("gone", CachedLink::gone(8)).await.unwrap();
    let conn = redis::Client::open(r.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let raw = |key: &'static str| {
        let mut conn = conn.clone();
        async move { redis::cmd("GET").arg(key).query_async::<Option<String>>(&mut conn).await.unwrap() }
    };
    let json = serde_json::to_string(&**live.link.as_ref().unwrap()).unwrap();
    assert_eq!(raw("kurz:link:code").await, Some(format!("7\n{json}")));
    assert_eq!(raw("kurz:link:gone").await, Some("8\n".to_string()));
    // An entry another writer stored is read, and still only replaced by a newer one.
    redis::cmd("SET").arg("kurz:link:other").arg(format!("9\n{json}")).query_async::<()>(&mut conn.clone()).await.unwrap();
    assert_eq!(cache.get("other").await.unwrap(), Some(entry("https://stored.io", 9)));
    cache.offer("other", CachedLink::gone(8)).await.unwrap();
    assert_eq!(raw("kurz:link:other").await, Some(format!("9\n{json}")), "an older offer leaves it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_and_offers_made_during_it_are_repaired() {
    let mut r = Redis::start();
    let port = r.port;
    let cache = RedisCache::open(&r.url()).unwrap();
    cache.offer("code", entry("https://before.io", 1)).await.unwrap();
    r.kill();

    // Down: errors, never hangs or panics; the failed offer is kept for repair.
    assert!(cache.get("code").await.is_err());
    assert!(cache.offer("code", entry("https://during.io", 2)).await.is_err());
    assert!(cache.get("code").await.is_err(), "the breaker answers at once");
    assert_eq!(cache.pending(), 1);

    // Back (empty, as after a restart): the pending offer is written again.
    let _r2 = Redis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(e)) = cache.get("code").await {
            assert_eq!(e, entry("https://during.io", 2));
            break;
        }
        assert!(Instant::now() < deadline, "cache did not heal after Redis returned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cache.pending(), 0);
    // A second process sees the repaired entry.
    let other = open_cache(&format!("redis://127.0.0.1:{port}?near_capacity=0")).unwrap();
    assert_eq!(other.get("code").await.unwrap().unwrap().version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_while_redis_is_down_works_and_connects_later() {
    let port = free_port();
    let cache = open_cache(&format!("redis://127.0.0.1:{port}")).unwrap();
    assert!(cache.get("x").await.is_err());
    let _r = Redis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cache.offer("x", entry("https://late.io", 1)).await.is_err() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cache.get("x").await.unwrap().unwrap().version, 1);
}

/// A managed Redis as production meets it: TLS only, a password. The whole cache
/// scenario suite passes over `rediss://` against Debian's redis-server on a TLS port
/// with a certificate the test made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_scenarios_over_tls_with_a_password() {
    let r = Redis::start_tls("tls-test-password-0123456789");
    assert!(r.url().starts_with("rediss://"));
    scenarios::cache::run(open_cache(&format!("{}&near_capacity=0", r.url())).unwrap()).await;
    scenarios::cache::run(open_cache(&format!("{}&prefix=tiered:", r.url())).unwrap()).await;
}

/// TLS is checked, not merely spoken: a server the client cannot verify, a wrong
/// password and plaintext to the TLS port all fail, as errors, not hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_an_unverified_server_a_wrong_password_and_plaintext() {
    let r = Redis::start_tls("right-password-0123456789");
    let ca = r.tls.as_ref().unwrap().path("ca.pem");
    let good = open_cache(&format!("{}&near_capacity=0", r.url())).unwrap();
    good.offer("code", entry("https://tls.io", 1)).await.unwrap();
    assert_eq!(good.get("code").await.unwrap().unwrap().version, 1);
    for (why, url) in [
        ("the system roots do not know the test CA", format!("rediss://:right-password-0123456789@localhost:{}?near_capacity=0", r.port)),
        ("a wrong password", format!("rediss://:wrong@localhost:{}?near_capacity=0&tls_ca={ca}", r.port)),
        ("plaintext to the TLS port", format!("redis://:right-password-0123456789@127.0.0.1:{}?near_capacity=0", r.port)),
    ] {
        let c = open_cache(&url).unwrap();
        assert!(c.get("code").await.is_err(), "{why}");
    }
    // A missing CA file is a configuration error at open, naming the setting.
    let err = open_cache(&format!("rediss://localhost:{}?tls_ca=/nonexistent/ca.pem", r.port)).err().expect("an error");
    assert!(err.to_string().contains("tls_ca"), "{err}");
}
