//! What each attack of issue #16 costs a running `kurz serve` (the release binary, as a
//! child process, token mode, on loopback), measured against the same server without
//! the attack in the same run:
//!
//! - **slow and idle sockets**: 2,000 connections that send half a head or nothing;
//!   p99 of fresh clients' requests with them open vs. without, and RSS growth;
//! - **unauthenticated bulk bodies**: four concurrent 60 MB `POST /urls/bulk` without a
//!   token; peak RSS growth (VmHWM) and each answer;
//! - **odd paths**: 2,000 `GET /<15 KB of letters><n>` (404) and 2,000 with 60 KB (431);
//!   RSS growth;
//! - **sign-in flood**: 64 connections posting `/auth/login` as fast as they can, with
//!   the rate limits on and, to load the hashing pool itself, off; p99 of an admin's
//!   `POST /urls` during the flood vs. without it.
//!
//! Memory is read from `/proc/<pid>/status` (VmRSS, VmHWM) of the server process.

use crate::stats::{summarize, Summary};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Longest a sign-in flood may last (it stops when its round's creates are done).
    #[arg(long, default_value_t = 60)]
    pub flood_secs: u64,
    /// Admin creates measured in each phase of a round.
    #[arg(long, default_value_t = 300)]
    pub creates: usize,
    /// Rounds of (quiet, flooded) admin creates; the medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

const ADMIN: &str = "bench-admin-token-0123456789abcdef";

struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release `kurz` next to this benchmark's binary, built if missing.
fn kurz_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe.with_file_name("kurz");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo).args(["build", "--release", "-p", "kurz", "--bin", "kurz"]).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "could not build the release kurz binary");
    }
    bin
}

fn start(extra: &[(&str, &str)]) -> Server {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(kurz_binary());
    cmd.arg("serve")
        .env("KURZ_HTTP_ADDR", "127.0.0.1:0")
        .env("KURZ_DATA_DIR", dir.path())
        .env("KURZ_ADMIN_TOKEN", ADMIN)
        .env("KURZ_LOG", "warn,kurz=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn kurz");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("\"event\":\"listening\"") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                let _ = tx.send(v["addr"].as_str().unwrap().to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(120)).expect("kurz listening");
    Server { child, addr, _dir: dir }
}

/// (VmRSS, VmHWM) of the server, in MB.
fn memory(s: &Server) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap_or_default();
    let kb = |key: &str| -> f64 {
        status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()).unwrap_or(f64::NAN)
    };
    (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).pool_max_idle_per_host(0).build().unwrap()
}

