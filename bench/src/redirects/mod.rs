//! Redirect throughput and latency: `kurz serve` against a bare hyper server that answers
//! every request with a fixed 302 (the ceiling), in the same process and the same tokio
//! runtime, driven by Debian's `wrk` over loopback.
//!
//! kurz runs on the embedded default (`--auth open`, `--log warn`, telemetry initialised as
//! the binary does) and is loaded over `POST /urls/bulk` with a hot set and a large set.
//! Runs alternate (ceiling, kurz hot, kurz large; repeated) so machine noise hits every
//! side, and medians are reported. kurz's own view comes from its
//! `kurz_http_request_duration_seconds` histogram, scraped around each run. When a target
//! is missed, one more kurz hot run is sampled with `perf` and summarised.

use clap::ValueEnum;
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod findings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Links in the hot set (all cached after warm-up).
    #[arg(long, default_value_t = 1000)]
    pub hot: usize,
    /// Links in the large set (uniformly random codes).
    #[arg(long, default_value_t = 1_000_000)]
    pub links: usize,
    /// Rows per `POST /urls/bulk` request.
    #[arg(long, default_value_t = 50_000)]
    pub chunk: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Alternating rounds (ceiling, kurz hot, kurz large).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sample kurz with `perf` during an extra hot run: when a target is missed, always, or never.
    #[arg(long, value_enum, default_value_t = Profile::Auto)]
    pub profile: Profile,
    /// Keep the perf recordings in this directory (default: deleted with the run's temp dir).
    #[arg(long)]
    pub perf_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Profile {
    Auto,
    Always,
    Never,
}

#[derive(clap::Parser)]
struct Wrap {
    #[command(flatten)]
    c: kurz::Config,
}

const CEILING_LOCATION: &str = "https://example.com/x";
const TARGET_THROUGHPUT_RATIO: f64 = 0.90;
const TARGET_P99_RATIO: f64 = 1.25;
const TARGET_SERVER_P99_MS: f64 = 1.0;
/// Click capture may cost at most this share of redirect throughput (issue #5).
const TARGET_CAPTURE_COST: f64 = 0.10;

/// Picks a uniformly random path from the file named after `--` for every request. Each
/// wrk thread has its own Lua state; `setup` gives each a distinct seed.
const WRK_SCRIPT: &str = r#"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local paths = {}
local n = 0
function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    n = n + 1
    paths[n] = "/" .. line
  end
  f:close()
  method = args[2] or "GET"
  math.randomseed(os.time() * 1000 + id)
end

function request()
  return wrk.format(method, paths[math.random(n)])
end
"#;

fn hot_code(i: usize) -> String {
    format!("h{i:06}")
}
fn big_code(i: usize) -> String {
    format!("m{i:06}")
}
fn target(code: &str) -> String {
    format!("https://example.com/{code}")
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

// ---------------------------------------------------------------- wrk

#[derive(Debug, Clone, Default, Serialize)]
struct WrkRun {
    requests_per_s: f64,
    requests: u64,
    p50_ms: f64,
    p75_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// "Non-2xx or 3xx responses" (a 404 would show here).
    non_2xx_3xx: u64,
    socket_errors: u64,
}

fn wrk_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60_000.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

fn parse_wrk(out: &str) -> Option<WrkRun> {
    let mut r = WrkRun::default();
    let mut in_dist = false;
    for line in out.lines() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if t.starts_with("Latency Distribution") {
            in_dist = true;
            continue;
        }
        if in_dist && words.len() == 2 && words[0].ends_with('%') {
            let v = wrk_duration_ms(words[1])?;
            match words[0] {
                "50%" => r.p50_ms = v,
                "75%" => r.p75_ms = v,
                "90%" => r.p90_ms = v,
                "99%" => r.p99_ms = v,
                _ => {}
            }
            continue;
        }
        in_dist = false;
        if words.first() == Some(&"Latency") && words.len() >= 4 {
            r.max_ms = wrk_duration_ms(words[3])?;
        } else if t.starts_with("Requests/sec:") {
            r.requests_per_s = words.get(1)?.parse().ok()?;
        } else if words.len() > 2 && words[1] == "requests" && words[2] == "in" {
            r.requests = words[0].parse().ok()?;
        } else if t.starts_with("Non-2xx or 3xx responses:") {
            r.non_2xx_3xx = words.last()?.parse().ok()?;
        } else if t.starts_with("Socket errors:") {
            // Socket errors: connect 0, read 0, write 0, timeout 0
            r.socket_errors = t.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum();
        }
    }
    (r.requests_per_s > 0.0 && r.p99_ms > 0.0).then_some(r)
}

fn require_wrk() {
    let ok = Command::new("wrk").arg("--version").output().is_ok();
    if !ok {
        eprintln!(
            "kurz-bench redirects: `wrk` is not installed. It is the load generator of this benchmark \
             (Debian package `wrk`): install it with `sudo apt-get install -y wrk` and run again."
        );
        std::process::exit(2);
    }
}

struct Gen {
    script: PathBuf,
    connections: usize,
    threads: usize,
}

impl Gen {
    async fn run(&self, url: &str, paths: &Path, secs: u64, method: &str) -> (WrkRun, String) {
        let mut cmd = Command::new("wrk");
        cmd.args(["-c", &self.connections.to_string(), "-t", &self.threads.to_string(), "-d", &format!("{secs}s"), "--latency"])
            .arg("-s")
            .arg(&self.script)
            .arg(url)
            .arg("--")
            .arg(paths)
            .arg(method);
        let out = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("run wrk");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "wrk failed: {}\n{}", text, String::from_utf8_lossy(&out.stderr));
        let parsed = parse_wrk(&text).unwrap_or_else(|| panic!("cannot parse wrk's output:\n{text}"));
        (parsed, text)
    }
}

// ---------------------------------------------------------------- process CPU

/// Fields of `/proc/self/stat` after the command name, in seconds for the tick fields.
fn stat_seconds(index: usize) -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // state is field 3, so field n is at index n - 3; USER_HZ is 100 on Linux.
    rest.split_whitespace().nth(index).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0
}

/// User + system CPU seconds of this process (all threads; wrk is another process).
fn cpu_seconds() -> f64 {
    stat_seconds(11) + stat_seconds(12) // utime (14), stime (15)
}

