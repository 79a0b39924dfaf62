//! Events: create, get, list/filter.

use super::*;

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
