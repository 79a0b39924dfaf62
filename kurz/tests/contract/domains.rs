//! Domains (issue #20, item 7): `POST/GET/DELETE /domains` (admin), links on a domain
//! found by `(Host, code)`, and each host's fallbacks for `/`, unknown codes and expired
//! links, with the default entry's for every other host.

use super::*;

/// `GET path` with `Host: host`.
async fn get_on(api: &Api, host: &str, path: &str) -> Resp {
    api.call(Method::GET, path, None, None, &[("host", host)]).await
}

/// Polls `GET path` on `host` until it answers `status` with `location` four times in
/// a row: every edge of a split deployment (asked in turn) has read the registry again
/// (each does every second) and the link's change.
async fn poll_on(api: &Api, host: &str, path: &str, status: u16, location: Option<&str>) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut in_a_row = 0;
    loop {
        let r = get_on(api, host, path).await;
        if r.status == status && r.location().as_deref() == location {
            in_a_row += 1;
            if in_a_row == 4 {
                return r;
            }
            continue;
        }
        in_a_row = 0;
        if Instant::now() >= deadline {
            panic!("GET {path} on {host}: wanted {status} {location:?} within 10 s, got {} {:?} {}", r.status, r.location(), r.text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_link_on_a_domain_answers_on_its_host_and_each_host_has_its_fallbacks() {
    let api = Api::open();
    // Registering, and replacing the fallbacks.
    let d = api.post("/domains", json!({"host": "Go.Example", "not_found_redirect": "https://example.org/nothing-here"})).await.ok(201);
    assert_eq!((d["host"].as_str(), d["is_default"].as_bool()), (Some("go.example"), Some(false)), "{d}");
    let d = api
        .post(
            "/domains",
            json!({"host": "go.example", "not_found_redirect": "https://example.org/missing", "expired_redirect": "https://example.org/over"}),
        )
        .await
        .ok(200);
    assert_eq!(d["not_found_redirect"], "https://example.org/missing");
    assert!(d["base_url_redirect"].is_null());
    api.post("/domains", json!({"host": "default", "base_url_redirect": "https://example.org/home"})).await.ok(201);
    let list = api.get("/domains").await.ok(200);
    let hosts: Vec<&str> = arr(&list["domains"]).iter().map(|d| d["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["default", "go.example"], "{list}");
    assert_eq!(api.get("/domains/go.example").await.ok(200)["expired_redirect"], "https://example.org/over");
    api.get("/domains/nope.example").await.err(404, Some("domain not found"));
    api.get("/domains/not a host").await.err(404, None);

    // One code, once per domain: the default domain's and go.example's.
    let on = api.new_url(json!({"original_url": "https://t.example/on-go", "short_code": "promo", "domain": "go.example"})).await;
    assert_eq!(on["domain"], "go.example");
    let plain = api.new_url(json!({"original_url": "https://t.example/plain", "short_code": "promo"})).await;
    assert!(plain["domain"].is_null());
    api.post("/urls", json!({"original_url": "https://t.example/x", "short_code": "promo", "domain": "go.example"}))
        .await
        .err(409, Some("already exists"));
    api.post("/urls", json!({"original_url": "https://t.example/x", "domain": "unknown.example"})).await.err(400, Some("not registered"));
    api.post("/urls", json!({"original_url": "https://t.example/x", "domain": "localhost"})).await.err(400, Some("domain must be"));
    let only = api.new_url(json!({"original_url": "https://t.example/only", "short_code": "only-go", "domain": "go.example"})).await;
    let old =
        api.new_url(json!({"original_url": "https://t.example/old", "domain": "go.example", "valid_until": "2020-01-01T00:00:00Z"})).await;

    // The domain's link on its host (the Host header's case and port do not matter),
    // the default domain's everywhere else.
    poll_on(&api, "GO.example:8080", "/promo", 302, Some("https://t.example/on-go")).await;
    assert_eq!(api.get("/promo").await.location().as_deref(), Some("https://t.example/plain"));
    assert_eq!(get_on(&api, "other.example", "/promo").await.location().as_deref(), Some("https://t.example/plain"));
    // A link only on go.example: another host gets 404.
    assert_eq!(get_on(&api, "go.example", "/only-go").await.location().as_deref(), Some("https://t.example/only"));
    get_on(&api, "other.example", "/only-go").await.err(404, None);
    api.get("/only-go").await.err(404, None);
    // A link on no domain answers on a domain's host too.
    let anywhere = api.new_url(json!({"original_url": "https://t.example/anywhere"})).await;
    let code = anywhere["short_code"].as_str().unwrap();
    assert_eq!(get_on(&api, "go.example", &format!("/{code}")).await.location().as_deref(), Some("https://t.example/anywhere"));
    // Stats answer by host and code too.
    let stats = get_on(&api, "go.example", "/promo+").await.ok(200);
    assert_eq!((stats["original_url"].as_str(), stats["domain"].as_str()), (Some("https://t.example/on-go"), Some("go.example")));

    // Fallbacks: the domain's, else the default entry's, else 404.
    let missing = get_on(&api, "go.example", "/nonexistent1").await;
    assert_eq!((missing.status, missing.location().as_deref()), (302, Some("https://example.org/missing")));
    assert_eq!(missing.header("cache-control").as_deref(), Some("private, max-age=0"));
    let expired = get_on(&api, "go.example", &format!("/{}", old["short_code"].as_str().unwrap())).await;
    assert_eq!((expired.status, expired.location().as_deref()), (302, Some("https://example.org/over")));
    let root = get_on(&api, "go.example", "/").await;
    assert_eq!((root.status, root.location().as_deref()), (302, Some("https://example.org/home")), "the default's base_url_redirect");
    assert_eq!(api.get("/").await.location().as_deref(), Some("https://example.org/home"));
    api.get("/nonexistent1").await.err(404, None);

    // `/shorten` on a domain: its short URL is on that host.
    let s = api.post("/shorten", json!({"url": "https://t.example/short", "domain": "go.example"})).await;
    assert!(s.status == 201 || s.status == 200, "{}", s.text);
    let short_url = s.body["short_url"].as_str().unwrap();
    assert!(short_url.starts_with("http://go.example/"), "{short_url}");
    let again = api.post("/shorten", json!({"url": "https://t.example/short"})).await;
    assert!(!again.body["short_url"].as_str().unwrap().contains("go.example"), "the default domain's is another link: {}", again.text);

    // Updates and deletes of a domain's link route by its host and code.
    api.put(&format!("/urls/{}", id(&only)), json!({"original_url": "https://t.example/only-2"})).await.ok(200);
    poll_on(&api, "go.example", "/only-go", 302, Some("https://t.example/only-2")).await;
    api.post("/events", json!({"url_id": id(&on), "event_type": "shared"})).await.ok(201);
    api.delete(&format!("/urls/{}", id(&on))).await.ok(200);
    poll_on(&api, "go.example", "/promo", 302, Some("https://t.example/plain")).await;

    // robots.txt: a domain's crawlable links on its host only, the default domain's on
    // every host. (The first robots.txt this server is asked for: nothing cached yet.)
    api.new_url(json!({"original_url": "https://t.example/c1", "short_code": "crawl-go", "domain": "go.example", "crawlable": true})).await;
    api.new_url(json!({"original_url": "https://t.example/c2", "short_code": "crawl-all", "crawlable": true})).await;
    let robots = |r: Resp| r.text.lines().filter(|l| l.starts_with("Allow:")).map(str::to_string).collect::<Vec<_>>();
    for _ in 0..2 {
        assert_eq!(robots(get_on(&api, "go.example", "/robots.txt").await), ["Allow: /crawl-all", "Allow: /crawl-go"]);
        assert_eq!(robots(api.get("/robots.txt").await), ["Allow: /crawl-all"]);
    }

    // A deleted domain: its links stop answering on its host; they answer again once
    // it is registered again.
    api.delete("/domains/go.example").await.ok(200);
    api.delete("/domains/go.example").await.err(404, Some("domain not found"));
    poll_on(&api, "go.example", "/only-go", 404, None).await;
    api.post("/domains", json!({"host": "go.example"})).await.ok(201);
    poll_on(&api, "go.example", "/only-go", 302, Some("https://t.example/only-2")).await;
}

#[tokio::test]
async fn the_registry_refuses_bad_hosts_fields_and_targets() {
    let api = Api::open();
    for (body, needle) in [
        (json!({"host": "localhost"}), "host: domain must be"),
        (json!({"host": "go.example:8080"}), "host: domain must be"),
        (json!({"host": "10.0.0.1"}), "host: domain must be"),
        (json!({"host": "x".repeat(300) + ".example"}), "host: domain must be"),
        (json!({}), "host"),
        (json!({"host": 5}), "host"),
        (json!({"host": "go.example", "not_found_redirct": "https://a.io"}), "unknown field 'not_found_redirct'"),
        (json!({"host": "go.example", "not_found_redirect": "javascript:alert(1)"}), "not_found_redirect"),
        (json!({"host": "go.example", "base_url_redirect": "https://user:pw@evil.example/"}), "base_url_redirect"),
    ] {
        api.post("/domains", body.clone()).await.err(400, Some(needle));
    }
    assert_eq!(arr(&api.get("/domains").await.ok(200)["domains"]).len(), 1, "only the default entry, unset");
}

#[tokio::test]
async fn the_registry_is_the_admins() {
    let api = Api::token();
    let reg = api.post("/auth/register", json!({"email": "domains@example.com", "password": "password-domains"})).await.ok(201);
    let user = reg["session_token"].as_str().unwrap().to_string();
    api.post("/domains", json!({"host": "go.example"})).await.err(401, None);
    api.post_as(Some(&user), "/domains", json!({"host": "go.example"})).await.err(403, Some("admin token"));
    api.get_as(Some(&user), "/domains").await.err(403, Some("admin token"));
    api.delete_as(Some(&user), "/domains/go.example").await.err(403, Some("admin token"));
    api.admin_post("/domains", json!({"host": "go.example"})).await.ok(201);
    assert_eq!(api.get_as(Some(ADMIN_TOKEN), "/domains/go.example").await.ok(200)["host"], "go.example");
    // Any user may put a link on a registered domain; it stays theirs.
    let l = api.post_as(Some(&user), "/urls", json!({"original_url": "https://t.example/u", "domain": "go.example"})).await.ok(201);
    assert_eq!(l["domain"], "go.example");
}

#[tokio::test]
async fn a_bulk_load_puts_rows_on_registered_domains_only() {
    let api = Api::open();
    api.post("/domains", json!({"host": "go.example"})).await.ok(201);
    let csv = "short_code,original_url,domain\n\
               bulk-a,https://t.example/a-go,go.example\n\
               bulk-a,https://t.example/a,\n\
               bulk-b,https://t.example/b,unknown.example\n\
               bulk-c,https://t.example/c,not a host\n\
               bulk-a,https://t.example/again,GO.EXAMPLE\n";
    let r = api.post_csv(None, "/urls/bulk", csv.to_string()).await.ok(201);
    assert_eq!((r["count"].as_u64(), r["skipped"].as_u64()), (Some(2), Some(3)), "{r}");
    let problems = r["problems"].to_string();
    assert!(problems.contains("not registered") && problems.contains("domain must be") && problems.contains("already exists"), "{r}");
    poll_on(&api, "go.example", "/bulk-a", 302, Some("https://t.example/a-go")).await;
    assert_eq!(api.get("/bulk-a").await.location().as_deref(), Some("https://t.example/a"));
}