/// User + system CPU seconds of finished, waited-for children: wrk, during a run.
fn children_cpu_seconds() -> f64 {
    stat_seconds(13) + stat_seconds(14) // cutime (16), cstime (17)
}

/// Waits until this process is idle (background work such as click projection from the
/// previous run has drained), so it does not bill the next run. Idle: a 500 ms window
/// with under 25 ms of CPU. Returns the seconds waited, the idle window included.
async fn settle() -> f64 {
    let start = Instant::now();
    loop {
        let c0 = cpu_seconds();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let used = cpu_seconds() - c0;
        LAST_IDLE_WINDOW_CPU.store(used.to_bits(), std::sync::atomic::Ordering::Relaxed);
        if used < 0.025 || start.elapsed() > Duration::from_secs(120) {
            return start.elapsed().as_secs_f64();
        }
    }
}

static LAST_IDLE_WINDOW_CPU: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// CPU of the final (idle) window of the last `settle`, not work of the run.
fn settle_tail_cpu() -> f64 {
    f64::from_bits(LAST_IDLE_WINDOW_CPU.load(std::sync::atomic::Ordering::Relaxed))
}

// ---------------------------------------------------------------- Prometheus text

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.trim_end_matches('}');
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                loop {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim_start_matches(',').to_string();
                    if key.is_empty() {
                        break;
                    }
                    chars.next(); // opening quote
                    let mut val = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                if let Some(n) = chars.next() {
                                    val.push(if n == 'n' { '\n' } else { n });
                                }
                            }
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.insert(key, val);
                }
                (name.to_string(), labels)
            }
        };
        out.push(Sample { name, labels, value });
    }
    out
}

fn matches(s: &Sample, name: &str, want: &[(&str, &str)]) -> bool {
    s.name == name && want.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
}

fn total(m: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    m.iter().filter(|s| matches(s, name, want)).map(|s| s.value).sum()
}

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

#[derive(Debug, Clone, Serialize)]
struct ServerSide {
    requests: f64,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    /// Upper bound of the bucket p99 fell in (the value is known only to that bucket).
    p99_bucket_le_ms: Option<f64>,
    cache_hit_ratio: Option<f64>,
    redirects_from_store: f64,
    clicks_appended: f64,
    clicks_dropped: f64,
}

fn server_side(before: &[Sample], after: &[Sample], method: &str) -> ServerSide {
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

async fn scrape(client: &reqwest::Client, base: &str) -> Vec<Sample> {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    parse_prometheus(&text)
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

// ---------------------------------------------------------------- perf

#[derive(Debug, Clone, Serialize)]
struct ProfileResult {
    label: String,
    tool: String,
    samples_note: String,
    cpu_us_per_request: f64,
    /// Self time by component, percent of this process's samples.
    categories: Vec<(String, f64)>,
    /// Samples by thread name.
    threads: Vec<(String, f64)>,
    /// Top symbols by self time (percent).
    top_self: Vec<(String, f64)>,
    /// Inclusive time of the functions on the redirect path (percent).
    inclusive: Vec<(String, f64)>,
}

/// Component of a symbol by the first crate its name mentions (ordered: the more specific first).
fn category(sym: &str, kernel: bool) -> &'static str {
    if kernel {
        return "kernel (loopback TCP, epoll, syscalls)";
    }
    const RULES: &[(&[&str], &str)] = &[
        (&["prometheus::"], "prometheus (metrics labels, observe)"),
        (&["tracing_subscriber", "tracing_core", "tracing::"], "tracing (spans, subscriber)"),
        (&["quick_cache::", "moka::", "crossbeam_epoch", "foldhash"], "hot cache (quick_cache)"),
        (&["redb::"], "redb (click append/projection)"),
        (&["serde_json", "serde::"], "JSON (serde)"),
        (&["url::", "idna::"], "url parsing"),
        (&["kurz_projector", "kurz_command_api"], "kurz projector/decider"),
        (&["kurz_"], "kurz edge/web/storage code"),
        (&["axum::", "matchit::", "tower::", "tower_http", "tower_layer"], "axum router, tower layers"),
        (&["hyper_util", "hyper::", "httparse", "http::", "http_body"], "hyper / http"),
        (&["tokio::", "mio::"], "tokio runtime"),
        (&["async_trait"], "async_trait"),
        (
            &["malloc", "free", "realloc", "_int_", "tcache", "_mi_", "mi_", "alloc::alloc", "__rust_alloc", "__rust_dealloc"],
            "allocator (mimalloc)",
        ),
        (&["memcpy", "memmove", "memset", "memcmp", "__memc", "__mems", "strlen"], "libc mem*/str*"),
        (&["pthread", "futex", "__lll_", "syscall", "epoll", "__libc_", "__GI_", "send", "recv", "write", "read"], "libc syscalls/locks"),
        (&["core::", "alloc::", "std::"], "Rust std/core"),
    ];
    for (needles, name) in RULES {
        if needles.iter().any(|n| sym.contains(n)) {
            return name;
        }
    }
    "other"
}

/// `perf report --stdio` rows: `  12.34%   1.23%  command  dso  [.] symbol` (children
/// mode has two percentages). Returns (first %, second % if any, is kernel, symbol).
fn perf_rows(text: &str) -> Vec<(f64, Option<f64>, bool, String)> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('#') || !t.contains('%') {
            continue;
        }
        let mut parts = t.split_whitespace();
        let Some(a) = parts.next().and_then(|p| p.strip_suffix('%')).and_then(|p| p.parse::<f64>().ok()) else { continue };
        let rest: Vec<&str> = parts.collect();
        let (b, rest) = match rest.first().and_then(|p| p.strip_suffix('%')).and_then(|p| p.parse::<f64>().ok()) {
            Some(b) => (Some(b), &rest[1..]),
            None => (None, &rest[..]),
        };
        let Some(pos) = rest.iter().position(|w| *w == "[.]" || *w == "[k]") else { continue };
        let kernel = rest[pos] == "[k]";
        rows.push((a, b, kernel, rest[pos + 1..].join(" ")));
    }
    rows
}

fn perf_available() -> bool {
    Command::new("perf").args(["stat", "-e", "cpu-clock", "true"]).output().is_ok_and(|o| o.status.success())
}

