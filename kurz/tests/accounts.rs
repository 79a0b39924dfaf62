//! Accounts, secrets and personal data, black-box against the real binary: one
//! caller can never get another's result, session or data.

mod support;
use kurz_testkit::http::client;
use serde_json::{json, Value};
use support::*;

async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn register(s: &Server, key: &str, email: &str, password: &str) -> reqwest::RequestBuilder {
    client().post(s.url("/auth/register")).header("Idempotency-Key", key).json(&json!({"email": email, "password": password}))
}

/// The attack of issue #17: a second sign-up under the victim's idempotency key got the
/// victim's user and a session acting as the victim. Now the key is scoped by the
/// e-mail and bound to the request: another e-mail gets its own account, the same
/// e-mail with another password a 422, and only the very same request its replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_sign_up_key_never_hands_out_another_account() {
    let s = Server::token();
    let (st, victim) = send(register(&s, "k1", "victim@x.io", "victim-password")).await;
    assert_eq!(st, 201, "{victim}");
    let victim_id = victim["user"]["id"].as_u64().unwrap();

    // Another e-mail, same key: its own account, its own token.
    let (st, attacker) = send(register(&s, "k1", "attacker@x.io", "attacker-password")).await;
    assert_eq!(st, 201, "{attacker}");
    let attacker_id = attacker["user"]["id"].as_u64().unwrap();
    assert_ne!(attacker_id, victim_id);
    assert_eq!(attacker["user"]["email"], "attacker@x.io");
    let token = attacker["session_token"].as_str().unwrap();
    let (st, body) = send(client().put(s.url(&format!("/users/{victim_id}"))).bearer_auth(token).json(&json!({"username": "pwned"}))).await;
    assert_eq!(st, 403, "the attacker's token acts as the attacker only: {body}");

    // The victim's e-mail with a guessed password, same key: 422, no session.
    let (st, body) = send(register(&s, "k1", "victim@x.io", "guessed-password")).await;
    assert_eq!(st, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    assert!(body.get("session_token").is_none());

    // The very same request is a replay: the same user (its caller knows the password).
    let (st, again) = send(register(&s, "k1", "victim@x.io", "victim-password")).await;
    assert_eq!(st, 201, "{again}");
    assert_eq!(again["user"]["id"].as_u64(), Some(victim_id));
}

async fn user_token(s: &Server, email: &str) -> (u64, String) {
    let (st, b) = send(client().post(s.url("/auth/register")).json(&json!({"email": email, "password": "password-123"}))).await;
    assert_eq!(st, 201, "{b}");
    (b["user"]["id"].as_u64().unwrap(), b["session_token"].as_str().unwrap().to_string())
}

/// Two users sending the same key each get their own link; one user reusing a key with
/// another body gets a 422; the same body, keys reordered and spaced differently, is a
/// replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_are_per_user_and_bound_to_the_request() {
    let s = Server::token();
    let (a, ta) = user_token(&s, "a@x.io").await;
    let (b, tb) = user_token(&s, "b@x.io").await;
    let create = |token: &str, url: &str| {
        client().post(s.url("/urls")).bearer_auth(token).header("Idempotency-Key", "same-key").json(&json!({"original_url": url}))
    };
    let (st, la) = send(create(&ta, "https://a.io/")).await;
    assert_eq!(st, 201, "{la}");
    let (st, lb) = send(create(&tb, "https://b.io/")).await;
    assert_eq!(st, 201, "{lb}");
    assert_ne!(la["id"], lb["id"]);
    assert_eq!((la["user_id"].as_u64(), lb["user_id"].as_u64()), (Some(a), Some(b)));
    assert_eq!(lb["original_url"], "https://b.io/");

    let (st, body) = send(create(&ta, "https://other.io/")).await;
    assert_eq!(st, 422, "{body}");

    // The same JSON, written differently: the same request.
    let raw = r#"{ "original_url" :  "https://a.io/" }"#;
    let r = client()
        .post(s.url("/urls"))
        .bearer_auth(&ta)
        .header("Idempotency-Key", "same-key")
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["id"], la["id"]);

    // A key is per route too: the same key on an update is a new command.
    let id = la["id"].as_u64().unwrap();
    let (st, up) = send(
        client().put(s.url(&format!("/urls/{id}"))).bearer_auth(&ta).header("Idempotency-Key", "same-key").json(&json!({"title": "t1"})),
    )
    .await;
    assert_eq!(st, 200, "{up}");
    let (st, body) = send(
        client().put(s.url(&format!("/urls/{id}"))).bearer_auth(&ta).header("Idempotency-Key", "same-key").json(&json!({"title": "t2"})),
    )
    .await;
    assert_eq!(st, 422, "{body}");
    let link: Value = client().get(s.url(&format!("/urls/{id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(link["title"], "t1", "the refused request changed nothing");
}

/// A bulk load's key is bound to its CSV: the same key with another file is a 422 and
/// loads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_key_is_bound_to_its_file() {
    let s = Server::open();
    let load = |csv: &'static str| {
        client().post(s.url("/users/bulk")).header("content-type", "text/csv").header("Idempotency-Key", "bulk-k").body(csv)
    };
    let (st, r) = send(load("email\nb1@x.io\nb2@x.io\n")).await;
    assert_eq!((st, r["count"].as_u64()), (201, Some(2)), "{r}");
    let (st, r) = send(load("email\nb1@x.io\nb2@x.io\n")).await;
    assert_eq!((st, r["count"].as_u64()), (201, Some(2)), "a replay: {r}");
    let (st, r) = send(load("email\nc1@x.io\nc2@x.io\n")).await;
    assert_eq!(st, 422, "{r}");
    let users: Vec<Value> = client().get(s.url("/users")).send().await.unwrap().json().await.unwrap();
    assert_eq!(users.len(), 2, "{users:?}");
}

