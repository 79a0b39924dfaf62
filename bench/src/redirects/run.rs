//! The run: the servers (the two ceilings, `kurz serve` and two query edges in one
//! process), loading and checking the links, the alternating timed rounds with kurz's
//! own view of each (`server_view.rs`), and the [`Report`] of it all.

use super::cpu::{children_cpu_seconds, cpu_seconds, settle, settle_tail_cpu};
use super::profile::{perf_available, profile};
use super::report::{
    Correctness, CpuSplit, Generator, Load, Machine, PerRound, Ratios, Report, Side, Target, Targets, TARGET_OPTIONS_RATIO,
};
use super::report::{TARGET_CAPTURE_COST, TARGET_P99_RATIO, TARGET_SERVER_P99_MS, TARGET_THROUGHPUT_RATIO};
use super::server_view::{scrape, server_side, ServerSide};
use super::wrk::{require_wrk, Client, Gen, WrkRun, WRK_SCRIPT};
use super::{Args, Profile};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[derive(clap::Parser)]
struct Wrap {
    #[command(flatten)]
    c: kurz::Config,
}

impl Wrap {
    fn parse_from_args(data: &Path) -> kurz::Config {
        use clap::Parser;
        let data = data.to_str().unwrap();
        Wrap::parse_from(["kurz", "--data-dir", data, "--auth", "open", "--log", "warn"]).c
    }
}

/// The `Location` both ceilings answer every request with.
pub(super) const CEILING_LOCATION: &str = "https://example.com/x";

fn hot_code(i: usize) -> String {
    format!("h{i:06}")
}
fn big_code(i: usize) -> String {
    format!("m{i:06}")
}
fn target(code: &str) -> String {
    format!("https://example.com/{code}")
}
fn options_code(i: usize) -> String {
    format!("o{i:06}")
}
/// The path a request for options link `i` asks for, with a query to forward.
fn options_path(i: usize) -> String {
    format!("{}?utm_source=bench&gclid=g{i}", options_code(i))
}

/// Creates `n` links (`o000000`…) that each have a validity window around now, query
/// forwarding (the default) and two rules that a desktop browser misses (`device` = ios,
/// then `language` = de), through `POST /urls`, 32 at a time (waiting out the write
/// limit); what failed, if any.
async fn create_options_links(client: &reqwest::Client, base: &str, n: usize) -> Vec<String> {
    let now = kurz_schemas::Ts::now().0;
    let (since, until) = (kurz_schemas::Ts(now - 3_600_000).to_rfc3339(), kurz_schemas::Ts(now + 86_400_000).to_rfc3339());
    let created: Vec<String> = futures::stream::iter(0..n)
        .map(|i| {
            let code = options_code(i);
            let body = serde_json::json!({
                "short_code": code,
                "original_url": format!("{}?ref=kurz", target(&code)),
                "valid_since": since,
                "valid_until": until,
                "rules": [
                    {"conditions": [{"type": "device", "value": "ios"}], "target": format!("{}/ios", target(&code))},
                    {"conditions": [{"type": "language", "value": "de"}], "target": format!("{}/de", target(&code))},
                ],
            });
            let (client, url) = (client.clone(), format!("{base}/urls"));
            async move {
                // Past the per-address write limit (KURZ_RATE_WRITES): wait and ask again.
                for _ in 0..120 {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status() == 201 => return None,
                        Ok(r) if r.status() == 429 => tokio::time::sleep(Duration::from_millis(500)).await,
                        Ok(r) => return Some(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                        Err(e) => return Some(e.to_string()),
                    }
                }
                Some("still rate limited after 60 s".into())
            }
        })
        .buffer_unordered(32)
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    created
}

/// xorshift64*: deterministic samples without another dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

// ---------------------------------------------------------------- the ceiling

