//! Scale-out: every role in its own process, two of each, over one Kafka-protocol broker
//! (tansu) and one CQL read store, behind a round-robin front (see `split/mod.rs`).
//! The contract holds across processes, including read-your-writes when the read lands
//! on another edge than the last one, and `kill -9` of any one process loses no
//! acknowledged write and duplicates none.

#[path = "split/mod.rs"]
mod split;

use futures::StreamExt;
use serde_json::{json, Value};
use split::{client, Opts, Role, Split, BACKEND_HEADER};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One answer through the front, with the backend that gave it.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    location: Option<String>,
    backend: String,
}

impl Answer {
    fn id(&self) -> u64 {
        self.body["id"].as_u64().unwrap_or_else(|| panic!("no id in {self:?}"))
    }
}

struct Api {
    c: reqwest::Client,
    front: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>, key: Option<&str>) -> Answer {
        let mut rb = self.c.request(method.parse().unwrap(), format!("{}{}", self.front, path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        if let Some(k) = key {
            rb = rb.header("Idempotency-Key", k);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{method} {path}: the front failed: {}", split::error_chain(&e)));
        let status = r.status().as_u16();
        let backend = r.headers().get(BACKEND_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("front itself").to_string();
        let location = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = r.text().await.unwrap_or_default();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        Answer { status, body, location, backend }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(body), None).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.call("PUT", path, Some(body), None).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None, None).await
    }
}

/// Asserts a status, naming the request, the answer and the backend.
#[track_caller]
fn expect(what: &str, a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{what}: expected {status}, got {} from {}: {}", a.status, a.backend, a.body);
}

/// A write and the read right after it, when the read missed the write.
#[derive(Debug)]
struct Miss {
    what: String,
    write: Answer,
    read: Answer,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contract_smoke_over_two_of_each_role() {
    let s = Split::start(Opts::default()).await;
    let api = Api { c: client(), front: s.front.clone() };
    let started = Instant::now();

    // Users.
    let alice = api.post("/users", json!({"email": "alice@split.test", "username": "alice"})).await;
    expect("POST /users", &alice, 201);
    let uid = alice.id();
    let got = api.get(&format!("/users/{uid}")).await;
    expect("GET /users/{id} right after the create", &got, 200);
    assert_eq!(got.body, alice.body, "the user read back ({}) differs from the create's answer ({})", got.backend, alice.backend);
    let taken = api.post("/users", json!({"email": "alice@split.test"})).await;
    expect("POST /users with a taken email", &taken, 409);
    assert!(taken.body["error"].as_str().unwrap_or_default().contains("exists"), "{taken:?}");
    let users = api.get("/users?per_page=100").await;
    expect("GET /users", &users, 200);
    assert!(users.body.as_array().unwrap().iter().any(|u| u["id"] == uid), "{users:?}");

    // A link with a user, read back by id on the other edge.
    let target = "https://example.com/a/b?x=1&y=%20two#frag";
    let link = api.post("/urls", json!({"original_url": target, "title": "A", "user_id": uid})).await;
    expect("POST /urls", &link, 201);
    let (lid, code) = (link.id(), link.body["short_code"].as_str().unwrap().to_string());
    assert_eq!(link.body["user_id"], uid);
    assert_eq!(link.body["is_active"], true);
    let got = api.get(&format!("/urls/{lid}")).await;
    expect("GET /urls/{id} right after the create", &got, 200);
    assert_eq!(got.body, link.body, "read by {} vs written by {}", got.backend, link.backend);
    let got = api.get(&format!("/links/{lid}")).await;
    expect("GET /links/{id}", &got, 200);
    assert_eq!(got.body, link.body);

    // Lists with filters.
    let ids = |a: &Answer| {
        a.body.as_array().unwrap_or_else(|| panic!("not a list: {a:?}")).iter().map(|l| l["id"].as_u64().unwrap()).collect::<Vec<_>>()
    };
    let active = api.get(&format!("/urls?user_id={uid}&is_active=true&limit=10")).await;
    expect("GET /urls active", &active, 200);
    assert_eq!(ids(&active), vec![lid], "{active:?}");
    let inactive = api.get(&format!("/urls?user_id={uid}&is_active=false")).await;
    expect("GET /urls inactive", &inactive, 200);
    assert_eq!(ids(&inactive), Vec::<u64>::new(), "{inactive:?}");
    let bad = api.get("/urls?user_id=abc").await;
    expect("GET /urls?user_id=abc", &bad, 400);
    assert!(bad.body["error"].as_str().unwrap_or_default().contains("user_id"), "{bad:?}");

    // Redirect, exact Location.
    let r = api.get(&format!("/{code}")).await;
    expect("GET /{code}", &r, 302);
    assert_eq!(r.location.as_deref(), Some(target), "{r:?}");
    let stats = api.get(&format!("/{code}+")).await;
    expect("GET /{code}+", &stats, 200);
    assert_eq!(stats.body["short_code"], code.as_str());
    assert_eq!(stats.body["original_url"], target);

    // Update: deactivate, and the next redirect (other edge) is a 404.
    let upd = api.put(&format!("/urls/{lid}"), json!({"title": "A2", "is_active": false})).await;
    expect("PUT /urls/{id} deactivate", &upd, 200);
    assert_eq!((upd.body["title"].as_str(), upd.body["is_active"].as_bool()), (Some("A2"), Some(false)), "{upd:?}");
    let r = api.get(&format!("/{code}")).await;
    expect("GET /{code} right after deactivating", &r, 404);
    let got = api.get(&format!("/urls/{lid}")).await;
    expect("GET /urls/{id} after the update", &got, 200);
    assert_eq!(got.body, upd.body, "read by {} vs written by {}", got.backend, upd.backend);
    let inactive = api.get(&format!("/urls?user_id={uid}&is_active=false")).await;
    assert_eq!(ids(&inactive), vec![lid], "{inactive:?}");
    let target2 = "https://example.org/moved";
    let upd2 = api.put(&format!("/urls/{lid}"), json!({"is_active": true, "original_url": target2})).await;
    expect("PUT /urls/{id} reactivate and retarget", &upd2, 200);
    let r = api.get(&format!("/{code}")).await;
    expect("GET /{code} right after retargeting", &r, 302);
    assert_eq!(r.location.as_deref(), Some(target2), "{r:?}");
    let r = api.get(&format!("/{code}")).await;
    assert_eq!((r.status, r.location.as_deref()), (302, Some(target2)), "the other edge too: {r:?}");

    // Events: the link's history, filters, one by id, and a client event.
    let evs = api.get(&format!("/events?url_id={lid}")).await;
    expect("GET /events?url_id", &evs, 200);
    let types: Vec<&str> = evs.body.as_array().unwrap().iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t != "click").copied().collect::<Vec<_>>(), vec!["created", "updated", "updated"], "{evs:?}");
    let updated = api.get(&format!("/events?url_id={lid}&event_type=updated&limit=10")).await;
    assert_eq!(updated.body.as_array().unwrap().len(), 2, "{updated:?}");
    let first_id = evs.body[0]["id"].as_u64().unwrap();
    let one = api.get(&format!("/events/{first_id}")).await;
    expect("GET /events/{id}", &one, 200);
    assert_eq!(one.body["url_id"], lid);
    let view = api.post("/events", json!({"url_id": lid, "event_type": "view", "user_id": uid, "details": {"k": "v"}})).await;
    expect("POST /events", &view, 201);
    let got = api.get(&format!("/events/{}", view.id())).await;
    expect("GET /events/{id} right after POST /events", &got, 200);
    assert_eq!(got.body["event_type"], "view");
    assert_eq!(got.body["details"], json!({"k": "v"}));
    let views = api.get(&format!("/events?url_id={lid}&event_type=view")).await;
    assert_eq!(views.body.as_array().map(Vec::len), Some(1), "{views:?}");
    let bad = api.get("/events?url_id=x").await;
    expect("GET /events?url_id=x", &bad, 400);

    // Shorten: 201, then the same URL for the same user is the same link (200).
    let sh = api.post("/shorten", json!({"url": "https://shorten.split.test/page", "user_id": uid})).await;
    expect("POST /shorten", &sh, 201);
    let sh2 = api.post("/shorten", json!({"url": "https://shorten.split.test/page", "user_id": uid})).await;
    expect("POST /shorten again (other command-api)", &sh2, 200);
    assert_eq!(sh2.body["short_code"], sh.body["short_code"], "{sh:?} vs {sh2:?}");
    // The front forwards the Host header, so short_url names the front.
    assert_eq!(sh.body["short_url"].as_str(), Some(format!("{}/{}", s.front, sh.body["short_code"].as_str().unwrap()).as_str()), "{sh:?}");
    let r = api.get(&format!("/{}", sh.body["short_code"].as_str().unwrap())).await;
    assert_eq!((r.status, r.location.as_deref()), (302, Some("https://shorten.split.test/page")), "{r:?}");
    let bad = api.post("/shorten", json!({"url": "ftp://x.test/file"})).await;
    expect("POST /shorten ftp", &bad, 400);

    // A taken alias: 409, and the alias keeps its first target.
    let a1 = api.post("/urls", json!({"original_url": "https://alias.split.test/1", "short_code": "smoke-alias"})).await;
    expect("POST /urls alias", &a1, 201);
    let a2 = api.post("/urls", json!({"original_url": "https://alias.split.test/2", "short_code": "smoke-alias"})).await;
    expect("POST /urls with a taken alias (other command-api)", &a2, 409);
    let r = api.get("/smoke-alias").await;
    assert_eq!((r.status, r.location.as_deref()), (302, Some("https://alias.split.test/1")), "{r:?}");
    let unknown_user = api.post("/urls", json!({"original_url": "https://x.test", "user_id": 987654321})).await;
    expect("POST /urls unknown user", &unknown_user, 404);

    // Delete: 200, then 404 by id and by code, and a deleted event.
    let del = api.delete(&format!("/urls/{lid}")).await;
    expect("DELETE /urls/{id}", &del, 200);
    let got = api.get(&format!("/urls/{lid}")).await;
    expect("GET /urls/{id} right after the delete", &got, 404);
    let r = api.get(&format!("/{code}")).await;
    expect("GET /{code} after the delete", &r, 404);
    let deleted = api.get(&format!("/events?url_id={lid}&event_type=deleted")).await;
    assert_eq!(deleted.body.as_array().map(Vec::len), Some(1), "{deleted:?}");

    // User update and delete.
    let u = api.put(&format!("/users/{uid}"), json!({"username": "alice2"})).await;
    expect("PUT /users/{id}", &u, 200);
    let got = api.get(&format!("/users/{uid}")).await;
    assert_eq!(got.body["username"], "alice2", "{got:?}");
    let bob = api.post("/users", json!({"email": "bob@split.test"})).await;
    expect("POST /users bob", &bob, 201);
    let clash = api.put(&format!("/users/{uid}"), json!({"email": "bob@split.test"})).await;
    expect("PUT /users/{id} to a taken email", &clash, 409);
    let del = api.delete(&format!("/users/{uid}")).await;
    expect("DELETE /users/{id}", &del, 200);
    let got = api.get(&format!("/users/{uid}")).await;
    expect("GET /users/{id} right after the delete", &got, 404);
    let bid = bob.id();

    // Read-your-writes across processes, in a loop: every 2xx write, then at once a read.
    // Reads alternate between the edges and writes between the command-apis, so the
    // read is usually served by another process than the last read, and never by the
    // process that took the write.
    let mut misses: Vec<Miss> = Vec::new();
    let mut pairs: BTreeMap<(String, String), u32> = BTreeMap::new();
    let backend = |b: &str| b.split('/').next().unwrap_or(b).to_string();
    for i in 0..100 {
        if i == 50 {
            // One read more shifts the edges' turn: the second half pairs each
            // command-api with the other edge.
            expect("GET /health", &api.get("/health").await, 200);
        }
        let w = api.post("/urls", json!({"original_url": format!("https://ryw.split.test/id/{i}"), "user_id": bid})).await;
        expect("POST /urls (loop)", &w, 201);
        let r = api.get(&format!("/urls/{}", w.id())).await;
        *pairs.entry((backend(&w.backend), backend(&r.backend))).or_default() += 1;
        if r.status != 200 || r.body != w.body {
            misses.push(Miss { what: format!("create #{i} then GET /urls/{}", w.id()), write: w, read: r });
        }
    }
    for i in 0..100 {
        if i == 50 {
            expect("GET /health", &api.get("/health").await, 200);
        }
        let url = format!("https://ryw.split.test/redirect/{i}?q={i}");
        let w = api.post("/urls", json!({"original_url": url})).await;
        expect("POST /urls (loop)", &w, 201);
        let r = api.get(&format!("/{}", w.body["short_code"].as_str().unwrap())).await;
        *pairs.entry((backend(&w.backend), backend(&r.backend))).or_default() += 1;
        if r.status != 302 || r.location.as_deref() != Some(url.as_str()) {
            misses.push(Miss { what: format!("create #{i} then redirect"), write: w, read: r });
        }
    }
    // Updates too: toggle a link and redirect at once.
    let toggled = api.post("/urls", json!({"original_url": "https://ryw.split.test/toggle"})).await;
    expect("POST /urls toggle", &toggled, 201);
    let tcode = toggled.body["short_code"].as_str().unwrap().to_string();
    for i in 0..40 {
        let active = i % 2 == 1;
        let w = api.put(&format!("/urls/{}", toggled.id()), json!({"is_active": active, "title": format!("t{i}")})).await;
        expect("PUT /urls/{id} (loop)", &w, 200);
        let r = api.get(&format!("/{tcode}")).await;
        let want = if active { 302 } else { 404 };
        if r.status != want {
            misses.push(Miss { what: format!("update #{i} (is_active={active}) then redirect: wanted {want}"), write: w, read: r });
        }
    }
    assert!(misses.is_empty(), "{} reads missed the write answered just before them:\n{misses:#?}", misses.len());
    // Both edges served the loop's reads, both command-apis its writes.
    for w in ["command-api#0", "command-api#1"] {
        for r in ["query-edge#0", "query-edge#1"] {
            assert!(pairs.contains_key(&(w.to_string(), r.to_string())), "no write on {w} was read on {r}: {pairs:?}");
        }
    }
    let mut s = s;
    let exits = s.unexpected_exits();
    assert!(exits.is_empty(), "processes died on their own: {exits:?}");
    let overlaps = s.ownership_overlaps();
    assert!(overlaps.is_empty(), "partitions owned by two processes at once (by their logs):\n{overlaps:#?}");
    eprintln!(
        "[smoke] passed in {:.1}s; (write, read) backend pairs in the loops: {pairs:?}; {}",
        started.elapsed().as_secs_f64(),
        s.front_stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_mode_writes_carry_their_bearer_through_the_front() {
    let s = Split::start(Opts { auth: "token", ..Opts::default() }).await;
    let api = Api { c: client(), front: s.front.clone() };
    let call = |method: &str, path: &str, body: Value, bearer: Option<&str>| {
        let mut rb = api.c.request(method.parse().unwrap(), s.url(path)).json(&body);
        if let Some(b) = bearer {
            rb = rb.bearer_auth(b);
        }
        async move {
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            let backend = r.headers().get(BACKEND_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("front itself").to_string();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            Answer { status, body, location: None, backend }
        }
    };
    let anon = call("POST", "/urls", json!({"original_url": "https://t.split.test/anon"}), None).await;
    expect("POST /urls without a token", &anon, 401);
    let admin = call("POST", "/users", json!({"email": "admin-made@split.test"}), Some(split::ADMIN_TOKEN)).await;
    expect("POST /users with the admin token", &admin, 201);
    // A session token minted by one command-api is honoured by the other (shared secret).
    let reg = call("POST", "/auth/register", json!({"email": "tok@split.test", "password": "long enough"}), None).await;
    expect("POST /auth/register", &reg, 201);
    let token = reg.body["session_token"].as_str().unwrap().to_string();
    let me = reg.body["user"]["id"].as_u64().unwrap();
    for i in 0..4 {
        let l = call("POST", "/urls", json!({"original_url": format!("https://t.split.test/{i}")}), Some(&token)).await;
        expect("POST /urls with a session token", &l, 201);
        assert_eq!(l.body["user_id"], me, "{l:?}");
        let got = api.get(&format!("/urls/{}", l.id())).await;
        expect("GET /urls/{id} right after", &got, 200);
        let put = call("PUT", &format!("/urls/{}", l.id()), json!({"title": "mine"}), Some(&token)).await;
        expect("PUT own link", &put, 200);
    }
    let theirs = call("PUT", &format!("/users/{}", admin.id()), json!({"username": "x"}), Some(&token)).await;
    expect("PUT someone else's user with a session token", &theirs, 403);
    let login = call("POST", "/auth/login", json!({"email": "tok@split.test", "password": "long enough"}), None).await;
    expect("POST /auth/login", &login, 200);
}

/// Creates for the kill test: raise with `KURZ_SCALE_CREATES` (the target is 20000).
const DEFAULT_CREATES: usize = 2_000;
/// Links per user, so that one `GET /urls?user_id=…&limit=500` lists all of a user's.
const PER_USER: usize = 400;
/// Concurrent clients.
const CLIENTS: usize = 16;
/// How long one create may keep being retried (with its key) before it counts as unanswered.
const CREATE_PATIENCE: Duration = Duration::from_secs(180);

fn creates_wanted() -> usize {
    std::env::var("KURZ_SCALE_CREATES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CREATES)
}

#[derive(Debug, Clone)]
struct Acked {
    n: usize,
    key: String,
    url: String,
    user: u64,
    id: u64,
    code: String,
    backend: String,
    attempts: u32,
    /// The retryable answers this create got before its 201 (`504 from command-api#1/g1`).
    retry_answers: Vec<String>,
    latency: Duration,
}

impl Acked {
    /// The 201 this create got, as the front answered it.
    fn answer(&self) -> Answer {
        Answer { status: 201, body: json!({"id": self.id, "short_code": self.code}), location: None, backend: self.backend.clone() }
    }
}

#[derive(Default)]
struct Tally {
    acked: Vec<Acked>,
    /// Creates answered 4xx (none expected), with the answer.
    rejected: Vec<(usize, String, Answer)>,
    /// Creates never answered 2xx within the patience, with the last answer.
    unanswered: Vec<(usize, String, String)>,
    /// Retryable answers seen (5xx: 503/504 from kurz, 502 from the front), by status and backend.
    retried: BTreeMap<String, u32>,
    /// Read-your-writes misses: the GET right after a 201.
    ryw_misses: Vec<Miss>,
    reads: usize,
    /// Links redirected once each, and whether that redirect was served (a click).
    clicked: Vec<(u64, bool)>,
}

async fn create_with_retries(api: &Api, n: usize, user: u64, run: &str) -> Result<Acked, (String, Option<Answer>, String)> {
    let key = format!("scale-{run}-{n}");
    let url = format!("https://scale.split.test/{run}/{n}");
    let began = Instant::now();
    let mut attempts = 0;
    let mut last = String::new();
    let mut retry_answers = Vec::new();
    while began.elapsed() < CREATE_PATIENCE {
        attempts += 1;
        let sent = api
            .c
            .post(format!("{}/urls", api.front))
            .header("Idempotency-Key", &key)
            .json(&json!({"original_url": url, "user_id": user}))
            .send()
            .await;
        match sent {
            Ok(r) => {
                let status = r.status().as_u16();
                let backend = r.headers().get(BACKEND_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("front itself").to_string();
                let text = r.text().await.unwrap_or_default();
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
                let answer = Answer { status, body, location: None, backend: backend.clone() };
                if status == 201 {
                    let b = &answer.body;
                    assert_eq!(
                        (b["original_url"].as_str(), b["user_id"].as_u64()),
                        (Some(url.as_str()), Some(user)),
                        "create {key}: {answer:?}"
                    );
                    return Ok(Acked {
                        n,
                        key,
                        url,
                        user,
                        id: answer.id(),
                        code: b["short_code"].as_str().unwrap().to_string(),
                        backend,
                        attempts,
                        retry_answers,
                        latency: began.elapsed(),
                    });
                }
                if status < 500 {
                    return Err((key, Some(answer), String::new()));
                }
                retry_answers.push(format!("{status} from {}", backend.split(' ').next().unwrap_or_default()));
                last = format!("{status} from {backend}: {}", answer.body);
            }
            Err(e) => last = format!("front transport error: {}", split::error_chain(&e)),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err((key, None, format!("no 2xx after {attempts} attempts in {:?}; last: {last}", began.elapsed())))
}

/// Prints progress every 5 s, and fails the test when no create has finished for
/// `STALL` (a hung deployment would otherwise hang the test).
struct Watch {
    total: usize,
    started: Instant,
    last: usize,
    last_change: Instant,
    last_print: Instant,
}

const STALL: Duration = Duration::from_secs(60);

impl Watch {
    fn new(total: usize) -> Watch {
        let now = Instant::now();
        Watch { total, started: now, last: 0, last_change: now, last_print: now }
    }

    fn check(&mut self, done: usize, s: &Split) {
        let now = Instant::now();
        if done != self.last {
            self.last = done;
            self.last_change = now;
        }
        if now - self.last_print >= Duration::from_secs(5) {
            self.last_print = now;
            eprintln!("[scale] {:>6.1}s: {done}/{} creates finished; {}", (now - self.started).as_secs_f64(), self.total, s.front_stats());
        }
        if now - self.last_change > STALL {
            panic!(
                "no create finished for {STALL:?} ({done}/{} done): the deployment is stuck. Partition ownership by the logs:\n{}",
                self.total,
                s.ownership_report()
            );
        }
    }
}

/// A stream of creates (`KURZ_SCALE_CREATES`, default 2000) from 16 clients, each with
/// its own `Idempotency-Key` and URL, retried with that key on 5xx; mid-stream, `kill -9`
/// of one command-api, later one projector, later one query-edge (each started again a
/// while later). By default the victim is the process that has owned its role's
/// partitions longest (tansu's group leader); `KURZ_SCALE_VICTIM=follower` kills the
/// other one. Then: every 201 is served by id with its code and target, no URL exists
/// twice (per-user lists and `created` history), reads right after a 201 saw it, and no
/// partition was owned by two processes at once. A deployment in which no create
/// finishes for a minute fails at once, with the partition ownership the logs show.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_each_role_loses_no_acknowledged_create() {
    let total = creates_wanted();
    // A load test from one address: the per-address write limit (50/s per process) is
    // not what it measures, so it is raised here.
    let extra_env = vec![("KURZ_RATE_WRITES".to_string(), "100000:100000".to_string())];
    let mut s = Split::start(Opts { extra_env, ..Opts::default() }).await;
    let api = Arc::new(Api { c: client(), front: s.front.clone() });
    let run = format!("r{}", std::process::id());

    // Users, so that each one's links fit one list page.
    let mut users = Vec::new();
    for u in 0..total.div_ceil(PER_USER) {
        let a = api.call("POST", "/users", Some(json!({"email": format!("scale{u}@split.test")})), Some(&format!("user-{run}-{u}"))).await;
        expect("POST /users", &a, 201);
        users.push(a.id());
    }
    let users = Arc::new(users);

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (api, next, done, tally, users, run) = (api.clone(), next.clone(), done.clone(), tally.clone(), users.clone(), run.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let user = users[n / PER_USER];
                match create_with_retries(&api, n, user, &run).await {
                    Ok(a) => {
                        // Read-your-writes under failures: the GET right after the 201.
                        let r = api.get(&format!("/urls/{}", a.id)).await;
                        let seen = r.status == 200 && r.body["short_code"] == a.code.as_str() && r.body["original_url"] == a.url.as_str();
                        let redirect = if n % 8 == 0 { Some(api.get(&format!("/{}", a.code)).await) } else { None };
                        let mut t = tally.lock().unwrap();
                        t.reads += 1;
                        if a.attempts > 1 {
                            *t.retried.entry("creates needing >1 attempt".into()).or_default() += 1;
                        }
                        for r in &a.retry_answers {
                            *t.retried.entry(r.clone()).or_default() += 1;
                        }
                        if !seen {
                            t.ryw_misses.push(Miss {
                                what: format!("create {} (id {}) then GET /urls/{{id}}", a.key, a.id),
                                write: a.answer(),
                                read: r,
                            });
                        }
                        if let Some(r) = redirect {
                            t.reads += 1;
                            t.clicked.push((a.id, r.status == 302));
                            if r.status != 302 || r.location.as_deref() != Some(a.url.as_str()) {
                                t.ryw_misses.push(Miss {
                                    what: format!("create {} (code {}) then redirect", a.key, a.code),
                                    write: a.answer(),
                                    read: r,
                                });
                            }
                        }
                        t.acked.push(a);
                    }
                    Err((key, Some(answer), _)) => tally.lock().unwrap().rejected.push((n, key, answer)),
                    Err((key, None, why)) => tally.lock().unwrap().unanswered.push((n, key, why)),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // The chaos, by progress: kill -9 one process of each role mid-stream, and start it
    // again a while later, as an orchestrator would.
    // Which process of a role dies: by default the one that has owned its partitions
    // longest (the consumer group's first member, which tansu keeps as the group's
    // leader), the harder case; `KURZ_SCALE_VICTIM=follower` kills the other one.
    enum Act {
        Kill(Role),
        Restart(Role),
    }
    let plan = [
        (0.12, Act::Kill(Role::CommandApi)),
        (0.30, Act::Restart(Role::CommandApi)),
        (0.40, Act::Kill(Role::Projector)),
        (0.58, Act::Restart(Role::Projector)),
        (0.66, Act::Kill(Role::QueryEdge)),
        (0.84, Act::Restart(Role::QueryEdge)),
    ];
    let follower = std::env::var("KURZ_SCALE_VICTIM").as_deref() == Ok("follower");
    let mut flowing: Vec<(&str, usize, bool)> = Vec::new();
    let mut victims: HashMap<Role, usize> = HashMap::new();
    let mut timeline = Vec::new();
    let mut watch = Watch::new(total);
    for (at, act) in plan {
        let threshold = (total as f64 * at) as usize;
        while done.load(Ordering::Relaxed) < threshold && !clients.iter().all(|c| c.is_finished()) {
            watch.check(done.load(Ordering::Relaxed), &s);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let d = done.load(Ordering::Relaxed);
        let when = started.elapsed();
        match act {
            Act::Kill(role) => {
                // A kill after the stream ended tests nothing: it must land while
                // writes still flow (checked below, by writes acknowledged after it).
                flowing.push((role.command(), d, clients.iter().all(|c| c.is_finished())));
                let topic = match role {
                    Role::CommandApi => Some("kurz.commands.v1"),
                    Role::Projector => Some("kurz.events.v1"),
                    Role::QueryEdge | Role::Watchdog => None,
                };
                let longest = topic.and_then(|t| s.longest_owner(role, t)).unwrap_or(0);
                let i = if follower { 1 - longest } else { longest };
                victims.insert(role, i);
                let before = s.ownership_report();
                s.kill9(role, i);
                timeline.push(format!(
                    "{:>6.1}s after {d} creates: kill -9 {}#{i} ({}); ownership before:\n{before}",
                    when.as_secs_f64(),
                    role.command(),
                    if topic.is_none() {
                        "no partitions"
                    } else if follower {
                        "not the longest owner"
                    } else {
                        "the longest owner of its partitions"
                    }
                ));
            }
            Act::Restart(role) => {
                let i = victims[&role];
                s.restart(role, i).await;
                timeline.push(format!(
                    "{:>6.1}s after {d} creates: restarted {}#{i} (ready after {:.1}s)",
                    when.as_secs_f64(),
                    role.command(),
                    (started.elapsed() - when).as_secs_f64()
                ));
            }
        }
    }
    while !clients.iter().all(|c| c.is_finished()) {
        watch.check(done.load(Ordering::Relaxed), &s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in clients {
        c.await.unwrap();
    }
    let stream_time = started.elapsed();
    let t = std::mem::take(&mut *tally.lock().unwrap());
    let exits = s.unexpected_exits();

    let mut lat: Vec<Duration> = t.acked.iter().map(|a| a.latency).collect();
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or_default();
    eprintln!(
        "[scale] {} creates wanted, {} acknowledged, {} rejected, {} unanswered in {:.1}s ({:.0}/s) from {CLIENTS} clients; \
         latency p50 {:?} p99 {:?} max {:?}; {} reads right after writes; retries {:?}\n[scale] timeline:\n  {}\n[scale] {}\n[scale] ownership now:\n{}",
        total,
        t.acked.len(),
        t.rejected.len(),
        t.unanswered.len(),
        stream_time.as_secs_f64(),
        t.acked.len() as f64 / stream_time.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or_default(),
        t.reads,
        t.retried,
        timeline.join("\n  "),
        s.front_stats(),
        s.ownership_report()
    );

    // Every acknowledged create is served, with its code and target. Read-your-writes
    // says at once; allow the read model time anyway, to tell "late" from "lost".
    let check = |a: Acked| {
        let api = api.clone();
        async move {
            let r = api.get(&format!("/urls/{}", a.id)).await;
            let ok = r.status == 200
                && r.body["short_code"] == a.code.as_str()
                && r.body["original_url"] == a.url.as_str()
                && r.body["user_id"] == a.user;
            (a, ok, r)
        }
    };
    let mut pending: Vec<Acked> = t.acked.clone();
    let mut late: Vec<String> = Vec::new();
    let catch_up = Instant::now();
    let mut last_answers: HashMap<u64, Answer> = HashMap::new();
    loop {
        let results: Vec<(Acked, bool, Answer)> = futures::stream::iter(pending.drain(..).map(check)).buffer_unordered(16).collect().await;
        for (a, ok, r) in results {
            if !ok {
                last_answers.insert(a.id, r);
                pending.push(a);
            }
        }
        if pending.is_empty() || catch_up.elapsed() > Duration::from_secs(60) {
            break;
        }
        if late.is_empty() {
            late = pending.iter().map(|a| format!("{} id {}", a.key, a.id)).collect();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lost: Vec<String> = pending
        .iter()
        .map(|a| {
            format!(
                "#{} {} id {} code {} acked by {} after {} attempts: now {:?}",
                a.n,
                a.key,
                a.id,
                a.code,
                a.backend,
                a.attempts,
                last_answers.get(&a.id)
            )
        })
        .collect();

    // No link twice: per user, one list page holds every link; each target URL (unique
    // per create) appears once, and exactly the acknowledged ids are there. The created
    // events of the history agree.
    let by_user: HashMap<u64, Vec<&Acked>> = t.acked.iter().fold(HashMap::new(), |mut m, a| {
        m.entry(a.user).or_default().push(a);
        m
    });
    let mut duplicates: Vec<String> = Vec::new();
    let mut unexpected: Vec<String> = Vec::new();
    let mut absent_from_list: Vec<String> = Vec::new();
    let mut history_problems: Vec<String> = Vec::new();
    let mut listed_total = 0;
    for &u in users.iter() {
        let list = api.get(&format!("/urls?user_id={u}&limit=500")).await;
        expect("GET /urls?user_id", &list, 200);
        let links = list.body.as_array().unwrap();
        listed_total += links.len();
        let acked: HashMap<u64, &&Acked> = by_user.get(&u).map(|v| v.iter().map(|a| (a.id, a)).collect()).unwrap_or_default();
        let mut by_url: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut ids = HashSet::new();
        for l in links {
            let id = l["id"].as_u64().unwrap();
            if !ids.insert(id) {
                duplicates.push(format!("user {u}: id {id} listed twice"));
            }
            by_url.entry(l["original_url"].as_str().unwrap()).or_default().push(id);
            if !acked.contains_key(&id) {
                unexpected.push(format!("user {u}: link {l} was never acknowledged"));
            }
        }
        for (url, ids) in &by_url {
            if ids.len() > 1 {
                duplicates.push(format!("user {u}: {url} created {} times: ids {ids:?}", ids.len()));
            }
        }
        for (id, a) in &acked {
            if !ids.contains(id) {
                absent_from_list.push(format!("user {u}: {} id {id} not in GET /urls?user_id={u}", a.key));
            }
        }
        let hist = api.get(&format!("/events?user_id={u}&event_type=created&limit=500")).await;
        expect("GET /events?user_id&event_type=created", &hist, 200);
        let mut created: HashMap<u64, u32> = HashMap::new();
        for e in hist.body.as_array().unwrap() {
            *created.entry(e["url_id"].as_u64().unwrap()).or_default() += 1;
        }
        for (id, n) in &created {
            if *n != 1 {
                history_problems.push(format!("user {u}: url {id} has {n} created events"));
            }
        }
        if created.len() != links.len() {
            history_problems.push(format!("user {u}: {} links listed but {} urls with created events", links.len(), created.len()));
        }
    }
    let missing_in_check = t.acked.len() - pending.len();
    eprintln!(
        "[scale] check: {} of {} acknowledged links served ({} needed the catch-up poll), {} listed over {} users",
        missing_in_check,
        t.acked.len(),
        late.len(),
        listed_total,
        users.len()
    );

    let mut failures: Vec<String> = Vec::new();
    let mut add = |what: &str, v: Vec<String>| {
        if !v.is_empty() {
            let n = v.len();
            let mut shown: Vec<String> = v.into_iter().take(20).collect();
            if n > 20 {
                shown.push(format!("… and {} more", n - 20));
            }
            failures.push(format!("{what} ({n}):\n    {}", shown.join("\n    ")));
        }
    };
    add("processes that died on their own", exits);
    add("partitions owned by two processes at once (by their logs)", s.ownership_overlaps());
    add(
        "creates rejected with 4xx",
        t.rejected.iter().map(|(n, k, a)| format!("#{n} {k}: {} from {}: {}", a.status, a.backend, a.body)).collect(),
    );
    add("creates never answered 2xx", t.unanswered.iter().map(|(n, k, why)| format!("#{n} {k}: {why}")).collect());
    add("acknowledged creates lost (not served after 60 s)", lost);
    add(
        "read-your-writes misses (the read right after a 201)",
        t.ryw_misses
            .iter()
            .map(|m| format!("{}: written by {}, read by {}: {} {}", m.what, m.write.backend, m.read.backend, m.read.status, m.read.body))
            .collect(),
    );
    add("links listed twice or created twice", duplicates);
    add("links listed that no create acknowledged", unexpected);
    add("acknowledged links absent from their user's list", absent_from_list);
    add("history problems", history_problems);
    // The log itself, read as every reader reads it: no alias granted twice, no id
    // minted twice, no command decided twice (`kurz verify-log`).
    let log = kurz_storage::open_log(&s.tansu.url(), std::path::Path::new("/nonexistent")).unwrap();
    let report = kurz::verify_log::run(&*log, false).await.unwrap();
    eprintln!("[scale] verify-log: {}", report.render());
    add("the events topic has problems", if report.problems() > 0 { vec![report.render()] } else { Vec::new() });
    // One link_created per create command: no command's link was created twice.
    let per_command = &report.links_created_per_command;
    add(
        "commands that created other than one link",
        per_command
            .iter()
            .filter(|(links, _)| **links != 1)
            .map(|(links, commands)| format!("{commands} commands created {links} links each"))
            .collect(),
    );
    add(
        "acknowledged creates without their link_created",
        if per_command.get(&1).copied().unwrap_or(0) < t.acked.len() as u64 {
            vec![format!("{:?} for {} acknowledged", per_command, t.acked.len())]
        } else {
            Vec::new()
        },
    );
    // Clicks: each served redirect counted at most once, through the kills. A click
    // still in a killed edge's buffer may be lost; none may count twice.
    let store =
        kurz_storage::open_store(&format!("scylla://{}/kurz?consistency=one", s.cql), std::path::Path::new("/nonexistent")).unwrap();
    let served: u64 = t.clicked.iter().filter(|(_, ok)| *ok).count() as u64;
    let (mut counted, mut settled_at, mut over) = (0u64, Instant::now(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && settled_at.elapsed() < Duration::from_secs(3) && counted < served {
        let mut now_counted = 0;
        over.clear();
        for (id, ok) in &t.clicked {
            let n = store.click_count(kurz_schemas::Id::new(*id).unwrap()).await.unwrap();
            now_counted += n;
            if n > u64::from(*ok) {
                over.push(format!("link {id}: {n} clicks counted, {} served", u64::from(*ok)));
            }
        }
        if now_counted != counted {
            (counted, settled_at) = (now_counted, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "[scale] clicks: {served} redirects served, {counted} counted ({} lost, none may count twice)",
        served.saturating_sub(counted)
    );
    add("links with more clicks counted than redirects served", over);
    let drains: Vec<String> =
        s.procs.iter().flat_map(|p| p.grep("partition_drain_timeout").into_iter().chain(p.grep("revoke_drain_timeout"))).collect();
    eprintln!("[scale] drain timeouts: {}: {drains:?}", drains.len());
    // A drain that times out means a partition task was stopped mid-write: the fences
    // make that safe, but a handoff must not need them.
    add("revoke or partition drains that timed out", drains);
    let acked_total = t.acked.len() + t.rejected.len() + t.unanswered.len();
    add(
        "kills that landed after the writes had stopped",
        flowing
            .iter()
            .filter(|(_, at, finished)| *finished || *at >= acked_total)
            .map(|(role, at, _)| format!("{role} killed after {at} of {acked_total} creates had finished"))
            .collect(),
    );
    add(
        "too few creates acknowledged",
        if t.acked.len() < 2_000.min(total) { vec![format!("only {} of {total}", t.acked.len())] } else { Vec::new() },
    );
    assert!(failures.is_empty(), "{} kinds of failure:\n  {}", failures.len(), failures.join("\n  "));
}
