//! RED metrics per route and the `/metrics` endpoint, plus a tracing span per request
//! keyed by the matched route (never the raw path, which would explode cardinality).

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{register_histogram_vec, register_int_counter_vec, Encoder, HistogramVec, IntCounterVec, TextEncoder};
use std::sync::OnceLock;
use std::time::Instant;
use tracing::Instrument;

pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

pub fn http_metrics() -> &'static HttpMetrics {
    static M: OnceLock<HttpMetrics> = OnceLock::new();
    M.get_or_init(|| HttpMetrics {
        requests: register_int_counter_vec!(
            "kurz_http_requests_total",
            "HTTP requests by route, method and status.",
            &["route", "method", "status"]
        )
        .unwrap(),
        duration: register_histogram_vec!(
            "kurz_http_request_duration_seconds",
            "HTTP request latency by route and method, measured in the server.",
            &["route", "method"],
            vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
        )
        .unwrap(),
    })
}

pub async fn red_metrics(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().as_str().to_string();
    let span = tracing::info_span!("http", endpoint = %route, method = %method);
    let started = Instant::now();
    let resp = next.run(req).instrument(span).await;
    let m = http_metrics();
    let status = resp.status().as_u16().to_string();
    m.requests.with_label_values(&[&route, &method, &status]).inc();
    m.duration.with_label_values(&[&route, &method]).observe(started.elapsed().as_secs_f64());
    resp
}

/// Prometheus text exposition of the process-wide registry.
pub async fn metrics_handler() -> impl IntoResponse {
    let mut buf = Vec::new();
    let families = prometheus::gather();
    let _ = TextEncoder::new().encode(&families, &mut buf);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf)
}