/// A bare hyper HTTP/1 server: every request gets `302 Location: https://example.com/x`.
async fn ceiling(listener: tokio::net::TcpListener, stop: CancellationToken) {
    use http_body_util::Empty;
    use hyper::body::Bytes;
    loop {
        let io = tokio::select! {
            r = listener.accept() => match r { Ok((io, _)) => io, Err(_) => continue },
            _ = stop.cancelled() => return,
        };
        // As kurz's server loop does (`web/src/serve.rs`).
        let _ = io.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(
                    hyper::Response::builder()
                        .status(302)
                        .header(hyper::header::LOCATION, CEILING_LOCATION)
                        .body(Empty::<Bytes>::new())
                        .unwrap(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(io), svc).await;
        });
    }
}

/// The same answer from axum with a single route (`/{code}`) under `axum::serve`: the
/// framework's own cost over bare hyper (kurz routes its other endpoints with axum; its
/// redirects take the fast path ahead of the router).
async fn axum_ceiling(listener: tokio::net::TcpListener, stop: CancellationToken) {
    use axum::http::{header, HeaderValue, StatusCode};
    let router = axum::Router::new().route(
        "/{code}",
        axum::routing::get(|| async { (StatusCode::FOUND, [(header::LOCATION, HeaderValue::from_static(CEILING_LOCATION))]) }),
    );
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|io| {
        let _ = io.set_nodelay(true);
    });
    let _ = axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await;
}

// ---------------------------------------------------------------- loading and checking

async fn bulk_load(client: &reqwest::Client, base: &str, rows: Vec<(String, String)>, chunk: usize, tag: &str) -> u64 {
    let bodies: Vec<(usize, String)> = rows
        .chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let mut body = String::with_capacity(c.len() * 40 + 32);
            body.push_str("short_code,original_url\n");
            for (code, url) in c {
                body.push_str(code);
                body.push(',');
                body.push_str(url);
                body.push('\n');
            }
            (i, body)
        })
        .collect();
    let counts: Vec<u64> = futures::stream::iter(bodies)
        .map(|(i, body)| {
            let (client, url, key) = (client.clone(), format!("{base}/urls/bulk"), format!("bench-{tag}-{i}"));
            async move {
                // A 504 means the outcome is still on its way; the same Idempotency-Key completes it.
                for attempt in 0..10 {
                    let r = client
                        .post(&url)
                        .header("content-type", "text/csv")
                        .header("idempotency-key", &key)
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            let v: Value = r.json().await.unwrap();
                            assert_eq!(v["skipped"], 0, "bulk chunk {i} skipped rows: {v}");
                            return v["count"].as_u64().unwrap();
                        }
                        Ok(r) => eprintln!("bulk chunk {i} attempt {attempt}: {} {}", r.status(), r.text().await.unwrap_or_default()),
                        Err(e) => eprintln!("bulk chunk {i} attempt {attempt}: {e}"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                panic!("bulk chunk {i} never loaded");
            }
        })
        .buffer_unordered(2)
        .collect()
        .await;
    counts.iter().sum()
}

/// GETs every `(path, expected Location)` (None: expect 404) and counts what was wrong.
async fn check(
    client: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    cases: Vec<(String, Option<String>)>,
) -> (usize, Vec<String>) {
    let n = cases.len();
    let wrong: Vec<String> = futures::stream::iter(cases)
        .map(|(code, want)| {
            let (client, url, method) = (client.clone(), format!("{base}/{code}"), method.clone());
            async move {
                let r = client.request(method.clone(), &url).send().await.unwrap();
                let status = r.status().as_u16();
                let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
                let ok = match &want {
                    Some(w) => status == 302 && loc.as_deref() == Some(w.as_str()),
                    None => status == 404,
                };
                (!ok).then(|| format!("{method} /{code}: {status} {loc:?}, wanted {want:?}"))
            }
        })
        .buffer_unordered(32)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    (n, wrong)
}

// ---------------------------------------------------------------- the run

/// One timed run of one side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Measured {
    pub round: usize,
    pub wrk: WrkRun,
    /// This process's CPU (user+sys) per request: the server side's cost, wrk excluded.
    pub server_cpu_us_per_request: f64,
    /// The same, counting the work the run left behind (click projection) until idle.
    pub server_cpu_us_per_request_incl_drain: f64,
    /// Seconds until the process was idle after wrk stopped.
    pub drain_s: f64,
    /// wrk's own CPU (user+system) per request.
    pub wrk_cpu_us_per_request: f64,
    /// kurz's own view (kurz's runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerSide>,
}

