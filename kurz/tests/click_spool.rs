//! A log outage costs neither redirects nor clicks: while the broker is down, redirects
//! keep answering and their clicks wait in the edge's spool; when it is back, they move
//! into the log and are counted, each once.

mod support;
use kurz_testkit::http::{client, json_of};
use support::*;

use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn metric(text: &str, name: &str, label: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(name) && l.contains(label)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_made_while_the_broker_is_down_are_spooled_then_counted_once() {
    let broker_dir = tempfile::tempdir().unwrap();
    let mut broker = kurz_testkit::Tansu::sqlite(broker_dir.path());
    let srv = Server::start(Opts {
        // A short delivery timeout: an append to a dead broker fails in 2 s.
        extra_env: vec![
            ("KURZ_LOG_URL".into(), format!("{}?session_timeout_ms=6000&timeout_ms=2000", broker.url())),
            ("KURZ_LOG".into(), "info,kurz_query_edge=debug".into()),
        ],
        ..Opts::default()
    });
    let http = client();
    let link: Value = json_of(http.post(srv.url("/urls")).json(&json!({"original_url": "https://example.com/spool"}))).await;
    let code = link["short_code"].as_str().unwrap().to_string();
    for _ in 0..5 {
        assert_eq!(http.get(srv.url(&format!("/{code}"))).send().await.unwrap().status(), 302);
    }
    let count = || async {
        let v: Value = http.get(srv.url(&format!("/{code}+"))).send().await.unwrap().json().await.unwrap();
        v["click_count"].as_u64().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while count().await != 5 {
        assert!(Instant::now() < deadline, "the first clicks were never counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The broker goes away; redirects go on.
    broker.kill();
    for _ in 0..40 {
        assert_eq!(http.get(srv.url(&format!("/{code}"))).send().await.unwrap().status(), 302);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = http.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let spooled = metric(&m, "kurz_clicks_total", "result=\"spooled\"");
        if spooled >= 40.0 {
            assert!(metric(&m, "kurz_click_spool_bytes", "") > 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "clicks were not spooled: {spooled}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count().await, 5, "nothing counted while the log is down");

    // The broker comes back (same storage): the spool drains, every click counts once.
    broker.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    while count().await != 45 {
        if Instant::now() > deadline {
            let logs = srv
                .logs
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("warn") || l.contains("error") || l.contains("click"))
                .cloned()
                .collect::<Vec<_>>();
            panic!("spooled clicks never counted: {}\n{}", count().await, logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = http.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&m, "kurz_click_spool_bytes", ""), 0.0, "the spool is empty again");
    assert!(metric(&m, "kurz_clicks_total", "result=\"unspooled\"") >= 40.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count().await, 45, "and counted once");
}
