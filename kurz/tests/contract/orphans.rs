//! Orphan visits (issue #20, item 8): `/`, unknown codes and expired links are answered
//! 404, recorded in the clicks topic as orphan visits, never counted on a link, and
//! counted per kind in `GET /visits/orphan` (the admin's in token mode).

use super::*;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

fn kinds(v: &Value) -> (u64, u64, u64) {
    let k = &v["by_kind"];
    (k["base"].as_u64().unwrap(), k["not_found"].as_u64().unwrap(), k["expired"].as_u64().unwrap())
}

/// The orphan visits the black-box requests below make, and what they count.
async fn visit_orphans(api: &Api, expired_code: &str) {
    let ua = [("user-agent", FIREFOX)];
    // Recorded, not counted: a bot and a HEAD request (sent first, on the same code as
    // a counted visit, so they are applied before it).
    api.call(Method::GET, "/nonexistent1", None, None, &[("user-agent", "Googlebot/2.1 (+http://www.google.com/bot.html)")])
        .await
        .err(404, None);
    let head = api.call(Method::HEAD, "/nonexistent1", None, None, &ua).await;
    assert_eq!(head.status, 404);
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.call(Method::GET, "/nonexistent1", None, None, &ua).await.err(404, None);
    api.call(Method::GET, "/favicon.ico", None, None, &ua).await.err(404, None);
    api.call(Method::GET, "/", None, None, &ua).await.err(404, Some("no link here"));
    api.call(Method::GET, &format!("/{expired_code}"), None, None, &ua).await.err(404, None);
}

#[tokio::test]
async fn unknown_codes_the_root_and_expired_links_are_counted_as_orphan_visits() {
    let api = Api::open();
    let expired = api.new_url(json!({"original_url": "https://t.example/old", "valid_until": "2020-01-01T00:00:00Z"})).await;
    let code = expired["short_code"].as_str().unwrap().to_string();
    visit_orphans(&api, &code).await;

    let r =
        poll_get(&api, "/visits/orphan?bucket=hour", "4 counted orphan visits", |r| r.status == 200 && r.body["total_visits"] == 4).await;
    let v = r.body.clone();
    assert_eq!(kinds(&v), (1, 2, 1), "base, not found (a code and a path that cannot be one), expired: {v}");
    let series = arr(&v["series"]);
    assert!((720..=721).contains(&series.len()), "an hour bucket for every hour of the default 30 days: {}", series.len());
    let sum: u64 = series.iter().map(|b| b["visits"].as_u64().unwrap()).sum();
    assert_eq!(sum, 4);
    assert!(series
        .iter()
        .all(|b| b["visits"].as_u64() == Some(["base", "not_found", "expired"].iter().map(|k| b[k].as_u64().unwrap()).sum::<u64>())));

    // The expired link's own count stays at zero: its orphan visit is not its click.
    let stats = api.get(&format!("/{code}+")).await.ok(200);
    assert_eq!(stats["click_count"], 0, "{stats}");
    let day = api.get("/visits/orphan").await.ok(200);
    assert_eq!((day["bucket"].as_str(), day["total_visits"].as_u64()), (Some("day"), Some(4)), "{day}");

    // Bounded reads: the same range rules as a link's stats.
    api.get("/visits/orphan?bucket=hour&from=2020-01-01T00:00:00Z&to=2021-01-01T00:00:00Z").await.err(400, Some("at most 2000"));
    api.get("/visits/orphan?bucket=week").await.err(400, Some("bucket must be hour or day"));
    api.get("/visits/orphan?from=-5").await.err(400, Some("from must be"));
    api.get("/visits/orphan?to=99999999999999999999").await.err(400, Some("to must be"));
    api.get("/visits/orphan?to=9223372036854775807").await.err(400, Some("to must be"));
    // A range in the past holds nothing.
    let old = api.get("/visits/orphan?from=2021-01-01T00:00:00Z&to=2021-01-02T00:00:00Z").await.ok(200);
    assert_eq!(old["total_visits"], 0);
}

#[tokio::test]
async fn orphan_visits_are_read_with_the_admin_token_only() {
    let api = Api::token();
    let reg = api.post("/auth/register", json!({"email": "orphans@example.com", "password": "password-orphans"})).await.ok(201);
    let user = reg["session_token"].as_str().unwrap().to_string();
    let expired = api
        .post_as(Some(&user), "/urls", json!({"original_url": "https://t.example/old", "valid_until": "2020-01-01T00:00:00Z"}))
        .await
        .ok(201);
    visit_orphans(&api, expired["short_code"].as_str().unwrap()).await;

    api.get("/visits/orphan").await.err(401, Some("admin token"));
    api.get_as(Some(&user), "/visits/orphan").await.err(403, Some("admin token"));
    api.get_as(Some("not-the-admin"), "/visits/orphan").await.err(403, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api.get_as(Some(ADMIN_TOKEN), "/visits/orphan").await.ok(200);
        if r["total_visits"] == 4 {
            assert_eq!(kinds(&r), (1, 2, 1), "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "4 orphan visits not counted within 10 s: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