/// The data directory and what kurz writes in it are its user's alone, and a
/// pre-existing open directory is tightened at start.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::token();
    if s.split.is_some() {
        return assert!(s.split.is_some(), "the split deployment keeps no embedded files to check");
    }
    std::fs::set_permissions(s.data.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (st, b) = send(client().post(s.url("/urls")).bearer_auth(ADMIN_TOKEN).json(&json!({"original_url": "https://p.io"}))).await;
    assert_eq!(st, 201, "{b}");
    let mut checked = 0;
    let mut stack = vec![s.data.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            if e.file_type().unwrap().is_dir() {
                assert_eq!(mode, 0o700, "{}", e.path().display());
                stack.push(e.path());
            } else {
                assert_eq!(mode, 0o600, "{}", e.path().display());
                checked += 1;
            }
        }
    }
    // The store and the secret at least, and the log when it is embedded.
    let least = if s.kafka.is_some() { 2 } else { 3 };
    assert!(checked >= least, "at least {least} files: {checked}");

    // A data directory left open by an older version is closed at start.
    let old = tempfile::tempdir().unwrap();
    let dir = old.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("stray"), b"x").unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("stray"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kurz"))
        .args(["serve"])
        .env("KURZ_DATA_DIR", &dir)
        .env("KURZ_HTTP_ADDR", "256.0.0.1:0") // stops right after the data directory is set up
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(dir.join("stray")).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A short secret or admin token stops the start with exit code 2 and a message naming
/// the setting; nothing is served.
#[test]
fn a_short_secret_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [("KURZ_SECRET", "qq7"), ("KURZ_ADMIN_TOKEN", "one-letter-is-not-a-token")] {
        for role in ["serve", "command-api", "query-edge"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_kurz"))
                .arg(role)
                .env("KURZ_DATA_DIR", dir.path())
                .env("KURZ_AUTH", "token")
                .env("KURZ_HTTP_ADDR", "127.0.0.1:0")
                .env_remove("KURZ_SECRET")
                .env_remove("KURZ_ADMIN_TOKEN")
                .env(name, value)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{role} with a short {name}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(name) && err.contains("at least 32"), "{role}: {err}");
            assert!(!err.contains(value), "the message does not repeat the secret: {err}");
        }
    }
}

/// Token mode lists users without their e-mail addresses, except to the admin token;
/// open mode keeps the contract's listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emails_are_the_admins_to_read_in_token_mode() {
    let s = Server::token();
    let (id, token) = user_token(&s, "private@x.io").await;
    for (who, auth) in [("anonymous", None), ("a user", Some(token.as_str())), ("a wrong token", Some("nope"))] {
        for path in ["/users".to_string(), format!("/users/{id}")] {
            let mut rb = client().get(s.url(&path));
            if let Some(t) = auth {
                rb = rb.bearer_auth(t);
            }
            let (st, body) = send(rb).await;
            assert_eq!(st, 200, "{who} {path}: {body}");
            assert!(!body.to_string().contains("private@x.io"), "{who} {path}: {body}");
        }
    }
    let (_, one) = send(client().get(s.url(&format!("/users/{id}"))).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(one["email"], "private@x.io");
    let (_, all) = send(client().get(s.url("/users")).bearer_auth(ADMIN_TOKEN)).await;
    assert!(all.to_string().contains("private@x.io"), "{all}");

    let open = Server::open();
    let (st, u) = send(client().post(open.url("/users")).json(&json!({"email": "listed@x.io"}))).await;
    assert_eq!(st, 201, "{u}");
    let (_, all) = send(client().get(open.url("/users"))).await;
    assert!(all.to_string().contains("listed@x.io"), "open mode lists e-mails: {all}");
}

