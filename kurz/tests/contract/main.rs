//! Black-box HTTP contract tests for kurz: every endpoint, status code and message rule of
//! `../shared/api-contract.md`, exercised over real HTTP against the real `kurz` binary.

#[path = "../support/mod.rs"]
mod support;
use support::*;

use kurz_testkit::http::{self, Resp};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

mod auth;
mod bulk;
mod domains;
mod errors;
mod events;
mod health;
mod idempotency;
mod link_options;
mod orphans;
mod redirects;
mod urls;
mod users;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// The contract suite's client: the shared test client on the server under test, plus
/// the helpers below.
struct Api {
    srv: Server,
    client: http::Api,
}

impl std::ops::Deref for Api {
    type Target = http::Api;
    fn deref(&self) -> &http::Api {
        &self.client
    }
}

impl Api {
    fn new(srv: Server) -> Api {
        let client = http::Api::new(srv.base.clone());
        Api { srv, client }
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
