//! One create, traced: the spans exported to a local OTLP/HTTP receiver form one trace
//! with all four hops, each the child of the one before: the HTTP request, the
//! decider's decision, the projector's handling of the event, and the read-model write.

mod support;
use axum::routing::post;
use kurz_testkit::http::client;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use support::*;

#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
}

fn spans_of(body: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                out.push(Span { trace: text("traceId"), id: text("spanId"), parent: text("parentSpanId"), name: text("name") });
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_one_trace_through_http_decider_projector_and_read_model() {
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                sink.lock().unwrap().extend(spans_of(&v));
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut s = Server::start(Opts { extra_env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint)], ..Opts::default() });
    let r = client().post(s.url("/urls")).json(&json!({"original_url": "https://traced.io"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    // Shutdown flushes the exporter.
    let status = tokio::task::block_in_place(|| s.terminate());
    assert!(status.success());

    let spans = received.lock().unwrap().clone();
    let decide = spans.iter().find(|x| x.name == "decide").unwrap_or_else(|| panic!("no decide span in {spans:?}"));
    let trace: Vec<&Span> = spans.iter().filter(|x| x.trace == decide.trace).collect();
    let by_id = |id: &str| trace.iter().find(|x| x.id == id).copied();
    let http = by_id(&decide.parent).unwrap_or_else(|| panic!("decide's parent is not in the trace: {trace:?}"));
    assert_eq!(http.name, "http", "the decision continues the request's span");
    // One project span per event of the command (the link, then the answer).
    let projects: Vec<&&Span> = trace.iter().filter(|x| x.name == "project" && x.parent == decide.id).collect();
    assert!(!projects.is_empty(), "no project span under decide: {trace:?}");
    let apply = trace.iter().find(|x| x.name == "apply_read_model" && projects.iter().any(|p| p.id == x.parent));
    assert!(apply.is_some(), "no read-model write under the projection: {trace:?}");
}
