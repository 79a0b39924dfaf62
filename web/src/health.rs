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

pub fn routes(checks: Vec<(&'static str, Check)>) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/health/live", get(|| async { Json(serde_json::json!({"status": "alive"})) }))
        .route(
            "/health/ready",
            get(move || {
                let checks = checks.clone();
                async move {
                    let mut failing = serde_json::Map::new();
                    for (name, check) in checks.iter() {
                        if let Err(reason) = check().await {
                            failing.insert(name.to_string(), serde_json::Value::String(reason));
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
