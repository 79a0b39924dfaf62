//! Link options (issue #20, items 1, 3, 4, 5 and 6): the validity window, the redirect
//! type with its `Cache-Control`, query and path forwarding, redirect rules and
//! passwords, set on create and update and answered by the edge. Absent options keep
//! the contract's 302 exactly.

use super::*;

fn rfc3339(offset_s: i64) -> String {
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + offset_s;
    let days = at.div_euclid(86_400);
    let secs = at.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

fn code(l: &Value) -> String {
    l["short_code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_link_answers_only_inside_its_validity_window() {
    let api = Api::open();
    let past = api.new_url(json!({"original_url": "https://t.example/past", "valid_until": rfc3339(-60)})).await;
    let future = api.new_url(json!({"original_url": "https://t.example/future", "valid_since": rfc3339(3600)})).await;
    let open =
        api.new_url(json!({"original_url": "https://t.example/now", "valid_since": rfc3339(-60), "valid_until": rfc3339(3600)})).await;
    api.get(&format!("/{}", code(&past))).await.err(404, None);
    api.get(&format!("/{}", code(&future))).await.err(404, None);
    let r = api.get(&format!("/{}", code(&open))).await;
    assert_eq!((r.status, r.location().as_deref()), (302, Some("https://t.example/now")), "{}", r.text);
    assert_eq!(open["valid_until"].as_str().map(|s| s.len()), Some(20), "the window shows as RFC 3339: {open}");

    // Reopened by clearing the end; closed again by a new one.
    let path = format!("/urls/{}", id(&past));
    let cleared = api.put(&path, json!({"valid_until": null})).await.ok(200);
    assert_eq!(cleared["valid_until"], Value::Null);
    assert_eq!(api.get(&format!("/{}", code(&past))).await.status, 302);
    api.put(&path, json!({"valid_until": rfc3339(-1)})).await.ok(200);
    api.get(&format!("/{}", code(&past))).await.err(404, None);

    // A window that can never open is refused whole, on create and against the link's
    // current window on update; a malformed instant names its field.
    let never = json!({"original_url": "https://t.example/x", "valid_since": rfc3339(60), "valid_until": rfc3339(0)});
    api.post("/urls", never).await.err(400, Some("valid_since must be before valid_until"));
    let f = format!("/urls/{}", id(&future));
    api.put(&f, json!({"valid_until": rfc3339(0)})).await.err(400, Some("valid_since must be before valid_until"));
    api.post("/urls", json!({"original_url": "https://t.example/x", "valid_until": "next week"})).await.err(400, Some("valid_until"));
    api.post("/urls", json!({"original_url": "https://t.example/x", "valid_since": 1700000000})).await.err(400, Some("valid_since"));
    // The refused update changed nothing.
    assert_eq!(api.get(&f).await.ok(200)["valid_until"], Value::Null);
}

#[tokio::test]
async fn the_redirect_type_sets_the_status_and_every_redirect_says_how_long_to_keep_it() {
    let api = Api::open();
    let plain = api.new_url(json!({"original_url": "https://t.example/plain"})).await;
    assert_eq!(
        (plain["redirect_type"].as_u64(), &plain["forward_query"], &plain["forward_path"]),
        (Some(302), &json!(true), &json!(false))
    );
    let r = api.get(&format!("/{}", code(&plain))).await;
    assert_eq!((r.status, r.header("cache-control").as_deref()), (302, Some("private, max-age=0")));
    for (status, cache) in [(301, "private, max-age=30"), (307, "private, max-age=0"), (308, "private, max-age=30")] {
        let l = api.new_url(json!({"original_url": "https://t.example/typed", "redirect_type": status})).await;
        assert_eq!(l["redirect_type"], status);
        let r = api.get(&format!("/{}", code(&l))).await;
        assert_eq!((r.status, r.location().as_deref()), (status, Some("https://t.example/typed")), "{}", r.text);
        assert_eq!(r.header("cache-control").as_deref(), Some(cache), "{status}");
        let stats = api.get(&format!("/{}+", code(&l))).await.ok(200);
        assert_eq!(stats["redirect_type"], status, "{stats}");
    }
    for bad in [json!(303), json!(200), json!("301x"), json!(-1), json!(1e9)] {
        api.post("/urls", json!({"original_url": "https://t.example/x", "redirect_type": bad})).await.err(400, Some("redirect_type"));
    }
    // Back to the default with null.
    let l = api.new_url(json!({"original_url": "https://t.example/back", "redirect_type": 308})).await;
    let back = api.put(&format!("/urls/{}", id(&l)), json!({"redirect_type": null})).await.ok(200);
    assert_eq!(back["redirect_type"], 302);
    assert_eq!(api.get(&format!("/{}", code(&l))).await.status, 302);
}

#[tokio::test]
async fn the_query_is_forwarded_by_default_and_the_path_when_asked() {
    let api = Api::open();
    let l = api.new_url(json!({"original_url": "https://t.example/p?a=1"})).await;
    let c = code(&l);
    let r = api.get(&format!("/{c}?utm_source=x&gclid=y")).await;
    assert_eq!((r.status, r.location().as_deref()), (302, Some("https://t.example/p?a=1&utm_source=x&gclid=y")));
    let r = api.get(&format!("/{c}?a=2")).await;
    assert_eq!(r.location().as_deref(), Some("https://t.example/p?a=2"), "the request's parameter wins");
    api.get(&format!("/{c}/more")).await.err(404, None);

    api.put(&format!("/urls/{}", id(&l)), json!({"forward_query": false, "forward_path": true})).await.ok(200);
    let r = api.get(&format!("/{c}/docs/intro?utm_source=x")).await;
    assert_eq!((r.status, r.location().as_deref()), (302, Some("https://t.example/p/docs/intro?a=1")), "{}", r.text);

    // A forwarded address past the limit is refused, not cut or sent on.
    api.put(&format!("/urls/{}", id(&l)), json!({"forward_query": true})).await.ok(200);
    let long = "x".repeat(kurz_schemas::options::MAX_LOCATION);
    api.get(&format!("/{c}?q={long}")).await.err(414, Some("forwarded address"));
    api.get(&format!("/{c}/{long}")).await.err(414, Some("forwarded address"));
    api.post("/urls", json!({"original_url": "https://t.example/x", "forward_path": "yes"})).await.err(400, Some("forward_path"));
}

#[tokio::test]
async fn token_mode_options_belong_to_the_links_owner() {
    let api = Api::token();
    let reg = api.post("/auth/register", json!({"email": "opts@example.com", "password": "password-o"})).await.ok(201);
    let tok = reg["session_token"].as_str().unwrap().to_string();
    let other = api.post("/auth/register", json!({"email": "other@example.com", "password": "password-p"})).await.ok(201);
    let other = other["session_token"].as_str().unwrap().to_string();
    let l = api.post_as(Some(&tok), "/urls", json!({"original_url": "https://t.example/own", "redirect_type": 307})).await.ok(201);
    api.put_as(Some(&other), &format!("/urls/{}", id(&l)), json!({"valid_until": rfc3339(-1)})).await.err(403, None);
    api.put(&format!("/urls/{}", id(&l)), json!({"valid_until": rfc3339(-1)})).await.err(401, None);
    let r = api.get(&format!("/{}", code(&l))).await;
    assert_eq!(r.status, 307, "nobody but the owner changed it: {}", r.text);
    api.put_as(Some(&tok), &format!("/urls/{}", id(&l)), json!({"valid_until": rfc3339(-1)})).await.ok(200);
    api.get(&format!("/{}", code(&l))).await.err(404, None);
}

#[tokio::test]
async fn bulk_loads_take_the_options_as_columns_and_skip_a_row_with_a_bad_one() {
    let api = Api::open();
    let csv = format!(
        "short_code,original_url,is_active,valid_until,redirect_type,forward_query,forward_path\n\
         bulkopt1,https://t.example/b1,true,{},301,false,true\n\
         bulkopt2,https://t.example/b2,true,,,,\n\
         bulkopt3,https://t.example/b3,true,,303,,\n\
         bulkopt4,https://t.example/b4,true,,,maybe,\n",
        rfc3339(3600)
    );
    let r = api.post_csv(None, "/urls/bulk", csv).await.ok(201);
    assert_eq!(r["count"], 2, "{r}");
    let problems = r["problems"].to_string();
    assert!(problems.contains("redirect_type") && problems.contains("forward_query 'maybe'"), "{r}");
    let got = api.get("/bulkopt1/x?q=1").await;
    assert_eq!((got.status, got.location().as_deref()), (301, Some("https://t.example/b1/x")), "{}", got.text);
    let plain = api.get("/bulkopt2?q=1").await;
    assert_eq!((plain.status, plain.location().as_deref()), (302, Some("https://t.example/b2?q=1")));
    // Passwords and rules load too: a password is hashed and sealed like one set by
    // POST /urls, and a rules cell is the JSON list POST /urls takes.
    let csv = "short_code,original_url,password,rules\n\
               bulkpw1,https://t.example/pw,open sesame,\n\
               bulkpw2,https://t.example/pw2,,\n\
               bulkpw3,https://t.example/pw3,,\"[{\"\"conditions\"\": [{\"\"type\"\": \"\"device\"\", \"\"value\"\": \"\"ios\"\"}], \"\"target\"\": \"\"https://t.example/ios\"\"}]\"\n\
               bulkpw4,https://t.example/pw4,,\"[{\"\"conditions\"\": [{\"\"type\"\": \"\"device\"\", \"\"value\"\": \"\"fridge\"\"}], \"\"target\"\": \"\"https://t.example/f\"\"}]\"\n\
               bulkpw5,https://t.example/pw5,,not json\n"
        .to_string();
    let r = api.post_csv(None, "/urls/bulk", csv).await.ok(201);
    assert_eq!(r["count"], 3, "{r}");
    let problems = r["problems"].to_string();
    assert!(problems.contains("row 4") && problems.contains("rules[0].conditions[0]"), "{r}");
    assert!(problems.contains("row 5") && problems.contains("rules must be a JSON array"), "{r}");
    let page = api.call(Method::GET, "/bulkpw1", None, None, &[("accept", "application/json")]).await;
    assert_eq!(page.status, 401, "a loaded password protects the link: {}", page.text);
    let opened = post_form(&api, "/bulkpw1", "password=open+sesame").await;
    assert_eq!((opened.status, opened.location().as_deref()), (302, Some("https://t.example/pw")), "{}", opened.text);
    assert_eq!(api.get("/bulkpw2").await.status, 302);
    let ios = api.call(Method::GET, "/bulkpw3", None, None, &[("user-agent", IPHONE)]).await;
    assert_eq!(ios.location().as_deref(), Some("https://t.example/ios"));
    // Each password costs an argon2 run: one load hashes at most 100, and refuses the
    // rest row by row (never loading them unprotected).
    let mut csv = "short_code,original_url,password\n".to_string();
    for i in 0..102 {
        csv.push_str(&format!("bulkmany{i},https://t.example/m{i},pw-{i}\n"));
    }
    let r = api.post_csv(None, "/urls/bulk", csv).await.ok(201);
    assert_eq!((r["count"].as_u64(), r["skipped"].as_u64()), (Some(100), Some(2)), "{r}");
    assert!(r["problems"].to_string().contains("at most 100 passwords"), "{r}");
    api.get("/bulkmany101").await.err(404, None);
}

/// `max_visits: 3`: visits 1 to 3 redirect, later ones answer as expired; bots and HEAD
/// requests are not counted; raising the limit opens it again.
async fn a_visit_limit_is_exact(api: &Api, token: Option<&str>) {
    let l = api.post_as(token, "/urls", json!({"original_url": "https://t.example/limited", "max_visits": 3})).await.ok(201);
    assert_eq!(l["max_visits"], 3, "{l}");
    let c = code(&l);
    let path_of_code = format!("/{c}");
    let visit = |ua: &'static str| {
        let path = path_of_code.clone();
        async move { api.call(Method::GET, &path, None, None, &[("user-agent", ua)]).await }
    };
    // Not counted: a crawler, a HEAD request.
    assert_eq!(visit("Googlebot/2.1 (+http://www.google.com/bot.html)").await.status, 302);
    assert_eq!(api.call(Method::HEAD, &format!("/{c}"), None, None, &[("user-agent", DESKTOP)]).await.status, 302);
    for n in 1..=3 {
        let r = visit(DESKTOP).await;
        assert_eq!((r.status, r.location().as_deref()), (302, Some("https://t.example/limited")), "visit {n}: {}", r.text);
    }
    for _ in 4..=5 {
        visit(DESKTOP).await.err(404, None);
    }
    assert_eq!(api.call(Method::HEAD, &format!("/{c}"), None, None, &[]).await.status, 404, "a HEAD past the limit is not served either");
    // Counted once each: three clicks on the link, the refused visits as orphans.
    let stats = poll_get(api, &format!("/{c}+"), "3 clicks", |r| r.body["click_count"] == 3).await;
    assert_eq!(stats.body["max_visits"], 3);
    // A higher limit opens exactly the visits it adds: refused visits were not counted.
    let path = format!("/urls/{}", id(&l));
    api.put_as(token, &path, json!({"max_visits": 5})).await.ok(200);
    poll_get(api, &path, "the new limit", |r| r.body["max_visits"] == 5).await;
    assert_eq!(visit(DESKTOP).await.status, 302, "visit 4 of 5");
    assert_eq!(visit(DESKTOP).await.status, 302, "visit 5 of 5");
    visit(DESKTOP).await.err(404, None);
    poll_get(api, &format!("/{c}+"), "5 clicks", |r| r.body["click_count"] == 5).await;
    api.put_as(token, &path, json!({"max_visits": null})).await.ok(200);
    poll_get(api, &path, "no limit", |r| r.body["max_visits"].is_null()).await;
    assert_eq!(visit(DESKTOP).await.status, 302, "unlimited again");
    for bad in [json!(0), json!(-1), json!(1.5), json!("many"), json!(9007199254740992u64)] {
        api.post_as(token, "/urls", json!({"original_url": "https://t.example/x", "max_visits": bad})).await.err(400, Some("max_visits"));
    }
}

#[tokio::test]
async fn a_visit_limit_is_exact_in_open_mode() {
    let api = Api::open();
    a_visit_limit_is_exact(&api, None).await;
    let csv = "short_code,original_url,max_visits
bulkmax1,https://t.example/m1,1
bulkmax2,https://t.example/m2,0
"
    .to_string();
    let r = api.post_csv(None, "/urls/bulk", csv).await.ok(201);
    assert_eq!(r["count"], 1, "{r}");
    assert!(r["problems"].to_string().contains("max_visits"), "{r}");
    assert_eq!(api.get("/bulkmax1").await.status, 302);
    api.get("/bulkmax1").await.err(404, None);
}

#[tokio::test]
async fn a_visit_limit_is_exact_in_token_mode() {
    let api = Api::token();
    let reg = api.post("/auth/register", json!({"email": "max@example.com", "password": "password-max"})).await.ok(201);
    let tok = reg["session_token"].as_str().unwrap().to_string();
    a_visit_limit_is_exact(&api, Some(&tok)).await;
}

#[tokio::test]
async fn robots_txt_allows_only_active_crawlable_links() {
    let api = Api::open();
    let listed = api.new_url(json!({"original_url": "https://t.example/c1", "short_code": "crawl-yes", "crawlable": true})).await;
    assert_eq!(listed["crawlable"], true, "{listed}");
    let plain = api.new_url(json!({"original_url": "https://t.example/c2", "short_code": "crawl-default"})).await;
    assert_eq!(plain["crawlable"], false, "the default shows: {plain}");
    let off = api.new_url(json!({"original_url": "https://t.example/c3", "short_code": "crawl-off", "crawlable": true})).await;
    let inactive = api.new_url(json!({"original_url": "https://t.example/c4", "short_code": "crawl-inactive", "crawlable": true})).await;
    let on = api.new_url(json!({"original_url": "https://t.example/c5", "short_code": "crawl-later"})).await;
    api.put(&format!("/urls/{}", id(&off)), json!({"crawlable": false})).await.ok(200);
    api.put(&format!("/urls/{}", id(&inactive)), json!({"is_active": false})).await.ok(200);
    api.put(&format!("/urls/{}", id(&on)), json!({"crawlable": true})).await.ok(200);
    let csv = "short_code,original_url,crawlable
crawl-bulk,https://t.example/c6,true
crawl-bad,https://t.example/c7,often
"
    .to_string();
    let r = api.post_csv(None, "/urls/bulk", csv).await.ok(201);
    assert_eq!(r["count"], 1, "{r}");
    assert!(r["problems"].to_string().contains("crawlable 'often'"), "{r}");
    api.post("/urls", json!({"original_url": "https://t.example/x", "crawlable": "yes"})).await.err(400, Some("crawlable"));
    // The answer is kept for a minute: asked once every change is in the read model.
    for (l, crawlable, active) in [(&listed, true, true), (&off, false, true), (&inactive, true, false), (&on, true, true)] {
        poll_get(&api, &format!("/urls/{}", id(l)), "the final state", |r| {
            r.body["crawlable"] == crawlable && r.body["is_active"] == active
        })
        .await;
    }
    poll_get(&api, "/crawl-bulk+", "the bulk-loaded link", |r| r.status == 200).await;
    let robots = api.get("/robots.txt").await;
    assert_eq!(robots.status, 200, "{}", robots.text);
    assert!(robots.header("content-type").unwrap_or_default().starts_with("text/plain"), "{:?}", robots.headers);
    let rules: Vec<&str> = robots.text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        rules,
        ["User-agent: *", "Allow: /crawl-bulk", "Allow: /crawl-later", "Allow: /crawl-yes", "Disallow: /"],
        "{}",
        robots.text
    );
}

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

