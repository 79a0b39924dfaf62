//! Routing and limit errors: unknown route 404, wrong method 405, oversize JSON 413.

use super::*;

#[tokio::test]
async fn unknown_route_is_404_wrong_method_405_and_oversize_json_413_all_json_errors() {
    let api = Api::open();
    api.get("/no/such/route").await.err(404, None);
    api.get("/users/1/friends").await.err(404, None);
    api.post("/nothing/here", json!({})).await.err(404, None);

    api.call(Method::DELETE, "/users", None, None, &[]).await.err(405, None);
    api.call(Method::PUT, "/health", Some(&json!({})), None, &[]).await.err(405, None);
    api.call(Method::PATCH, "/urls/1", Some(&json!({})), None, &[]).await.err(405, None);

    let big = "x".repeat(1024 * 1024 + 64 * 1024);
    api.post("/users", json!({"email": "big@example.com", "username": big})).await.err(413, None);
    api.post("/urls", json!({"original_url": "https://example.com/big", "title": big})).await.err(413, None);
    assert!(arr(&api.get("/users").await.ok(200)).is_empty());
}
