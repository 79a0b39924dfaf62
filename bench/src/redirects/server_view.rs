//! kurz's own view of a run: its `/metrics` scraped before and after, read as the
//! redirect route's latency quantiles (from the histogram's bucket deltas), cache hits,
//! store reads and clicks.

use kurz_telemetry::exposition::{self, Sample};
use serde::{Deserialize, Serialize};

/// Whether `s` is of the metric `name` and has the labels `want` (others may be present).
fn matches(s: &Sample, name: &str, want: &[(&str, &str)]) -> bool {
    s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
}

/// The sum of the samples `matches` selects.
fn total(m: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    m.iter().filter(|s| matches(s, name, want)).map(|s| s.value).sum()
}

/// The labels of the redirect route for `method`.
fn route(method: &str) -> [(&str, &str); 2] {
    [("route", "/{code}"), ("method", method)]
}

/// Quantile `q` of the requests observed between two scrapes, from the bucket deltas of
/// the redirect route's histogram, linearly interpolated inside the bucket the rank falls
/// in (as Prometheus' `histogram_quantile` does). Seconds.
fn histogram_quantile(before: &[Sample], after: &[Sample], q: f64, method: &str) -> Option<f64> {
    let name = "kurz_http_request_duration_seconds_bucket";
    let route = route(method);
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .filter(|s| matches(s, name, &route))
        .map(|s| {
            let le = s.labels["le"].as_str();
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            let prev =
                before.iter().find(|b| matches(b, name, &route) && b.labels.get("le") == s.labels.get("le")).map_or(0.0, |b| b.value);
            (bound, s.value - prev)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let count = buckets.last()?.1;
    if count <= 0.0 {
        return None;
    }
    let rank = q * count;
    let (mut lower, mut below) = (0.0, 0.0);
    for (bound, cum) in &buckets {
        if *cum >= rank {
            if bound.is_infinite() {
                return Some(lower); // highest finite bound, like Prometheus
            }
            let inside = cum - below;
            return Some(if inside <= 0.0 { *bound } else { lower + (bound - lower) * (rank - below) / inside });
        }
        (lower, below) = (*bound, *cum);
    }
    None
}

/// kurz's own view of one run: the differences of its metrics between the scrapes before
/// and after it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ServerSide {
    /// Requests the redirect route's histogram counted.
    pub requests: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Upper bound of the bucket p99 fell in (the value is known only to that bucket).
    pub p99_bucket_le_ms: Option<f64>,
    pub cache_hit_ratio: Option<f64>,
    pub redirects_from_store: f64,
    pub clicks_appended: f64,
    pub clicks_dropped: f64,
}

/// kurz's view of the run between the scrapes `before` and `after`, for the redirect
/// route's `method`.
pub(super) fn server_side(before: &[Sample], after: &[Sample], method: &str) -> ServerSide {
    let d = |name: &str, want: &[(&str, &str)]| total(after, name, want) - total(before, name, want);
    let ms = |q| histogram_quantile(before, after, q, method).map(|s| s * 1000.0);
    let p99 = ms(0.99);
    let bounds = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0];
    let hits = d("kurz_cache_lookups_total", &[("result", "hit")]);
    let lookups = d("kurz_cache_lookups_total", &[]);
    ServerSide {
        requests: d("kurz_http_request_duration_seconds_count", &route(method)),
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: p99,
        p99_bucket_le_ms: p99.and_then(|p| bounds.iter().copied().find(|b| p <= *b + 1e-9)),
        cache_hit_ratio: (lookups > 0.0).then(|| hits / lookups),
        redirects_from_store: d("kurz_redirects_total", &[("source", "store")]),
        clicks_appended: d("kurz_clicks_total", &[("result", "appended")]),
        clicks_dropped: d("kurz_clicks_total", &[("result", "dropped")]),
    }
}

/// kurz's `/metrics`, parsed.
pub(super) async fn scrape(client: &reqwest::Client, base: &str) -> Vec<Sample> {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    exposition::parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape_of(b50us: u32, b100us: u32, inf: u32, hits: u32, misses: u32) -> Vec<Sample> {
        let route = r#"method="GET",route="/{code}""#;
        exposition::parse(&format!(
            "# TYPE kurz_http_request_duration_seconds histogram\n\
             kurz_http_request_duration_seconds_bucket{{{route},le=\"0.00005\"}} {b50us}\n\
             kurz_http_request_duration_seconds_bucket{{{route},le=\"0.0001\"}} {b100us}\n\
             kurz_http_request_duration_seconds_bucket{{{route},le=\"+Inf\"}} {inf}\n\
             kurz_http_request_duration_seconds_count{{{route}}} {inf}\n\
             kurz_cache_lookups_total{{result=\"hit\"}} {hits}\n\
             kurz_cache_lookups_total{{result=\"miss\"}} {misses}\n"
        ))
    }

    #[test]
    fn server_side_from_histogram_deltas() {
        let before = scrape_of(10, 10, 10, 5, 0);
        let after = scrape_of(60, 110, 110, 95, 10);
        let s = server_side(&before, &after, "GET");
        assert_eq!(s.requests, 100.0);
        // p50: rank 50 fills the first bucket exactly; p99: 49 of the second bucket's 50.
        assert!((s.p50_ms.unwrap() - 0.05).abs() < 1e-9, "{s:?}");
        assert!((s.p99_ms.unwrap() - 0.099).abs() < 1e-9, "{s:?}");
        assert_eq!(s.p99_bucket_le_ms, Some(0.1));
        assert_eq!(s.cache_hit_ratio, Some(0.9));
        // Requests above the highest finite bound read as that bound, as in Prometheus.
        assert_eq!(histogram_quantile(&before, &scrape_of(10, 10, 20, 0, 0), 0.5, "GET"), Some(0.0001));
        assert_eq!(histogram_quantile(&before, &before, 0.5, "GET"), None);
        assert_eq!(histogram_quantile(&before, &after, 0.5, "HEAD"), None);
    }
}