#[tokio::test]
async fn the_first_rule_whose_conditions_hold_picks_the_target() {
    let api = Api::open();
    let l = api
        .new_url(json!({
            "original_url": "https://t.example/default",
            "rules": [
                {"conditions": [{"type": "device", "value": "ios"}], "target": "https://t.example/ios"},
                {"conditions": [{"type": "language", "value": "de"}], "target": "https://t.example/de"},
                {"conditions": [{"type": "query", "value": "src=mail"}, {"type": "os", "value": "linux"}], "target": "https://t.example/mail?x=1"}
            ]
        }))
        .await;
    assert_eq!(l["rules"].as_array().map(Vec::len), Some(3), "{l}");
    let c = code(&l);
    let visit = |ua: &'static str, lang: Option<&'static str>, query: &'static str| {
        let (api, path) = (&api, format!("/{c}{query}"));
        async move {
            let mut headers = vec![("user-agent", ua)];
            headers.extend(lang.map(|l| ("accept-language", l)));
            let r = api.call(Method::GET, &path, None, None, &headers).await;
            assert_eq!(r.status, 302, "{}", r.text);
            r.location().unwrap()
        }
    };
    assert_eq!(visit(IPHONE, Some("de-DE,de;q=0.9"), "").await, "https://t.example/ios", "the first matching rule wins");
    assert_eq!(visit(DESKTOP, None, "").await, "https://t.example/default");
    assert_eq!(visit(DESKTOP, Some("de-DE,de;q=0.9"), "").await, "https://t.example/de");
    assert_eq!(visit(DESKTOP, Some("fr;q=1, de;q=0"), "").await, "https://t.example/default", "weight 0 refuses a language");
    assert_eq!(visit(DESKTOP, None, "?src=mail").await, "https://t.example/mail?x=1&src=mail", "the query is still forwarded");
    let stats = api.get(&format!("/{c}+")).await.ok(200);
    assert_eq!(stats["rules"], l["rules"]);

    // Rules are replaced whole, and null removes them.
    let path = format!("/urls/{}", id(&l));
    let one = json!({"rules": [{"conditions": [{"type": "device", "value": "desktop"}], "target": "https://t.example/desk"}]});
    api.put(&path, one).await.ok(200);
    assert_eq!(visit(DESKTOP, Some("de"), "").await, "https://t.example/desk");
    assert_eq!(visit(IPHONE, None, "").await, "https://t.example/default");
    assert_eq!(api.put(&path, json!({"rules": null})).await.ok(200)["rules"], json!([]));
    assert_eq!(visit(DESKTOP, None, "").await, "https://t.example/default");
}