/// The whole benchmark: servers up, links loaded and checked, warm-up, the rounds, the
/// profile if asked for or a target is missed.
pub(super) async fn run(args: Args) -> Report {
    require_wrk();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = Wrap::parse_from_args(&data);
    // As the binary does: JSON logs at the configured filter (warn), so the tracing span
    // per request costs what it costs in production.
    let _telemetry = kurz::telemetry::init(&cfg.log, "kurz");

    // The ceiling.
    let stop = CancellationToken::new();
    let ceiling_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ceiling_url = format!("http://{}", ceiling_listener.local_addr().unwrap());
    tokio::spawn(ceiling(ceiling_listener, stop.clone()));
    let axum_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let axum_url = format!("http://{}", axum_listener.local_addr().unwrap());
    tokio::spawn(axum_ceiling(axum_listener, stop.clone()));

    // kurz.
    let app = kurz::App::build(cfg).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // The same edge with click capture off, over the same storage, cache and runtime:
    // the capture-off side of the capture cost.
    let ports = app.ports().clone();
    let no_capture = kurz_query_edge::capture::CaptureSettings { enabled: false, ..Default::default() };
    let edge_off = kurz_query_edge::QueryEdge::build(ports.log.clone(), ports.store.clone(), ports.cache.clone(), &no_capture).unwrap();
    let off_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let off_url = format!("http://{}", off_listener.local_addr().unwrap());
    tokio::spawn(edge_off.run_until_stopped(off_listener, kurz_web::serve::Limits::default(), stop.clone()));
    // And with capture on, as a query-edge process of a scaled-out deployment does its
    // part: capture, enrich, encode and durably append each click to a log (embedded,
    // fsynced), whose clicks a projector elsewhere aggregates. Here no projector reads
    // that log, so the pair measures the edge's cost alone.
    let edge_log = kurz_storage::open_log("embedded", &dir.path().join("edge-log")).unwrap();
    kurz_storage::log::ensure_topics(&*edge_log, 8, 8).await.unwrap();
    let capture = kurz_query_edge::capture::CaptureSettings { secret: b"bench".to_vec(), ..Default::default() };
    let edge_on = kurz_query_edge::QueryEdge::build(edge_log, ports.store, ports.cache, &capture).unwrap();
    let on_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let on_url = format!("http://{}", on_listener.local_addr().unwrap());
    tokio::spawn(edge_on.run_until_stopped(on_listener, kurz_web::serve::Limits::default(), stop.clone()));
    let server = tokio::spawn(app.run_until_stopped(listener, stop.clone()));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !client.get(format!("{base}/health/ready")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "kurz never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Load: the hot set, then the large set.
    let t0 = Instant::now();
    let hot: Vec<String> = (0..args.hot).map(hot_code).collect();
    let loaded_hot = bulk_load(&client, &base, hot.iter().map(|c| (c.clone(), target(c))).collect(), args.chunk, "hot").await;
    assert_eq!(loaded_hot, args.hot as u64);
    let big_rows: Vec<(String, String)> = (0..args.links).map(|i| (big_code(i), target(&big_code(i)))).collect();
    let loaded_big = bulk_load(&client, &base, big_rows, args.chunk, "big").await;
    assert_eq!(loaded_big, args.links as u64);
    let load_s = t0.elapsed().as_secs_f64();
    eprintln!("loaded {} links in {load_s:.1} s", loaded_hot + loaded_big);
    let failed = create_options_links(&client, &base, args.hot).await;
    assert!(failed.is_empty(), "{} of {} links with options not created, e.g. {:?}", failed.len(), args.hot, failed.first());
    settle().await;

    // Path files and the wrk script.
    let hot_paths = dir.path().join("hot.txt");
    std::fs::write(&hot_paths, hot.join("\n") + "\n").unwrap();
    let big_paths = dir.path().join("big.txt");
    std::fs::write(&big_paths, (0..args.links).map(big_code).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let options_paths = dir.path().join("options.txt");
    std::fs::write(&options_paths, (0..args.hot).map(options_path).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    // The plain hot links asked the same way: the baseline of the options round.
    let hot_query_paths = dir.path().join("hot-query.txt");
    let hot_query: Vec<String> = (0..args.hot).map(|i| format!("{}?utm_source=bench&gclid=g{i}", hot_code(i))).collect();
    std::fs::write(&hot_query_paths, hot_query.join("\n") + "\n").unwrap();
    let script = dir.path().join("random-path.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let gen = Gen { script, connections: args.connections, threads: args.threads };

    // Correctness pass, before any timing.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cases: Vec<(String, Option<String>)> = hot.iter().map(|c| (c.clone(), Some(target(c)))).collect();
    cases.extend((0..2000).map(|_| big_code(rng.below(args.links))).map(|c| (c.clone(), Some(target(&c)))));
    cases.extend((0..20).map(|i| (format!("nope{i:03}"), None)));
    let options_cases: Vec<(String, Option<String>)> = (0..args.hot)
        .map(|i| (options_path(i), Some(format!("{}?ref=kurz&utm_source=bench&gclid=g{i}", target(&options_code(i))))))
        .collect();
    cases.extend(options_cases.iter().cloned());
    let (mut checked, mut wrong) = check(&client, &base, reqwest::Method::GET, cases).await;
    let (n, w) = check(&client, &base, reqwest::Method::HEAD, hot.iter().take(100).map(|c| (c.clone(), Some(target(c)))).collect()).await;
    (checked, wrong) = (checked + n, [wrong, w].concat());
    for url in [&off_url, &on_url] {
        let (n, w) = check(&client, url, reqwest::Method::GET, hot.iter().map(|c| (c.clone(), Some(target(c)))).collect()).await;
        (checked, wrong) = (checked + n, [wrong, w].concat());
    }
    let (n, w) = check(&client, &on_url, reqwest::Method::GET, options_cases).await;
    (checked, wrong) = (checked + n, [wrong, w].concat());
    let fixed: Vec<(String, Option<String>)> = (0..20).map(|i| (hot_code(i), Some(CEILING_LOCATION.to_string()))).collect();
    let (n1, w1) = check(&client, &ceiling_url, reqwest::Method::GET, fixed.clone()).await;
    let (n2, w2) = check(&client, &axum_url, reqwest::Method::GET, fixed).await;
    let (ceiling_checked, ceiling_wrong) = (n1 + n2, [w1, w2].concat());
    assert!(wrong.is_empty() && ceiling_wrong.is_empty(), "correctness pass failed: {:?}", [&wrong[..], &ceiling_wrong[..]].concat());
    eprintln!("correctness: {checked} kurz and {ceiling_checked} ceiling responses as expected");

    // Warm-up (JIT of the Lua script, connection setup, cache admission of the hot set).
    let warm = args.duration.clamp(2, 5);
    for (url, paths, who) in [
        (&ceiling_url, &hot_paths, Client::Bare),
        (&axum_url, &hot_paths, Client::Bare),
        (&base, &hot_paths, Client::Bare),
        (&off_url, &hot_paths, Client::Bare),
        (&on_url, &hot_paths, Client::Bare),
        (&base, &big_paths, Client::Bare),
        (&base, &hot_query_paths, Client::Browser),
        (&base, &options_paths, Client::Browser),
        (&on_url, &hot_query_paths, Client::Browser),
        (&on_url, &options_paths, Client::Browser),
    ] {
        gen.run(url, paths, warm, "GET", who).await;
        settle().await;
    }

    // Alternating rounds. The two targets compare `kurz_hot` with `ceiling`; `axum_ceiling`
    // and `kurz_hot_head` (HEAD: its click is captured and flagged, but not counted) split the gap; `kurz_hot_no_capture` is
    // the same edge with capture off, over the same storage and cache: the capture cost.
    // `kurz_hot_options` asks for links with options as a browser would (a query to
    // forward, a User-Agent and Accept-Language for the rules to read); its baseline is
    // `kurz_hot_browser`, the plain hot links asked the same way (their query forwarded
    // too, and the same clicks to capture and project).
    let sides: [(&str, &str, &String, &PathBuf, &str, Client); 9] = [
        ("ceiling", "ceiling", &ceiling_url, &hot_paths, "GET", Client::Bare),
        ("kurz_hot", "kurz hot", &base, &hot_paths, "GET", Client::Bare),
        ("kurz_hot_no_capture", "kurz hot, capture off", &off_url, &hot_paths, "GET", Client::Bare),
        ("kurz_edge_capture", "kurz edge, capture on, no projector", &on_url, &hot_paths, "GET", Client::Bare),
        ("axum_ceiling", "axum 1-route", &axum_url, &hot_paths, "GET", Client::Bare),
        ("kurz_hot_head", "kurz hot HEAD", &base, &hot_paths, "HEAD", Client::Bare),
        ("kurz_1m", "kurz 1M", &base, &big_paths, "GET", Client::Bare),
        ("kurz_hot_browser", "kurz hot, as a browser", &base, &hot_query_paths, "GET", Client::Browser),
        ("kurz_hot_options", "kurz hot, options", &base, &options_paths, "GET", Client::Browser),
    ];
    // The options target's pair, on the query-edge role (capture on, no projector): the
    // role that evaluates options, without the click projection whose batching makes a
    // `kurz serve` run's CPU per request vary by more than options cost.
    let edge_pair = [
        ("kurz_edge_browser", "kurz edge, as a browser", &on_url, &hot_query_paths, "GET", Client::Browser),
        ("kurz_edge_options", "kurz edge, options", &on_url, &options_paths, "GET", Client::Browser),
    ];
    let mut runs: BTreeMap<&str, Vec<Measured>> = BTreeMap::new();
    for round in 1..=args.rounds {
        // The options round and its baseline swap places every other round, so neither
        // always runs second (on a store that has grown by the other's clicks).
        let mut order = sides.to_vec();
        if round % 2 == 0 {
            order.swap(7, 8);
        }
        // The edge pair runs twice, mirrored (A B B A, then B A A B the next round): each
        // side runs as often early as late in the block, so drift of a shared machine
        // within it cancels out of the round's ratio.
        let [a, b] = if round % 2 == 1 { edge_pair } else { [edge_pair[1], edge_pair[0]] };
        order.extend([a, b, b, a]);
        for (key, label, url, paths, method, who) in order {
            let before = scrape(&client, &base).await;
            let (c0, k0) = (cpu_seconds(), children_cpu_seconds());
            let (w, _) = gen.run(url, paths, args.duration, method, who).await;
            let (cpu, wrk_cpu) = (cpu_seconds() - c0, children_cpu_seconds() - k0);
            let after = scrape(&client, &base).await;
            let drain_s = settle().await;
            let cpu_drained = cpu_seconds() - c0 - settle_tail_cpu();
            let m = Measured {
                round,
                server_cpu_us_per_request: cpu * 1e6 / w.requests.max(1) as f64,
                server_cpu_us_per_request_incl_drain: cpu_drained * 1e6 / w.requests.max(1) as f64,
                drain_s,
                wrk_cpu_us_per_request: wrk_cpu * 1e6 / w.requests.max(1) as f64,
                server: key.starts_with("kurz").then(|| server_side(&before, &after, method)),
                wrk: w,
            };
            eprintln!(
                "round {round} {label}: {:.0} req/s, p99 {:.2} ms, server p99 {:?} ms, {:.1} µs CPU/req",
                m.wrk.requests_per_s,
                m.wrk.p99_ms,
                m.server.as_ref().and_then(|s| s.p99_ms),
                m.server_cpu_us_per_request
            );
            runs.entry(key).or_default().push(m);
        }
    }

    let side = |k: &str| Side::of(&runs[k]);
    let (ceiling, axum_ceiling, kurz_hot, kurz_hot_head) = (side("ceiling"), side("axum_ceiling"), side("kurz_hot"), side("kurz_hot_head"));
    let (kurz_hot_no_capture, kurz_edge_capture, kurz_1m) = (side("kurz_hot_no_capture"), side("kurz_edge_capture"), side("kurz_1m"));
    let (kurz_hot_browser, kurz_hot_options) = (side("kurz_hot_browser"), side("kurz_hot_options"));
    let (kurz_edge_browser, kurz_edge_options) = (side("kurz_edge_browser"), side("kurz_edge_options"));
    let rps = |a: &Side, b: &Side| a.requests_per_s / b.requests_per_s;
    let p99 = |a: &Side, b: &Side| a.p99_ms / b.p99_ms;
    let throughput_ratio = rps(&kurz_hot, &ceiling);
    let p99_ratio = p99(&kurz_hot, &ceiling);
    let server_p99 = kurz_hot.server_p99_ms.unwrap_or(f64::NAN);
    let capture_cost = 1.0 - rps(&kurz_edge_capture, &kurz_hot_no_capture);
    let capture_and_projection_cost = 1.0 - rps(&kurz_hot, &kurz_hot_no_capture);
    // A side's requests per second over its runs in `round` (the edge pair runs twice).
    let round_rps = |k: &str, round: usize| runs[k].iter().filter(|m| m.round == round).map(|m| m.wrk.requests_per_s).sum::<f64>();
    let per_round: Vec<PerRound> = (0..args.rounds)
        .map(|i| {
            let r = |k: &str| &runs[k][i].wrk;
            PerRound {
                round: i + 1,
                hot_throughput_ratio: r("kurz_hot").requests_per_s / r("ceiling").requests_per_s,
                hot_p99_ratio: r("kurz_hot").p99_ms / r("ceiling").p99_ms,
                large_throughput_ratio: r("kurz_1m").requests_per_s / r("ceiling").requests_per_s,
                capture_cost: 1.0 - r("kurz_edge_capture").requests_per_s / r("kurz_hot_no_capture").requests_per_s,
                capture_and_projection_cost: 1.0 - r("kurz_hot").requests_per_s / r("kurz_hot_no_capture").requests_per_s,
                options_throughput_ratio: r("kurz_hot_options").requests_per_s / r("kurz_hot_browser").requests_per_s,
                edge_options_throughput_ratio: round_rps("kurz_edge_options", i + 1) / round_rps("kurz_edge_browser", i + 1),
            }
        })
        .collect();
    // The query-edge role alone (capture on, projection elsewhere): what serves
    // redirects in a scaled-out deployment.
    let edge_throughput_ratio = rps(&kurz_edge_capture, &ceiling);
    let edge_p99_ratio = p99(&kurz_edge_capture, &ceiling);
    let targets = Targets {
        edge_throughput_ratio: Target::at_least(edge_throughput_ratio, TARGET_THROUGHPUT_RATIO),
        edge_client_p99_ratio: Target::at_most(edge_p99_ratio, TARGET_P99_RATIO),
        hot_throughput_ratio: Target::at_least(throughput_ratio, TARGET_THROUGHPUT_RATIO),
        hot_client_p99_ratio: Target::at_most(p99_ratio, TARGET_P99_RATIO),
        hot_server_p99_ms: Target::below(server_p99, TARGET_SERVER_P99_MS),
        capture_cost: Target::below(capture_cost, TARGET_CAPTURE_COST),
        options_throughput_ratio: Target::at_least(rps(&kurz_edge_options, &kurz_edge_browser), TARGET_OPTIONS_RATIO),
        options_server_p99_ms: Target::below(
            kurz_edge_options.server_p99_ms.unwrap_or(f64::NAN).max(kurz_hot_options.server_p99_ms.unwrap_or(f64::NAN)),
            TARGET_SERVER_P99_MS,
        ),
    };
    let all_met = [
        &targets.hot_throughput_ratio,
        &targets.hot_client_p99_ratio,
        &targets.hot_server_p99_ms,
        &targets.capture_cost,
        &targets.options_throughput_ratio,
        &targets.options_server_p99_ms,
    ]
    .iter()
    .all(|t| t.met);

    let profile_result = match args.profile {
        Profile::Never => None,
        Profile::Auto if all_met => None,
        _ if !perf_available() => {
            eprintln!("perf is not usable here (apt-get install -y linux-perf); no profile taken");
            None
        }
        _ => {
            eprintln!("profiling a kurz hot run with perf…");
            settle().await;
            let keep = args.perf_dir.clone().unwrap_or_else(|| dir.path().join("perf"));
            let mut done = Vec::new();
            for (label, url, paths, method, who) in [
                ("ceiling", &ceiling_url, &hot_paths, "GET", Client::Bare),
                ("kurz HEAD", &base, &hot_paths, "HEAD", Client::Bare),
                ("kurz edge capture on", &on_url, &hot_paths, "GET", Client::Bare),
                ("kurz GET", &base, &hot_paths, "GET", Client::Bare),
                ("kurz edge as a browser", &on_url, &hot_query_paths, "GET", Client::Browser),
                ("kurz edge with options", &on_url, &options_paths, "GET", Client::Browser),
            ] {
                done.extend(profile(&gen, label, (url.as_str(), paths.as_path(), method, who), &keep, args.duration).await);
            }
            (!done.is_empty()).then_some(done)
        }
    };

    stop.cancel();
    let _ = server.await;
    let cpu = |s: &Side| s.server_cpu_us_per_request_incl_drain;
    let loaded = loaded_hot + loaded_big;
    Report {
        benchmark: "redirects".into(),
        generator: Generator {
            tool: "wrk (Debian package wrk, 4.1.0)".into(),
            command: format!(
                "wrk -c {} -t {} -d {}s --latency -s random-path.lua <url> -- <codes file> [GET|HEAD]",
                args.connections, args.threads, args.duration
            ),
            connections: args.connections,
            script: WRK_SCRIPT.trim().into(),
        },
        machine: Machine { cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        hot_links: args.hot,
        large_links: args.links,
        rounds: args.rounds,
        load: Load { links: loaded, seconds: load_s, links_per_s: loaded as f64 / load_s, rows_per_request: args.chunk },
        correctness: Correctness {
            kurz_responses_checked: checked,
            ceiling_responses_checked: ceiling_checked,
            wrong: wrong.len() + ceiling_wrong.len(),
        },
        ratios: Ratios {
            hot_throughput_kurz_to_ceiling: throughput_ratio,
            hot_p99_kurz_to_ceiling: p99_ratio,
            hot_server_cpu_per_request_kurz_to_ceiling: cpu(&kurz_hot) / cpu(&ceiling),
            large_throughput_kurz_to_ceiling: rps(&kurz_1m, &ceiling),
            large_p99_kurz_to_ceiling: p99(&kurz_1m, &ceiling),
            axum_throughput_to_ceiling: rps(&axum_ceiling, &ceiling),
            hot_head_throughput_kurz_to_ceiling: rps(&kurz_hot_head, &ceiling),
            hot_edge_capture_on_to_off: rps(&kurz_edge_capture, &kurz_hot_no_capture),
            hot_single_process_capture_on_to_off: rps(&kurz_hot, &kurz_hot_no_capture),
            single_process_capture_and_projection_cost: capture_and_projection_cost,
            hot_options_throughput_to_plain: rps(&kurz_hot_options, &kurz_hot_browser),
            edge_options_throughput_to_plain: rps(&kurz_edge_options, &kurz_edge_browser),
            per_round,
        },
        cpu_us_per_request_split: CpuSplit {
            http_stack: cpu(&ceiling),
            router: cpu(&axum_ceiling) - cpu(&ceiling),
            request_path: cpu(&kurz_hot_no_capture) - cpu(&axum_ceiling),
            capture: cpu(&kurz_edge_capture) - cpu(&kurz_hot_no_capture),
            projection: cpu(&kurz_hot) - cpu(&kurz_edge_capture),
        },
        targets,
        all_targets_met: all_met,
        profile: profile_result,
        ceiling,
        axum_ceiling,
        kurz_hot,
        kurz_hot_head,
        kurz_hot_no_capture,
        kurz_edge_capture,
        kurz_1m,
        kurz_hot_browser: Some(kurz_hot_browser),
        kurz_hot_options: Some(kurz_hot_options),
        kurz_edge_browser: Some(kurz_edge_browser),
        kurz_edge_options: Some(kurz_edge_options),
    }
}