async fn as_user(s: &Server, token: &str, url: &str) -> u16 {
    client().post(s.url("/urls")).bearer_auth(token).json(&json!({"original_url": url})).send().await.unwrap().status().as_u16()
}

/// A logout ends the session it is called with, and only that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_ends_its_session() {
    let s = Server::token();
    let (_, t1) = user_token(&s, "out@x.io").await;
    let (st, login) = send(client().post(s.url("/auth/login")).json(&json!({"email": "out@x.io", "password": "password-123"}))).await;
    assert_eq!(st, 200, "{login}");
    let t2 = login["session_token"].as_str().unwrap().to_string();
    assert!(t1.starts_with("v2.") && t2.starts_with("v2."), "tokens carry a key id: {t1}");
    assert_eq!(as_user(&s, &t1, "https://before.io").await, 201);

    let (st, body) = send(client().post(s.url("/auth/logout")).bearer_auth(&t1)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(as_user(&s, &t1, "https://after.io").await, 401, "the logged-out token");
    let (st, _) = send(client().post(s.url("/auth/logout")).bearer_auth(&t1)).await;
    assert_eq!(st, 401, "a second logout of it");
    assert_eq!(as_user(&s, &t2, "https://other-session.io").await, 201, "the user's other session lives on");

    // Neither the admin token nor nonsense is a session.
    let (st, body) = send(client().post(s.url("/auth/logout")).bearer_auth(ADMIN_TOKEN)).await;
    assert_eq!(st, 400, "{body}");
    let (st, _) = send(client().post(s.url("/auth/logout"))).await;
    assert_eq!(st, 401);
    let (st, _) = send(client().post(s.url("/auth/logout")).bearer_auth("v2.00000000.AAAA.BBBB")).await;
    assert_eq!(st, 401);
}

/// Changing the password (with the current one) ends every older session and hands the
/// caller a new one; the new password signs in, the old one no longer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_every_older_session() {
    let s = Server::token();
    let (id, t1) = user_token(&s, "pw@x.io").await;
    let (_, other) = send(client().post(s.url("/auth/login")).json(&json!({"email": "pw@x.io", "password": "password-123"}))).await;
    let t2 = other["session_token"].as_str().unwrap().to_string();
    let change = |token: &str, body: Value| client().put(s.url(&format!("/users/{id}"))).bearer_auth(token).json(&body);

    let (st, body) = send(change(&t1, json!({"password": "new-password-1"}))).await;
    assert_eq!(st, 400, "the current password is needed: {body}");
    let (st, body) = send(change(&t1, json!({"password": "new-password-1", "current_password": "wrong-guess"}))).await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = send(change(&t1, json!({"password": "short", "current_password": "password-123"}))).await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(as_user(&s, &t1, "https://still.io").await, 201, "refused changes end nothing");

    let (st, body) = send(change(&t1, json!({"password": "new-password-1", "current_password": "password-123"}))).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.get("password_hash").is_none() && !body.to_string().contains("argon2"), "{body}");
    let t3 = body["session_token"].as_str().expect("a new session for the caller").to_string();
    assert_eq!(as_user(&s, &t1, "https://old1.io").await, 401);
    assert_eq!(as_user(&s, &t2, "https://old2.io").await, 401);
    assert_eq!(as_user(&s, &t3, "https://new.io").await, 201);

    let login = |pw: &str| client().post(s.url("/auth/login")).json(&json!({"email": "pw@x.io", "password": pw}));
    assert_eq!(send(login("password-123")).await.0, 401);
    assert_eq!(send(login("new-password-1")).await.0, 200);

    // The admin may set a password outright; the user's sessions end with it.
    let (st, body) = send(change(ADMIN_TOKEN, json!({"password": "admin-set-pass"}))).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.get("session_token").is_none(), "the admin gets no session of the user");
    assert_eq!(as_user(&s, &t3, "https://new2.io").await, 401);
    assert_eq!(send(login("admin-set-pass")).await.0, 200);
}

