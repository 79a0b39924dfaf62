//! Edit-to-edge staleness: how long after an edit every edge's near cache serves it.
//!
//! Setup, all real: the embedded log and store, a real `redis-server` as the shared
//! cache, the deciders and the projector, and `--edges` query edges, each with its own
//! in-process near cache over Redis, kept current by following the events topic.
//! For each edit (`PUT`-equivalent command), the time each edge's near cache receives the
//! new state is stamped by a probe at the cache port; staleness is the slowest edge.
//! Baseline, same run: the log's own append-to-tail latency (an appended record waking
//! a reader), the floor any event-driven invalidation sits on.

use crate::stats::{summarize, Summary};
use async_trait::async_trait;
use kurz_command_api::{AuthMode, CommandApi, Settings};
use kurz_projector::Projector;
use kurz_schemas::event::Answer;
use kurz_schemas::{Actor, Command, CommandBody, CommandId, ShortCode, TargetUrl};
use kurz_storage::cache::memory::MemoryCache;
use kurz_storage::cache::tiered::Tiered;
use kurz_storage::cache::{CachedLink, LinkCache};
use kurz_storage::{open_cache, open_log, open_store, NewRecord, StorageError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Query edges, each with its own near cache.
    #[arg(long, default_value_t = 4)]
    pub edges: usize,
    /// Links to spread the edits over.
    #[arg(long, default_value_t = 200)]
    pub links: usize,
    /// Edits to measure.
    #[arg(long, default_value_t = 500)]
    pub edits: usize,
}

/// A near cache that stamps when each target URL first arrives.
struct Probe {
    inner: MemoryCache,
    seen: Mutex<HashMap<String, Instant>>,
}

#[async_trait]
impl LinkCache for Probe {
    async fn get(&self, code: &str) -> Result<Option<CachedLink>, StorageError> {
        self.inner.get(code).await
    }
    async fn offer(&self, code: &str, entry: CachedLink) -> Result<(), StorageError> {
        if let Some(l) = &entry.link {
            self.seen.lock().unwrap().entry(l.original_url.clone()).or_insert_with(Instant::now);
        }
        self.inner.offer(code, entry).await
    }
}

