//! Health endpoints.

use super::*;

#[tokio::test]
async fn health_is_ok_live_and_ready() {
    let api = Api::open();
    let h = api.get("/health").await.ok(200);
    assert_eq!(h["status"], "ok", "{h}");
    api.get("/health/live").await.ok(200);
    // Every backend of the single-process role answers -> ready. (The 503 branch needs a failing
    // backend, which a black-box test cannot induce.)
    api.get("/health/ready").await.ok(200);
}