#[tokio::test]
async fn a_bad_rule_is_a_400_naming_it_and_its_target_meets_the_target_policy() {
    let api = Api::open();
    let rule =
        |cond: Value, target: &str| json!({"original_url": "https://t.example/", "rules": [{"conditions": [cond], "target": target}]});
    let good = json!({"type": "device", "value": "ios"});
    api.post("/urls", rule(json!({"type": "device", "value": "toaster"}), "https://t.example/"))
        .await
        .err(400, Some("rules[0].conditions[0]"));
    api.post("/urls", rule(json!({"type": "planet", "value": "mars"}), "https://t.example/"))
        .await
        .err(400, Some("unknown condition type"));
    api.post("/urls", rule(good.clone(), "javascript:alert(1)")).await.err(400, Some("rules[0].target"));
    api.post("/urls", rule(good.clone(), "https://user:pw@t.example/")).await.err(400, Some("rules[0].target"));
    let own = format!("{}/loop", api.base());
    api.post("/urls", rule(good.clone(), &own)).await.err(400, Some("rules[0].target"));
    let many: Vec<Value> = (0..11).map(|_| json!({"conditions": [good.clone()], "target": "https://t.example/"})).collect();
    api.post("/urls", json!({"original_url": "https://t.example/", "rules": many})).await.err(400, Some("at most 10"));
    let long = json!({"type": "os", "value": "x".repeat(300)});
    api.post("/urls", rule(long, "https://t.example/")).await.err(400, Some("rules[0].conditions[0]"));
}