/// `n` admin creates, one after another; their latencies.
async fn admin_creates(s: &Server, n: usize, tag: &str) -> Summary {
    let c = reqwest::Client::new();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let r = c
            .post(format!("http://{}/urls", s.addr))
            .bearer_auth(ADMIN)
            .json(&json!({"original_url": format!("https://bench.example/{tag}/{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "admin create {tag}/{i}");
        lat.push(t.elapsed());
    }
    summarize(&mut lat)
}

/// `n` requests, each on a new connection; their latencies.
async fn fresh_requests(s: &Server, n: usize) -> Summary {
    let c = http();
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c.get(format!("http://{}/health", s.addr)).send().await.unwrap();
        assert!(r.status().is_success());
        lat.push(t.elapsed());
    }
    summarize(&mut lat)
}

async fn idle_sockets(s: &Server) -> serde_json::Value {
    fresh_requests(s, 100).await; // warm-up
    let before = fresh_requests(s, 300).await;
    let (rss0, _) = memory(s);
    let mut socks = Vec::new();
    for i in 0..2_000 {
        let mut c = TcpStream::connect(&s.addr).await.unwrap();
        if i % 2 == 0 {
            c.write_all(b"GET /x HTTP/1.1\r\nA: ").await.unwrap();
        }
        socks.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = fresh_requests(s, 300).await;
    let (rss1, _) = memory(s);
    // The head timeout (10 s) closes them all.
    let t = Instant::now();
    let mut closed = 0;
    for c in socks.iter_mut() {
        let mut b = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_secs(15), c.read(&mut b)).await {
            closed += 1;
        }
    }
    json!({
        "fresh_p99_ms_without": before.p99_ms, "fresh_p99_ms_with": during.p99_ms,
        "p99_ratio": during.p99_ms / before.p99_ms,
        "rss_growth_mb": rss1 - rss0, "closed_by_server": closed, "all_closed_after_s": t.elapsed().as_secs_f64(),
    })
}

async fn unauthenticated_bodies(s: &Server) -> serde_json::Value {
    let (rss0, hwm0) = memory(s);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = s.addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(&addr).await.unwrap();
            let size = 60usize << 20;
            c.write_all(
                format!("POST /urls/bulk HTTP/1.1\r\nhost: x\r\ncontent-type: text/csv\r\ncontent-length: {size}\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let chunk = vec![b'a'; 1 << 20];
            let (mut rd, mut wr) = c.into_split();
            let writer = tokio::spawn(async move {
                let mut sent = 0usize;
                while sent < size {
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                sent
            });
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match rd.read(&mut b).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            let sent = writer.await.unwrap_or(0);
            (String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string(), sent)
        }));
    }
    let mut answers = Vec::new();
    let mut sent = 0;
    for t in tasks {
        let (a, n) = t.await.unwrap();
        answers.push(a);
        sent += n;
    }
    let (rss1, hwm1) = memory(s);
    json!({ "answers": answers, "bytes_sent_mb": sent as f64 / 1048576.0, "rss_growth_mb": rss1 - rss0, "peak_rss_growth_mb": hwm1 - hwm0 })
}

async fn odd_paths(s: &Server) -> serde_json::Value {
    let (rss0, hwm0) = memory(s);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let c = reqwest::Client::new();
    for (len, n) in [(15_000usize, 2_000), (60_000, 2_000)] {
        let letters = "x".repeat(len);
        for i in 0..n {
            let st = match c.get(format!("http://{}/{letters}{i}", s.addr)).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            *statuses.entry(st).or_default() += 1;
        }
    }
    let (rss1, hwm1) = memory(s);
    json!({ "statuses": statuses, "rss_growth_mb": rss1 - rss0, "peak_rss_growth_mb": hwm1 - hwm0 })
}

/// 64 connections posting sign-ins for `secs`; returns (answered by status).
async fn flood(addr: String, secs: u64, stop: Arc<AtomicBool>, counts: Arc<[AtomicU64; 3]>) {
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut i = 0u64;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        i += 1;
        let r = c
            .post(format!("http://{addr}/auth/login"))
            .json(&json!({"email": format!("flood{i}@x.io"), "password": "wrong-password"}))
            .send()
            .await;
        let slot = match r.map(|r| r.status().as_u16()) {
            Ok(401) => 0,
            Ok(429) => 1,
            _ => 2,
        };
        counts[slot].fetch_add(1, Ordering::Relaxed);
    }
}

async fn login_flood(limits_on: bool, args: &Args) -> serde_json::Value {
    // The admin's own creates come from the flood's address: its write allowance is
    // raised so that only the sign-in limits meet the flood.
    let env: &[(&str, &str)] = if limits_on { &[("KURZ_RATE_WRITES", "100000:100000")] } else { &[("KURZ_RATE_LIMITS", "off")] };
    let s = start(env);
    // Warm up (topics, caches, connections), then alternate quiet and flooded rounds so
    // drift on a shared machine falls on both sides alike.
    admin_creates(&s, 50, "warm").await;
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let (mut quiet, mut during) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        quiet.push(admin_creates(&s, args.creates, &format!("quiet{round}")).await);
        let stop = Arc::new(AtomicBool::new(false));
        let floods: Vec<_> = (0..64).map(|_| tokio::spawn(flood(s.addr.clone(), args.flood_secs, stop.clone(), counts.clone()))).collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        during.push(admin_creates(&s, args.creates, &format!("flood{round}")).await);
        stop.store(true, Ordering::Relaxed);
        for f in floods {
            let _ = f.await;
        }
    }
    let median = |v: &[Summary], f: fn(&Summary) -> f64| {
        let mut xs: Vec<f64> = v.iter().map(f).collect();
        xs.sort_by(|a, b| a.total_cmp(b));
        xs[xs.len() / 2]
    };
    let (q99, d99) = (median(&quiet, |s| s.p99_ms), median(&during, |s| s.p99_ms));
    json!({
        "rate_limits": limits_on,
        "rounds": args.rounds,
        "admin_create_p99_ms_without": q99, "admin_create_p99_ms_during": d99,
        "p99_ratio": d99 / q99,
        "p99_ratio_by_round": quiet.iter().zip(&during).map(|(q, d)| d.p99_ms / q.p99_ms).collect::<Vec<_>>(),
        "admin_create_p50_ms_without": median(&quiet, |s| s.p50_ms), "admin_create_p50_ms_during": median(&during, |s| s.p50_ms),
        "flood_answers": { "401": counts[0].load(Ordering::Relaxed), "429": counts[1].load(Ordering::Relaxed), "other": counts[2].load(Ordering::Relaxed) },
    })
}

