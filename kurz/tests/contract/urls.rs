//! Links: create, get, list/filter, update, delete, `/shorten` and the `/links` aliases.

use super::*;
use std::collections::HashSet;

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
