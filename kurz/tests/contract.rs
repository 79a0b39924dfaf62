//! Black-box HTTP contract tests for kurz: every endpoint, status code and message rule of
//! `../shared/api-contract.md`, exercised over real HTTP against the real `kurz` binary.

mod support;
use support::*;

use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

struct Resp {
    what: String,
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    body: Value,
}

impl Resp {
    /// Asserts the status and returns the JSON body.
    #[track_caller]
    fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}: expected {status}, got {}; body: {}", self.what, self.status, self.text);
        self.body.clone()
    }

    /// Asserts the status and that the body is `{"error": "<non-empty message>"}` (JSON),
    /// whose message contains `needle` (case-insensitive) if given. Returns the message.
    #[track_caller]
    fn err(&self, status: u16, needle: Option<&str>) -> String {
        assert_eq!(self.status, status, "{}: expected {status}, got {}; body: {}", self.what, self.status, self.text);
        let ct = self.header("content-type").unwrap_or_default();
        assert!(ct.contains("application/json"), "{}: error response is not JSON (content-type {ct:?}); body: {}", self.what, self.text);
        let obj = self.body.as_object().unwrap_or_else(|| panic!("{}: error body is not a JSON object: {}", self.what, self.text));
        let msg = obj
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{}: error body has no string \"error\": {}", self.what, self.text));
        assert!(!msg.trim().is_empty(), "{}: empty error message", self.what);
        if let Some(n) = needle {
            assert!(msg.to_lowercase().contains(&n.to_lowercase()), "{}: error message {msg:?} should contain {n:?}", self.what);
        }
        msg.to_string()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

struct Api {
    srv: Server,
    http: reqwest::Client,
}

impl Api {
    fn new(srv: Server) -> Api {
        Api { srv, http: client() }
    }
    fn open() -> Api {
        Api::new(Server::open())
    }
    fn token() -> Api {
        Api::new(Server::token())
    }
    fn with_import_dir(auth: &'static str, dir: std::path::PathBuf) -> Api {
        Api::new(Server::start(Opts { auth, import_dir: Some(dir), extra_env: Vec::new() }))
    }

    async fn send(&self, rb: reqwest::RequestBuilder, what: String) -> Resp {
        let r = rb.send().await.unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { what, status, headers, text, body }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>, token: Option<&str>, headers: &[(&str, &str)]) -> Resp {
        let mut rb = self.http.request(method.clone(), self.srv.url(path));
        if let Some(b) = body {
            rb = rb.json(b);
        }
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        self.send(rb, format!("{method} {path}")).await
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, None, &[]).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(&body), None, &[]).await
    }
    async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(&body), None, &[]).await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None, None, &[]).await
    }
    async fn post_as(&self, token: Option<&str>, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(&body), token, &[]).await
    }
    async fn put_as(&self, token: Option<&str>, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(&body), token, &[]).await
    }
    async fn delete_as(&self, token: Option<&str>, path: &str) -> Resp {
        self.call(Method::DELETE, path, None, token, &[]).await
    }
    async fn post_csv(&self, token: Option<&str>, path: &str, csv: String) -> Resp {
        let mut rb = self.http.post(self.srv.url(path)).header("content-type", "text/csv").body(csv);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        self.send(rb, format!("POST {path} (text/csv)")).await
    }

    /// Creates a user in open mode; asserts 201.
    async fn new_user(&self, email: &str, username: &str) -> Value {
        let u = self.post("/users", json!({"email": email, "username": username})).await.ok(201);
        assert_user(&u);
        u
    }
    /// Creates a link in open mode; asserts 201.
    async fn new_url(&self, body: Value) -> Value {
        let u = self.post("/urls", body).await.ok(201);
        assert_url(&u);
        u
    }
    /// Admin token helper for token-mode servers.
    async fn admin_post(&self, path: &str, body: Value) -> Resp {
        self.post_as(Some(ADMIN_TOKEN), path, body).await
    }
}

/// Polls `GET path` until `pred` holds (deadline 10 s), for the asynchronously projected clicks.
async fn poll_get(api: &Api, path: &str, what: &str, pred: impl Fn(&Resp) -> bool) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.get(path).await;
        if pred(&r) {
            return r;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not reached within 10s; last GET {path} -> {} {}", r.status, r.text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[track_caller]
fn id(v: &Value) -> u64 {
    v["id"].as_u64().unwrap_or_else(|| panic!("\"id\" is not a non-negative integer in {v}"))
}

#[track_caller]
fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("expected a JSON array, got {v}"))
}

#[track_caller]
fn ids(v: &Value) -> Vec<u64> {
    arr(v).iter().map(id).collect()
}

#[track_caller]
fn assert_ascending(v: &Value, what: &str) {
    let ids = ids(v);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{what}: not ordered by id ascending: {ids:?}");
}

fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let d = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(d(0..4) && b[4] == b'-' && d(5..7) && b[7] == b'-' && d(8..10) && (b[10] == b'T' || b[10] == b't'))
        || !(d(11..13) && b[13] == b':' && d(14..16) && b[16] == b':' && d(17..19))
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    if rest == "Z" || rest == "z" {
        return true;
    }
    let rb = rest.as_bytes();
    rb.len() == 6
        && (rb[0] == b'+' || rb[0] == b'-')
        && rb[1..3].iter().all(u8::is_ascii_digit)
        && rb[3] == b':'
        && rb[4..6].iter().all(u8::is_ascii_digit)
}