pub async fn run(args: Args) -> serde_json::Value {
    let s = start(&[]);
    let idle = idle_sockets(&s).await;
    let bodies = unauthenticated_bodies(&s).await;
    let odd = odd_paths(&s).await;
    drop(s);
    let flood_on = login_flood(true, &args).await;
    let flood_off = login_flood(false, &args).await;
    json!({
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "idle_sockets": idle,
        "unauthenticated_bulk_bodies": bodies,
        "odd_paths": odd,
        "login_flood_limits_on": flood_on,
        "login_flood_limits_off": flood_off,
    })
}

pub fn markdown(v: &serde_json::Value) -> String {
    let f = |x: &serde_json::Value| x.as_f64().map(|n| format!("{n:.2}")).unwrap_or_else(|| "–".into());
    let i = &v["idle_sockets"];
    let b = &v["unauthenticated_bulk_bodies"];
    let o = &v["odd_paths"];
    let on = &v["login_flood_limits_on"];
    let off = &v["login_flood_limits_off"];
    format!(
        "# Abuse benchmark\n\n\
`cargo run --release -p kurz-bench -- abuse`: `kurz serve` (release, token mode) as a child process on loopback, \
{cores} cores. Each figure is against the same server without the attack, in the same run.\n\n\
| attack | without | with | ratio or growth | target |\n|---|---|---|---|---|\n\
| 2,000 idle and half-head sockets: fresh client p99 (ms) | {i0} | {i1} | {ir}× | answered |\n\
| 2,000 idle and half-head sockets: RSS growth | | | {irss} MB | |\n\
| four 60 MB unauthenticated bulk bodies: peak RSS growth | | | {bhwm} MB | < 20 MB |\n\
| 2,000 × 15 KB and 2,000 × 60 KB odd paths: peak RSS growth | | | {ohwm} MB | < 10 MB |\n\
| 64-connection sign-in flood, limits on: admin create p99 (ms) | {n0} | {n1} | {nr}× | < 3× |\n\
| 64-connection sign-in flood, limits off (hashing pool only): admin create p99 (ms) | {f0} | {f1} | {fr}× | |\n\n\
- Idle sockets: {closed} of 2,000 were closed by the server, all within {closed_s} s (head timeout 10 s). \
The RSS they hold, about 22 KB each (hyper's 8 KB read buffer, the connection task and its timers), is bounded by \
`KURZ_HTTP_MAX_CONNECTIONS`.\n\
- Unauthenticated bodies: answers {answers}, sent from each request's head. The client still wrote {sent} MB in all: \
the server discards what arrives while it closes (lingering close, a 4 KB buffer), so the 401 is not lost to a reset.\n\
- Odd paths: answers by status {ostat}.\n\
- Sign-in flood answers, limits on: {fon}; limits off: {foff}. Refusals are held until the allowance returns (at most 1 s), \
so each flood connection asks about once a second. With the limits off, the one hasher of this 2-core machine \
(`KURZ_PASSWORD_HASHERS`, half the cores) runs argon2 throughout: one core stays for the rest. p99 ratio by round, limits on: {ron}; off: {roff}.\n",
        cores = v["machine_cores"],
        i0 = f(&i["fresh_p99_ms_without"]),
        i1 = f(&i["fresh_p99_ms_with"]),
        ir = f(&i["p99_ratio"]),
        irss = f(&i["rss_growth_mb"]),
        bhwm = f(&b["peak_rss_growth_mb"]),
        ohwm = f(&o["peak_rss_growth_mb"]),
        n0 = f(&on["admin_create_p99_ms_without"]),
        n1 = f(&on["admin_create_p99_ms_during"]),
        nr = f(&on["p99_ratio"]),
        f0 = f(&off["admin_create_p99_ms_without"]),
        f1 = f(&off["admin_create_p99_ms_during"]),
        fr = f(&off["p99_ratio"]),
        closed = i["closed_by_server"],
        closed_s = f(&i["all_closed_after_s"]),
        answers = b["answers"],
        sent = f(&b["bytes_sent_mb"]),
        ostat = o["statuses"],
        fon = on["flood_answers"],
        foff = off["flood_answers"],
        ron = on["p99_ratio_by_round"],
        roff = off["p99_ratio_by_round"],
    )
}