/// A query edge on a managed Redis (TLS, a password in the URL) serves redirects
/// through it, and its logs name the cache without the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_password_never_reaches_the_logs() {
    use std::io::BufRead;
    const PASSWORD: &str = "cache-password-never-logged-0123";
    let redis = kurz_testkit::RedisServer::start_tls(PASSWORD);
    let data = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kurz"))
        .arg("query-edge")
        .env("KURZ_DATA_DIR", data.path())
        .env("KURZ_HTTP_ADDR", "127.0.0.1:0")
        .env("KURZ_CACHE_URL", redis.url())
        .env("KURZ_LOG", "debug,h2=info,hyper=info,rustls=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut logs = Vec::new();
    let addr = loop {
        let line = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("query-edge did not start");
        logs.push(line.clone());
        if line.contains("\"event\":\"listening\"") {
            let v: Value = serde_json::from_str(&line).unwrap();
            break v["addr"].as_str().unwrap().to_string();
        }
    };
    // A miss goes through the cache (an answer, not an error): the TLS link works.
    let r = client().get(format!("http://{addr}/nosuch1")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let _ = child.kill();
    let _ = child.wait();
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
        logs.push(l);
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let all = logs.join("\n") + &stderr;
    assert!(!all.contains(PASSWORD), "the password is in the logs:\n{all}");
    assert!(all.contains("rediss://:***@localhost"), "the cache is named, redacted:\n{all}");
}

/// API keys: made by the user's session, shown once, stored as a hash; a write key
/// writes as the user, a read key cannot write (403), a revoked key answers 401; keys
/// cannot make keys; another user's keys are out of reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_scoped_shown_once_and_revocable() {
    let s = Server::token();
    let (id, session) = user_token(&s, "keys@x.io").await;
    let (other_id, other_session) = user_token(&s, "other@x.io").await;
    let keys = s.url(&format!("/users/{id}/api-keys"));
    let make = |token: &str, body: Value| client().post(&keys).bearer_auth(token).json(&body);

    let (st, w) = send(make(&session, json!({"name": "deploy bot", "scope": "write"}))).await;
    assert_eq!(st, 201, "{w}");
    let write_key = w["key"].as_str().unwrap().to_string();
    assert!(write_key.starts_with(&format!("kurz_{id}_")), "{write_key}");
    assert_eq!((w["name"].as_str(), w["scope"].as_str()), (Some("deploy bot"), Some("write")));
    assert!(w.get("hash").is_none(), "{w}");
    let (st, r) = send(make(&session, json!({"name": "dashboard"}))).await;
    assert_eq!((st, r["scope"].as_str()), (201, Some("read")), "read is the default: {r}");
    let read_key = r["key"].as_str().unwrap().to_string();

    // Bad requests.
    for (body, want) in [
        (json!({}), 400),
        (json!({"name": ""}), 400),
        (json!({"name": "x", "scope": "admin"}), 400),
        (json!({"name": "n".repeat(65)}), 400),
    ] {
        assert_eq!(send(make(&session, body.clone())).await.0, want, "{body}");
    }
    assert_eq!(send(make(&other_session, json!({"name": "theirs"}))).await.0, 403, "another user's keys");
    assert_eq!(send(make(&write_key, json!({"name": "child"}))).await.0, 403, "a key cannot make keys");

    // A write key writes as its user; a read key cannot write.
    let create = |token: &str| client().post(s.url("/urls")).bearer_auth(token).json(&json!({"original_url": "https://bot.io"}));
    let (st, link) = send(create(&write_key)).await;
    assert_eq!(st, 201, "{link}");
    assert_eq!(link["user_id"].as_u64(), Some(id));
    let (st, body) = send(create(&read_key)).await;
    assert_eq!(st, 403, "{body}");

    // Listed without secrets or hashes, with last use.
    let (st, list) = send(client().get(&keys).bearer_auth(&read_key)).await;
    assert_eq!(st, 200, "a read key may list its user's keys: {list}");
    let text = list.to_string();
    assert!(!text.contains(&write_key) && !text.contains(&read_key) && !text.contains("hash"), "{text}");
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (st, _) = send(client().get(s.url(&format!("/users/{other_id}/api-keys"))).bearer_auth(&read_key)).await;
    assert_eq!(st, 403);
    assert_eq!(send(client().get(&keys)).await.0, 401);

    // Revoked: 401 from then on.
    let write_id = w["id"].as_str().unwrap();
    let (st, body) = send(client().delete(format!("{keys}/{write_id}")).bearer_auth(&session)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(send(create(&write_key)).await.0, 401);
    assert_eq!(send(client().delete(format!("{keys}/{write_id}")).bearer_auth(&session)).await.0, 404);
    // A forged key (right shape, wrong secret) is 401.
    let forged = format!("{}{}", &read_key[..read_key.len() - 4], "AAAA");
    assert_eq!(send(client().get(&keys).bearer_auth(&forged)).await.0, 401);
    // Deleting the user ends its keys.
    assert_eq!(send(client().delete(s.url(&format!("/users/{id}"))).bearer_auth(&session)).await.0, 200);
    assert_eq!(send(client().get(&keys).bearer_auth(&read_key)).await.0, 401);
}

/// `kurz serve` on `data` with `env`, until dropped; its address.
struct Proc(std::process::Child, String);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &std::path::Path, env: &[(&str, &str)]) -> Proc {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kurz"));
    cmd.arg("serve")
        .env("KURZ_DATA_DIR", data)
        .env("KURZ_HTTP_ADDR", "127.0.0.1:0")
        .env("KURZ_AUTH", "token")
        .env("KURZ_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KURZ_PARTITIONS", "2")
        .env("KURZ_CLICK_PARTITIONS", "1")
        .env_remove("KURZ_SECRET")
        .env_remove("KURZ_PREVIOUS_SECRETS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    // Drained to the end, so the process never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if line.contains("\"event\":\"listening\"") {
                let v: Value = serde_json::from_str(&line).unwrap();
                let _ = tx.send(v["addr"].as_str().unwrap().to_string());
            }
        }
    });
    let addr = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("kurz did not start listening");
    Proc(child, format!("http://{addr}"))
}

