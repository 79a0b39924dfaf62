//! `kill -9` of Redis under redirect load: every redirect still answers 302 with the
//! right Location (from the read store while Redis is down), and the cache heals.

mod support;
use kurz_testkit::http::client;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

async fn metric(c: &reqwest::Client, s: &Server, name: &str) -> f64 {
    let text = c.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_redis_under_redirect_load_fails_no_redirect() {
    let mut redis = kurz_testkit::RedisServer::start();
    // No near cache: every redirect goes to Redis, so the outage is felt by every request.
    let s =
        Server::start(Opts { extra_env: vec![("KURZ_CACHE_URL".into(), format!("{}?near_capacity=0", redis.url()))], ..Opts::default() });
    let c = client();
    let mut links = Vec::new();
    for i in 0..40 {
        let l: Value = c
            .post(s.url("/urls"))
            .json(&json!({"original_url": format!("https://target.io/{i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        links.push((
            l["id"].as_u64().unwrap(),
            l["short_code"].as_str().unwrap().to_string(),
            vec![l["original_url"].as_str().unwrap().to_string()],
        ));
    }
    let expected = Arc::new(std::sync::RwLock::new(links.clone()));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (base, expected, done, failed, stop) = (s.base.clone(), expected.clone(), done.clone(), failed.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                // The targets acceptable when the request starts.
                let (_, code, urls) = expected.read().unwrap()[i % 40].clone();
                i += 1;
                match c.get(format!("{base}/{code}")).send().await {
                    Ok(r) if r.status() == 302 && urls.iter().any(|u| r.headers()["location"].to_str().unwrap() == u) => {}
                    Ok(r) => failed.lock().unwrap().push(format!("{code}: {} {:?}", r.status(), r.headers().get("location"))),
                    Err(e) => failed.lock().unwrap().push(format!("{code}: {e}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let wait_for = |n: u64| {
        let done = done.clone();
        async move {
            while done.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(2_000).await;
    let hits_before = metric(&c, &s, "kurz_cache_lookups_total{result=\"hit\"}").await;
    assert!(hits_before > 0.0, "redirects were served from Redis before the outage");

    redis.kill();
    let at_kill = done.load(Ordering::Relaxed);
    wait_for(at_kill + 3_000).await;
    // An edit while Redis is down: redirects follow it at once (read-your-writes), and
    // Redis is repaired with it when it returns.
    let (id, code, _) = links[0].clone();
    let edited = "https://edited.io/during-outage".to_string();
    expected.write().unwrap()[0].2.push(edited.clone()); // either, while the PUT is in flight
    let r = c.put(s.url(&format!("/urls/{id}"))).json(&json!({"original_url": edited})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    expected.write().unwrap()[0].2 = vec![edited]; // only the new one once it answered
    let errors = metric(&c, &s, "kurz_cache_errors_total").await;
    assert!(errors > 0.0, "the outage was noticed and counted");

    redis.restart();
    let at_restart = done.load(Ordering::Relaxed);
    wait_for(at_restart + 3_000).await;
    // Healed: Redis answers again (hits grow) and holds the edit made during the outage.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hits = metric(&c, &s, "kurz_cache_lookups_total{result=\"hit\"}").await;
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
        use std::io::{Read, Write};
        conn.write_all(format!("GET kurz:link:{code}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]).to_string();
        if hits > hits_before && reply.contains("edited.io/during-outage") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "cache did not heal: hits {hits} (before {hits_before}), redis has {reply:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let failed = failed.lock().unwrap();
    let total = done.load(Ordering::Relaxed);
    assert!(failed.is_empty(), "{} of {total} redirects failed, first: {:?}", failed.len(), failed.iter().take(5).collect::<Vec<_>>());
    assert!(total >= 8_000);
}

/// A visit limit is a promise: while Redis (where the visit counts live) is paused, a
/// visit of a limited link is answered 503, never served past the limit, and other
/// links redirect as ever. The counts those visits sent may still run when Redis wakes
/// (a paused server keeps what was written to its socket): the limit then errs toward
/// fewer served visits, never more. After Redis lost its counts (a restart without
/// persistence) the count is seeded again from the projected clicks: exactly the limit
/// is served in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_limit_holds_through_a_redis_pause_and_a_lost_count() {
    let mut redis = kurz_testkit::RedisServer::start();
    let s = Server::start(Opts { extra_env: vec![("KURZ_CACHE_URL".into(), redis.url())], ..Opts::default() });
    let c = client();
    let create = |body: Value| {
        let c = c.clone();
        let url = s.url("/urls");
        async move { c.post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let limited = create(json!({"original_url": "https://target.io/limited", "max_visits": 3})).await;
    let plain = create(json!({"original_url": "https://target.io/plain"})).await;
    let visit = |l: &Value| {
        let (c, url) = (c.clone(), s.url(&format!("/{}", l["short_code"].as_str().unwrap())));
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(visit(&limited).await, 302, "visit 1 of 3");
    let mut served = 1;

    redis.signal("STOP");
    for _ in 0..3 {
        assert_eq!(visit(&limited).await, 503, "a count that cannot be read is not guessed");
        assert_eq!(visit(&plain).await, 302, "links without a limit do not need the count");
    }
    redis.signal("CONT");
    // Visits until the limit answers: the paused counts may have used it up.
    let limited_url = s.url(&format!("/{}", limited["short_code"].as_str().unwrap()));
    served += served_until_refused(&c, &limited_url).await;
    assert!(served <= 3, "{served} visits of a 3-visit link served");

    // Redis loses every count. Once the served visits are projected, the count is seeded
    // from them again: the visits the paused counts took are open again, and no more.
    let clicks = |c: reqwest::Client, url: String| async move {
        c.get(url).send().await.unwrap().json::<Value>().await.unwrap()["click_count"].clone()
    };
    let stats = s.url(&format!("/{}+", limited["short_code"].as_str().unwrap()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while clicks(c.clone(), stats.clone()).await != served {
        assert!(std::time::Instant::now() < deadline, "{served} clicks were not projected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.restart();
    served += served_until_refused(&c, &limited_url).await;
    assert_eq!(served, 3, "exactly the limit served in all");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while clicks(c.clone(), stats.clone()).await != 3 {
        assert!(std::time::Instant::now() < deadline, "3 clicks were not projected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Visits `url` until it answers 404 (waiting out 503s while Redis comes back); how many
/// were served.
async fn served_until_refused(c: &reqwest::Client, url: &str) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut served = 0;
    loop {
        assert!(std::time::Instant::now() < deadline, "{url} never answered past its limit");
        match c.get(url).send().await.unwrap().status().as_u16() {
            302 => served += 1,
            404 => return served,
            503 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("a visit of {url} answered {other}"),
        }
    }
}
