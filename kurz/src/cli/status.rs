//! `kurz status`: a terminal summary of running kurz processes, read from their
//! `/metrics`, like a sync farm's stats page: rates per role, lag and queue age per
//! partition, parked work, and the most frequent errors.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Base URLs of the processes to summarise.
    #[arg(long = "url", default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    urls: Vec<String>,
    /// Seconds between the two scrapes that rates are computed from.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

pub fn main(a: Args) -> ExitCode {
    super::run("status", async {
        print!("{}", run(&a.urls, Duration::from_secs_f64(a.interval.max(0.1))).await?);
        Ok::<_, String>(())
    })
}

pub use kurz_telemetry::exposition::{parse, Sample};

fn sum(samples: &[Sample], name: &str, filter: impl Fn(&BTreeMap<String, String>) -> bool) -> f64 {
    samples.iter().filter(|s| s.name == name && filter(&s.labels)).map(|s| s.value).sum()
}

/// Renders the summary from two scrapes `interval` apart.
pub fn render(url: &str, before: &[Sample], after: &[Sample], interval: Duration) -> String {
    let secs = interval.as_secs_f64().max(0.001);
    let rate = |name: &str, f: &dyn Fn(&BTreeMap<String, String>) -> bool| (sum(after, name, f) - sum(before, name, f)).max(0.0) / secs;
    let mut o = format!("kurz status: {url}\n\n");
    o += "rates (per second)\n";
    o += &format!("  http requests       {:>10.1}\n", rate("kurz_http_requests_total", &|_| true));
    o += &format!(
        "  http 5xx            {:>10.1}\n",
        rate("kurz_http_requests_total", &|l| l.get("status").is_some_and(|s| s.starts_with('5')))
    );
    o += &format!("  redirects           {:>10.1}\n", rate("kurz_redirects_total", &|l| l.get("result").is_some_and(|r| r == "found")));
    o += &format!("  commands submitted  {:>10.1}\n", rate("kurz_commands_submitted_total", &|_| true));
    o += &format!(
        "  commands decided    {:>10.1}\n",
        rate("kurz_decider_commands_total", &|l| l.get("result").is_some_and(|r| r == "decided"))
    );
    o += &format!("  records projected   {:>10.1}\n", rate("kurz_projector_records_applied_total", &|_| true));
    o += &format!("  clicks captured     {:>10.1}\n", rate("kurz_clicks_total", &|l| l.get("result").is_some_and(|r| r == "appended")));
    let lookups = sum(after, "kurz_cache_lookups_total", |_| true);
    let hits = sum(after, "kurz_cache_lookups_total", |l| l.get("result").is_some_and(|r| r == "hit" || r == "negative_hit"));
    if lookups > 0.0 {
        o += &format!("  cache hit ratio     {:>9.1}%\n", 100.0 * hits / lookups);
    }

    o += "\nlag per partition (records waiting, age of the oldest)\n";
    let mut lag: BTreeMap<(String, u32), (f64, f64)> = BTreeMap::new();
    for s in after.iter().filter(|s| s.name == "kurz_projector_lag_records" || s.name == "kurz_projector_lag_seconds") {
        let topic = s.labels.get("topic").cloned().unwrap_or_default();
        let p = s.labels.get("partition").and_then(|p| p.parse().ok()).unwrap_or(0);
        let e = lag.entry((topic, p)).or_default();
        if s.name == "kurz_projector_lag_records" {
            e.0 = s.value;
        } else {
            e.1 = s.value;
        }
    }
    if lag.is_empty() {
        o += "  (no projector in these processes)\n";
    }
    for ((topic, p), (records, age)) in &lag {
        o += &format!("  {topic:<20} {p:>3}  {records:>8.0} records  {age:>8.3} s\n");
    }

    let parked = sum(after, "kurz_parked_records", |_| true);
    o += &format!("\nparked records: {parked:.0}\n");
    if after.iter().any(|s| s.name.starts_with("kurz_watchdog_")) {
        o += "\nwatchdog\n";
        o += &format!("  stalled partitions        {:>8.0}\n", sum(after, "kurz_watchdog_stalled_partitions", |_| true));
        o += &format!("  commands without outcome  {:>8.0}\n", sum(after, "kurz_watchdog_commands_without_outcome", |_| true));
        o += &format!("  dead-lettered (total)     {:>8.0}\n", sum(after, "kurz_dead_letters_total", |_| true));
        for kind in ["parked", "partition", "command"] {
            let r = rate("kurz_watchdog_redriven_total", &|l| l.get("kind").is_some_and(|k| k == kind));
            o += &format!("  re-driven {kind:<15} {r:>8.1}/s\n");
        }
    }

    o += "\ntop errors (since start)\n";
    let mut errors: Vec<(String, f64)> = Vec::new();
    for s in after.iter() {
        let key = match s.name.as_str() {
            "kurz_http_requests_total" if s.labels.get("status").is_some_and(|st| st.starts_with('5') || st == "429") => {
                format!(
                    "http {} {} -> {}",
                    s.labels.get("method").map(String::as_str).unwrap_or(""),
                    s.labels.get("route").map(String::as_str).unwrap_or(""),
                    s.labels["status"]
                )
            }
            "kurz_cache_errors_total" => format!("cache {} failed", s.labels.get("op").map(String::as_str).unwrap_or("")),
            "kurz_decider_restarts_total" => {
                format!("decider partition {} restarted", s.labels.get("partition").map(String::as_str).unwrap_or(""))
            }
            "kurz_projector_retries_total" => format!("projector {} retried", s.labels.get("partition").map(String::as_str).unwrap_or("")),
            "kurz_projector_undecodable_total" => {
                format!("undecodable records on {}", s.labels.get("topic").map(String::as_str).unwrap_or(""))
            }
            "kurz_clicks_total" if s.labels.get("result").is_some_and(|r| r != "appended") => format!("clicks {}", s.labels["result"]),
            "kurz_dead_letters_total" => format!("dead-lettered records of {}", s.labels.get("topic").map(String::as_str).unwrap_or("")),
            "kurz_watchdog_stalls_total" => format!("stalled partitions of {}", s.labels.get("topic").map(String::as_str).unwrap_or("")),
            "kurz_commands_submitted_total" if s.labels.get("outcome").is_some_and(|r| r == "timeout" || r == "log_unavailable") => {
                format!("commands {}", s.labels["outcome"])
            }
            _ => continue,
        };
        if s.value > 0.0 {
            errors.push((key, s.value));
        }
    }
    errors.sort_by(|a, b| b.1.total_cmp(&a.1));
    if errors.is_empty() {
        o += "  none\n";
    }
    for (k, v) in errors.iter().take(10) {
        o += &format!("  {v:>8.0}  {k}\n");
    }
    o
}