/// Rotating `KURZ_SECRET`: with the old secret in `KURZ_PREVIOUS_SECRETS`, sessions it
/// signed still work and new ones are signed with the new secret; once the old secret
/// is dropped from the list, its sessions end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_rotates_without_signing_everyone_out() {
    const OLD: &str = "old-secret-0123456789abcdef-0123456789";
    const NEW: &str = "new-secret-0123456789abcdef-0123456789";
    let data = tempfile::tempdir().unwrap();
    let write = |base: &str, token: &str| {
        client().post(format!("{base}/urls")).bearer_auth(token).json(&json!({"original_url": "https://rotate.io"})).send()
    };
    let old_token = {
        let p = serve(data.path(), &[("KURZ_SECRET", OLD)]);
        let (st, b) =
            send(client().post(format!("{}/auth/register", p.1)).json(&json!({"email": "rot@x.io", "password": "password-123"}))).await;
        assert_eq!(st, 201, "{b}");
        b["session_token"].as_str().unwrap().to_string()
    };
    let new_token = {
        let p = serve(data.path(), &[("KURZ_SECRET", NEW), ("KURZ_PREVIOUS_SECRETS", &format!("{OLD},{}", "x".repeat(40)))]);
        assert_eq!(write(&p.1, &old_token).await.unwrap().status(), 201, "the old secret's session still verifies");
        let (st, b) =
            send(client().post(format!("{}/auth/login", p.1)).json(&json!({"email": "rot@x.io", "password": "password-123"}))).await;
        assert_eq!(st, 200, "{b}");
        let t = b["session_token"].as_str().unwrap().to_string();
        assert_ne!(t.split('.').nth(1), old_token.split('.').nth(1), "a new key id signs new sessions");
        t
    };
    let p = serve(data.path(), &[("KURZ_SECRET", NEW)]);
    assert_eq!(write(&p.1, &old_token).await.unwrap().status(), 401, "the dropped secret's sessions end");
    assert_eq!(write(&p.1, &new_token).await.unwrap().status(), 201);
}