/// Samples this process with `perf record` (software `cpu-clock`: this VM exposes no
/// hardware counters, `perf stat -e instructions` reads `<not supported>`) while wrk
/// drives a kurz hot run. The recording is kept in `<keep>/redirects.perf.data`.
async fn profile(gen: &Gen, label: &str, url: &str, paths: &Path, keep: &Path, secs: u64, method: &str) -> Option<ProfileResult> {
    std::fs::create_dir_all(keep).ok()?;
    let data = keep.join(format!("redirects-{}.perf.data", label.replace(' ', "-")));
    let pid = std::process::id().to_string();
    let record_secs = secs.saturating_sub(4).max(2);
    let mut rec = Command::new("perf");
    rec.args(["record", "-q", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,32768", "-p", &pid, "-o"]).arg(&data).args([
        "--",
        "sleep",
        &record_secs.to_string(),
    ]);
    let c0 = cpu_seconds();
    let wrk = gen.run(url, paths, secs, method);
    let perf = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        tokio::task::spawn_blocking(move || rec.output()).await.unwrap()
    };
    let ((w, _), rec_out) = tokio::join!(wrk, perf);
    settle().await;
    let cpu_us_per_request = (cpu_seconds() - c0 - settle_tail_cpu()) * 1e6 / w.requests.max(1) as f64;
    let rec_out = rec_out.ok()?;
    if !rec_out.status.success() {
        eprintln!("perf record failed: {}", String::from_utf8_lossy(&rec_out.stderr));
        return None;
    }
    let report = |children: bool, sort: &str| {
        let mut c = Command::new("perf");
        c.arg("report").arg("-i").arg(&data).args(["--stdio", "--no-inline", "-g", "none", "--sort", sort, "--percent-limit", "0.05"]);
        c.arg(if children { "--children" } else { "--no-children" });
        c
    };
    let out = |mut c: Command| async move {
        let o = tokio::task::spawn_blocking(move || c.output()).await.unwrap().ok()?;
        Some(String::from_utf8_lossy(&o.stdout).to_string())
    };
    let self_text = out(report(false, "sym")).await?;
    let child_text = out(report(true, "sym")).await?;
    let thread_text = out(report(false, "comm")).await?;
    let self_rows = perf_rows(&self_text);
    let mut cats: BTreeMap<&str, f64> = BTreeMap::new();
    for (pct, _, kernel, sym) in &self_rows {
        *cats.entry(category(sym, *kernel)).or_default() += pct;
    }
    let mut categories: Vec<(String, f64)> = cats.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    categories.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    let top_self =
        self_rows.iter().take(30).map(|(p, _, k, s)| (format!("{}{}", if *k { "[k] " } else { "" }, short_sym(s)), *p)).collect();
    // `--sort comm` rows: `  61.23%  tokio-runtime-w`
    let threads = thread_text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let pct = w.next()?.strip_suffix('%')?.parse::<f64>().ok()?;
            Some((w.collect::<Vec<_>>().join(" "), pct))
        })
        .collect();
    // Inclusive time of the redirect path's pieces: the largest row whose symbol matches
    // (a lower bound where a piece was inlined into its caller).
    const KEYS: &[(&str, &[&str])] = &[
        ("hyper HTTP/1 dispatcher (parse, service, write)", &["hyper::proto::h1::dispatch::Dispatcher"]),
        (
            "axum Router::call_with_state (routing and all below; 0 where the fast path answers)",
            &["axum::routing::Router<S>::call_with_state"],
        ),
        ("red_metrics middleware (FromFn) and all below (0 where the fast path answers)", &["axum::middleware::from_fn::FromFn"]),
        ("redirect fast path: observe::observed (span, metrics, catch-panic) and all below", &["kurz_web::observe::observed"]),
        (
            "redirect (lookup, Location, click record)",
            &[
                "kurz_query_edge::routes::redirect::redirect::",
                "kurz_query_edge::routes::redirect::answer",
                "kurz_query_edge::routes::redirect::fast_path::{{closure}}",
            ],
        ),
        ("cache lookup (get_local at once, or resolve)", &["LinkCache>::get_local", "kurz_query_edge::routes::redirect::resolve"]),
        ("Instrumented cache get (quick_cache + lookup metric)", &["cache::Instrumented as kurz_storage::cache::LinkCache>::get"]),
        ("quick_cache Cache::get", &["quick_cache::sync::Cache"]),
        ("prometheus (all calls)", &["prometheus::"]),
        (
            "tracing (spans, subscriber, JSON layer)",
            &["tracing::span::Span::new", "tracing_core::", "tracing_subscriber", "kurz_telemetry"],
        ),
        (
            "click record on the request path (copy headers, queue push)",
            &["kurz_query_edge::routes::redirect::raw_click", "ClickSink::record", "ClickQueue::push"],
        ),
        ("ClickFlusher (click encode + append)", &["kurz_query_edge::capture::flush::ClickFlusher::run_until_stopped"]),
        (
            "projector partition task (read, map, commit; the store write runs on the blocking pool)",
            &["kurz_projector::runtime::Projector::run_partition", "kurz_projector::runtime::Projector::supervise"],
        ),
        (
            "blocking pool tasks (the store's redb write transactions of projected clicks, log reads)",
            &["<tokio::runtime::blocking::task::BlockingTask<T> as core::future::future::Future>::poll"],
        ),
        (
            "click history rows (`write_click_rows`: JSON row and index entries per click)",
            &["kurz_storage::store::embedded::write_click_rows"],
        ),
        ("HistoryEvent serialize (JSON per click row)", &["HistoryEvent>::serialize"]),
        ("malloc/free", &["malloc", "_int_free", "cfree", "mi_free", "_mi_page_malloc"]),
    ];
    let child_rows = perf_rows(&child_text);
    let inclusive = KEYS
        .iter()
        .map(|(label, needles)| {
            let best =
                child_rows.iter().filter(|(_, _, _, s)| needles.iter().any(|n| s.contains(n))).map(|(c, _, _, _)| *c).fold(0.0, f64::max);
            (label.to_string(), best)
        })
        .collect();
    Some(ProfileResult {
        label: label.to_string(),
        tool: "perf record -e cpu-clock -F 999 --call-graph dwarf,32768 -p <this process> (wrk excluded)".into(),
        samples_note: format!(
            "{label}: {record_secs} s sampled in the middle of a {secs} s hot-set {method} run ({:.0} req/s, {:.1} µs CPU/req incl. drain)",
            w.requests_per_s, cpu_us_per_request,
        ),
        cpu_us_per_request,
        categories,
        threads,
        top_self,
        inclusive,
    })
}

