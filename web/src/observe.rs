//! RED metrics per route and the `/metrics` endpoint, plus a tracing span per request
//! keyed by the matched route (never the raw path, which would explode cardinality).

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use prometheus::{
    register_histogram_vec, register_int_counter_vec, Encoder, Histogram, HistogramVec, IntCounter, IntCounterVec, TextEncoder,
};
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::time::Instant;
use tracing::Instrument;

pub struct HttpMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub rate_limited: IntCounterVec,
}

/// `kurz_rate_limited_total{limit}`: requests answered 429 by a rate limit.
pub fn rate_limited(limit: &str) -> IntCounter {
    http_metrics().rate_limited.with_label_values(&[limit])
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
        rate_limited: register_int_counter_vec!("kurz_rate_limited_total", "Requests answered 429 by a rate limit, by limit.", &["limit"])
            .unwrap(),
    })
}

pub async fn red_metrics(req: Request, next: Next) -> Response {
    // `MatchedPath` is an `Arc<str>`: a clone, not a copy, survives `next.run(req)`.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", |m| m.as_str());
    let method = method_label(req.method());
    let span = tracing::info_span!("http", endpoint = route, method);
    let started = Instant::now();
    let resp = next.run(req).instrument(span).await;
    record(route, method, resp.status(), started);
    resp
}

/// What `red_metrics` and the catch-panic layer do for a routed request, for a request
/// a role answers before its router (`serve::FastPath`): the same span, the same metric
/// children, a panic turned into the same JSON 500.
pub fn observed<F: Future<Output = Response>>(route: &'static str, method: &Method, handler: F) -> impl Future<Output = Response> {
    let method = method_label(method);
    async move {
        let span = tracing::info_span!("http", endpoint = route, method);
        let started = Instant::now();
        let resp = match AssertUnwindSafe(handler).catch_unwind().instrument(span).await {
            Ok(r) => r,
            Err(panic) => crate::error::panic_response(panic),
        };
        record(route, method, resp.status(), started);
        resp
    }
}

/// [`observed`] for a handler that may answer at once: the same span, metric children
/// and panic handling, with no future. `None` from the handler (it has to wait on
/// I/O) records nothing: the caller goes on to [`observed`], which times the request.
pub fn observed_now(route: &'static str, method: &Method, handler: impl FnOnce() -> Option<Response>) -> Option<Response> {
    let method = method_label(method);
    let span = tracing::info_span!("http", endpoint = route, method);
    let started = Instant::now();
    let answered = {
        let _in_span = span.enter();
        std::panic::catch_unwind(AssertUnwindSafe(handler))
    };
    let resp = match answered {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(panic) => crate::error::panic_response(panic),
    };
    record(route, method, resp.status(), started);
    Some(resp)
}

fn record(route: &str, method: &'static str, status: StatusCode, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64();
    with_route_handles(route, method, |h| {
        h.duration.observe(elapsed);
        h.requests(status).inc();
    });
}

/// The method as a label: the standard ones by name, anything else as `other`, so a
/// client cannot grow the label set.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// One route and method's metric children, resolved once per thread: a lookup in
/// `HistogramVec::with_label_values` hashes the labels and takes the vector's lock,
/// shared by every core, on each request.
struct RouteHandles {
    route: Box<str>,
    method: &'static str,
    duration: Histogram,
    by_status: Vec<(StatusCode, IntCounter)>,
}

impl RouteHandles {
    fn requests(&mut self, status: StatusCode) -> &IntCounter {
        let i = match self.by_status.iter().position(|(s, _)| *s == status) {
            Some(i) => i,
            None => {
                let c = http_metrics().requests.with_label_values(&[&*self.route, self.method, status.as_str()]);
                self.by_status.push((status, c));
                self.by_status.len() - 1
            }
        };
        &self.by_status[i].1
    }
}

thread_local! {
    /// Bounded: the routes are the router's (plus `unmatched`), the methods the labels above.
    static ROUTE_HANDLES: RefCell<Vec<RouteHandles>> = const { RefCell::new(Vec::new()) };
}

fn with_route_handles(route: &str, method: &'static str, f: impl FnOnce(&mut RouteHandles)) {
    ROUTE_HANDLES.with(|all| {
        let mut all = all.borrow_mut();
        let i = match all.iter().position(|h| h.method == method && &*h.route == route) {
            Some(i) => i,
            None => {
                let duration = http_metrics().duration.with_label_values(&[route, method]);
                all.push(RouteHandles { route: route.into(), method, duration, by_status: Vec::new() });
                all.len() - 1
            }
        };
        f(&mut all[i]);
    });
}

/// Prometheus text exposition of the process-wide registry.
pub async fn metrics_handler() -> impl IntoResponse {
    let mut buf = Vec::new();
    let families = prometheus::gather();
    let _ = TextEncoder::new().encode(&families, &mut buf);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(route: &str, status: &str) -> u64 {
        http_metrics().requests.with_label_values(&[route, "GET", status]).get()
    }
    fn timed(route: &str) -> u64 {
        http_metrics().duration.with_label_values(&[route, "GET"]).get_sample_count()
    }

    #[test]
    fn an_answer_given_at_once_is_counted_and_timed_and_a_panic_is_a_500() {
        // Routes of their own, so no other test's requests are counted here.
        let ok = observed_now("/test-now-ok", &Method::GET, || Some(StatusCode::FOUND.into_response()));
        assert_eq!(ok.map(|r| r.status()), Some(StatusCode::FOUND));
        assert_eq!((requests("/test-now-ok", "302"), timed("/test-now-ok")), (1, 1));

        let waits = observed_now("/test-now-later", &Method::GET, || None);
        assert!(waits.is_none());
        assert_eq!(timed("/test-now-later"), 0, "a handler that has to wait records nothing here");

        let panicked = observed_now("/test-now-panic", &Method::GET, || panic!("boom"));
        assert_eq!(panicked.map(|r| r.status()), Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert_eq!(requests("/test-now-panic", "500"), 1, "a panic is answered and counted as a 500");
    }
}