/// `POST path` with a form body (a protected link's password).
async fn post_form(api: &Api, path: &str, form: &str) -> Resp {
    let rb = api.request(Method::POST, path, None, None, &[("content-type", "application/x-www-form-urlencoded")]).body(form.to_string());
    api.send(rb, format!("POST {path} (form)")).await
}

/// Item 6: a protected link answers a form, redirects on its password, refuses a wrong
/// one and, past a few wrong ones, refuses without checking; its hash is shown nowhere.
async fn a_password_protects_the_redirect(api: &Api, token: Option<&str>) {
    let body = json!({"original_url": "https://t.example/secret?a=1", "password": "open sesame", "redirect_type": 308});
    let created = api.post_as(token, "/urls", body).await;
    let l = created.ok(201);
    assert_eq!(l["password_protected"], true, "{l}");
    let c = code(&l);
    let plain = api.post_as(token, "/urls", json!({"original_url": "https://t.example/plain"})).await.ok(201);
    assert_eq!(plain["password_protected"], false);

    // Asked for as a page: the form, no Location, kept by no cache, framed by nobody.
    let page = api.call(Method::GET, &format!("/{c}?utm=x"), None, None, &[("accept", "text/html,*/*")]).await;
    assert_eq!((page.status, page.location()), (200, None), "{}", page.text);
    assert!(page.header("content-type").unwrap_or_default().starts_with("text/html"));
    assert!(page.text.contains("<form method=\"post\"") && page.text.contains("name=\"password\""), "{}", page.text);
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    assert!(page.header("content-security-policy").unwrap_or_default().contains("frame-ancestors 'none'"));
    let json = api.call(Method::GET, &format!("/{c}"), None, None, &[("accept", "application/json")]).await;
    json.err(401, Some("password protected"));

    // The right password redirects as a GET would, the query forwarded, but with a 302
    // no cache keeps (a 308 would post the password on to the target).
    let r = post_form(api, &format!("/{c}?utm=x"), "password=open+sesame").await;
    assert_eq!((r.status, r.location().as_deref()), (302, Some("https://t.example/secret?a=1&utm=x")), "{}", r.text);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let wrong = post_form(api, &format!("/{c}"), "password=open").await;
    assert_eq!((wrong.status, wrong.location()), (401, None), "{}", wrong.text);

    // Malformed guesses cost nothing and say why.
    let rb = api.request(Method::POST, &format!("/{c}"), Some(&json!({"password": "open sesame"})), None, &[]);
    api.send(rb, "POST json".into()).await.err(415, Some("x-www-form-urlencoded"));
    post_form(api, &format!("/{c}"), "secret=x").await.err(400, Some("password"));
    post_form(api, &format!("/{c}"), &format!("password={}", "x".repeat(4096))).await.err(413, None);
    post_form(api, &format!("/{}", code(&plain)), "password=x").await.err(405, Some("takes no password"));
    post_form(api, "/nosuchcode1", "password=x").await.err(404, None);
    post_form(api, &format!("/{c}/deeper"), "password=open+sesame").await.err(404, None);

    // The hash is in no answer: the link JSON and its stats say only that it is set.
    for path in [format!("/urls/{}", id(&l)), format!("/{c}+")] {
        let r = api.get_as(token, &path).await;
        assert_eq!(r.ok(200)["password_protected"], true, "{path}");
        for leak in ["argon2", "\"sealed\"", "\"ct\"", "\"nonce\"", "sesame"] {
            assert!(!r.text.contains(leak), "{path} shows {leak}: {}", r.text);
        }
    }
    assert!(!created.text.contains("argon2") && !created.text.contains("\"ct\""), "{}", created.text);

    // A new password replaces the old one (whose key is erased).
    let path = format!("/urls/{}", id(&l));
    assert_eq!(api.put_as(token, &path, json!({"password": "second one"})).await.ok(200)["password_protected"], true);
    assert_eq!(post_form(api, &format!("/{c}"), "password=open+sesame").await.status, 401);
    assert_eq!(post_form(api, &format!("/{c}"), "password=second%20one").await.status, 302);

    // Wrong guesses in a row lock the guesser out for a while (refused without running
    // argon2); the right one above cleared the count. Each edge process counts its own,
    // so a split deployment allows a few more.
    let mut wrong_before_refusal = None;
    for n in 1..=16 {
        let r = post_form(api, &format!("/{c}"), "password=guess").await;
        if r.status == 429 {
            assert!(r.text.contains("wrong passwords"), "{}", r.text);
            wrong_before_refusal = Some(n);
            break;
        }
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let n = wrong_before_refusal.expect("17 wrong passwords in a row were never refused");
    assert!(n > 5, "five wrong passwords are answered before a refusal, refused at guess {n}");

    // The protection removed: a plain 308 again.
    let open = api.put_as(token, &path, json!({"password": null})).await.ok(200);
    assert_eq!(open["password_protected"], false);
    let r = api.get(&format!("/{c}")).await;
    assert_eq!((r.status, r.location().as_deref()), (308, Some("https://t.example/secret?a=1")), "{}", r.text);
    for bad in [json!(""), json!(5), json!("x".repeat(300))] {
        api.put_as(token, &path, json!({"password": bad})).await.err(400, Some("password must be a string"));
    }
}

#[tokio::test]
async fn a_password_protects_the_redirect_in_open_mode() {
    let api = Api::open();
    a_password_protects_the_redirect(&api, None).await;
}

#[tokio::test]
async fn a_password_protects_the_redirect_in_token_mode() {
    let api = Api::token();
    let reg = api.post("/auth/register", json!({"email": "pw@example.com", "password": "password-pw"})).await.ok(201);
    let tok = reg["session_token"].as_str().unwrap().to_string();
    a_password_protects_the_redirect(&api, Some(&tok)).await;
    // Nobody but the owner removes the protection.
    let l = api.post_as(Some(&tok), "/urls", json!({"original_url": "https://t.example/mine", "password": "pw-1"})).await.ok(201);
    let other = api.post("/auth/register", json!({"email": "pw2@example.com", "password": "password-pw2"})).await.ok(201);
    let other = other["session_token"].as_str().unwrap().to_string();
    api.put_as(Some(&other), &format!("/urls/{}", id(&l)), json!({"password": null})).await.err(403, None);
    let page = api.call(Method::GET, &format!("/{}", code(&l)), None, None, &[("accept", "text/html")]).await;
    assert_eq!((page.status, page.location()), (200, None), "still protected: {}", page.text);
}