/// Drops generic parameters and the hash suffix so symbols fit in a table.
fn short_sym(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '<' if !out.is_empty() && !out.ends_with(' ') && !out.ends_with('(') => {
                depth += 1;
                if depth == 1 {
                    out.push_str("<…>");
                }
            }
            '<' => out.push(c),
            '>' if depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    // Legacy-mangled names may end in `::h<16 hex digits>`.
    let out = match out.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => head.to_string(),
        _ => out,
    };
    out.chars().take(110).collect()
}

// ---------------------------------------------------------------- the run

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        return f64::NAN;
    }
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[derive(Debug, Clone, Serialize)]
struct Measured {
    round: usize,
    wrk: WrkRun,
    /// This process's CPU (user+sys) per request: the server side's cost, wrk excluded.
    server_cpu_us_per_request: f64,
    /// The same, counting the work the run left behind (click projection) until idle.
    server_cpu_us_per_request_incl_drain: f64,
    /// Seconds until the process was idle after wrk stopped.
    drain_s: f64,
    /// wrk's own CPU (user+system) per request.
    wrk_cpu_us_per_request: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<ServerSide>,
}

fn med_side(runs: &[Measured]) -> Value {
    let m = |f: &dyn Fn(&Measured) -> f64| median(runs.iter().map(f).collect());
    let ms = |f: &dyn Fn(&ServerSide) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(|r| r.server.as_ref().and_then(f)).collect();
        (!v.is_empty()).then(|| median(v))
    };
    json!({
        "requests_per_s": m(&|r| r.wrk.requests_per_s),
        "p50_ms": m(&|r| r.wrk.p50_ms),
        "p90_ms": m(&|r| r.wrk.p90_ms),
        "p99_ms": m(&|r| r.wrk.p99_ms),
        "max_ms": m(&|r| r.wrk.max_ms),
        "server_cpu_us_per_request": m(&|r| r.server_cpu_us_per_request),
        "server_cpu_us_per_request_incl_drain": m(&|r| r.server_cpu_us_per_request_incl_drain),
        "drain_s": m(&|r| r.drain_s),
        "wrk_cpu_us_per_request": m(&|r| r.wrk_cpu_us_per_request),
        "server_p50_ms": ms(&|s| s.p50_ms),
        "server_p90_ms": ms(&|s| s.p90_ms),
        "server_p99_ms": ms(&|s| s.p99_ms),
        "cache_hit_ratio": ms(&|s| s.cache_hit_ratio),
        "non_2xx_3xx": runs.iter().map(|r| r.wrk.non_2xx_3xx).sum::<u64>(),
        "socket_errors": runs.iter().map(|r| r.wrk.socket_errors).sum::<u64>(),
        "runs": runs,
    })
}