/// Scrapes each URL twice, `interval` apart, and prints the summary.
pub async fn run(urls: &[String], interval: Duration) -> Result<String, String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(|e| e.to_string())?;
    let scrape = |url: String| {
        let client = client.clone();
        async move {
            // A URL may carry credentials: it is shown redacted, and reqwest's errors
            // without it.
            let shown = kurz_storage::redact(&url);
            let text = client
                .get(format!("{}/metrics", url.trim_end_matches('/')))
                .send()
                .await
                .map_err(|e| format!("{shown}: {}", e.without_url()))?
                .text()
                .await
                .map_err(|e| format!("{shown}: {}", e.without_url()))?;
            Ok::<_, String>(parse(&text))
        }
    };
    let mut out = String::new();
    let mut before = Vec::new();
    for u in urls {
        before.push(scrape(u.clone()).await?);
    }
    tokio::time::sleep(interval).await;
    for (u, b) in urls.iter().zip(before) {
        let a = scrape(u.clone()).await?;
        out += &render(&kurz_storage::redact(u), &b, &a, interval);
        out += "\n";
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rates_lag_and_top_errors() {
        let before = parse("kurz_http_requests_total{method=\"GET\",route=\"/{code}\",status=\"302\"} 100\nkurz_http_requests_total{method=\"POST\",route=\"/urls\",status=\"503\"} 1\n");
        let after = parse(
            "kurz_http_requests_total{method=\"GET\",route=\"/{code}\",status=\"302\"} 300\nkurz_http_requests_total{method=\"POST\",route=\"/urls\",status=\"503\"} 7\n\
             kurz_projector_lag_records{topic=\"kurz.events.v1\",partition=\"2\"} 40\nkurz_projector_lag_seconds{topic=\"kurz.events.v1\",partition=\"2\"} 1.5\n",
        );
        let out = render("http://x", &before, &after, Duration::from_secs(2));
        assert!(out.contains("http requests            103.0"), "{out}");
        assert!(out.contains("http 5xx                   3.0"), "{out}");
        assert!(out.contains("kurz.events.v1         2        40 records     1.500 s"), "{out}");
        assert!(out.contains("7  http POST /urls -> 503"), "{out}");
        assert!(!out.contains("watchdog"), "no watchdog section without a watchdog: {out}");
    }

    #[test]
    fn renders_the_watchdog_section() {
        let before = parse("kurz_watchdog_redriven_total{kind=\"partition\"} 1\n");
        let after = parse(
            "kurz_watchdog_redriven_total{kind=\"partition\"} 5\nkurz_watchdog_stalled_partitions{topic=\"kurz.events.v1\"} 2\n\
             kurz_watchdog_commands_without_outcome 3\nkurz_dead_letters_total{topic=\"kurz.events.v1\"} 4\n\
             kurz_parked_records{topic=\"kurz.events.v1\"} 6\n",
        );
        let out = render("http://x", &before, &after, Duration::from_secs(2));
        assert!(out.contains("parked records: 6"), "{out}");
        assert!(out.contains("stalled partitions               2"), "{out}");
        assert!(out.contains("commands without outcome         3"), "{out}");
        assert!(out.contains("re-driven partition            2.0/s"), "{out}");
        assert!(out.contains("4  dead-lettered records of kurz.events.v1"), "{out}");
    }
}