pub async fn run(args: Args) -> serde_json::Value {
    let redis = kurz_testkit::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log("embedded", dir.path()).unwrap();
    kurz_storage::log::ensure_topics(&*log, 8, 8).await.unwrap();
    let store = open_store("embedded", dir.path()).unwrap();
    let stop = CancellationToken::new();

    let settings = Settings { auth: AuthMode::Open, secret: b"bench".to_vec(), ..Settings::default() };
    let keys = kurz_storage::vault::Keyring::new(kurz_storage::open_vault("embedded", dir.path()).await.unwrap());
    let api = CommandApi::build(log.clone(), store.clone(), keys.clone(), settings).await.unwrap();
    tokio::spawn(api.deciders().run_until_stopped(stop.clone()));
    let projector = Projector::new(log.clone(), store.clone(), Some(open_cache(&redis.url()).unwrap()), keys);
    tokio::spawn(projector.run_until_stopped(stop.clone()));

    let mut probes = Vec::new();
    let mut edges: Vec<Arc<dyn LinkCache>> = Vec::new();
    for _ in 0..args.edges {
        let probe = Arc::new(Probe { inner: MemoryCache::new(100_000), seen: Mutex::new(HashMap::new()) });
        let far = open_cache(&format!("{}?near_capacity=0", redis.url())).unwrap();
        let cache: Arc<dyn LinkCache> = Arc::new(Tiered { near: probe.clone(), far });
        tokio::spawn(kurz_query_edge::follow::run_until_stopped(log.clone(), cache.clone(), stop.clone()));
        probes.push(probe);
        edges.push(cache);
    }

    let state = api.state();
    let mut links = Vec::new();
    for i in 0..args.links {
        let body = CommandBody::CreateLink {
            code: ShortCode::parse(&format!("stale{i}")).unwrap(),
            custom: true,
            original_url: TargetUrl::parse(&format!("https://start.io/{i}")).unwrap(),
            title: None,
            user_id: None,
            existing_ok: false,
            options: Default::default(),
            domain: None,
        };
        let o = state.submit(Command::new(CommandId::random(), Actor::Anonymous, body)).await.unwrap();
        let Answer::Link { link } = o.answer else { panic!("create failed: {:?}", o.answer) };
        links.push(link);
    }
    // Warm every edge: each near cache holds every link, as a busy edge would.
    for e in &edges {
        for l in &links {
            let got = e.get(&l.short_code).await.unwrap();
            assert!(got.is_some_and(|c| c.link.is_some()), "edge cache warm-up");
        }
    }

    let mut from_send = Vec::with_capacity(args.edits);
    let mut from_ack = Vec::with_capacity(args.edits);
    for k in 0..args.edits {
        let l = &links[k % links.len()];
        let url = format!("https://edit.io/{k}");
        let body = CommandBody::UpdateLink {
            code: ShortCode::parse(&l.short_code).unwrap(),
            id: l.id,
            title: None,
            original_url: Some(TargetUrl::parse(&url).unwrap()),
            is_active: None,
            owner: None,
            options: Default::default(),
            domain: None,
        };
        let t0 = Instant::now();
        let o = state.submit(Command::new(CommandId::random(), Actor::Anonymous, body)).await.unwrap();
        assert_eq!(o.status, 200);
        let acked = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(10);
        let slowest = loop {
            let stamps: Vec<Option<Instant>> = probes.iter().map(|p| p.seen.lock().unwrap().get(&url).copied()).collect();
            if stamps.iter().all(Option::is_some) {
                break stamps.into_iter().flatten().max().unwrap();
            }
            assert!(Instant::now() < deadline, "edit {k} did not reach every edge in 10 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        from_send.push(slowest.saturating_duration_since(t0));
        from_ack.push(slowest.saturating_duration_since(acked));
    }

    // Baseline: append → a tailing reader wakes.
    log.ensure_topic("bench.baseline", 1).await.unwrap();
    let mut floor = Vec::with_capacity(args.edits);
    for i in 0..args.edits as u64 {
        let l2 = log.clone();
        let waiter = tokio::spawn(async move {
            l2.wait_for("bench.baseline", 0, i, Duration::from_secs(10)).await.unwrap();
            Instant::now()
        });
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        log.append("bench.baseline", 0, vec![NewRecord::new("k", vec![0; 64])]).await.unwrap();
        floor.push(waiter.await.unwrap().saturating_duration_since(t0));
    }
    stop.cancel();

    let s_send = summarize(&mut from_send);
    let s_ack = summarize(&mut from_ack);
    let s_floor = summarize(&mut floor);
    report(&args, s_send, s_ack, s_floor)
}

fn report(args: &Args, send: Summary, ack: Summary, floor: Summary) -> serde_json::Value {
    let ratio = if floor.p99_ms > 0.0 { send.p99_ms / floor.p99_ms } else { 0.0 };
    serde_json::json!({
        "benchmark": "edit_to_edge_staleness",
        "edges": args.edges,
        "links": args.links,
        "edits": args.edits,
        "staleness_from_edit_sent": send,
        "staleness_after_edit_acknowledged": ack,
        "baseline_log_append_to_tail": floor,
        "p99_ratio_to_baseline": ratio,
        "target_p99_ms": 100.0,
        "meets_target": send.p99_ms <= 100.0,
    })
}

pub fn markdown(v: &serde_json::Value) -> String {
    let row = |name: &str, s: &serde_json::Value| {
        format!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            s["n"],
            s["p50_ms"].as_f64().unwrap(),
            s["p90_ms"].as_f64().unwrap(),
            s["p99_ms"].as_f64().unwrap(),
            s["max_ms"].as_f64().unwrap()
        )
    };
    let mut md = String::from("# Edit-to-edge staleness\n\n");
    md += &format!(
        "{} edges with their own near caches over one Redis; {} edits over {} links. Staleness is the time until the slowest edge's near cache holds the edit.\n\n",
        v["edges"], v["edits"], v["links"]
    );
    md += "| measure | n | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n";
    md += &row("staleness, from edit sent", &v["staleness_from_edit_sent"]);
    md += &row("staleness, after the edit's 2xx", &v["staleness_after_edit_acknowledged"]);
    md += &row("baseline: log append to tail", &v["baseline_log_append_to_tail"]);
    md += &format!(
        "\np99 staleness / p99 baseline: **{:.2}×**. Target p99 ≤ 100 ms: **{}**.\n\nReproduce: `cargo run --release -p kurz-bench -- staleness`\n",
        v["p99_ratio_to_baseline"].as_f64().unwrap(),
        if v["meets_target"].as_bool().unwrap() { "met" } else { "NOT met" }
    );
    md
}
