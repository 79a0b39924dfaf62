//! A poison event in a running kurz: it parks only its key (another link on the same
//! partition keeps flowing), writes to that key wait behind it, and `kurz parked`
//! (admin API and CLI) lists, re-drives and skips it; skipping sends it to the
//! dead-letter topic and delivers what waited, in order.

mod support;

use kurz_schemas::topics;
use serde_json::{json, Value};
use support::split::partition_of_code;
use support::{client, Opts, Server, ADMIN_TOKEN};

async fn create(s: &Server, code: &str) -> u64 {
    let r = client()
        .post(s.url("/urls"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "original_url": format!("https://parked.test/{code}"), "short_code": code, "title": "before" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"].as_u64().unwrap()
}

async fn retitle(s: &Server, id: u64, key: &str) -> reqwest::StatusCode {
    let r = client()
        .put(s.url(&format!("/urls/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .header("Idempotency-Key", key)
        .json(&json!({ "title": "after" }))
        .send()
        .await
        .unwrap();
    r.status()
}

async fn title(s: &Server, id: u64) -> String {
    let v: Value = client().get(s.url(&format!("/urls/{id}"))).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
    v["title"].as_str().unwrap_or_default().to_string()
}

async fn admin(s: &Server, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut rb = client().request(method, s.url(path)).bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_parks_only_its_key_until_it_is_skipped() {
    let env = vec![
        // No automatic re-drive during the test: it is driven through the admin API.
        ("KURZ_WATCHDOG_BACKOFF_MS".to_string(), "3600000".to_string()),
        ("KURZ_OUTCOME_TIMEOUT_MS".to_string(), "1500".to_string()),
    ];
    let mut s = Server::start(Opts { auth: "token", extra_env: env, ..Opts::default() });
    let sick = "poison-a";
    let healthy = (0..).map(|k| format!("healthy-{k}")).find(|c| partition_of_code(c) == partition_of_code(sick)).unwrap();
    let (sick_id, healthy_id) = (create(&s, sick).await, create(&s, &healthy).await);

    // A record this build cannot read lands in the sick link's key (a newer writer's
    // event version, say), appended while kurz is stopped.
    assert!(s.terminate().success());
    {
        let log = kurz_storage::open_log("embedded", s.data.path()).unwrap();
        let p = partition_of_code(sick);
        let rec = kurz_storage::NewRecord::new(format!("link:{sick}"), br#"{"v":99,"type":"link_renamed"}"#.to_vec());
        log.append(topics::EVENTS, p, vec![rec]).await.unwrap();
    }
    s.restart();

    // The sick key waits; the healthy one, on the same partition, flows.
    assert_eq!(retitle(&s, sick_id, "sick-1").await, 504, "accepted, but its outcome waits behind the poison record");
    assert_eq!(retitle(&s, healthy_id, "healthy-1").await, 200);
    assert_eq!(title(&s, healthy_id).await, "after");
    assert_eq!(title(&s, sick_id).await, "before");

    // Admin only.
    assert_eq!(client().get(s.url("/admin/parked")).send().await.unwrap().status(), 401);
    let (status, list) = admin(&s, reqwest::Method::GET, "/admin/parked", None).await;
    assert_eq!(status, 200, "{list}");
    let parked = list["parked"].as_array().unwrap();
    assert!(parked.len() >= 2, "the poison record and the update's events behind it: {list}");
    assert!(parked.iter().all(|r| r["key"] == format!("link:{sick}")), "only the sick key is parked: {list}");
    let head = &parked[0];
    assert_eq!(head["attempts"], 1);
    assert!(head["reason"].as_str().unwrap().contains("undecodable"), "{head}");
    assert!(parked[1..].iter().all(|r| r["attempts"] == 0));

    // The CLI sees the same, through the admin API.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kurz"))
        .args(["parked", "list", "--json", "--url", &s.base, "--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["count"], list["count"]);

    // A re-drive fails again (the cause is still there) and counts the attempt.
    let (status, r) = admin(&s, reqwest::Method::POST, "/admin/parked/redrive", Some(json!({}))).await;
    assert_eq!((status, r["failed"].as_u64(), r["delivered"].as_u64()), (200, Some(1), Some(0)), "{r}");
    let (_, list) = admin(&s, reqwest::Method::GET, "/admin/parked", None).await;
    assert_eq!(list["parked"][0]["attempts"], 2);
    assert_eq!(title(&s, sick_id).await, "before");

    // Skipping: a bad body is a 400, a record that is not parked a 404.
    let (status, _) = admin(&s, reqwest::Method::POST, "/admin/parked/skip", Some(json!({ "topic": 1 }))).await;
    assert_eq!(status, 400);
    let mut missing = head.clone();
    missing["offset"] = json!(head["offset"].as_u64().unwrap() + 100_000);
    let (status, body) = admin(&s, reqwest::Method::POST, "/admin/parked/skip", Some(missing)).await;
    assert_eq!(status, 404, "{body}");
    let id = json!({ "topic": head["topic"], "partition": head["partition"], "key": head["key"], "offset": head["offset"] });
    let (status, r) = admin(&s, reqwest::Method::POST, "/admin/parked/skip", Some(id)).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["dead_lettered"], 1);
    assert_eq!(r["delivered"].as_u64(), Some(parked.len() as u64 - 1), "everything that waited was delivered: {r}");

    // The update that waited is applied, and its retry is answered from its outcome.
    assert_eq!(title(&s, sick_id).await, "after");
    assert_eq!(retitle(&s, sick_id, "sick-1").await, 200);
    let (_, list) = admin(&s, reqwest::Method::GET, "/admin/parked", None).await;
    assert_eq!(list["count"], 0);
    let metrics = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "kurz_dead_letters_total{topic=\"kurz.events.v1\"} 1"), "the alert metric");

    // The dead-letter topic holds the record byte for byte, with where it came from.
    assert!(s.terminate().success());
    let log = kurz_storage::open_log("embedded", s.data.path()).unwrap();
    let dead = log.read(topics::DEAD_LETTERS, 0, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, br#"{"v":99,"type":"link_renamed"}"#.to_vec());
    assert_eq!(dead[0].header("kurz-dlq-reason").map(|r| String::from_utf8_lossy(r).into_owned()), Some("skipped by an operator".into()));
}