/// Every record of every kurz topic, through the log port (for a log served by tansu).
async fn topic_bytes(url: &str) -> Vec<Vec<u8>> {
    use kurz_schemas::topics;
    let dir = tempfile::tempdir().unwrap();
    let log = kurz_storage::open_log(url, dir.path()).unwrap();
    let mut out = Vec::new();
    for topic in [topics::COMMANDS, topics::EVENTS, topics::CLICKS, topics::CONTROL, topics::DEAD_LETTERS] {
        let Ok(n) = log.partitions(topic).await else { continue };
        for p in 0..n {
            let mut offset = 0;
            loop {
                let recs = log.read(topic, p, offset, 1000).await.unwrap();
                let Some(last) = recs.last() else { break };
                offset = last.offset + 1;
                for r in recs {
                    let mut bytes = r.payload.to_vec();
                    for (k, v) in &r.headers {
                        bytes.extend_from_slice(k.as_bytes());
                        bytes.extend_from_slice(v);
                    }
                    out.push(bytes);
                }
            }
        }
    }
    out
}

/// The files of an embedded log: everything in the data directory but the read store
/// (whose user rows hold personal data until their deletion, by design) and the vault.
fn log_file_bytes(data: &std::path::Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if !name.starts_with("store") && name != "vault.redb" {
                out.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Issue #17's erasure. A user signs up, renames itself, changes its password, makes a
/// link and an API key, and is deleted. Afterwards no record of the log (the embedded
/// log's files, or every topic on tansu) holds its e-mail, its name or any argon2id
/// hash. A replay then verifies with no difference, and the user's link still
/// redirects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_users_personal_data_is_gone_from_the_log_and_replay_still_verifies() {
    let s = Server::token();
    let email = "erase-me@shred.example";
    let name = "shreddable-name-7c1";
    let (st, b) = send(client().post(s.url("/auth/register")).json(&json!({"email": email, "password": "first-password-1"}))).await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(b["user"]["email"], email, "the answer is whole: {b}");
    let id = b["user"]["id"].as_u64().unwrap();
    let token = b["session_token"].as_str().unwrap().to_string();
    let me = s.url(&format!("/users/{id}"));
    let (st, b) = send(client().put(&me).bearer_auth(&token).json(&json!({"username": name}))).await;
    assert_eq!((st, b["username"].as_str(), b["email"].as_str()), (200, Some(name), Some(email)), "{b}");
    let (st, b) =
        send(client().put(&me).bearer_auth(&token).json(&json!({"password": "second-password-2", "current_password": "first-password-1"})))
            .await;
    assert_eq!(st, 200, "{b}");
    let token = b["session_token"].as_str().unwrap().to_string();
    let (st, link) =
        send(client().post(s.url("/urls")).bearer_auth(&token).json(&json!({"original_url": "https://kept.example/after"}))).await;
    assert_eq!(st, 201, "{link}");
    let code = link["short_code"].as_str().unwrap().to_string();
    let (st, b) = send(client().post(format!("{me}/api-keys")).bearer_auth(&token).json(&json!({"name": "ci", "scope": "read"}))).await;
    assert_eq!(st, 201, "{b}");
    // The data opens for kurz while the user lives: it signs in.
    let login = || client().post(s.url("/auth/login")).json(&json!({"email": email, "password": "second-password-2"}));
    assert_eq!(send(login()).await.0, 200);

    assert_eq!(send(client().delete(&me).bearer_auth(&token)).await.0, 200);
    assert_eq!(send(login()).await.0, 401);

    let records = match (&s.kafka, &s.split) {
        (Some(k), _) => topic_bytes(&k.url()).await,
        (None, Some(sp)) => topic_bytes(&sp.tansu.url()).await,
        (None, None) => log_file_bytes(s.data.path()),
    };
    let all: Vec<u8> = records.concat();
    assert!(contains(&all, "\"sealed\""), "the user's records are there, sealed ({} bytes read)", all.len());
    for secret in [email, name, "argon2id", "$argon2"] {
        assert!(!contains(&all, secret), "{secret} is readable in the log");
    }

    // The link outlives its owner and still redirects.
    let r = client().get(s.url(&format!("/{code}"))).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "https://kept.example/after");

    // A replay reads the user as erased and deletes it again: the rebuilt read model
    // is the live one.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kurz"))
        .args(["replay", "--all", "--verify", "--url", &s.base, "--json"])
        .env("KURZ_DATA_DIR", s.data.path())
        .env("KURZ_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KURZ_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rep: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rep["differences"], json!([]), "{rep}");
    assert!(rep["records"].as_u64().unwrap() > 0, "{rep}");
    let r = client().get(s.url(&format!("/{code}"))).send().await.unwrap();
    assert_eq!(r.status(), 302, "after the replay too");
    assert_eq!(send(client().get(&me).bearer_auth(ADMIN_TOKEN)).await.0, 404);
}
