//! Redirects by short code, click events and the stats endpoint.

use super::*;

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
