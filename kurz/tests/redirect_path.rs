//! Redirects are answered ahead of the router (`web/src/serve.rs` `FastPath`,
//! `query-edge/src/routes/redirect.rs` `fast_path`). From outside nothing may tell the
//! two paths apart: the same answers, the same metrics and log fields, and no other
//! route shadowed.

mod support;
use kurz_testkit::http::{client, json_of};
use support::*;

use serde_json::{json, Value};

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn redirects_answer_and_count_as_their_route_and_no_other_route_is_shadowed() {
    let srv = Server::start(Opts::default());
    let http = client();
    let link: Value = json_of(http.post(srv.url("/urls")).json(&json!({"original_url": "https://example.com/fast?a=1"}))).await;
    let code = link["short_code"].as_str().unwrap().to_string();
    let metrics = || async { http.get(srv.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    let before = metrics().await;

    for _ in 0..3 {
        let r = http.get(srv.url(&format!("/{code}"))).send().await.unwrap();
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "https://example.com/fast?a=1");
    }
    let head = http.head(srv.url(&format!("/{code}"))).send().await.unwrap();
    assert_eq!(head.status(), 302);
    assert_eq!(head.headers()["location"], "https://example.com/fast?a=1");
    assert_eq!(head.headers()["content-length"], "0", "a HEAD answer is delimited, as a routed one is");
    let head_missing = http.head(srv.url("/NoSuchCode9")).send().await.unwrap();
    assert_eq!(head_missing.status(), 404);
    let get_missing_len = http.get(srv.url("/NoSuchCode9")).send().await.unwrap().headers()["content-length"].clone();
    assert_eq!(head_missing.headers()["content-length"], get_missing_len, "HEAD tells the GET body's length");
    let missing = http.get(srv.url("/NoSuchCode9")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-type"], "application/json");
    let body: Value = missing.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|m| !m.is_empty()), "a JSON error: {body}");

    // What the router serves is still the router's: single-segment routes are reserved
    // names, escapes and the stats suffix go to the router.
    let users = http.get(srv.url("/users")).send().await.unwrap();
    assert_eq!(users.status(), 200);
    assert!(users.json::<Value>().await.unwrap().is_array(), "GET /users lists users");
    assert_eq!(http.get(srv.url("/health")).send().await.unwrap().status(), 200);
    let stats: Value = json_of(http.get(srv.url(&format!("/{code}+")))).await;
    assert_eq!(stats["short_code"], code.as_str());
    let escaped = format!("/%{:02X}{}", code.as_bytes()[0], &code[1..]);
    let r = http.get(srv.url(&escaped)).send().await.unwrap();
    assert_eq!(r.status(), 302, "an escaped code still redirects, through the router");
    let post = http.post(srv.url(&format!("/{code}"))).send().await.unwrap();
    assert_eq!(post.status(), 405, "only GET and HEAD take the fast path");

    let after = metrics().await;
    let delta = |labels: &[&str]| metric(&after, "kurz_http_requests_total", labels) - metric(&before, "kurz_http_requests_total", labels);
    let route = "route=\"/{code}\"";
    assert_eq!(delta(&[route, "method=\"GET\"", "status=\"302\""]), 4.0, "3 fast redirects and the escaped one");
    assert_eq!(delta(&[route, "method=\"HEAD\"", "status=\"302\""]), 1.0);
    assert_eq!(delta(&[route, "method=\"GET\"", "status=\"404\""]), 2.0);
    assert_eq!(delta(&[route, "method=\"HEAD\"", "status=\"404\""]), 1.0);
    assert_eq!(delta(&[route, "method=\"GET\"", "status=\"200\""]), 1.0, "the stats view");
    let timed = metric(&after, "kurz_http_request_duration_seconds_count", &[route, "method=\"GET\""])
        - metric(&before, "kurz_http_request_duration_seconds_count", &[route, "method=\"GET\""]);
    assert_eq!(timed, 7.0, "every GET of the route is timed, on either path");
    assert_eq!(
        metric(&after, "kurz_redirects_total", &["result=\"found\""]) - metric(&before, "kurz_redirects_total", &["result=\"found\""]),
        5.0
    );
}