#[track_caller]
fn assert_ts(v: &Value, field: &str) {
    let s = v[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {v}"));
    assert!(is_rfc3339(s), "{field} = {s:?} is not an RFC 3339 timestamp in {v}");
}

#[track_caller]
fn assert_user(u: &Value) {
    id(u);
    assert!(u["email"].is_string(), "user email not a string: {u}");
    assert!(u.get("username").is_some_and(|x| x.is_string() || x.is_null()), "user has no username field: {u}");
    assert_ts(u, "created_at");
    assert_ts(u, "updated_at");
}

#[track_caller]
fn assert_url(u: &Value) {
    id(u);
    assert!(u["short_code"].is_string(), "short_code not a string: {u}");
    assert!(u["original_url"].is_string(), "original_url not a string: {u}");
    assert!(u.get("title").is_some_and(|x| x.is_string() || x.is_null()), "url has no title field: {u}");
    assert!(u["is_active"].is_boolean(), "is_active not a boolean: {u}");
    assert!(u.get("user_id").is_some_and(|x| x.is_u64() || x.is_null()), "user_id not integer/null: {u}");
    assert_ts(u, "created_at");
    assert_ts(u, "updated_at");
}

#[track_caller]
fn assert_event(e: &Value) {
    id(e);
    assert!(e["url_id"].is_u64(), "event url_id not an integer: {e}");
    assert!(e.get("user_id").is_some_and(|x| x.is_u64() || x.is_null()), "event user_id not integer/null: {e}");
    assert!(e["event_type"].is_string(), "event_type not a string: {e}");
    assert_ts(e, "timestamp");
    assert!(e.get("details").is_some_and(|x| x.is_object() || x.is_null()), "event details not an object: {e}");
}

fn is_generated_code(c: &str) -> bool {
    c.len() == 7 && c.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `id,username,email,created_at[,plan]` rows for ids in `range`.
fn users_csv(range: std::ops::RangeInclusive<u64>, extra_column: bool) -> String {
    let mut s = String::from(if extra_column { "id,username,email,created_at,plan\n" } else { "id,username,email,created_at\n" });
    for i in range {
        s.push_str(&format!("{i},bulkuser{i},bulkuser{i}@example.com,2025-01-02 03:04:05"));
        if extra_column {
            s.push_str(",pro");
        }
        s.push('\n');
    }
    s
}

/// urls.csv rows: user (i % users) + 1, every 4th link inactive (`False`), others `True`.
fn urls_csv(range: std::ops::RangeInclusive<u64>, users: u64) -> String {
    let mut s = String::from("id,user_id,short_code,original_url,title,is_active,created_at,updated_at\n");
    for i in range {
        let active = if i % 4 == 0 { "False" } else { "True" };
        let user = i % users + 1;
        s.push_str(&format!(
            "{i},{user},bk{i:05},https://example.com/bulk/{i},Bulk title {i},{active},2025-03-01 10:00:00,2025-03-02 10:00:00\n"
        ));
    }
    s
}

/// events.csv rows on url (i % urls) + 1 with the given type.
fn events_csv(range: std::ops::RangeInclusive<u64>, urls: u64, event_type: &str) -> String {
    let mut s = String::from("id,url_id,user_id,event_type,timestamp,details\n");
    for i in range {
        let url = i % urls + 1;
        s.push_str(&format!("{i},{url},1,{event_type},2025-04-01 12:00:00,\"{{\"\"n\"\":{i}}}\"\n"));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// health
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn health_is_ok_live_and_ready() {
    let api = Api::open();
    let h = api.get("/health").await.ok(200);
    assert_eq!(h["status"], "ok", "{h}");
    api.get("/health/live").await.ok(200);
    // Every backend of the single-process role answers -> ready. (The 503 branch needs a failing
    // backend, which a black-box test cannot induce.)
    api.get("/health/ready").await.ok(200);
}

// ---------------------------------------------------------------------------------------------
// users
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_user_returns_201_user_with_integer_id_and_rfc3339_timestamps_and_is_readable_at_once() {
    let api = Api::open();
    let u = api.new_user("alice@example.com", "alice").await;
    assert_eq!(u["email"], "alice@example.com");
    assert_eq!(u["username"], "alice");

    // read-your-writes: by id and in the list, immediately
    let g = api.get(&format!("/users/{}", id(&u))).await.ok(200);
    assert_user(&g);
    assert_eq!(g["id"], u["id"]);
    assert_eq!(g["email"], "alice@example.com");
    assert_eq!(g["username"], "alice");
    let list = api.get("/users?page=1&per_page=20").await.ok(200);
    assert!(ids(&list).contains(&id(&u)), "new user missing from GET /users: {list}");

    // username is optional
    let b = api.post("/users", json!({"email": "bob@example.com"})).await.ok(201);
    assert_user(&b);
    assert_eq!(b["email"], "bob@example.com");
    assert_ne!(id(&b), id(&u));
    api.get(&format!("/users/{}", id(&b))).await.ok(200);
}

#[tokio::test]
async fn create_user_missing_email_is_400_and_non_string_email_is_400_mentioning_string() {
    let api = Api::open();
    api.post("/users", json!({})).await.err(400, None);
    api.post("/users", json!({"username": "nomail"})).await.err(400, None);
    api.post("/users", json!({"email": null, "username": "nullmail"})).await.err(400, None);
    api.post("/users", json!({"email": 123})).await.err(400, Some("string"));
    api.post("/users", json!({"email": ["a@example.com"]})).await.err(400, Some("string"));
    api.post("/users", json!({"email": {"x": 1}})).await.err(400, Some("string"));
    let list = api.get("/users").await.ok(200);
    assert!(arr(&list).is_empty(), "rejected creates must not create users: {list}");
}

#[tokio::test]
async fn create_user_with_taken_email_is_409_mentioning_exists() {
    let api = Api::open();
    api.new_user("dup@example.com", "first").await;
    api.post("/users", json!({"email": "dup@example.com", "username": "second"})).await.err(409, Some("exists"));
    api.post("/users", json!({"email": "dup@example.com"})).await.err(409, Some("exists"));
    let list = api.get("/users").await.ok(200);
    assert_eq!(arr(&list).len(), 1, "duplicate must not be stored: {list}");
}

#[tokio::test]
async fn list_users_is_ordered_by_id_and_paginates_with_page_and_per_page() {
    let api = Api::open();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(id(&api.new_user(&format!("p{i}@example.com"), &format!("p{i}")).await));
    }
    created.sort();
    let mut seen = Vec::new();
    for (page, expect) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let l = api.get(&format!("/users?page={page}&per_page=3")).await.ok(200);
        assert_eq!(arr(&l).len(), expect, "page {page} per_page 3: {l}");
        assert_ascending(&l, "GET /users page");
        for u in arr(&l) {
            assert_user(u);
        }
        seen.extend(ids(&l));
    }
    assert_eq!(seen, created, "pages must cover all users in id order");
    let all = api.get("/users").await.ok(200);
    assert_eq!(ids(&all), created);
}

#[tokio::test]
async fn list_users_default_page_size_is_20_in_id_order() {
    let api = Api::open();
    api.post_csv(None, "/users/bulk", users_csv(1..=25, false)).await.ok(201);
    let p1 = api.get("/users").await.ok(200);
    assert_eq!(ids(&p1), (1..=20).collect::<Vec<_>>());
    let p1b = api.get("/users?page=1&per_page=20").await.ok(200);
    assert_eq!(ids(&p1b), (1..=20).collect::<Vec<_>>());
    let p2 = api.get("/users?page=2").await.ok(200);
    assert_eq!(ids(&p2), (21..=25).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_users_non_integer_page_or_per_page_is_400() {
    let api = Api::open();
    api.new_user("x@example.com", "x").await;
    for q in ["page=abc", "per_page=abc", "page=1.5", "per_page=2.5", "page=1&per_page=x", "page=abc&per_page=20"] {
        api.get(&format!("/users?{q}")).await.err(400, None);
    }
}

#[tokio::test]
async fn get_unknown_user_is_404() {
    let api = Api::open();
    api.get("/users/999999").await.err(404, None);
    let u = api.new_user("a@example.com", "a").await;
    api.get(&format!("/users/{}", id(&u) + 1)).await.err(404, None);
}

#[tokio::test]
async fn update_user_returns_200_updated_user_visible_immediately() {
    let api = Api::open();
    let u = api.new_user("old@example.com", "before").await;
    let p = format!("/users/{}", id(&u));

    let r = api.put(&p, json!({"username": "after"})).await.ok(200);
    assert_user(&r);
    assert_eq!(r["id"], u["id"]);
    assert_eq!(r["username"], "after");
    assert_eq!(r["email"], "old@example.com");
    let g = api.get(&p).await.ok(200);
    assert_eq!(g["username"], "after");

    let r = api.put(&p, json!({"email": "new@example.com"})).await.ok(200);
    assert_eq!(r["email"], "new@example.com");
    assert_eq!(r["username"], "after");
    let g = api.get(&p).await.ok(200);
    assert_eq!(g["email"], "new@example.com");
    assert_eq!(g["username"], "after");
}

#[tokio::test]
async fn update_unknown_user_is_404() {
    let api = Api::open();
    api.put("/users/999999", json!({"username": "ghost"})).await.err(404, None);
}

#[tokio::test]
async fn update_user_to_another_users_email_is_409_mentioning_exists_and_own_email_is_200() {
    let api = Api::open();
    let a = api.new_user("a@example.com", "a").await;
    let b = api.new_user("b@example.com", "b").await;
    let pa = format!("/users/{}", id(&a));
    api.put(&pa, json!({"email": "b@example.com"})).await.err(409, Some("exists"));
    assert_eq!(api.get(&pa).await.ok(200)["email"], "a@example.com", "409 must not change the user");
    assert_eq!(api.get(&format!("/users/{}", id(&b))).await.ok(200)["email"], "b@example.com");

    let r = api.put(&pa, json!({"email": "a@example.com"})).await.ok(200);
    assert_eq!(r["email"], "a@example.com");
    let r = api.put(&pa, json!({"email": "a@example.com", "username": "a2"})).await.ok(200);
    assert_eq!(r["username"], "a2");
}

#[tokio::test]
async fn delete_user_returns_200_json_and_then_get_is_404() {
    let api = Api::open();
    let u = api.new_user("gone@example.com", "gone").await;
    let keep = api.new_user("keep@example.com", "keep").await;
    let p = format!("/users/{}", id(&u));
    let d = api.delete(&p).await;
    d.ok(200);
    assert!(!d.body.is_null(), "DELETE must return a JSON body, got {:?}", d.text);
    api.get(&p).await.err(404, None);
    api.put(&p, json!({"username": "zombie"})).await.err(404, None);
    let list = api.get("/users").await.ok(200);
    assert_eq!(ids(&list), vec![id(&keep)]);
    // a link can no longer name the deleted user
    api.post("/urls", json!({"original_url": "https://example.com/x", "user_id": id(&u)})).await.err(404, Some("user"));
}

#[tokio::test]
async fn bulk_users_csv_body_returns_201_count_and_ignores_unknown_columns() {
    let api = Api::open();
    let r = api.post_csv(None, "/users/bulk", users_csv(1..=150, true)).await.ok(201);
    assert_eq!(r["count"], 150, "{r}");
    let u = api.get("/users/1").await.ok(200);
    assert_user(&u);
    assert_eq!(u["email"], "bulkuser1@example.com");
    assert_eq!(u["username"], "bulkuser1");
    assert!(u["created_at"].as_str().unwrap().starts_with("2025-01-02T03:04:05"), "created_at from CSV: {u}");
    assert!(u.get("plan").is_none_or(|p| p.is_null()), "unknown CSV column must be ignored: {u}");
    assert_eq!(api.get("/users/150").await.ok(200)["email"], "bulkuser150@example.com");
    api.get("/users/151").await.err(404, None);
    let mut all = Vec::new();
    for page in 1..=4 {
        let l = api.get(&format!("/users?page={page}&per_page=50")).await.ok(200);
        all.extend(ids(&l));
    }
    assert_eq!(all, (1..=150).collect::<Vec<_>>());
    // loaded emails count as taken
    api.post("/users", json!({"email": "bulkuser7@example.com"})).await.err(409, Some("exists"));
}

#[tokio::test]
async fn bulk_loads_from_import_dir_file_404_for_missing_and_400_for_escaping_names() {
    let root = tempfile::tempdir().unwrap();
    let import = root.path().join("import");
    std::fs::create_dir_all(import.join("sub")).unwrap();
    std::fs::write(import.join("users.csv"), users_csv(1..=3, true)).unwrap();
    std::fs::write(import.join("urls.csv"), urls_csv(1..=4, 3)).unwrap();
    std::fs::write(import.join("events.csv"), events_csv(1..=2, 4, "view")).unwrap();
    std::fs::write(import.join("sub/users.csv"), users_csv(10..=11, false)).unwrap();
    std::fs::write(root.path().join("outside.csv"), users_csv(20..=21, false)).unwrap();
    let api = Api::with_import_dir("open", import);

    for (path, file, n) in [("/users/bulk", "users.csv", 3), ("/urls/bulk", "urls.csv", 4), ("/events/bulk", "events.csv", 2)] {
        let r = api.post(path, json!({"file": file})).await.ok(201);
        assert_eq!(r["count"], n, "{path}: {r}");
    }
    assert_eq!(api.get("/users/2").await.ok(200)["email"], "bulkuser2@example.com");
    let l = api.get("/urls/4").await.ok(200);
    assert_eq!(l["short_code"], "bk00004");
    assert_eq!(l["is_active"], false);
    assert_eq!(api.get("/urls/3").await.ok(200)["is_active"], true);
    let e = api.get("/events/2").await.ok(200);
    assert_event(&e);
    assert_eq!(e["event_type"], "view");
    assert_eq!(e["details"], json!({"n": 2}));

    for path in ["/users/bulk", "/urls/bulk", "/events/bulk"] {
        api.post(path, json!({"file": "missing.csv"})).await.err(404, None);
        api.post(path, json!({"file": "../outside.csv"})).await.err(400, None);
        api.post(path, json!({"file": "../x"})).await.err(400, None);
        api.post(path, json!({"file": "a/b"})).await.err(400, None);
        api.post(path, json!({"file": "sub/users.csv"})).await.err(400, None);
        api.post(path, json!({"file": "/etc/passwd"})).await.err(400, None);
    }
    // nothing from outside / the subdirectory got loaded
    api.get("/users/10").await.err(404, None);
    api.get("/users/20").await.err(404, None);
}

// ---------------------------------------------------------------------------------------------
// urls
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_url_returns_201_with_unique_7_char_base62_code_and_records_created_event() {
    let api = Api::open();
    let u = api.new_user("owner@example.com", "owner").await;
    let l = api.new_url(json!({"original_url": "https://example.com/a", "title": "A title", "user_id": id(&u)})).await;
    let code = l["short_code"].as_str().unwrap();
    assert!(is_generated_code(code), "generated short code must be 7 base62 chars: {code:?}");
    assert_eq!(l["original_url"], "https://example.com/a");
    assert_eq!(l["title"], "A title");
    assert_eq!(l["is_active"], true);
    assert_eq!(l["user_id"], u["id"]);

    // read-your-writes
    let g = api.get(&format!("/urls/{}", id(&l))).await.ok(200);
    assert_url(&g);
    for f in ["id", "short_code", "original_url", "title", "is_active", "user_id"] {
        assert_eq!(g[f], l[f], "field {f}");
    }
    let ev = api.get(&format!("/events?url_id={}&event_type=created", id(&l))).await.ok(200);
    assert_eq!(arr(&ev).len(), 1, "exactly one created event: {ev}");
    assert_event(&arr(&ev)[0]);
    assert_eq!(arr(&ev)[0]["url_id"], l["id"]);
    assert_eq!(arr(&ev)[0]["event_type"], "created");

    // title and user_id are optional
    let bare = api.new_url(json!({"original_url": "https://example.com/b"})).await;
    assert!(bare["user_id"].is_null(), "no user_id given: {bare}");

    // codes are unique
    let mut codes = HashSet::new();
    codes.insert(code.to_string());
    codes.insert(bare["short_code"].as_str().unwrap().to_string());
    for i in 0..30 {
        let l = api.new_url(json!({"original_url": format!("https://example.com/u/{i}")})).await;
        let c = l["short_code"].as_str().unwrap().to_string();
        assert!(is_generated_code(&c), "{c:?}");
        assert!(codes.insert(c.clone()), "duplicate short code {c}");
    }
}

#[tokio::test]
async fn create_url_missing_original_url_is_400_and_unknown_user_is_404_mentioning_user() {
    let api = Api::open();
    api.post("/urls", json!({})).await.err(400, None);
    api.post("/urls", json!({"title": "no url"})).await.err(400, None);
    api.post("/urls", json!({"original_url": "https://example.com/x", "user_id": 987654321})).await.err(404, Some("user"));
    let l = api.get("/urls").await.ok(200);
    assert!(arr(&l).is_empty(), "rejected creates must not create links: {l}");
}

#[tokio::test]
async fn create_url_with_custom_short_code_redirects_and_taken_alias_is_409() {
    let api = Api::open();
    let l = api.new_url(json!({"original_url": "https://example.com/alias", "short_code": "my-Alias_1"})).await;
    assert_eq!(l["short_code"], "my-Alias_1");
    let r = api.get("/my-Alias_1").await;
    assert_eq!(r.status, 302, "{}", r.text);
    assert_eq!(r.header("location").as_deref(), Some("https://example.com/alias"));

    api.post("/urls", json!({"original_url": "https://example.com/other", "short_code": "my-Alias_1"})).await.err(409, None);
    let gen = api.new_url(json!({"original_url": "https://example.com/gen"})).await;
    api.post("/urls", json!({"original_url": "https://example.com/other", "short_code": gen["short_code"]})).await.err(409, None);
    // the alias still points at the first link
    let r = api.get("/my-Alias_1").await;
    assert_eq!(r.header("location").as_deref(), Some("https://example.com/alias"));
    assert_eq!(arr(&api.get("/urls").await.ok(200)).len(), 2);
}

#[tokio::test]
async fn get_url_by_id_200_and_unknown_404() {
    let api = Api::open();
    let l = api.new_url(json!({"original_url": "https://example.com/g", "title": "G"})).await;
    let g = api.get(&format!("/urls/{}", id(&l))).await.ok(200);
    assert_url(&g);
    assert_eq!(g["title"], "G");
    api.get("/urls/999999").await.err(404, None);
    api.get(&format!("/urls/{}", id(&l) + 1)).await.err(404, None);
}

#[tokio::test]
async fn list_urls_is_ordered_by_id_and_filters_by_user_id_and_is_active() {
    let api = Api::open();
    let a = api.new_user("a@example.com", "a").await;
    let b = api.new_user("b@example.com", "b").await;
    let mut la = Vec::new();
    let mut lb = Vec::new();
    for i in 0..3 {
        la.push(id(&api.new_url(json!({"original_url": format!("https://a.example.com/{i}"), "user_id": id(&a)})).await));
        lb.push(id(&api.new_url(json!({"original_url": format!("https://b.example.com/{i}"), "user_id": id(&b)})).await));
    }
    lb.pop(); // only two for b
    let dropped = {
        let all = api.get("/urls").await.ok(200);
        *ids(&all).iter().find(|i| !la.contains(i) && !lb.contains(i)).unwrap()
    };
    api.delete(&format!("/urls/{dropped}")).await.ok(200);
    api.put(&format!("/urls/{}", la[1]), json!({"is_active": false})).await.ok(200);

    let all = api.get("/urls").await.ok(200);
    assert_ascending(&all, "GET /urls");
    let mut expect: Vec<u64> = la.iter().chain(lb.iter()).copied().collect();
    expect.sort();
    assert_eq!(ids(&all), expect);
    for l in arr(&all) {
        assert_url(l);
    }

    let fa = api.get(&format!("/urls?user_id={}", id(&a))).await.ok(200);
    assert_eq!(ids(&fa), la);
    assert!(arr(&fa).iter().all(|l| l["user_id"] == a["id"]));
    let fb = api.get(&format!("/urls?user_id={}", id(&b))).await.ok(200);
    assert_eq!(ids(&fb), lb);

    let inactive = api.get("/urls?is_active=false").await.ok(200);
    assert_eq!(ids(&inactive), vec![la[1]]);
    assert_eq!(arr(&inactive)[0]["is_active"], false);
    let active = api.get("/urls?is_active=true").await.ok(200);
    assert_eq!(arr(&active).len(), 4);
    assert!(arr(&active).iter().all(|l| l["is_active"] == true));
    assert_ascending(&active, "GET /urls?is_active=true");

    let both = api.get(&format!("/urls?user_id={}&is_active=true&limit=100", id(&a))).await.ok(200);
    assert_eq!(ids(&both), vec![la[0], la[2]]);
    let none = api.get("/urls?user_id=987654321").await.ok(200);
    assert!(arr(&none).is_empty());
}

#[tokio::test]
async fn list_urls_non_integer_user_id_is_400_naming_user_id() {
    let api = Api::open();
    api.get("/urls?user_id=abc").await.err(400, Some("user_id"));
    api.get("/urls?user_id=1.5").await.err(400, Some("user_id"));
}

#[tokio::test]
async fn list_urls_limit_defaults_to_100_non_integer_falls_back_to_100_and_caps_at_500() {
    let api = Api::open();
    api.post_csv(None, "/users/bulk", users_csv(1..=3, false)).await.ok(201);
    let r = api.post_csv(None, "/urls/bulk", urls_csv(1..=600, 3)).await.ok(201);
    assert_eq!(r["count"], 600, "{r}");

    let d = api.get("/urls").await.ok(200);
    assert_eq!(ids(&d), (1..=100).collect::<Vec<_>>(), "default limit 100 in id order");
    let bad = api.get("/urls?limit=abc").await.ok(200);
    assert_eq!(ids(&bad), (1..=100).collect::<Vec<_>>(), "non-integer limit falls back to 100");
    let five = api.get("/urls?limit=5").await.ok(200);
    assert_eq!(ids(&five), (1..=5).collect::<Vec<_>>());
    let capped = api.get("/urls?limit=1000").await.ok(200);
    assert_eq!(ids(&capped), (1..=500).collect::<Vec<_>>(), "limit capped at 500");
    let max = api.get("/urls?limit=500").await.ok(200);
    assert_eq!(arr(&max).len(), 500);

    // is_active True/False text from CSV
    assert_eq!(api.get("/urls/4").await.ok(200)["is_active"], false);
    assert_eq!(api.get("/urls/5").await.ok(200)["is_active"], true);
    let inactive = api.get("/urls?is_active=false&limit=500").await.ok(200);
    assert_eq!(ids(&inactive), (1..=600).filter(|i| i % 4 == 0).collect::<Vec<_>>());
    let active = api.get("/urls?is_active=true&limit=1000").await.ok(200);
    assert_eq!(ids(&active), (1..=600).filter(|i| i % 4 != 0).take(500).collect::<Vec<_>>());
    let u1 = api.get("/urls?user_id=1&limit=500").await.ok(200);
    assert_eq!(ids(&u1), (1..=600).filter(|i| i % 3 == 0).collect::<Vec<_>>());
    assert!(arr(&u1).iter().all(|l| l["user_id"] == 1));
}

#[tokio::test]
async fn update_url_returns_200_updated_url_visible_immediately_and_records_updated_event() {
    let api = Api::open();
    let l = api.new_url(json!({"original_url": "https://example.com/before", "title": "Before"})).await;
    let p = format!("/urls/{}", id(&l));
    let code = l["short_code"].as_str().unwrap().to_string();

    let r = api.put(&p, json!({"title": "After", "original_url": "https://example.org/after"})).await.ok(200);
    assert_url(&r);
    assert_eq!(r["id"], l["id"]);
    assert_eq!(r["title"], "After");
    assert_eq!(r["original_url"], "https://example.org/after");
    assert_eq!(r["short_code"], l["short_code"]);
    assert_eq!(r["is_active"], true);
    let g = api.get(&p).await.ok(200);
    assert_eq!(g["title"], "After");
    assert_eq!(g["original_url"], "https://example.org/after");
    let red = api.get(&format!("/{code}")).await;
    assert_eq!(red.status, 302);
    assert_eq!(red.header("location").as_deref(), Some("https://example.org/after"), "redirect must follow the update at once");
    let ev = api.get(&format!("/events?url_id={}&event_type=updated", id(&l))).await.ok(200);
    assert_eq!(arr(&ev).len(), 1, "one updated event: {ev}");
    assert_event(&arr(&ev)[0]);

    let r = api.put(&p, json!({"is_active": false})).await.ok(200);
    assert_eq!(r["is_active"], false);
    assert_eq!(r["title"], "After");
    assert_eq!(api.get(&p).await.ok(200)["is_active"], false);
    api.get(&format!("/{code}")).await.err(404, None);
    let ev = api.get(&format!("/events?url_id={}&event_type=updated", id(&l))).await.ok(200);
    assert_eq!(arr(&ev).len(), 2, "two updated events: {ev}");
    assert_ascending(&ev, "updated events");

    api.put("/urls/999999", json!({"title": "ghost"})).await.err(404, None);
}

#[tokio::test]
async fn delete_url_returns_200_then_404_everywhere_and_records_deleted_event() {
    let api = Api::open();
    let keep = api.new_url(json!({"original_url": "https://example.com/keep"})).await;
    let l = api.new_url(json!({"original_url": "https://example.com/del"})).await;
    let p = format!("/urls/{}", id(&l));
    let d = api.delete(&p).await;
    d.ok(200);
    assert!(!d.body.is_null(), "DELETE must return a JSON body, got {:?}", d.text);
    api.get(&p).await.err(404, None);
    api.get(&format!("/links/{}", id(&l))).await.err(404, None);
    api.get(&format!("/{}", l["short_code"].as_str().unwrap())).await.err(404, None);
    api.put(&p, json!({"title": "zombie"})).await.err(404, None);
    assert_eq!(ids(&api.get("/urls").await.ok(200)), vec![id(&keep)]);
    let ev = api.get(&format!("/events?url_id={}&event_type=deleted", id(&l))).await.ok(200);
    assert_eq!(arr(&ev).len(), 1, "one deleted event: {ev}");
    assert_eq!(arr(&ev)[0]["event_type"], "deleted");
    assert_eq!(arr(&ev)[0]["url_id"], l["id"]);
}

#[tokio::test]
async fn redirect_is_302_with_exact_location_and_404_json_for_unknown_and_inactive() {
    let api = Api::open();
    let target = "https://example.com/some/path?q=1&r=two";
    let l = api.new_url(json!({"original_url": target})).await;
    let code = l["short_code"].as_str().unwrap().to_string();
    let r = api.get(&format!("/{code}")).await;
    assert_eq!(r.status, 302, "{}", r.text);
    assert_eq!(r.header("location").as_deref(), Some(target));

    api.get("/zzzzzzz").await.err(404, None);
    api.get("/Nope123").await.err(404, None);

    let l2 = api.new_url(json!({"original_url": "https://example.com/inactive"})).await;
    let code2 = l2["short_code"].as_str().unwrap().to_string();
    assert_eq!(api.get(&format!("/{code2}")).await.status, 302);
    api.put(&format!("/urls/{}", id(&l2)), json!({"is_active": false})).await.ok(200);
    api.get(&format!("/{code2}")).await.err(404, None);
    api.put(&format!("/urls/{}", id(&l2)), json!({"is_active": true})).await.ok(200);
    let r = api.get(&format!("/{code2}")).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location").as_deref(), Some("https://example.com/inactive"));
}

#[tokio::test]
async fn redirects_record_click_events_and_stats_endpoint_reports_click_count() {
    let api = Api::open();
    let l = api.new_url(json!({"original_url": "https://example.com/clicky", "title": "Clicky"})).await;
    let code = l["short_code"].as_str().unwrap().to_string();
    let stats_path = format!("/{code}+");
    let s = api.get(&stats_path).await.ok(200);
    assert_eq!(s["short_code"], code.as_str());
    assert_eq!(s["original_url"], "https://example.com/clicky");
    assert_eq!(s["title"], "Clicky");
    assert_eq!(s["is_active"], true);
    assert_eq!(s["click_count"], 0);
    assert_ts(&s, "created_at");

    for _ in 0..3 {
        let r = api.get(&format!("/{code}")).await;
        assert_eq!(r.status, 302);
    }
    let s = poll_get(&api, &stats_path, "click_count reaches 3", |r| r.status == 200 && r.body["click_count"] == 3).await;
    assert!(s.body["click_count"].is_u64());
    let ev_path = format!("/events?url_id={}&event_type=click", id(&l));
    let ev = poll_get(&api, &ev_path, "3 click events", |r| r.status == 200 && r.body.as_array().is_some_and(|a| a.len() >= 3)).await;
    let ev = ev.body;
    assert_eq!(arr(&ev).len(), 3, "exactly 3 click events: {ev}");
    assert_ascending(&ev, "click events");
    for e in arr(&ev) {
        assert_event(e);
        assert_eq!(e["event_type"], "click");
        assert_eq!(e["url_id"], l["id"]);
    }
    // not over-counted
    assert_eq!(api.get(&stats_path).await.ok(200)["click_count"], 3);
}

#[tokio::test]
async fn shorten_creates_201_reuses_same_active_url_for_same_user_with_200_and_rejects_non_http_400() {
    let api = Api::open();
    let u = api.new_user("s@example.com", "s").await;
    let r = api.post("/shorten", json!({"url": "https://example.com/s", "title": "S", "user_id": id(&u)})).await.ok(201);
    let code = r["short_code"].as_str().expect("short_code").to_string();
    assert!(!code.is_empty());
    assert!(r["short_url"].as_str().expect("short_url").ends_with(&code), "short_url must end with the code: {r}");
    assert_eq!(r["original_url"], "https://example.com/s");
    assert_eq!(r["title"], "S");
    let red = api.get(&format!("/{code}")).await;
    assert_eq!(red.status, 302);
    assert_eq!(red.header("location").as_deref(), Some("https://example.com/s"));

    let again = api.post("/shorten", json!({"url": "https://example.com/s", "user_id": id(&u)})).await.ok(200);
    assert_eq!(again["short_code"], code.as_str(), "same active URL for the same user returns the existing link");
    assert_eq!(again["original_url"], "https://example.com/s");
    let mine = api.get(&format!("/urls?user_id={}", id(&u))).await.ok(200);
    assert_eq!(arr(&mine).len(), 1, "no second link: {mine}");

    // another user (here: none) gets its own link; http is fine too
    let other = api.post("/shorten", json!({"url": "https://example.com/s"})).await.ok(201);
    assert_ne!(other["short_code"], code.as_str());
    api.post("/shorten", json!({"url": "http://example.com/plain"})).await.ok(201);

    for bad in ["ftp://example.com/file", "javascript:alert(1)", "mailto:a@example.com", "not a url", "example.com/no-scheme"] {
        api.post("/shorten", json!({"url": bad})).await.err(400, None);
    }
    api.post("/shorten", json!({})).await.err(400, None);

    // once the link is inactive it is no longer "the same active URL": a new link is made
    api.put(&format!("/urls/{}", ids(&mine)[0]), json!({"is_active": false})).await.ok(200);
    let fresh = api.post("/shorten", json!({"url": "https://example.com/s", "user_id": id(&u)})).await.ok(201);
    assert_ne!(fresh["short_code"], code.as_str());
}

#[tokio::test]
async fn links_create_and_links_get_behave_like_urls() {
    let api = Api::open();
    let u = api.new_user("l@example.com", "l").await;
    let l = api.post("/links/create", json!({"original_url": "https://example.com/link", "title": "L", "user_id": id(&u)})).await.ok(201);
    assert_url(&l);
    assert!(is_generated_code(l["short_code"].as_str().unwrap()));
    assert_eq!(l["user_id"], u["id"]);
    assert_eq!(l["title"], "L");
    let via_links = api.get(&format!("/links/{}", id(&l))).await.ok(200);
    let via_urls = api.get(&format!("/urls/{}", id(&l))).await.ok(200);
    assert_eq!(via_links, via_urls);
    assert_url(&via_links);
    let ev = api.get(&format!("/events?url_id={}&event_type=created", id(&l))).await.ok(200);
    assert_eq!(arr(&ev).len(), 1);
    api.get("/links/999999").await.err(404, None);
    api.post("/links/create", json!({"title": "no url"})).await.err(400, None);
    api.post("/links/create", json!({"original_url": "https://example.com/x", "user_id": 987654321})).await.err(404, Some("user"));
}

// ---------------------------------------------------------------------------------------------
// events
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_event_returns_201_event_readable_by_id_and_in_list() {
    let api = Api::open();
    let u = api.new_user("e@example.com", "e").await;
    let l = api.new_url(json!({"original_url": "https://example.com/ev", "user_id": id(&u)})).await;
    let details = json!({"ref": "newsletter", "n": 2, "nested": {"a": [1, 2]}});
    let e = api.post("/events", json!({"url_id": id(&l), "event_type": "view", "user_id": id(&u), "details": details})).await.ok(201);
    assert_event(&e);
    assert_eq!(e["url_id"], l["id"]);
    assert_eq!(e["user_id"], u["id"]);
    assert_eq!(e["event_type"], "view");
    assert_eq!(e["details"], details);
    let g = api.get(&format!("/events/{}", id(&e))).await.ok(200);
    assert_event(&g);
    for f in ["id", "url_id", "user_id", "event_type", "details"] {
        assert_eq!(g[f], e[f], "field {f}");
    }

    let c = api.post("/events", json!({"url_id": id(&l), "event_type": "conversion"})).await.ok(201);
    assert_event(&c);
    assert_eq!(c["event_type"], "conversion");

    let list = api.get(&format!("/events?url_id={}", id(&l))).await.ok(200);
    assert_ascending(&list, "GET /events?url_id");
    let types: Vec<&str> = arr(&list).iter().map(|e| e["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["created", "view", "conversion"]);

    api.get("/events/999999999").await.err(404, None);
}

#[tokio::test]
async fn create_event_validation_400s_inactive_400_and_unknown_url_or_user_404() {
    let api = Api::open();
    let u = api.new_user("v@example.com", "v").await;
    let l = api.new_url(json!({"original_url": "https://example.com/valid"})).await;
    let off = api.new_url(json!({"original_url": "https://example.com/off"})).await;
    api.put(&format!("/urls/{}", id(&off)), json!({"is_active": false})).await.ok(200);
    let lid = id(&l);

    api.post("/events", json!({"event_type": "view"})).await.err(400, None);
    api.post("/events", json!({"url_id": "abc", "event_type": "view"})).await.err(400, None);
    api.post("/events", json!({"url_id": 1.5, "event_type": "view"})).await.err(400, None);
    api.post("/events", json!({"url_id": lid})).await.err(400, None);
    api.post("/events", json!({"url_id": lid, "event_type": "view", "user_id": "abc"})).await.err(400, None);
    api.post("/events", json!({"url_id": lid, "event_type": "view", "details": "not an object"})).await.err(400, Some("details"));
    api.post("/events", json!({"url_id": lid, "event_type": "view", "details": [1, 2]})).await.err(400, Some("details"));
    api.post("/events", json!({"url_id": lid, "event_type": "view", "details": 5})).await.err(400, Some("details"));
    api.post("/events", json!({"url_id": id(&off), "event_type": "view"})).await.err(400, Some("inactive"));
    api.post("/events", json!({"url_id": 987654321, "event_type": "view"})).await.err(404, None);
    api.post("/events", json!({"url_id": lid, "event_type": "view", "user_id": 987654321})).await.err(404, None);

    // only the system's own events (created, updated) exist
    let all = api.get("/events?limit=500").await.ok(200);
    assert!(
        arr(&all).iter().all(|e| e["event_type"] == "created" || e["event_type"] == "updated"),
        "rejected events must not be stored: {all}"
    );
    // a valid one still works
    api.post("/events", json!({"url_id": lid, "event_type": "view", "user_id": id(&u), "details": {}})).await.ok(201);
}

#[tokio::test]
async fn list_events_filters_by_url_user_and_type_ordered_by_id_and_rejects_non_integer_ids_naming_param() {
    let api = Api::open();
    let a = api.new_user("a@example.com", "a").await;
    let b = api.new_user("b@example.com", "b").await;
    let la = api.new_url(json!({"original_url": "https://example.com/a", "user_id": id(&a)})).await;
    let lb = api.new_url(json!({"original_url": "https://example.com/b", "user_id": id(&b)})).await;
    let e1 = id(&api.post("/events", json!({"url_id": id(&la), "event_type": "view", "user_id": id(&a)})).await.ok(201));
    let e2 = id(&api.post("/events", json!({"url_id": id(&lb), "event_type": "view", "user_id": id(&b)})).await.ok(201));
    let e3 = id(&api.post("/events", json!({"url_id": id(&la), "event_type": "conversion", "user_id": id(&b)})).await.ok(201));

    let all = api.get("/events").await.ok(200);
    assert_eq!(arr(&all).len(), 5, "2 created + 3 posted: {all}");
    assert_ascending(&all, "GET /events");
    for e in arr(&all) {
        assert_event(e);
    }

    let by_url = api.get(&format!("/events?url_id={}", id(&la))).await.ok(200);
    assert!(arr(&by_url).iter().all(|e| e["url_id"] == la["id"]));
    assert_eq!(arr(&by_url).len(), 3);
    assert!(ids(&by_url).ends_with(&[e1, e3]));

    let by_user = api.get(&format!("/events?user_id={}", id(&b))).await.ok(200);
    assert!(arr(&by_user).iter().all(|e| e["user_id"] == b["id"]), "{by_user}");
    assert!(ids(&by_user).contains(&e2) && ids(&by_user).contains(&e3));
    assert!(!ids(&by_user).contains(&e1));
    assert_ascending(&by_user, "GET /events?user_id");

    let conv = api.get("/events?event_type=conversion").await.ok(200);
    assert_eq!(ids(&conv), vec![e3]);
    let views_a = api.get(&format!("/events?url_id={}&event_type=view&limit=100", id(&la))).await.ok(200);
    assert_eq!(ids(&views_a), vec![e1]);
    let combo = api.get(&format!("/events?url_id={}&user_id={}", id(&la), id(&b))).await.ok(200);
    assert_eq!(ids(&combo), vec![e3]);
    assert!(arr(&api.get("/events?event_type=nothing").await.ok(200)).is_empty());

    api.get("/events?url_id=abc").await.err(400, Some("url_id"));
    api.get("/events?user_id=abc").await.err(400, Some("user_id"));
    api.get("/events?url_id=1.5").await.err(400, Some("url_id"));
}

#[tokio::test]
async fn list_events_limit_defaults_to_100_bad_limit_falls_back_and_caps_at_500() {
    let api = Api::open();
    api.post_csv(None, "/users/bulk", users_csv(1..=2, false)).await.ok(201);
    api.post_csv(None, "/urls/bulk", urls_csv(1..=3, 2)).await.ok(201);
    let r = api.post_csv(None, "/events/bulk", events_csv(1..=600, 3, "bulkview")).await.ok(201);
    assert_eq!(r["count"], 600, "{r}");

    let d = api.get("/events?event_type=bulkview").await.ok(200);
    assert_eq!(ids(&d), (1..=100).collect::<Vec<_>>(), "default limit 100 in id order");
    let bad = api.get("/events?event_type=bulkview&limit=abc").await.ok(200);
    assert_eq!(ids(&bad), (1..=100).collect::<Vec<_>>(), "bad limit falls back to 100");
    let seven = api.get("/events?event_type=bulkview&limit=7").await.ok(200);
    assert_eq!(ids(&seven), (1..=7).collect::<Vec<_>>());
    let capped = api.get("/events?event_type=bulkview&limit=1000").await.ok(200);
    assert_eq!(ids(&capped), (1..=500).collect::<Vec<_>>(), "limit capped at 500");
    assert_eq!(arr(&api.get("/events?limit=1000").await.ok(200)).len(), 500);
    assert_eq!(arr(&api.get("/events").await.ok(200)).len(), 100);

    let e = api.get("/events/42").await.ok(200);
    assert_event(&e);
    assert_eq!(e["url_id"], 1, "row 42 names url 42 % 3 + 1");
    assert_eq!(e["details"], json!({"n": 42}));
    assert!(e["timestamp"].as_str().unwrap().starts_with("2025-04-01T12:00:00"), "{e}");
    let on1 = api.get("/events?url_id=1&event_type=bulkview&limit=500").await.ok(200);
    assert_eq!(ids(&on1), (1..=600).filter(|i| i % 3 == 0).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// auth
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_returns_201_token_and_user_and_validates_input() {
    let api = Api::open();
    let r = api.post("/auth/register", json!({"email": "reg@example.com", "password": "correct horse"})).await.ok(201);
    let tok = r["session_token"].as_str().expect("session_token string");
    assert!(!tok.is_empty());
    let uid = r["user"]["id"].as_u64().expect("user.id integer");
    assert_eq!(r["user"]["email"], "reg@example.com");
    let g = api.get(&format!("/users/{uid}")).await.ok(200);
    assert_eq!(g["email"], "reg@example.com");

    api.post("/auth/register", json!({"password": "long enough"})).await.err(400, None);
    api.post("/auth/register", json!({"email": "nopw@example.com"})).await.err(400, None);
    api.post("/auth/register", json!({})).await.err(400, None);
    api.post("/auth/register", json!({"email": "short@example.com", "password": "1234567"})).await.err(400, None);
    let ok8 = api.post("/auth/register", json!({"email": "eight@example.com", "password": "12345678"})).await.ok(201);
    assert_ne!(ok8["user"]["id"], r["user"]["id"]);
    api.post("/auth/register", json!({"email": "reg@example.com", "password": "another password"})).await.err(409, None);
}

#[tokio::test]
async fn login_returns_200_token_and_401_with_the_same_message_for_wrong_email_or_password() {
    let api = Api::open();
    let reg = api.post("/auth/register", json!({"email": "log@example.com", "password": "s3cret-pass"})).await.ok(201);
    let r = api.post("/auth/login", json!({"email": "log@example.com", "password": "s3cret-pass"})).await.ok(200);
    assert!(r["session_token"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    assert_eq!(r["user"]["id"], reg["user"]["id"]);
    assert_eq!(r["user"]["email"], "log@example.com");

    let wrong_pw = api.post("/auth/login", json!({"email": "log@example.com", "password": "wrong-pass"})).await.err(401, None);
    let wrong_email = api.post("/auth/login", json!({"email": "nobody@example.com", "password": "s3cret-pass"})).await.err(401, None);
    assert_eq!(wrong_pw, wrong_email, "wrong email and wrong password must give the same message");
}

// ---------------------------------------------------------------------------------------------
// access modes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn open_mode_needs_no_token_for_any_write() {
    let api = Api::open();
    api.post_csv(None, "/users/bulk", users_csv(1..=2, false)).await.ok(201);
    api.post_csv(None, "/urls/bulk", urls_csv(1..=2, 2)).await.ok(201);
    api.post_csv(None, "/events/bulk", events_csv(1..=2, 2, "view")).await.ok(201);
    let u = api.post("/users", json!({"email": "o@example.com"})).await.ok(201);
    let p = format!("/users/{}", id(&u));
    api.put(&p, json!({"username": "o2"})).await.ok(200);
    let l = api.post("/urls", json!({"original_url": "https://example.com/o", "user_id": id(&u)})).await.ok(201);
    api.post("/links/create", json!({"original_url": "https://example.com/o2"})).await.ok(201);
    api.post("/shorten", json!({"url": "https://example.com/o3"})).await.ok(201);
    api.put(&format!("/urls/{}", id(&l)), json!({"title": "t"})).await.ok(200);
    api.post("/events", json!({"url_id": id(&l), "event_type": "view"})).await.ok(201);
    api.delete(&format!("/urls/{}", id(&l))).await.ok(200);
    api.delete(&p).await.ok(200);
}

#[tokio::test]
async fn token_mode_reads_and_redirects_are_public_and_writes_without_valid_token_are_401() {
    let api = Api::token();
    let u = api.admin_post("/users", json!({"email": "t@example.com", "username": "t"})).await.ok(201);
    let l = api.admin_post("/urls", json!({"original_url": "https://example.com/t", "user_id": id(&u)})).await.ok(201);
    let code = l["short_code"].as_str().unwrap().to_string();
    let up = format!("/users/{}", id(&u));
    let lp = format!("/urls/{}", id(&l));

    for path in ["/health", "/users", up.as_str(), "/urls", lp.as_str(), "/events"] {
        api.get(path).await.ok(200);
    }
    api.get(&format!("/links/{}", id(&l))).await.ok(200);
    api.get(&format!("/{code}+")).await.ok(200);
    let r = api.get(&format!("/{code}")).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location").as_deref(), Some("https://example.com/t"));

    for tok in [None, Some("not-a-real-token"), Some("")] {
        api.post_as(tok, "/users", json!({"email": "x@example.com"})).await.err(401, None);
        api.put_as(tok, &up, json!({"username": "hacked"})).await.err(401, None);
        api.delete_as(tok, &up).await.err(401, None);
        api.post_as(tok, "/urls", json!({"original_url": "https://example.com/x"})).await.err(401, None);
        api.post_as(tok, "/links/create", json!({"original_url": "https://example.com/x"})).await.err(401, None);
        api.post_as(tok, "/shorten", json!({"url": "https://example.com/x"})).await.err(401, None);
        api.put_as(tok, &lp, json!({"title": "hacked"})).await.err(401, None);
        api.delete_as(tok, &lp).await.err(401, None);
        api.post_as(tok, "/events", json!({"url_id": id(&l), "event_type": "view"})).await.err(401, None);
        api.post_csv(tok, "/users/bulk", users_csv(100..=101, false)).await.err(401, None);
        api.post_csv(tok, "/urls/bulk", urls_csv(100..=101, 1)).await.err(401, None);
        api.post_csv(tok, "/events/bulk", events_csv(100..=101, 1, "view")).await.err(401, None);
    }
    // a non-Bearer scheme is not a token either
    let r = api
        .send(
            api.http
                .post(api.srv.url("/users"))
                .header("authorization", format!("Basic {ADMIN_TOKEN}"))
                .json(&json!({"email": "b@example.com"})),
            "POST /users (Basic)".into(),
        )
        .await;
    r.err(401, None);

    // nothing changed
    let g = api.get(&up).await.ok(200);
    assert_eq!(g["username"], "t");
    assert_eq!(api.get(&lp).await.ok(200)["title"], l["title"]);
    assert_eq!(arr(&api.get("/users").await.ok(200)).len(), 1);
    assert_eq!(arr(&api.get("/urls").await.ok(200)).len(), 1);
    assert!(arr(&api.get("/events?event_type=view").await.ok(200)).is_empty());

    // register and login stay open
    api.post("/auth/register", json!({"email": "open@example.com", "password": "password1"})).await.ok(201);
    api.post("/auth/login", json!({"email": "open@example.com", "password": "password1"})).await.ok(200);
}

#[tokio::test]
async fn token_mode_user_token_writes_only_its_own_user_links_and_events_else_403() {
    let api = Api::token();
    let ra = api.post("/auth/register", json!({"email": "ua@example.com", "password": "password-a"})).await.ok(201);
    let rb = api.post("/auth/register", json!({"email": "ub@example.com", "password": "password-b"})).await.ok(201);
    let ta = ra["session_token"].as_str().unwrap().to_string();
    let tb = rb["session_token"].as_str().unwrap().to_string();
    let (a, b) = (ra["user"]["id"].as_u64().unwrap(), rb["user"]["id"].as_u64().unwrap());
    let (ta, tb) = (Some(ta.as_str()), Some(tb.as_str()));

    // links it creates belong to it
    let la = api.post_as(ta, "/urls", json!({"original_url": "https://example.com/a1"})).await.ok(201);
    assert_eq!(la["user_id"], a);
    let la2 = api.post_as(ta, "/links/create", json!({"original_url": "https://example.com/a2"})).await.ok(201);
    assert_eq!(la2["user_id"], a);
    let sh = api.post_as(ta, "/shorten", json!({"url": "https://example.com/a3"})).await.ok(201);
    let mine = api.get(&format!("/urls?user_id={a}")).await.ok(200);
    assert!(arr(&mine).iter().any(|l| l["short_code"] == sh["short_code"]), "shortened link belongs to A: {mine}");
    assert!(arr(&mine).iter().all(|l| l["user_id"] == a));
    // claiming someone else's user_id: refused, or the link still belongs to the caller
    let claim = api.post_as(ta, "/urls", json!({"original_url": "https://example.com/claim", "user_id": b})).await;
    if claim.status == 403 {
        claim.err(403, None);
    } else {
        assert_eq!(claim.ok(201)["user_id"], a, "a user token's links belong to it");
    }

    // own user record yes, another's no
    let r = api.put_as(ta, &format!("/users/{a}"), json!({"username": "alpha"})).await.ok(200);
    assert_eq!(r["username"], "alpha");
    api.put_as(ta, &format!("/users/{b}"), json!({"username": "pwned"})).await.err(403, None);
    api.delete_as(ta, &format!("/users/{b}")).await.err(403, None);
    let gb = api.get(&format!("/users/{b}")).await.ok(200);
    assert_ne!(gb["username"], "pwned");

    // another's links: no update, delete or events
    let lap = format!("/urls/{}", id(&la));
    api.put_as(tb, &lap, json!({"title": "pwned"})).await.err(403, None);
    api.put_as(tb, &lap, json!({"is_active": false})).await.err(403, None);
    api.delete_as(tb, &lap).await.err(403, None);
    api.post_as(tb, "/events", json!({"url_id": id(&la), "event_type": "view"})).await.err(403, None);
    let g = api.get(&lap).await.ok(200);
    assert_ne!(g["title"], "pwned");
    assert_eq!(g["is_active"], true);
    assert!(arr(&api.get(&format!("/events?url_id={}&event_type=view", id(&la))).await.ok(200)).is_empty());

    // own links: yes
    let e = api.post_as(ta, "/events", json!({"url_id": id(&la), "event_type": "view", "user_id": a})).await.ok(201);
    assert_eq!(e["url_id"], la["id"]);
    assert_eq!(api.put_as(ta, &lap, json!({"title": "mine"})).await.ok(200)["title"], "mine");

    // admin-only: creating users and bulk loads
    api.post_as(ta, "/users", json!({"email": "new@example.com"})).await.err(403, None);
    api.post_csv(ta, "/users/bulk", users_csv(500..=501, false)).await.err(403, None);
    api.post_csv(ta, "/urls/bulk", urls_csv(500..=501, 1)).await.err(403, None);
    api.post_csv(ta, "/events/bulk", events_csv(500..=501, 1, "view")).await.err(403, None);
    api.get("/users/500").await.err(404, None);

    // a login token is as good as the register token
    let la_login = api.post("/auth/login", json!({"email": "ua@example.com", "password": "password-a"})).await.ok(200);
    let tl = la_login["session_token"].as_str().unwrap().to_string();
    api.put_as(Some(&tl), &lap, json!({"title": "via login"})).await.ok(200);
    api.put_as(Some(&tl), &format!("/users/{b}"), json!({"username": "x"})).await.err(403, None);
    api.delete_as(Some(&tl), &lap).await.ok(200);
    api.get(&lap).await.err(404, None);
}

#[tokio::test]
async fn token_mode_admin_token_may_do_everything_including_users_and_bulk_loads() {
    let api = Api::token();
    let adm = Some(ADMIN_TOKEN);
    // bulk loads first, so their explicit ids cannot meet generated ones
    assert_eq!(api.post_csv(adm, "/users/bulk", users_csv(1..=5, false)).await.ok(201)["count"], 5);
    assert_eq!(api.post_csv(adm, "/urls/bulk", urls_csv(1..=3, 5)).await.ok(201)["count"], 3);
    assert_eq!(api.post_csv(adm, "/events/bulk", events_csv(1..=2, 3, "view")).await.ok(201)["count"], 2);
    api.get("/users/5").await.ok(200);
    api.get("/urls/3").await.ok(200);
    api.get("/events/2").await.ok(200);
    let reg = api.post("/auth/register", json!({"email": "someone@example.com", "password": "password-s"})).await.ok(201);
    let sid = reg["user"]["id"].as_u64().unwrap();
    let tok = reg["session_token"].as_str().unwrap().to_string();
    let theirs = api.post_as(Some(&tok), "/urls", json!({"original_url": "https://example.com/theirs"})).await.ok(201);

    let u = api.post_as(adm, "/users", json!({"email": "adm@example.com", "username": "adm"})).await.ok(201);
    assert_user(&u);
    api.put_as(adm, &format!("/users/{sid}"), json!({"username": "renamed"})).await.ok(200);
    assert_eq!(api.get(&format!("/users/{sid}")).await.ok(200)["username"], "renamed");
    let l = api.post_as(adm, "/urls", json!({"original_url": "https://example.com/adm", "user_id": sid})).await.ok(201);
    assert_eq!(l["user_id"], sid);
    api.put_as(adm, &format!("/urls/{}", id(&theirs)), json!({"title": "by admin"})).await.ok(200);
    api.post_as(adm, "/events", json!({"url_id": id(&theirs), "event_type": "view"})).await.ok(201);
    api.post_as(adm, "/shorten", json!({"url": "https://example.com/adm-short"})).await.ok(201);
    api.post_as(adm, "/links/create", json!({"original_url": "https://example.com/adm-link"})).await.ok(201);

    api.delete_as(adm, &format!("/urls/{}", id(&theirs))).await.ok(200);
    api.get(&format!("/urls/{}", id(&theirs))).await.err(404, None);
    api.delete_as(adm, &format!("/users/{}", id(&u))).await.ok(200);
    api.get(&format!("/users/{}", id(&u))).await.err(404, None);
}

// ---------------------------------------------------------------------------------------------
// idempotency, routing, limits
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn idempotency_key_makes_a_retried_post_take_effect_once_with_the_same_result() {
    let api = Api::open();
    let body = json!({"email": "idem@example.com", "username": "idem"});
    let r1 = api.call(Method::POST, "/users", Some(&body), None, &[("Idempotency-Key", "key-user-1")]).await;
    let r2 = api.call(Method::POST, "/users", Some(&body), None, &[("Idempotency-Key", "key-user-1")]).await;
    let u1 = r1.ok(201);
    assert_eq!(r2.status, r1.status, "retry must return the same result: {}", r2.text);
    assert_eq!(r2.body, u1);
    assert_eq!(arr(&api.get("/users").await.ok(200)).len(), 1);

    let lb = json!({"original_url": "https://example.com/idem"});
    let l1 = api.call(Method::POST, "/urls", Some(&lb), None, &[("Idempotency-Key", "key-url-1")]).await;
    let l2 = api.call(Method::POST, "/urls", Some(&lb), None, &[("Idempotency-Key", "key-url-1")]).await;
    let l = l1.ok(201);
    assert_eq!(l2.status, 201, "{}", l2.text);
    assert_eq!(l2.body, l);
    assert_eq!(arr(&api.get("/urls").await.ok(200)).len(), 1);
    assert_eq!(arr(&api.get(&format!("/events?url_id={}&event_type=created", id(&l))).await.ok(200)).len(), 1);

    let eb = json!({"url_id": id(&l), "event_type": "view"});
    let e1 = api.call(Method::POST, "/events", Some(&eb), None, &[("Idempotency-Key", "key-ev-1")]).await;
    let e2 = api.call(Method::POST, "/events", Some(&eb), None, &[("Idempotency-Key", "key-ev-1")]).await;
    let e = e1.ok(201);
    assert_eq!(e2.status, 201, "{}", e2.text);
    assert_eq!(e2.body, e);
    assert_eq!(arr(&api.get("/events?event_type=view").await.ok(200)).len(), 1);

    // a different key is a different request
    let e3 = api.call(Method::POST, "/events", Some(&eb), None, &[("Idempotency-Key", "key-ev-2")]).await.ok(201);
    assert_ne!(id(&e3), id(&e));
    assert_eq!(arr(&api.get("/events?event_type=view").await.ok(200)).len(), 2);
}

#[tokio::test]
async fn unknown_route_is_404_wrong_method_405_and_oversize_json_413_all_json_errors() {
    let api = Api::open();
    api.get("/no/such/route").await.err(404, None);
    api.get("/users/1/friends").await.err(404, None);
    api.post("/nothing/here", json!({})).await.err(404, None);

    api.call(Method::DELETE, "/users", None, None, &[]).await.err(405, None);
    api.call(Method::PUT, "/health", Some(&json!({})), None, &[]).await.err(405, None);
    api.call(Method::PATCH, "/urls/1", Some(&json!({})), None, &[]).await.err(405, None);

    let big = "x".repeat(1024 * 1024 + 64 * 1024);
    api.post("/users", json!({"email": "big@example.com", "username": big})).await.err(413, None);
    api.post("/urls", json!({"original_url": "https://example.com/big", "title": big})).await.err(413, None);
    assert!(arr(&api.get("/users").await.ok(200)).is_empty());
}

// ---------------------------------------------------------------------------------------------
// the replaced service's data set
// ---------------------------------------------------------------------------------------------

async fn check_seed_rows(api: &Api) {
    // users
    let u1 = api.get("/users/1").await.ok(200);
    assert_user(&u1);
    assert_eq!(u1["email"], "cobaltriver87@example.com");
    assert_eq!(u1["username"], "cobaltriver87");
    assert!(u1["created_at"].as_str().unwrap().starts_with("2025-05-07T09:27:28"), "{u1}");
    let u200 = api.get("/users/200").await.ok(200);
    assert_eq!(u200["email"], "harborcanyon04@seeded.app");
    assert_eq!(api.get("/users/400").await.ok(200)["username"], "forestuplink10");
    api.get("/users/401").await.err(404, None);
    let last = api.get("/users?page=20&per_page=20").await.ok(200);
    assert_eq!(ids(&last), (381..=400).collect::<Vec<_>>());
    assert!(arr(&api.get("/users?page=21&per_page=20").await.ok(200)).is_empty());

    // urls
    let l1 = api.get("/urls/1").await.ok(200);
    assert_url(&l1);
    assert_eq!(l1["short_code"], "r10UYL");
    assert_eq!(l1["original_url"], "https://relay.cloud/ivory/kernel/1");
    assert_eq!(l1["title"], "Roadmap update garden");
    assert_eq!(l1["user_id"], 1);
    assert_eq!(l1["is_active"], true);
    assert!(l1["created_at"].as_str().unwrap().starts_with("2025-12-02T03:44:06"), "{l1}");
    let l7 = api.get("/urls/7").await.ok(200);
    assert_eq!(l7["short_code"], "vxknqj");
    assert_eq!(l7["is_active"], false);
    assert_eq!(l7["user_id"], 145);
    let l1000 = api.get("/links/1000").await.ok(200);
    assert_eq!(l1000["short_code"], "Cwqzj5");
    assert_eq!(l1000["user_id"], 378);
    assert_eq!(api.get("/urls/2000").await.ok(200)["short_code"], "SvTSCq");
    let r = api.get("/r10UYL").await;
    assert_eq!(r.status, 302, "{}", r.text);
    assert_eq!(r.header("location").as_deref(), Some("https://relay.cloud/ivory/kernel/1"));
    api.get("/vxknqj").await.err(404, None);
    let s = api.get("/SvTSCq+").await.ok(200);
    assert_eq!(s["original_url"], "https://hackstack.io/opal/lagoon/2000");
    assert!(s["click_count"].is_u64());
    assert_eq!(arr(&api.get("/urls?user_id=117&limit=500").await.ok(200)).len(), 12);
    let inactive = api.get("/urls?is_active=false&limit=500").await.ok(200);
    assert_eq!(arr(&inactive).len(), 377);
    assert_ascending(&inactive, "seed inactive urls");
    assert_eq!(ids(&api.get("/urls?limit=1000").await.ok(200)), (1..=500).collect::<Vec<_>>());

    // events
    let e1 = api.get("/events/1").await.ok(200);
    assert_event(&e1);
    assert_eq!(e1["url_id"], 1);
    assert_eq!(e1["user_id"], 1);
    assert_eq!(e1["event_type"], "created");
    assert_eq!(e1["details"], json!({"short_code": "r10UYL", "original_url": "https://relay.cloud/ivory/kernel/1"}));
    let e3422 = api.get("/events/3422").await.ok(200);
    assert_eq!(e3422["url_id"], 1406);
    assert_eq!(e3422["user_id"], 269);
    assert_eq!(e3422["event_type"], "deleted");
    assert_eq!(e3422["details"], json!({"reason": "duplicate"}));
    assert!(e3422["timestamp"].as_str().unwrap().starts_with("2025-07-13T19:43:57"), "{e3422}");
    assert_eq!(arr(&api.get("/events?event_type=deleted&limit=500").await.ok(200)).len(), 216);
    assert_eq!(arr(&api.get("/events?event_type=updated&limit=1000").await.ok(200)).len(), 500);
    assert_eq!(arr(&api.get("/events?url_id=17").await.ok(200)).len(), 3);
    let by_user = api.get("/events?user_id=269&limit=500").await.ok(200);
    assert_eq!(arr(&by_user).len(), 17);
    assert_ascending(&by_user, "seed events of user 269");
}

#[tokio::test]
async fn seed_data_loads_via_bulk_files_users_urls_events_with_counts_400_2000_3422() {
    let api = Api::with_import_dir("open", seed_dir());
    for (path, file, n) in [("/users/bulk", "users.csv", 400), ("/urls/bulk", "urls.csv", 2000), ("/events/bulk", "events.csv", 3422)] {
        let r = api.post(path, json!({"file": file})).await.ok(201);
        assert_eq!(r["count"], n, "{path} {file}: {r}");
    }
    check_seed_rows(&api).await;

    // new writes after the load do not collide with loaded ids or emails
    let u = api.new_user("brand-new@example.com", "brandnew").await;
    assert!(!(1..=400).contains(&id(&u)), "new user id collides with a loaded id: {u}");
    assert_eq!(api.get("/users/1").await.ok(200)["email"], "cobaltriver87@example.com");
    api.post("/users", json!({"email": "cobaltriver87@example.com"})).await.err(409, Some("exists"));
    let l = api.new_url(json!({"original_url": "https://example.com/after-seed", "user_id": 1})).await;
    assert!(!(1..=2000).contains(&id(&l)), "new link id collides with a loaded id: {l}");
    assert_eq!(api.get("/urls/1").await.ok(200)["short_code"], "r10UYL");
    let e = api.post("/events", json!({"url_id": 1, "event_type": "view", "user_id": 1})).await.ok(201);
    assert!(!(1..=3422).contains(&id(&e)), "new event id collides with a loaded id: {e}");
    assert_eq!(api.get("/events/1").await.ok(200)["event_type"], "created");
    // events on a seeded inactive link are refused
    api.post("/events", json!({"url_id": 7, "event_type": "view"})).await.err(400, Some("inactive"));
}

#[tokio::test]
async fn seed_data_loads_via_csv_bodies_in_order_with_counts_400_2000_3422() {
    let api = Api::token();
    let dir = seed_dir();
    for (path, file, n) in [("/users/bulk", "users.csv", 400), ("/urls/bulk", "urls.csv", 2000), ("/events/bulk", "events.csv", 3422)] {
        let csv = std::fs::read_to_string(dir.join(file)).unwrap();
        let r = api.post_csv(Some(ADMIN_TOKEN), path, csv).await.ok(201);
        assert_eq!(r["count"], n, "{path} {file}: {r}");
    }
    check_seed_rows(&api).await;
}
