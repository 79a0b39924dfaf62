//! Create throughput and create-to-redirect latency over HTTP, on the embedded log and
//! on Kafka (a tansu broker on loopback) in the same run; the embedded run is the
//! baseline. Each client loops: `POST /urls` (201), then `GET /{code}` until it answers
//! 302 with the new target; the latency is from sending the POST to that 302.

use crate::stats::{summarize, Summary};
use clap::Parser;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Creates per backend.
    #[arg(long, default_value_t = 4000)]
    pub creates: usize,
}

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    c: kurz::Config,
}

struct Run {
    creates_per_s: f64,
    latency: Summary,
    redirect_retries: u64,
}

async fn run_one(log_url: &str, args: &Args) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let cfg = Wrap::parse_from([
        "kurz",
        "--data-dir",
        &data,
        "--log-url",
        log_url,
        "--auth",
        "open",
        "--partitions",
        "8",
        "--log",
        "warn",
        // The benchmark measures the write path from one client, not the limits on it.
        "--rate-limits",
        "off",
    ])
    .c;
    let app = kurz::App::build(cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(listener, stop.clone()));
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(args.clients).build().unwrap();
    // Ready when a write round-trips.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = client.post(format!("{base}/urls")).json(&json!({"original_url": "https://warm.up/"})).send().await;
        if r.is_ok_and(|r| r.status() == 201) {
            break;
        }
        assert!(Instant::now() < deadline, "kurz on {log_url} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, base, next, retries, total) = (client.clone(), base.clone(), next.clone(), retries.clone(), args.creates);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return lat;
                }
                let target = format!("https://bench.io/{i}");
                let t0 = Instant::now();
                let r = client.post(format!("{base}/urls")).json(&json!({"original_url": target})).send().await.unwrap();
                assert_eq!(r.status(), 201, "create {i}");
                let v: serde_json::Value = r.json().await.unwrap();
                let code = v["short_code"].as_str().unwrap().to_string();
                loop {
                    let r = client.get(format!("{base}/{code}")).send().await.unwrap();
                    if r.status() == 302 && r.headers()["location"] == target.as_str() {
                        break;
                    }
                    retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                lat.push(t0.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let _ = server.await;
    Run {
        creates_per_s: args.creates as f64 / elapsed.as_secs_f64(),
        latency: summarize(&mut all),
        redirect_retries: retries.load(std::sync::atomic::Ordering::Relaxed),
    }
}

pub async fn run(args: Args) -> serde_json::Value {
    let embedded = run_one("embedded", &args).await;
    let broker = kurz_testkit::Tansu::memory();
    let kafka = run_one(&broker.url(), &args).await;
    let side = |r: &Run| json!({"creates_per_s": r.creates_per_s, "create_to_redirect": r.latency, "redirect_retries": r.redirect_retries});
    json!({
        "benchmark": "creates",
        "clients": args.clients,
        "creates": args.creates,
        "embedded": side(&embedded),
        "kafka_tansu": side(&kafka),
        "throughput_ratio_kafka_to_embedded": kafka.creates_per_s / embedded.creates_per_s,
        "p99_ratio_kafka_to_embedded": kafka.latency.p99_ms / embedded.latency.p99_ms,
    })
}

pub fn markdown(v: &serde_json::Value) -> String {
    let row = |name: &str, s: &serde_json::Value| {
        let l = &s["create_to_redirect"];
        format!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {} |\n",
            s["creates_per_s"].as_f64().unwrap(),
            l["p50_ms"].as_f64().unwrap(),
            l["p99_ms"].as_f64().unwrap(),
            l["max_ms"].as_f64().unwrap(),
            s["redirect_retries"]
        )
    };
    let mut md = String::from("# Creates over HTTP: embedded log vs Kafka\n\n");
    md += &format!(
        "`kurz serve` in-process, {} concurrent HTTP clients, {} creates per backend. Latency: from sending `POST /urls` to the first `GET /{{code}}` answering 302 with the new target. Kafka is a tansu 0.6 broker (memory storage) on loopback; the embedded run is the baseline.\n\n",
        v["clients"], v["creates"]
    );
    md += "| log | creates/s | p50 ms | p99 ms | max ms | redirect retries |\n|---|---|---|---|---|---|\n";
    md += &row("embedded (baseline)", &v["embedded"]);
    md += &row("kafka (tansu)", &v["kafka_tansu"]);
    md += &format!(
        "\nKafka / embedded: throughput **{:.2}×**, p99 **{:.2}×**. A redirect retry would mean a 2xx came before the redirect served the link (read-your-writes); 0 is expected.\n\nReproduce: `cargo run --release -p kurz-bench -- creates`\n",
        v["throughput_ratio_kafka_to_embedded"].as_f64().unwrap(),
        v["p99_ratio_kafka_to_embedded"].as_f64().unwrap()
    );
    md
}
