//! Crashes, clean shutdowns and restarts keep every acknowledged write.

mod support;
use kurz_testkit::http::client;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

/// Creates links from `workers` concurrent clients until stopped; returns every link
/// whose create was answered 201.
fn create_stream(base: String, workers: usize, stop: Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<Vec<Value>> {
    tokio::spawn(async move {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for w in 0..workers {
            let (base, stop, acked) = (base.clone(), stop.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let c = client();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let r = c.post(format!("{base}/urls")).json(&json!({"original_url": format!("https://crash.io/{w}/{i}")})).send().await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            if let Ok(v) = r.json::<Value>().await {
                                acked.lock().unwrap().push(v);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let v = acked.lock().unwrap().clone();
        v
    })
}

async fn assert_all_present(s: &Server, acked: &[Value]) {
    let c = client();
    for l in acked {
        let id = l["id"].as_u64().unwrap();
        let r = c.get(s.url(&format!("/urls/{id}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "acknowledged link {id} is missing after restart");
        let got: Value = r.json().await.unwrap();
        assert_eq!(got["short_code"], l["short_code"]);
        let redirect = c.get(s.url(&format!("/{}", l["short_code"].as_str().unwrap()))).send().await.unwrap();
        assert_eq!(redirect.status(), 302);
        assert_eq!(redirect.headers()["location"].to_str().unwrap(), l["original_url"].as_str().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stream_loses_no_acknowledged_create() {
    let mut s = Server::open();
    for round in 0..2 {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stream = create_stream(s.base.clone(), 8, stop.clone());
        // Let a few hundred creates through, then kill without warning.
        let c = client();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let count: usize = match c.get(s.url("/urls?limit=500")).send().await {
                Ok(r) => r.json::<Vec<Value>>().await.map(|v| v.len()).unwrap_or(0),
                Err(_) => 0,
            };
            if count >= 150 * (round + 1) {
                break;
            }
        }
        s.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let acked = stream.await.unwrap();
        assert!(acked.len() >= 100, "round {round}: only {} creates acknowledged", acked.len());
        s.restart();
        assert_all_present(&s, &acked).await;
        // Ids stay unique across the crash.
        let all: Vec<Value> = client().get(s.url("/urls?limit=500")).send().await.unwrap().json().await.unwrap();
        let ids: std::collections::HashSet<u64> = all.iter().map(|l| l["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), all.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_in_flight_requests_and_restart_keeps_everything() {
    let mut s = Server::open();
    let c = client();
    let user: Value = c.post(s.url("/users")).json(&json!({"email": "keep@x.io"})).send().await.unwrap().json().await.unwrap();
    let link: Value = c
        .post(s.url("/urls"))
        .json(&json!({"original_url": "https://keep.io", "user_id": user["id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = link["short_code"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(c.get(s.url(&format!("/{code}"))).send().await.unwrap().status(), 302);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = create_stream(s.base.clone(), 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::block_in_place(|| s.terminate());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    let acked = stream.await.unwrap();
    s.restart();
    assert_all_present(&s, &acked).await;
    let c = client();
    let u = c.get(s.url(&format!("/users/{}", user["id"]))).send().await.unwrap();
    assert_eq!(u.status(), 200);
    // The clicks captured before SIGTERM were flushed and counted.
    let stats: Value = c.get(s.url(&format!("/{code}+"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["click_count"], 3, "{stats}");
    // The first process logged an orderly stop (the log buffer spans restarts).
    assert!(s.logs.lock().unwrap().iter().any(|l| l.contains("\"event\":\"stopped\"")));
}