pub async fn run(args: Args) -> Value {
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
    settle().await;

    // Path files and the wrk script.
    let hot_paths = dir.path().join("hot.txt");
    std::fs::write(&hot_paths, hot.join("\n") + "\n").unwrap();
    let big_paths = dir.path().join("big.txt");
    std::fs::write(&big_paths, (0..args.links).map(big_code).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let script = dir.path().join("random-path.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let gen = Gen { script, connections: args.connections, threads: args.threads };

    // Correctness pass, before any timing.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut cases: Vec<(String, Option<String>)> = hot.iter().map(|c| (c.clone(), Some(target(c)))).collect();
    cases.extend((0..2000).map(|_| big_code(rng.below(args.links))).map(|c| (c.clone(), Some(target(&c)))));
    cases.extend((0..20).map(|i| (format!("nope{i:03}"), None)));
    let (mut checked, mut wrong) = check(&client, &base, reqwest::Method::GET, cases).await;
    let (n, w) = check(&client, &base, reqwest::Method::HEAD, hot.iter().take(100).map(|c| (c.clone(), Some(target(c)))).collect()).await;
    (checked, wrong) = (checked + n, [wrong, w].concat());
    for url in [&off_url, &on_url] {
        let (n, w) = check(&client, url, reqwest::Method::GET, hot.iter().map(|c| (c.clone(), Some(target(c)))).collect()).await;
        (checked, wrong) = (checked + n, [wrong, w].concat());
    }
    let fixed: Vec<(String, Option<String>)> = (0..20).map(|i| (hot_code(i), Some(CEILING_LOCATION.to_string()))).collect();
    let (n1, w1) = check(&client, &ceiling_url, reqwest::Method::GET, fixed.clone()).await;
    let (n2, w2) = check(&client, &axum_url, reqwest::Method::GET, fixed).await;
    let (ceiling_checked, ceiling_wrong) = (n1 + n2, [w1, w2].concat());
    assert!(wrong.is_empty() && ceiling_wrong.is_empty(), "correctness pass failed: {:?}", [&wrong[..], &ceiling_wrong[..]].concat());
    eprintln!("correctness: {checked} kurz and {ceiling_checked} ceiling responses as expected");

    // Warm-up (JIT of the Lua script, connection setup, cache admission of the hot set).
    let warm = args.duration.clamp(2, 5);
    for (url, paths) in [
        (&ceiling_url, &hot_paths),
        (&axum_url, &hot_paths),
        (&base, &hot_paths),
        (&off_url, &hot_paths),
        (&on_url, &hot_paths),
        (&base, &big_paths),
    ] {
        gen.run(url, paths, warm, "GET").await;
        settle().await;
    }

    // Alternating rounds. The two targets compare `kurz_hot` with `ceiling`; `axum_ceiling`
    // and `kurz_hot_head` (HEAD: its click is captured and flagged, but not counted) split the gap; `kurz_hot_no_capture` is
    // the same edge with capture off, over the same storage and cache: the capture cost.
    let sides: [(&str, &str, &String, &PathBuf, &str); 7] = [
        ("ceiling", "ceiling", &ceiling_url, &hot_paths, "GET"),
        ("kurz_hot", "kurz hot", &base, &hot_paths, "GET"),
        ("kurz_hot_no_capture", "kurz hot, capture off", &off_url, &hot_paths, "GET"),
        ("kurz_edge_capture", "kurz edge, capture on, no projector", &on_url, &hot_paths, "GET"),
        ("axum_ceiling", "axum 1-route", &axum_url, &hot_paths, "GET"),
        ("kurz_hot_head", "kurz hot HEAD", &base, &hot_paths, "HEAD"),
        ("kurz_1m", "kurz 1M", &base, &big_paths, "GET"),
    ];
    let mut runs: BTreeMap<&str, Vec<Measured>> = BTreeMap::new();
    for round in 1..=args.rounds {
        for (key, label, url, paths, method) in sides {
            let before = scrape(&client, &base).await;
            let (c0, k0) = (cpu_seconds(), children_cpu_seconds());
            let (w, _) = gen.run(url, paths, args.duration, method).await;
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

    let med: BTreeMap<&str, Value> = runs.iter().map(|(k, v)| (*k, med_side(v))).collect();
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let ratio = |a: &str, b: &str, k: &str| f(&med[a], k) / f(&med[b], k);
    let throughput_ratio = ratio("kurz_hot", "ceiling", "requests_per_s");
    let p99_ratio = ratio("kurz_hot", "ceiling", "p99_ms");
    let server_p99 = f(&med["kurz_hot"], "server_p99_ms");
    let capture_cost = 1.0 - ratio("kurz_edge_capture", "kurz_hot_no_capture", "requests_per_s");
    let capture_and_projection_cost = 1.0 - ratio("kurz_hot", "kurz_hot_no_capture", "requests_per_s");
    let per_round: Vec<Value> = (0..args.rounds)
        .map(|i| {
            let r = |k: &str| &runs[k][i].wrk;
            json!({
                "round": i + 1,
                "hot_throughput_ratio": r("kurz_hot").requests_per_s / r("ceiling").requests_per_s,
                "hot_p99_ratio": r("kurz_hot").p99_ms / r("ceiling").p99_ms,
                "large_throughput_ratio": r("kurz_1m").requests_per_s / r("ceiling").requests_per_s,
                "capture_cost": 1.0 - r("kurz_edge_capture").requests_per_s / r("kurz_hot_no_capture").requests_per_s,
                "capture_and_projection_cost": 1.0 - r("kurz_hot").requests_per_s / r("kurz_hot_no_capture").requests_per_s,
            })
        })
        .collect();
    // The query-edge role alone (capture on, projection elsewhere): what serves
    // redirects in a scaled-out deployment.
    let edge_throughput_ratio = ratio("kurz_edge_capture", "ceiling", "requests_per_s");
    let edge_p99_ratio = ratio("kurz_edge_capture", "ceiling", "p99_ms");
    let targets = json!({
        "edge_throughput_ratio": {"target": format!(">= {TARGET_THROUGHPUT_RATIO}"), "value": edge_throughput_ratio, "met": edge_throughput_ratio >= TARGET_THROUGHPUT_RATIO},
        "edge_client_p99_ratio": {"target": format!("<= {TARGET_P99_RATIO}"), "value": edge_p99_ratio, "met": edge_p99_ratio <= TARGET_P99_RATIO},
        "hot_throughput_ratio": {"target": format!(">= {TARGET_THROUGHPUT_RATIO}"), "value": throughput_ratio, "met": throughput_ratio >= TARGET_THROUGHPUT_RATIO},
        "hot_client_p99_ratio": {"target": format!("<= {TARGET_P99_RATIO}"), "value": p99_ratio, "met": p99_ratio <= TARGET_P99_RATIO},
        "hot_server_p99_ms": {"target": format!("< {TARGET_SERVER_P99_MS}"), "value": server_p99, "met": server_p99 < TARGET_SERVER_P99_MS},
        "capture_cost": {"target": format!("< {TARGET_CAPTURE_COST}"), "value": capture_cost, "met": capture_cost < TARGET_CAPTURE_COST},
    });
    let all_met =
        ["hot_throughput_ratio", "hot_client_p99_ratio", "hot_server_p99_ms", "capture_cost"].iter().all(|k| targets[k]["met"] == true);

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
            for (label, url, method) in [
                ("ceiling", &ceiling_url, "GET"),
                ("kurz HEAD", &base, "HEAD"),
                ("kurz edge capture on", &on_url, "GET"),
                ("kurz GET", &base, "GET"),
            ] {
                done.extend(profile(&gen, label, url, &hot_paths, &keep, args.duration, method).await);
            }
            (!done.is_empty()).then(|| json!(done))
        }
    };

    stop.cancel();
    let _ = server.await;
    let cpu = |k: &str| f(&med[k], "server_cpu_us_per_request_incl_drain");
    json!({
        "benchmark": "redirects",
        "generator": {
            "tool": "wrk (Debian package wrk, 4.1.0)",
            "command": format!("wrk -c {} -t {} -d {}s --latency -s random-path.lua <url> -- <codes file> [GET|HEAD]", args.connections, args.threads, args.duration),
            "connections": args.connections,
            "script": WRK_SCRIPT.trim(),
        },
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "hot_links": args.hot,
        "large_links": args.links,
        "rounds": args.rounds,
        "load": {"links": loaded_hot + loaded_big, "seconds": load_s, "links_per_s": (loaded_hot + loaded_big) as f64 / load_s, "rows_per_request": args.chunk},
        "correctness": {"kurz_responses_checked": checked, "ceiling_responses_checked": ceiling_checked, "wrong": wrong.len() + ceiling_wrong.len()},
        "ceiling": med["ceiling"],
        "axum_ceiling": med["axum_ceiling"],
        "kurz_hot": med["kurz_hot"],
        "kurz_hot_head": med["kurz_hot_head"],
        "kurz_hot_no_capture": med["kurz_hot_no_capture"],
        "kurz_edge_capture": med["kurz_edge_capture"],
        "kurz_1m": med["kurz_1m"],
        "ratios": {
            "hot_throughput_kurz_to_ceiling": throughput_ratio,
            "hot_p99_kurz_to_ceiling": p99_ratio,
            "hot_server_cpu_per_request_kurz_to_ceiling": cpu("kurz_hot") / cpu("ceiling"),
            "large_throughput_kurz_to_ceiling": ratio("kurz_1m", "ceiling", "requests_per_s"),
            "large_p99_kurz_to_ceiling": ratio("kurz_1m", "ceiling", "p99_ms"),
            "axum_throughput_to_ceiling": ratio("axum_ceiling", "ceiling", "requests_per_s"),
            "hot_head_throughput_kurz_to_ceiling": ratio("kurz_hot_head", "ceiling", "requests_per_s"),
            "hot_edge_capture_on_to_off": ratio("kurz_edge_capture", "kurz_hot_no_capture", "requests_per_s"),
            "hot_single_process_capture_on_to_off": ratio("kurz_hot", "kurz_hot_no_capture", "requests_per_s"),
            "single_process_capture_and_projection_cost": capture_and_projection_cost,
            "per_round": per_round,
        },
        "cpu_us_per_request_split": {
            "1. HTTP stack: bare hyper": cpu("ceiling"),
            "2. axum::serve + Router (axum 1-route minus bare hyper)": cpu("axum_ceiling") - cpu("ceiling"),
            "3. kurz request path (kurz edge with capture off minus axum 1-route)": cpu("kurz_hot_no_capture") - cpu("axum_ceiling"),
            "4a. click capture and durable append (edge with capture on minus off)": cpu("kurz_edge_capture") - cpu("kurz_hot_no_capture"),
            "4b. click projection (kurz GET minus the edge with capture on)": cpu("kurz_hot") - cpu("kurz_edge_capture"),
        },
        "targets": targets,
        "all_targets_met": all_met,
        "profile": profile_result,
    })
}

impl Wrap {
    fn parse_from_args(data: &Path) -> kurz::Config {
        use clap::Parser;
        let data = data.to_str().unwrap();
        Wrap::parse_from(["kurz", "--data-dir", data, "--auth", "open", "--log", "warn"]).c
    }
}

// ---------------------------------------------------------------- markdown

pub fn markdown(v: &Value) -> String {
    let f = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
    let opt = |x: &Value, d: usize| x.as_f64().map_or("–".to_string(), |v| format!("{v:.d$}"));
    let ceil_rps = f(&v["ceiling"]["requests_per_s"]);
    let ceil_p99 = f(&v["ceiling"]["p99_ms"]);
    let row = |name: &str, s: &Value| {
        format!(
            "| {name} | {:.0} | {:.2} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {} |\n",
            f(&s["requests_per_s"]),
            f(&s["requests_per_s"]) / ceil_rps,
            f(&s["p50_ms"]),
            f(&s["p90_ms"]),
            f(&s["p99_ms"]),
            f(&s["p99_ms"]) / ceil_p99,
            f(&s["max_ms"]),
            f(&s["server_cpu_us_per_request"]),
            f(&s["server_cpu_us_per_request_incl_drain"]),
            f(&s["wrk_cpu_us_per_request"]),
            opt(&s["server_p99_ms"], 3),
        )
    };
    let r = &v["ratios"];
    let mut md = String::from("# Redirects: kurz vs a bare hyper 302 server\n\n");
    md += &format!(
        "One process on a {}-core machine, all on loopback and in one tokio runtime: the **ceiling**, a bare hyper HTTP/1 server \
         answering every request with `302 Location: {CEILING_LOCATION}` (the HTTP stack kurz uses, with no application); \
         the same answer from **axum with one route** (`/{{code}}`) under `axum::serve` (a diagnostic: the framework kurz \
         routes its other endpoints with; its redirects are answered ahead of the router); and \
         **`kurz serve`** (embedded log and store, in-process quick_cache hot cache, `--auth open`, `--log warn`, telemetry initialised \
         as the binary does). kurz holds {} hot links (`h000000`…) and {} more (`m000000`…), each redirecting to \
         `https://example.com/<code>`, loaded through `POST /urls/bulk` (`text/csv`, `short_code,original_url`, {} rows a \
         request): {:.0} links in {:.1} s ({:.0} links/s).\n\n",
        v["machine"]["cpus"],
        v["hot_links"],
        v["large_links"],
        v["load"]["rows_per_request"],
        f(&v["load"]["links"]),
        f(&v["load"]["seconds"]),
        f(&v["load"]["links_per_s"]),
    );
    md += &format!(
        "**Load generator**: Debian's `wrk` 4.1 (`apt-get install -y wrk`): `{}`. The Lua script (in the JSON) reads the codes \
         file in each thread's `init`, and its `request()` returns `GET /<code>` (or `HEAD`) for a uniformly random code \
         (`math.random`, seeded per thread), so every request's path differs; both ceilings get the hot codes file too, so \
         request generation costs the same everywhere. wrk shares the 2 cores with the servers. Its latency is send-to-response \
         per request on a busy keep-alive connection (closed loop, no coordinated-omission correction: alike for every server). \
         `Requests/sec`, the `Latency Distribution` (50/75/90/99 %) and the `Latency` max are parsed from its output.\n\n",
        v["generator"]["command"].as_str().unwrap_or("")
    );
    md += &format!(
        "**Order**: after a warm-up run of each, {} rounds of ceiling → kurz hot → kurz edge with capture off → kurz edge with capture on → axum 1-route → kurz hot HEAD → kurz 1M; \
         between runs the harness waits until this process is idle (the click projection of the previous run drained). \
         Figures are medians over the rounds; *× ceiling* compares medians. *CPU µs/req* is this process's user+system CPU per \
         request during the run (the server side; wrk is another process); *incl. drain* adds the CPU spent after wrk stopped \
         until the process was idle (kurz projecting the clicks the run queued); *wrk CPU* is the load generator's own CPU per \
         request (from the children's times in `/proc/self/stat`).\n\n",
        v["rounds"]
    );
    md += "| server | req/s | × ceiling | p50 ms | p90 ms | p99 ms | p99 × ceiling | max ms | CPU µs/req | CPU µs/req incl. drain | wrk CPU µs/req | server p99 ms |\n\
           |---|---|---|---|---|---|---|---|---|---|---|---|\n";
    md += &row("**ceiling**: bare hyper 302", &v["ceiling"]);
    md += &row("**kurz, hot set** (1k codes, GET)", &v["kurz_hot"]);
    md += &row(&format!("**kurz, uniform over {} codes** (GET)", v["large_links"]), &v["kurz_1m"]);
    md += &row("axum, one route (diagnostic)", &v["axum_ceiling"]);
    md += &row("**kurz edge, hot set, click capture off** (GET)", &v["kurz_hot_no_capture"]);
    md += &row("**kurz edge, hot set, click capture on**, clicks appended to a log no projector reads (GET)", &v["kurz_edge_capture"]);
    md += &row("kurz, hot set, HEAD: click captured and flagged, not counted (diagnostic)", &v["kurz_hot_head"]);

    md += "\n## Targets (hot set)\n\n| target | value | met |\n|---|---|---|\n";
    let t = &v["targets"];
    let mark = |x: &Value| if x["met"] == true { "yes" } else { "**no**" };
    md += &format!(
        "| throughput of the query-edge role (capture on, no projector in the process) / ceiling {} | {:.2} | {} |\n",
        t["edge_throughput_ratio"]["target"].as_str().unwrap_or(""),
        f(&t["edge_throughput_ratio"]["value"]),
        mark(&t["edge_throughput_ratio"])
    );
    md += &format!(
        "| client p99 of the query-edge role / ceiling at {} connections {} | {:.2} | {} |\n",
        v["generator"]["connections"],
        t["edge_client_p99_ratio"]["target"].as_str().unwrap_or(""),
        f(&t["edge_client_p99_ratio"]["value"]),
        mark(&t["edge_client_p99_ratio"])
    );
    md += &format!(
        "| throughput of `kurz serve` (every role, clicks projected in the same process) / ceiling {} | {:.2} | {} |\n",
        t["hot_throughput_ratio"]["target"].as_str().unwrap_or(""),
        f(&t["hot_throughput_ratio"]["value"]),
        mark(&t["hot_throughput_ratio"])
    );
    md += &format!(
        "| client p99 of `kurz serve` / ceiling at {} connections {} | {:.2} | {} |\n",
        v["generator"]["connections"],
        t["hot_client_p99_ratio"]["target"].as_str().unwrap_or(""),
        f(&t["hot_client_p99_ratio"]["value"]),
        mark(&t["hot_client_p99_ratio"])
    );
    let p99_le = v["kurz_hot"]["runs"]
        .as_array()
        .and_then(|a| a.iter().filter_map(|r| r["server"]["p99_bucket_le_ms"].as_f64()).reduce(f64::max))
        .unwrap_or(f64::NAN);
    md += &format!(
        "| server-side p99 ms {} | {:.3} (bucket ≤ {} ms) | {} |\n",
        t["hot_server_p99_ms"]["target"].as_str().unwrap_or(""),
        f(&t["hot_server_p99_ms"]["value"]),
        p99_le,
        mark(&t["hot_server_p99_ms"])
    );
    md += &format!(
        "| click capture cost at the edge: 1 − (capture on / capture off) {} | {:.3} | {} |\n",
        t["capture_cost"]["target"].as_str().unwrap_or(""),
        f(&t["capture_cost"]["value"]),
        mark(&t["capture_cost"])
    );
    md += &format!(
        "\nPer round, kurz hot / ceiling throughput and p99, and kurz 1M / ceiling throughput: {}.\n",
        r["per_round"]
            .as_array()
            .map(|a| a
                .iter()
                .map(|x| format!(
                    "{:.2}, {:.2}, {:.2}",
                    f(&x["hot_throughput_ratio"]),
                    f(&x["hot_p99_ratio"]),
                    f(&x["large_throughput_ratio"])
                ))
                .collect::<Vec<_>>()
                .join(" | "))
            .unwrap_or_default()
    );

    md += "\n## Where the CPU per redirect goes (hot set, medians)\n\n| part | CPU µs/req |\n|---|---|\n";
    if let Some(split) = v["cpu_us_per_request_split"].as_object() {
        for (k, x) in split {
            md += &format!("| {k} | {:.1} |\n", f(x));
        }
    }
    md += &format!(
        "| **kurz GET, total** ({:.2}× the ceiling) | {:.1} |\n",
        f(&r["hot_server_cpu_per_request_kurz_to_ceiling"]),
        f(&v["kurz_hot"]["server_cpu_us_per_request_incl_drain"])
    );
    {
        let c = |k: &str, what: &str| f(&v[k][what]);
        let ceiling_total = c("ceiling", "server_cpu_us_per_request_incl_drain") + c("ceiling", "wrk_cpu_us_per_request");
        let kurz_total = c("kurz_hot", "server_cpu_us_per_request_incl_drain") + c("kurz_hot", "wrk_cpu_us_per_request");
        let budget = ceiling_total / TARGET_THROUGHPUT_RATIO - c("kurz_hot", "wrk_cpu_us_per_request");
        let budget_hi = ceiling_total / TARGET_THROUGHPUT_RATIO - c("ceiling", "wrk_cpu_us_per_request");
        md += &format!(
            "\nServer and wrk share the 2 cores, so throughput ≈ cores ÷ (server CPU + wrk CPU per request). The ceiling needs \
             {ceiling_total:.1} µs of CPU per request in all, kurz {kurz_total:.1} µs, which predicts a ratio of {:.2} (measured \
             {:.2}). For {TARGET_THROUGHPUT_RATIO:.2}× the ceiling, kurz may spend about **{budget:.1}–{budget_hi:.1} µs** of \
             server CPU per redirect (the range: wrk's own CPU per request as measured against kurz, or as against the \
             ceiling; wrk needs more per request against a slower server, fewer responses per wake-up); it spends {:.1} µs, \
             the bare hyper ceiling {:.1} µs. Without clicks (the edge with capture off) kurz reaches {:.2}× the ceiling.\n",
            ceiling_total / kurz_total,
            f(&r["hot_throughput_kurz_to_ceiling"]),
            c("kurz_hot", "server_cpu_us_per_request_incl_drain"),
            c("ceiling", "server_cpu_us_per_request_incl_drain"),
            f(&v["kurz_hot_no_capture"]["requests_per_s"]) / f(&v["ceiling"]["requests_per_s"]),
        );
    }

    md += "\n## Server-side latency\n\nFrom kurz's own histogram `kurz_http_request_duration_seconds{route=\"/{code}\",method=\"GET\"}` \
           (`HEAD` for the HEAD run), scraped from `/metrics` before and after each run: each quantile is taken from the bucket \
           deltas with **linear interpolation inside the bucket** the rank falls in (as Prometheus' `histogram_quantile`; \
           buckets 50 µs, 100 µs, 250 µs, 500 µs, 1 ms, …), so it is exact only to its bucket. The histogram times \
           `kurz_web::observe::observed` around the redirect fast path (`red_metrics` for routed requests), from the \
           parsed request to the response: it excludes HTTP parsing and writing and the time \
           a request waits for a worker, which is where wrk's p99 comes from.\n\n";
    let side = |name: &str, s: &Value| {
        let runs = s["runs"].as_array().cloned().unwrap_or_default();
        let sum = |k: &str| runs.iter().map(|r| f(&r["server"][k])).sum::<f64>();
        format!(
            "| {name} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |\n",
            opt(&s["server_p50_ms"], 3),
            opt(&s["server_p90_ms"], 3),
            opt(&s["server_p99_ms"], 3),
            s["cache_hit_ratio"].as_f64().map_or("–".into(), |x| format!("{:.4}", x)),
            sum("redirects_from_store"),
            sum("clicks_appended"),
            sum("clicks_dropped"),
        )
    };
    md += "| kurz run | server p50 ms | p90 ms | p99 ms | cache hit ratio | served from store | clicks appended | clicks dropped |\n\
           |---|---|---|---|---|---|---|---|\n";
    md += &side("hot set", &v["kurz_hot"]);
    md += &side("1M uniform", &v["kurz_1m"]);
    md += &side("hot set, HEAD", &v["kurz_hot_head"]);
    md += &side("edge, hot set, capture off", &v["kurz_hot_no_capture"]);
    md += &side("edge, hot set, capture on", &v["kurz_edge_capture"]);
    md += &format!(
        "\n(Store reads and clicks are summed over the timed runs.) wrk counted {} non-2xx/3xx responses and {} socket errors \
         over all timed runs.\n",
        ["ceiling", "axum_ceiling", "kurz_hot", "kurz_hot_no_capture", "kurz_edge_capture", "kurz_hot_head", "kurz_1m"]
            .iter()
            .map(|k| v[k]["non_2xx_3xx"].as_u64().unwrap_or(0))
            .sum::<u64>(),
        ["ceiling", "axum_ceiling", "kurz_hot", "kurz_hot_no_capture", "kurz_edge_capture", "kurz_hot_head", "kurz_1m"]
            .iter()
            .map(|k| v[k]["socket_errors"].as_u64().unwrap_or(0))
            .sum::<u64>(),
    );
    md += &format!(
        "\n**Correctness pass** (before any timing): {} kurz responses (GET of every hot code and of 2,000 random codes of the \
         large set: 302 with exactly the loaded `Location`; HEAD of 100 hot codes: the same; 20 unknown codes: 404) and {} \
         responses of the two ceilings: {} wrong. During the timed runs a wrong status would show in wrk's non-2xx/3xx count.\n",
        v["correctness"]["kurz_responses_checked"], v["correctness"]["ceiling_responses_checked"], v["correctness"]["wrong"]
    );

    if let Some(ps) = v["profile"].as_array() {
        md += &format!(
            "\n## Profile: where the time goes (hot set)\n\n`{}`, during one extra run each of the ceiling, kurz HEAD (click flagged, not counted), \
             the kurz edge with capture off and on (no projector) and kurz GET; {}. µs/req = share of samples × that run's CPU per request (drain included), so columns compare \
             per request.\n\n",
            ps[0]["tool"].as_str().unwrap_or(""),
            ps.iter().map(|p| p["samples_note"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>().join("; "),
        );
        let share = |p: &Value, list: &str, name: &str| {
            p[list].as_array().and_then(|a| a.iter().find(|c| c[0].as_str() == Some(name)).map(|c| f(&c[1]))).unwrap_or(0.0)
        };
        let header = |first: &str| {
            let mut h = format!("| {first} |");
            let mut rule = String::from("|---|");
            for p in ps {
                h += &format!(" {} % | µs/req |", p["label"].as_str().unwrap_or(""));
                rule += "---|---|";
            }
            format!("{h}\n{rule}\n")
        };
        let table = |list: &str, min: f64, names: Vec<String>| {
            let mut t = String::new();
            for name in names {
                let cells: Vec<(f64, f64)> =
                    ps.iter().map(|p| (share(p, list, &name), share(p, list, &name) * f(&p["cpu_us_per_request"]) / 100.0)).collect();
                if cells.iter().any(|c| c.0 >= min) {
                    t += &format!("| {name} |");
                    for (pct, us) in cells {
                        t += &format!(" {pct:.1} | {us:.2} |");
                    }
                    t += "\n";
                }
            }
            t
        };
        let names = |list: &str| {
            let mut n: Vec<String> = Vec::new();
            for p in ps.iter().rev() {
                for c in p[list].as_array().into_iter().flatten() {
                    let s = c[0].as_str().unwrap_or("").to_string();
                    if !n.contains(&s) {
                        n.push(s);
                    }
                }
            }
            n
        };
        md += "Self time by component:\n\n";
        md += &header("component");
        md += &table("categories", 0.5, names("categories"));
        md += "\nBy thread:\n\n";
        md += &header("thread");
        md += &table("threads", 0.5, names("threads"));
        md += "\nInclusive time (a function and all it calls; a lower bound where it was inlined into its caller):\n\n";
        md += &header("piece");
        md += &table("inclusive", 0.0, ps.last().map(|_| names("inclusive")).unwrap_or_default());
        for p in ps.iter().rev() {
            md += &format!("\nTop symbols by self time, {}:\n\n| % | symbol |\n|---|---|\n", p["label"].as_str().unwrap_or(""));
            for c in p["top_self"].as_array().into_iter().flatten().take(20) {
                md += &format!("| {:.2} | `{}` |\n", f(&c[1]), c[0].as_str().unwrap_or("").replace('|', "\\|"));
            }
        }
    }
    md += &findings::findings(v);
    md += "\nReproduce: `apt-get install -y wrk linux-perf`, then `cargo run --release -p kurz-bench -- redirects` \
           (every run's numbers in `bench/results/redirects.json`).\n";
    md
}
