//! Register/login and the two access modes (open and token).

use super::*;

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
            api.http()
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
