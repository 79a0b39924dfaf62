//! The HTTP edge under abuse, black-box against the real binary: requests that would
//! cost the server memory, CPU or connections are refused before they do.

mod support;
use kurz_testkit::http::{client, json_of};
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on a wait that must end by itself, so a broken limit fails instead of
/// hanging. Not a measure of speed.
const BOUND: Duration = Duration::from_secs(30);

async fn head_of(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(BOUND, s.read(&mut chunk)).await.expect("an answer before any body byte was sent").unwrap();
        assert!(n > 0, "closed without an answer: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Each write route answers a request without a token (or with a wrong one) from its
/// head alone: the 401 arrives while the client has sent none of the 60 MB it
/// announced, so no body is buffered for an unauthenticated caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_a_token_are_refused_before_the_body_is_read() {
    let s = Server::token();
    let addr = s.base.trim_start_matches("http://").to_string();
    let routes = [
        ("POST", "/urls/bulk", "text/csv", ""),
        ("POST", "/users/bulk", "text/csv", "Authorization: Bearer wrong\r\n"),
        ("POST", "/events/bulk", "application/json", ""),
        ("POST", "/urls", "application/json", ""),
        ("PUT", "/urls/1", "application/json", "Authorization: Bearer v1.AAAA.BBBB\r\n"),
        ("POST", "/users", "application/json", ""),
        ("POST", "/events", "application/json", ""),
        ("POST", "/admin/replay", "application/json", ""),
    ];
    for (method, path, ctype, auth) in routes {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {ctype}\r\n{auth}content-length: 62914560\r\n\r\n");
        c.write_all(head.as_bytes()).await.unwrap();
        let answer = head_of(&mut c).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{method} {path}: {answer}");
        assert!(answer.contains("\"error\""), "a JSON message: {answer}");
    }
    // The server is unharmed and a real write still works.
    let r = client()
        .post(s.url("/urls"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"original_url": "https://ok.io"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// A non-JSON body on a JSON route is refused from the head too (415), whoever sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_is_refused_before_its_body_is_read() {
    let s = Server::token();
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut c = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /urls HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 62914560\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let answer = head_of(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer}");
}

fn with_env(auth: &'static str, env: &[(&str, &str)]) -> Server {
    Server::start(Opts { auth, extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..Opts::default() })
}

async fn login(s: &Server, email: &str, password: &str, xff: Option<&str>) -> reqwest::Response {
    let mut rb = client().post(s.url("/auth/login")).json(&serde_json::json!({"email": email, "password": password}));
    if let Some(x) = xff {
        rb = rb.header("x-forwarded-for", x);
    }
    rb.send().await.unwrap()
}

/// 300 rapid sign-ins from one address, 50 at a time: the first burst is answered (401:
/// unknown accounts), the rest get 429 with `Retry-After` and the `RateLimit` headers,
/// none of them runs a password hash, and each refusal is held until the allowance
/// returns (at most a second), so a client that ignores `Retry-After` gains nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_logins_from_one_address_get_429() {
    use futures::stream::{self, StreamExt};
    let s = Server::open();
    let started = std::time::Instant::now();
    let answers: Vec<(u16, reqwest::header::HeaderMap, String)> = stream::iter(0..300)
        .map(|i| {
            let s = &s;
            async move {
                let r = login(s, &format!("nobody{i}@x.io"), "whatever-password", None).await;
                (r.status().as_u16(), r.headers().clone(), r.text().await.unwrap())
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let count = |f: &dyn Fn(&(u16, reqwest::header::HeaderMap, String)) -> bool| answers.iter().filter(|a| f(a)).count();
    let hashed = count(&|a| a.0 == 401);
    // Let through by the limit, but more at once than the hashing pool queues.
    let pool_full = count(&|a| a.0 == 429 && a.2.contains("at once"));
    let limited = count(&|a| a.0 == 429 && a.2.contains("auth limit"));
    assert_eq!(hashed + pool_full + limited, 300, "{answers:?}");
    // The burst of 30, and 2 a second while the flood ran.
    let passed = hashed + pool_full;
    assert!(passed >= 30 && (passed as f64) <= 30.0 + 2.0 * elapsed + 2.0, "{passed} let through in {elapsed:.1} s");
    assert!(hashed >= 1 && limited >= 200, "{hashed} hashed, {limited} refused");
    let (_, headers, body) = answers.iter().find(|a| a.0 == 429 && a.2.contains("auth limit")).unwrap();
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert_eq!(headers["ratelimit-policy"], "\"auth\";q=30;w=15");
    assert!(headers["ratelimit"].to_str().unwrap().starts_with("\"auth\";r=0;t="));
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(body["error"].as_str().unwrap().contains("too many requests"), "{body}");
    // Other routes are not affected.
    assert_eq!(client().get(s.url("/health")).send().await.unwrap().status(), 200);
}

/// Failed sign-ins lock the account, growing; the right password does not get in while
/// it is locked (no hash is tried), and gets in once the lock has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_lock_the_account_for_a_growing_time() {
    let s = Server::open();
    let reg = client()
        .post(s.url("/auth/register"))
        .json(&serde_json::json!({"email": "victim@x.io", "password": "right-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status(), 201);
    for _ in 0..5 {
        assert_eq!(login(&s, "victim@x.io", "wrong-password", None).await.status(), 401);
    }
    let locked = login(&s, "VICTIM@x.io", "right-password", None).await;
    assert_eq!(locked.status(), 429, "locked after 5 failures, whatever the spelling of the address");
    assert!(locked.headers().contains_key("retry-after"));
    assert!(locked.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("this account"));
    // Another account is not affected.
    assert_eq!(login(&s, "other@x.io", "whatever-pass", None).await.status(), 401);
    // The first lock is 1 s.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(login(&s, "victim@x.io", "right-password", None).await.status(), 200);
    // Success cleared the count: five more failures are needed to lock again.
    assert_eq!(login(&s, "victim@x.io", "wrong-password", None).await.status(), 401);
    assert_eq!(login(&s, "victim@x.io", "right-password", None).await.status(), 200);
}

/// Behind a trusted proxy the client is the rightmost address the proxy did not vouch
/// for: addresses a client writes into the header itself change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_comes_from_a_trusted_proxy_only() {
    let s = with_env(
        "open",
        &[("KURZ_RATE_AUTH", "0.01:2"), ("KURZ_CLIENT_IP_HEADER", "X-Forwarded-For"), ("KURZ_TRUSTED_PROXIES", "127.0.0.0/8")],
    );
    let st = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(st(login(&s, "a@x.io", "password-1", Some("198.51.100.1")).await), 401);
    assert_eq!(st(login(&s, "b@x.io", "password-1", Some("198.51.100.1")).await), 401);
    assert_eq!(st(login(&s, "c@x.io", "password-1", Some("198.51.100.1")).await), 429, "the burst of 2 is spent");
    // A client that writes another address in front is still itself.
    assert_eq!(st(login(&s, "d@x.io", "password-1", Some("203.0.113.7, 198.51.100.1")).await), 429);
    // Another client behind the same proxy has its own allowance.
    assert_eq!(st(login(&s, "e@x.io", "password-1", Some("198.51.100.2")).await), 401);
}

/// Per-user write limits (the admin token is exempt), redirect limits when set, and
/// one setting that turns every limit off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_redirect_limits_apply_where_set_and_one_setting_turns_all_off() {
    // The address allows 4 writes: the user's 4th meets its own limit first, and the
    // admin's writes (exempt from both) go through past the address's allowance.
    let s = with_env("token", &[("KURZ_RATE_USER", "0.01:3"), ("KURZ_RATE_WRITES", "0.01:4"), ("KURZ_RATE_REDIRECTS", "0.01:5")]);
    let reg = json_of(client().post(s.url("/auth/register")).json(&serde_json::json!({"email": "u@x.io", "password": "password-u"}))).await;
    let token = reg["session_token"].as_str().unwrap().to_string();
    let create = |tok: String| {
        let url = s.url("/urls");
        async move { client().post(url).bearer_auth(tok).json(&serde_json::json!({"original_url": "https://ok.io"})).send().await.unwrap() }
    };
    let mut codes = Vec::new();
    for _ in 0..3 {
        let r = create(token.clone()).await;
        assert_eq!(r.status(), 201);
        codes.push(r.json::<serde_json::Value>().await.unwrap()["short_code"].as_str().unwrap().to_string());
    }
    let r = create(token.clone()).await;
    assert_eq!(r.status(), 429, "the user's burst of 3 is spent");
    assert!(r.headers()["ratelimit-policy"].to_str().unwrap().starts_with("\"user\""));
    for _ in 0..5 {
        assert_eq!(create(ADMIN_TOKEN.to_string()).await.status(), 201, "the admin token is exempt from user and address limits");
    }
    let nofollow = client();
    for _ in 0..5 {
        assert_eq!(nofollow.get(s.url(&format!("/{}", codes[0]))).send().await.unwrap().status(), 302);
    }
    let r = nofollow.get(s.url(&format!("/{}", codes[0]))).send().await.unwrap();
    assert_eq!(r.status(), 429, "redirects past their limit");
    assert!(r.headers().contains_key("retry-after"));

    let off = with_env("open", &[("KURZ_RATE_LIMITS", "off"), ("KURZ_RATE_AUTH", "0.01:1"), ("KURZ_RATE_REDIRECTS", "0.01:1")]);
    for i in 0..8 {
        assert_eq!(login(&off, &format!("n{i}@x.io"), "password-1", None).await.status(), 401, "limits are off");
    }
}

/// The sum of every `name{…}` sample on `/metrics`.
async fn metric_sum(s: &Server, name: &str) -> f64 {
    let text = client().get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Paths that cannot be a short code are answered 404 without a cache or store lookup,
/// so 2,000 odd paths leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_cannot_be_codes_never_reach_the_cache() {
    let s = Server::open();
    let c = client();
    assert_eq!(c.get(s.url("/no-such-code")).send().await.unwrap().status(), 404);
    let before = metric_sum(&s, "kurz_cache_lookups_total").await;
    assert!(before >= 1.0, "a real code's lookup is counted: {before}");
    for i in 0..2_000 {
        let odd = format!("/{}{i}", "x".repeat(100));
        let r = c.get(s.url(&odd)).send().await.unwrap();
        assert_eq!(r.status(), 404);
        if i == 0 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(body["error"].is_string());
        }
    }
    for odd in ["/a.b", "/%E2%9C%93", "/abc%2Fdef"] {
        assert_eq!(c.get(s.url(odd)).send().await.unwrap().status(), 404, "{odd}");
    }
    assert_eq!(metric_sum(&s, "kurz_cache_lookups_total").await, before, "no odd path was looked up");
}

/// A bulk load past the row limit is refused whole before any row loads: the CSV is
/// checked as a stream before it is submitted, so nothing is half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_past_the_row_limit_loads_nothing() {
    let s = Server::token();
    let rows = kurz_schemas::limits::MAX_BULK_ROWS + 1;
    let mut csv = String::with_capacity(rows * 16 + 8);
    csv.push_str("email\n");
    for i in 0..rows {
        csv.push_str(&format!("u{i}@x.io\n"));
    }
    let r = client().post(s.url("/users/bulk")).bearer_auth(ADMIN_TOKEN).header("content-type", "text/csv").body(csv).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("at most 250000 rows"), "{body}");
    let users: Vec<serde_json::Value> = client().get(s.url("/users")).send().await.unwrap().json().await.unwrap();
    assert!(users.is_empty(), "no row of a refused load is written");
    // A load within the limit streams through in chunks and reports its count.
    let mut ok = String::from("email,username\n");
    for i in 0..1_234 {
        ok.push_str(&format!("ok{i}@x.io,user{i}\n"));
    }
    ok.push_str(&format!("bad-email,{}\n", "x"));
    ok.push_str(&format!("long@x.io,{}\n", "u".repeat(65)));
    let r = json_of(client().post(s.url("/users/bulk")).bearer_auth(ADMIN_TOKEN).header("content-type", "text/csv").body(ok)).await;
    assert_eq!(r["count"], 1_234, "{r}");
    assert_eq!(r["skipped"], 2, "{r}");
    let problems = r["problems"].to_string();
    assert!(problems.contains("row 1235") && problems.contains("row 1236: username"), "{problems}");
}

/// A deny-listed host is refused on create, update, `/shorten` and bulk loads, and each
/// refusal is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_listed_hosts_are_refused_everywhere_a_target_enters() {
    let dir = tempfile::tempdir().unwrap();
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "# phishing kits\nevil.example\n").unwrap();
    let s = with_env("open", &[("KURZ_DENY_HOSTS", deny.to_str().unwrap())]);
    let c = client();
    let before = metric_sum(&s, "kurz_target_rejections_total").await;
    let r = c.post(s.url("/urls")).json(&serde_json::json!({"original_url": "https://login.evil.example/x"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("not allowed"));
    let r = c.post(s.url("/shorten")).json(&serde_json::json!({"url": "https://EVIL.example/"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let ok = json_of(c.post(s.url("/urls")).json(&serde_json::json!({"original_url": "https://fine.example/"}))).await;
    let id = ok["id"].as_u64().unwrap();
    let r = c.put(s.url(&format!("/urls/{id}"))).json(&serde_json::json!({"original_url": "https://evil.example/"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let csv = "short_code,original_url\nfine1,https://fine.example/1\nbad1,https://evil.example/2\n";
    let r = json_of(c.post(s.url("/urls/bulk")).header("content-type", "text/csv").body(csv)).await;
    assert_eq!((r["count"].as_u64(), r["skipped"].as_u64()), (Some(1), Some(1)), "{r}");
    assert!(r["problems"][0].as_str().unwrap().contains("not allowed"), "{r}");
    assert_eq!(metric_sum(&s, "kurz_target_rejections_total").await - before, 4.0);
    // The stored target is the canonical form.
    let link = json_of(c.get(s.url(&format!("/urls/{id}")))).await;
    assert_eq!(link["original_url"], "https://fine.example/");
}
