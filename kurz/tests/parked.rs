//! A poison record in a running kurz: it parks only its key (another link on the same
//! partition keeps flowing), records of that key wait behind it, and `kurz parked`
//! (admin API and CLI) lists, re-drives and skips it; skipping sends it to the
//! dead-letter topic and delivers what waited, in order. The poison is a click: an
//! event the deciders cannot read stops their partition instead (fail closed), shown
//! at the end.

mod support;

use kurz_schemas::topics;
use kurz_testkit::http::client;
use serde_json::{json, Value};
use support::{partition_of_code, Opts, Server, ADMIN_TOKEN};

const CLICK_PARTITIONS: u32 = 2;
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

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

async fn click(s: &Server, code: &str) {
    let r = client().get(s.url(&format!("/{code}"))).header("user-agent", CHROME).send().await.unwrap();
    assert_eq!(r.status(), 302);
}

async fn clicks(s: &Server, code: &str) -> u64 {
    let v: Value = client().get(s.url(&format!("/{code}+"))).send().await.unwrap().json().await.unwrap();
    v["click_count"].as_u64().unwrap()
}

fn click_partition(code: &str) -> u32 {
    kurz_storage::log::partition_for(code, CLICK_PARTITIONS)
}

/// Polls until `f` holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
async fn a_poison_record_parks_only_its_key_until_it_is_skipped() {
    let env = vec![
        // No automatic re-drive during the test: it is driven through the admin API.
        ("KURZ_WATCHDOG_BACKOFF_MS".to_string(), "3600000".to_string()),
        ("KURZ_OUTCOME_TIMEOUT_MS".to_string(), "1500".to_string()),
    ];
    let mut s = Server::start(Opts { auth: "token", extra_env: env, ..Opts::default() });
    let sick = "poison-a";
    let healthy = (0..).map(|k| format!("healthy-{k}")).find(|c| click_partition(c) == click_partition(sick)).unwrap();
    create(&s, sick).await;
    create(&s, &healthy).await;

    // A click this build cannot read lands in the sick link's key (a newer writer's
    // version, say), appended while kurz is stopped.
    let poison = br#"{"v":99,"code":"poison-a"}"#.to_vec();
    assert!(s.terminate().success());
    {
        let log = kurz_storage::open_log("embedded", s.data.path()).unwrap();
        let rec = kurz_storage::NewRecord::new(sick, poison.clone());
        log.append(topics::CLICKS, click_partition(sick), vec![rec]).await.unwrap();
    }
    s.restart();

    // The sick key's clicks wait; the healthy one, on the same partition, flows.
    click(&s, sick).await;
    click(&s, &healthy).await;
    until("the healthy click is counted", || async { clicks(&s, &healthy).await == 1 }).await;
    until("the sick click parks behind the poison", || async {
        admin(&s, reqwest::Method::GET, "/admin/parked", None).await.1["count"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(clicks(&s, sick).await, 0);

    // Admin only.
    assert_eq!(client().get(s.url("/admin/parked")).send().await.unwrap().status(), 401);
    let (status, list) = admin(&s, reqwest::Method::GET, "/admin/parked", None).await;
    assert_eq!(status, 200, "{list}");
    let parked = list["parked"].as_array().unwrap();
    assert_eq!(parked.len(), 2, "the poison record and the click behind it: {list}");
    assert!(parked.iter().all(|r| r["key"] == sick && r["topic"] == topics::CLICKS), "only the sick key is parked: {list}");
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
    assert_eq!(clicks(&s, sick).await, 0);

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
    assert_eq!(r["delivered"].as_u64(), Some(1), "the click that waited was delivered: {r}");

    // The click that waited is counted.
    assert_eq!(clicks(&s, sick).await, 1);
    let (_, list) = admin(&s, reqwest::Method::GET, "/admin/parked", None).await;
    assert_eq!(list["count"], 0);
    let metrics = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "kurz_dead_letters_total{topic=\"kurz.clicks.v1\"} 1"), "the alert metric");

    // The dead-letter topic holds the record byte for byte, with where it came from.
    assert!(s.terminate().success());
    let log = kurz_storage::open_log("embedded", s.data.path()).unwrap();
    let dead = log.read(topics::DEAD_LETTERS, 0, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].payload, poison);
    assert_eq!(dead[0].header("kurz-dlq-reason").map(|r| String::from_utf8_lossy(r).into_owned()), Some("skipped by an operator".into()));
}

/// An event the deciders cannot read (a newer writer's version) stops its partition's
/// decider: writes routed there are not decided (504, retry later) while another
/// partition's are, and `kurz_decider_blocked` says which partition waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_stops_its_deciders_partition_and_only_that_one() {
    let env = vec![("KURZ_OUTCOME_TIMEOUT_MS".to_string(), "1500".to_string())];
    let mut s = Server::start(Opts { auth: "token", extra_env: env, ..Opts::default() });
    let sick = "blocked-a";
    let p = partition_of_code(sick);
    let other = (0..).map(|k| format!("free-{k}")).find(|c| partition_of_code(c) != p).unwrap();
    let (sick_id, other_id) = (create(&s, sick).await, create(&s, &other).await);
    assert!(s.terminate().success());
    {
        let log = kurz_storage::open_log("embedded", s.data.path()).unwrap();
        let rec = kurz_storage::NewRecord::new(format!("link:{sick}"), br#"{"v":99,"type":"link_renamed"}"#.to_vec());
        log.append(topics::EVENTS, p, vec![rec]).await.unwrap();
    }
    s.restart();
    assert_eq!(retitle(&s, other_id, "other-1").await, 200);
    assert_eq!(retitle(&s, sick_id, "sick-1").await, 504, "accepted, never decided while its partition cannot be read");
    let metrics = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == format!("kurz_decider_blocked{{partition=\"{p}\"}} 1")), "{metrics}");
}
