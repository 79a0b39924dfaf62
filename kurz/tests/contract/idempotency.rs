//! Idempotency-Key handling for retried POSTs.

use super::*;

#[tokio::test]
async fn idempotency_key_makes_a_retried_post_take_effect_once_with_the_same_result() {
    let api = Api::open();
    let body = json!({"email": "idem@example.com", "username": "idem"});
    let r1 = api.call(Method::POST, "/users", Some(&body), None, &[("Idempotency-Key", "key-user-1")]).await;
    let r2 = api.call(Method::POST, "/users", Some(&body), None, &[("Idempotency-Key", "key-user-1")]).await;
    let u1 = r1.ok(201);
    assert_eq!(r2.status, r1.status, "retry must return the same result: {}", r2.text);
    assert_eq!(r2.body, u1);
    assert_eq!(arr(&api.get("/users").await.ok(200)).len(), 1);

    let lb = json!({"original_url": "https://example.com/idem"});
    let l1 = api.call(Method::POST, "/urls", Some(&lb), None, &[("Idempotency-Key", "key-url-1")]).await;
    let l2 = api.call(Method::POST, "/urls", Some(&lb), None, &[("Idempotency-Key", "key-url-1")]).await;
    let l = l1.ok(201);
    assert_eq!(l2.status, 201, "{}", l2.text);
    assert_eq!(l2.body, l);
    assert_eq!(arr(&api.get("/urls").await.ok(200)).len(), 1);
    assert_eq!(arr(&api.get(&format!("/events?url_id={}&event_type=created", id(&l))).await.ok(200)).len(), 1);

    let eb = json!({"url_id": id(&l), "event_type": "view"});
    let e1 = api.call(Method::POST, "/events", Some(&eb), None, &[("Idempotency-Key", "key-ev-1")]).await;
    let e2 = api.call(Method::POST, "/events", Some(&eb), None, &[("Idempotency-Key", "key-ev-1")]).await;
    let e = e1.ok(201);
    assert_eq!(e2.status, 201, "{}", e2.text);
    assert_eq!(e2.body, e);
    assert_eq!(arr(&api.get("/events?event_type=view").await.ok(200)).len(), 1);

    // a different key is a different request
    let e3 = api.call(Method::POST, "/events", Some(&eb), None, &[("Idempotency-Key", "key-ev-2")]).await.ok(201);
    assert_ne!(id(&e3), id(&e));
    assert_eq!(arr(&api.get("/events?event_type=view").await.ok(200)).len(), 2);
}
