//! `/health`, `/health/live`, `/health/ready`.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use std::sync::Arc;

/// A named readiness check: `Err(reason)` makes `/health/ready` answer 503.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Ready when the read store answers.
pub fn store_check(store: Arc<dyn kurz_storage::ReadStore>) -> (&'static str, Check) {
    (
        "store",
        Arc::new(move || {
            let s = store.clone();
            Box::pin(async move { s.ping().await.map_err(|e| e.to_string()) })
        }),
    )
}

/// Ready when the log knows `topic`.
pub fn log_check(log: Arc<dyn kurz_storage::EventLog>, topic: &'static str) -> (&'static str, Check) {
    (
        "log",
        Arc::new(move || {
            let l = log.clone();
            Box::pin(async move { l.partitions(topic).await.map(|_| ()).map_err(|e| e.to_string()) })
        }),
    )
}

/// `/health/ready` names a failing dependency to anyone, and gives its error text
/// (hosts, addresses, driver messages) only to the holder of `admin`; the text is
/// logged either way.
pub fn routes(checks: Vec<(&'static str, Check)>, admin: crate::admin::AdminToken) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/health/live", get(|| async { Json(serde_json::json!({"status": "alive"})) }))
        .route(
            "/health/ready",
            get(move |headers: axum::http::HeaderMap| {
                let checks = checks.clone();
                let reveal = admin.allows(&headers);
                async move {
                    let mut failing = serde_json::Map::new();
                    for (name, check) in checks.iter() {
                        if let Err(reason) = check().await {
                            tracing::warn!(event = "not_ready", dependency = name, reason = %reason);
                            let shown = if reveal { reason } else { "failing".to_string() };
                            failing.insert(name.to_string(), serde_json::Value::String(shown));
                        }
                    }
                    if failing.is_empty() {
                        (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
                    } else {
                        let names: Vec<&String> = failing.keys().collect();
                        let msg = format!("not ready: {}", names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "));
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(serde_json::json!({"error": msg, "status": "unavailable", "failing": failing})),
                        )
                            .into_response()
                    }
                }
            }),
        )
        .route("/metrics", get(crate::observe::metrics_handler))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn ready(router: &Router, auth: Option<&str>) -> (u16, serde_json::Value) {
        let mut req = axum::http::Request::get("/health/ready");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = router.clone().oneshot(req.body(axum::body::Body::empty()).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn only_the_admin_reads_why_a_dependency_failed() {
        let failing: Check = Arc::new(|| Box::pin(async { Err("connect 10.0.7.12:9042: refused (scylla-1.internal)".to_string()) }));
        let ok: Check = Arc::new(|| Box::pin(async { Ok(()) }));
        let admin = "a".repeat(32);
        let router = routes(vec![("store", failing), ("log", ok)], crate::admin::AdminToken::new(Some(&admin)));
        for auth in [None, Some("Bearer wrong".to_string()), Some(format!("Bearer {}", "a".repeat(31))), Some("Basic x".into())] {
            let (status, body) = ready(&router, auth.as_deref()).await;
            assert_eq!(status, 503);
            assert_eq!(body["failing"], serde_json::json!({"store": "failing"}), "{auth:?}");
            assert!(!body.to_string().contains("10.0.7.12") && !body.to_string().contains("internal"), "{body}");
        }
        let (status, body) = ready(&router, Some(&format!("Bearer {admin}"))).await;
        assert_eq!(status, 503);
        assert!(body["failing"]["store"].as_str().unwrap().contains("10.0.7.12"), "{body}");
        // Without an admin token configured nobody reads it.
        let secret: Check = Arc::new(|| Box::pin(async { Err("secret text".to_string()) }));
        let router = routes(vec![("store", secret)], crate::admin::AdminToken::default());
        let (_, body) = ready(&router, Some("Bearer ")).await;
        assert_eq!(body["failing"]["store"], "failing");
    }
}
