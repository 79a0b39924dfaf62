//! Test support for a split deployment: every role in its own `kurz` process, N of each,
//! over one shared tansu broker (the log) and one in-process CQL node (the read store,
//! standing in for ScyllaDB), behind a small round-robin HTTP front that plays the
//! nginx of `docker-compose.yml`: writes (POST/PUT/DELETE/PATCH) go to the command-api
//! processes, reads (GET/HEAD) to the query-edge processes, in turn.
//!
//! Use it as `#[path = "split/mod.rs"] mod split;`. Processes are killed on drop; when a
//! test panics, the front's counters, the partition ownership the processes logged, and
//! the tail of every process's log (JSON lines from stdout, plus stderr) are printed.
//! All deployments of one test binary run one at a time (a process-wide lock), since
//! each one is six or more processes on a small machine.
//!
//! The front adds `x-split-backend` (which process answered) and `x-split-attempts` to
//! every answer, so a failing assertion can name the process. It routes around a dead
//! backend: a request that could not reach one goes to the next; one that reached a
//! backend which died before answering is resent only when that is safe (GET, HEAD, PUT,
//! DELETE, or a write with an `Idempotency-Key`).
//!
//! Environment: `KURZ_SPLIT_LOG_DIR=<dir>` also writes every process's full log to
//! `<dir>/<role>#<index>.log`; `KURZ_SPLIT_KAFKA_EXTRA=a.b=v&…` appends parameters to
//! the `kafka://` URL (librdkafka settings, for experiments); `KURZ_SPLIT_BIN` runs
//! another build's `kurz` binary (to show what a test finds on an older build).
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

pub const ADMIN_TOKEN: &str = "split-admin-token-0123456789abcdef";
/// Shared by every process: session tokens and derived short codes must agree.
pub const SECRET: &str = "split-deployment-shared-secret-0123456789";
pub const PARTITIONS: u32 = 4;
pub const CLICK_PARTITIONS: u32 = 2;
/// Response header the front adds: which backend process answered (`query-edge#1/g2 127.0.0.1:4711`).
pub const BACKEND_HEADER: &str = "x-split-backend";
/// Response header the front adds: how many backends it tried before this answer.
pub const ATTEMPTS_HEADER: &str = "x-split-attempts";

/// Lines of each process's log kept (the tail), and of its notable lines (warnings,
/// errors, stderr, lifecycle).
const LOG_TAIL: usize = 5_000;
const NOTABLE_KEEP: usize = 2_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    CommandApi,
    Projector,
    QueryEdge,
    Watchdog,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::CommandApi, Role::Projector, Role::QueryEdge];

    pub fn command(self) -> &'static str {
        match self {
            Role::CommandApi => "command-api",
            Role::Projector => "projector",
            Role::QueryEdge => "query-edge",
            Role::Watchdog => "watchdog",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub command_apis: usize,
    pub projectors: usize,
    pub query_edges: usize,
    pub watchdogs: usize,
    /// `open` or `token` (then writes need `Authorization: Bearer ADMIN_TOKEN`).
    pub auth: &'static str,
    pub extra_env: Vec<(String, String)>,
    /// Readiness by writing a link into every command partition (and seeing it
    /// redirect on every edge); without it, by every partition having one owner in the
    /// processes' logs, which leaves the deployment's data empty (the contract suite).
    pub warm_up: bool,
    /// Appended to the `kafka://` URL, e.g. `drain_ms=20000&timeout_ms=15000`.
    pub kafka_params: &'static str,
    /// A process that runs in a network namespace of its own ([`NetNs`]), so the test
    /// can cut it off the network ([`Split::cut`]).
    pub isolated: Option<(Role, usize)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            command_apis: 2,
            projectors: 2,
            query_edges: 2,
            watchdogs: 0,
            auth: "open",
            extra_env: Vec::new(),
            warm_up: true,
            kafka_params: "",
            isolated: None,
        }
    }
}

/// One process's captured output, kept across restarts.
#[derive(Default)]
pub struct ProcLog {
    /// (line number, line)
    pub tail: VecDeque<(u64, String)>,
    pub notable: VecDeque<(u64, String)>,
    pub lines: u64,
    /// Lines of the CQL driver's periodic complaints about the CQL double's system
    /// tables (kassandra has no `system.peers`/`system.local` the driver can read):
    /// counted, not kept, since they would drown everything else.
    pub driver_noise: u64,
    /// Every partition-ownership line and harness lifecycle line, never dropped.
    pub membership: Vec<String>,
    /// With `KURZ_SPLIT_LOG_DIR` set, every line also goes to `<dir>/<role>#<index>.log`.
    pub file: Option<std::fs::File>,
}

/// The CQL driver's repeated metadata complaints about the CQL double.
fn driver_noise(line: &str) -> bool {
    line.contains("\"logger\":\"scylla::cluster::metadata") || line.contains("No sharding information received")
}

impl ProcLog {
    fn push(&mut self, line: String) {
        self.lines += 1;
        if let Some(f) = &mut self.file {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
        if driver_noise(&line) {
            self.driver_noise += 1;
            return;
        }
        if line.starts_with("[harness]") || line.contains("\"event\":\"partitions_") {
            self.membership.push(line.clone());
        }
        let notable = line.starts_with("[stderr]")
            || line.starts_with("[harness]")
            || line.contains("\"level\":\"warn\"")
            || line.contains("\"level\":\"error\"")
            || line.contains("\"level\":\"WARN\"")
            || line.contains("\"level\":\"ERROR\"")
            || line.contains("\"event\":\"partitions_")
            || line.contains("\"event\":\"listening\"")
            || line.contains("panic");
        if notable {
            if self.notable.len() == NOTABLE_KEEP {
                self.notable.pop_front();
            }
            self.notable.push_back((self.lines, line.clone()));
        }
        if self.tail.len() == LOG_TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back((self.lines, line));
    }
}

/// One role process (and its successors after restarts: same data dir, same index).
pub struct Proc {
    pub role: Role,
    pub index: usize,
    /// Starts so far (1 after the first start).
    pub generation: u32,
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data: tempfile::TempDir,
    pub log: Arc<Mutex<ProcLog>>,
    /// Exits seen that the harness did not cause.
    pub unexpected_exits: Vec<String>,
}

impl Proc {
    pub fn name(&self) -> String {
        format!("{}#{}", self.role.command(), self.index)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// A harness line in this process's log: `[harness] t=<unix seconds> <msg>`.
    fn note(&self, msg: &str) {
        self.log.lock().unwrap().push(format!("[harness] t={:.6} {msg}", unix_now()));
    }

    /// The last `n` lines of this process's log, and every notable line before them.
    pub fn tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        let skip = log.tail.len().saturating_sub(n);
        let tail: Vec<&String> = log.tail.iter().skip(skip).map(|(_, l)| l).collect();
        let first_tail = log.tail.get(skip).map(|(n, _)| *n).unwrap_or(u64::MAX);
        let earlier: Vec<&String> = log.notable.iter().filter(|(n, _)| *n < first_tail).map(|(_, l)| l).collect();
        let mut out = format!(
            "===== {} (pid {:?}, generation {}, {} lines, of which {} CQL-driver metadata complaints not shown) =====\n",
            self.name(),
            self.pid(),
            self.generation,
            log.lines,
            log.driver_noise
        );
        if !earlier.is_empty() {
            out.push_str("--- notable lines before the tail ---\n");
            for l in earlier.iter().rev().take(200).rev() {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("--- tail ---\n");
        }
        for l in tail {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Log lines (whole tail) that contain `needle`.
    pub fn grep(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        let mut v: Vec<(u64, String)> = log.notable.iter().filter(|(_, l)| l.contains(needle)).cloned().collect();
        for (n, l) in log.tail.iter().filter(|(_, l)| l.contains(needle)) {
            if !v.iter().any(|(m, _)| m == n) {
                v.push((*n, l.clone()));
            }
        }
        v.sort();
        v.into_iter().map(|(_, l)| l).collect()
    }

    /// Records an exit the harness did not cause, once.
    fn poll_exit(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        let msg = format!("{} (generation {}) exited on its own: {st}", self.name(), self.generation);
        self.note(&msg);
        self.unexpected_exits.push(msg);
        Some(st)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let st = c.wait();
            self.note(&format!("kill -9 (pid {}): {st:?}", c.id()));
        }
    }
}

#[derive(Clone, Debug)]
struct Backend {
    name: String,
    base: String,
}

/// The round-robin front's routing table and counters.
struct Front {
    writers: RwLock<Vec<Backend>>,
    readers: RwLock<Vec<Backend>>,
    next_write: AtomicUsize,
    next_read: AtomicUsize,
    client: reqwest::Client,
    /// Requests answered, by backend name.
    served: Mutex<BTreeMap<String, u64>>,
    /// Transport failures the front routed around, by backend name.
    failovers: Mutex<BTreeMap<String, u64>>,
    retries: AtomicU64,
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "proxy-authorization",
];

fn hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// A reqwest error with its causes (reqwest's own Display hides them).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn front_error(status: StatusCode, msg: String) -> Response {
    let body = serde_json::json!({ "error": msg }).to_string();
    Response::builder().status(status).header("content-type", "application/json").body(Body::from(body)).unwrap()
}

/// Forwards one request. Writes go to the command-api pool, reads to the query-edge pool,
/// each in turn. A backend that cannot be reached (connection refused: a dead process)
/// is skipped and the same request goes to the next one. A request that reached a
/// backend which then died without answering is retried on the next backend only when
/// that is safe: GET/HEAD/PUT/DELETE, or any write carrying an `Idempotency-Key`.
async fn forward(front: Arc<Front>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, 256 << 20).await {
        Ok(b) => b,
        Err(e) => return front_error(StatusCode::BAD_REQUEST, format!("front: reading the request body: {e}")),
    };
    // As infra/nginx/nginx.conf: writes, and the one private read (a user's API keys),
    // go to the command-api.
    let private_read = parts.uri.path().starts_with("/users/") && parts.uri.path().ends_with("/api-keys");
    let write = matches!(parts.method, Method::POST | Method::PUT | Method::DELETE | Method::PATCH) || private_read;
    let resendable = !matches!(parts.method, Method::POST | Method::PATCH) || parts.headers.contains_key("idempotency-key");
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let start = if write { &front.next_write } else { &front.next_read }.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut tried: Vec<String> = Vec::new();
    let mut attempt = 0usize;
    let mut failed_in_round = 0usize;
    loop {
        let backend = {
            let pool = front.readers_or_writers(write);
            if pool.is_empty() {
                return front_error(
                    StatusCode::BAD_GATEWAY,
                    format!("front: no {} backend", if write { "command-api" } else { "query-edge" }),
                );
            }
            pool[(start + attempt) % pool.len()].clone()
        };
        attempt += 1;
        let mut rb = front.client.request(parts.method.clone(), format!("{}{}", backend.base, path));
        for (k, v) in parts.headers.iter() {
            if !hop_by_hop(k) {
                rb = rb.header(k, v);
            }
        }
        let sent = rb.body(body.clone()).send().await;
        let failure = match sent {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(bytes) => {
                        *front.served.lock().unwrap().entry(backend.name.clone()).or_default() += 1;
                        return respond(status, &headers, bytes, &backend, attempt);
                    }
                    Err(e) => (false, format!("{} ({}): reading the answer: {}", backend.name, backend.base, error_chain(&e))),
                }
            }
            Err(e) => (e.is_connect(), format!("{} ({}): {}", backend.name, backend.base, error_chain(&e))),
        };
        let (unreached, why) = failure;
        tried.push(why);
        *front.failovers.lock().unwrap().entry(backend.name.clone()).or_default() += 1;
        if !(unreached || resendable) {
            return front_error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "front: {} {path}: backend failed mid-request and the request is not safe to resend: {}",
                    parts.method,
                    tried.join("; ")
                ),
            );
        }
        if Instant::now() > deadline {
            return front_error(
                StatusCode::BAD_GATEWAY,
                format!("front: {} {path}: every backend failed for 90 s: {}", parts.method, tried.join("; ")),
            );
        }
        front.retries.fetch_add(1, Ordering::Relaxed);
        failed_in_round += 1;
        if failed_in_round >= front.readers_or_writers(write).len() {
            // A whole round failed: back off a little before the next one.
            failed_in_round = 0;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Front {
    fn readers_or_writers(&self, write: bool) -> Vec<Backend> {
        if write {
            self.writers.read().unwrap().clone()
        } else {
            self.readers.read().unwrap().clone()
        }
    }
}

fn respond(status: reqwest::StatusCode, headers: &HeaderMap, body: Bytes, backend: &Backend, attempts: usize) -> Response {
    let mut b = Response::builder().status(status.as_u16());
    for (k, v) in headers.iter() {
        if !hop_by_hop(k) {
            b = b.header(k, v);
        }
    }
    b.header(BACKEND_HEADER, HeaderValue::from_str(&format!("{} {}", backend.name, backend.base)).unwrap())
        .header(ATTEMPTS_HEADER, attempts.to_string())
        .body(Body::from(body))
        .unwrap()
}

/// Deployments in one test binary run one at a time.
static SERIAL: LazyLock<Arc<tokio::sync::Mutex<()>>> = LazyLock::new(|| Arc::new(tokio::sync::Mutex::new(())));

/// A running split deployment.
pub struct Split {
    pub procs: Vec<Proc>,
    /// Base URL of the round-robin front, e.g. `http://127.0.0.1:4711`.
    pub front: String,
    pub cql: SocketAddr,
    pub opts: Opts,
    /// When the deployment started (Unix seconds): log times are reported relative to it.
    pub started_unix: f64,
    front_state: Arc<Front>,
    front_rt: Option<tokio::runtime::Runtime>,
    env: Vec<(String, String)>,
    pub tansu: kurz_testkit::Tansu,
    netns: Option<NetNs>,
    _serial: tokio::sync::OwnedMutexGuard<()>,
}

/// A network namespace joined to this one by a veth pair: a process started in it
/// reaches the broker and the CQL node, and is reached over HTTP, through the pair
/// only. Taking the pair's inner end down cuts it off: every packet either way is
/// dropped, connections hang instead of failing, as in a network partition. Needs
/// `ip` (iproute2) and the right to make namespaces (root); without them the test
/// fails, it is not skipped.
pub struct NetNs {
    name: String,
    inner: String,
    outer: String,
    /// This side's address of the pair: where the isolated process finds the broker.
    pub host_ip: String,
    /// The isolated process's address.
    pub ns_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("`ip {}`: {e} (install iproute2)", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed (network namespaces need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    pub fn create() -> NetNs {
        let id = std::process::id();
        let (a, b) = ((id >> 6) % 250 + 1, (id & 63) * 4);
        let ns = NetNs {
            name: format!("kurz{id}"),
            inner: format!("kzi{id}"),
            outer: format!("kzo{id}"),
            host_ip: format!("10.213.{a}.{}", b + 1),
            ns_ip: format!("10.213.{a}.{}", b + 2),
        };
        ip(&["netns", "add", &ns.name]);
        ip(&["link", "add", &ns.outer, "type", "veth", "peer", "name", &ns.inner]);
        ip(&["link", "set", &ns.inner, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{}/30", ns.host_ip), "dev", &ns.outer]);
        ip(&["link", "set", &ns.outer, "up"]);
        ip(&["netns", "exec", &ns.name, "ip", "addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns.inner]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", &ns.inner, "up"]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Cuts the namespace off (`true`) or joins it again.
    pub fn cut(&self, cut: bool) {
        ip(&["netns", "exec", &self.name, "ip", "link", "set", &self.inner, if cut { "down" } else { "up" }]);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.outer]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A client for tests: never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn spawn_reader<R: Read + Send + 'static>(
    src: R,
    log: Arc<Mutex<ProcLog>>,
    prefix: &'static str,
    listening: Option<tokio::sync::oneshot::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut listening = listening;
        for line in BufReader::new(src).lines().map_while(Result::ok) {
            if line.contains("\"event\":\"listening\"") {
                if let Some(tx) = listening.take() {
                    let addr = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["addr"].as_str().or_else(|| v["fields"]["addr"].as_str()).map(str::to_string));
                    if let Some(a) = addr {
                        let _ = tx.send(a);
                    } else {
                        listening = Some(tx);
                    }
                }
            }
            log.lock().unwrap().push(if prefix.is_empty() { line } else { format!("{prefix}{line}") });
        }
    });
}

impl Split {
    /// Starts the broker, the CQL node, every process and the front, and returns once
    /// the deployment is ready: every process answers `/health/ready`, and a link
    /// created through the front in each of the `PARTITIONS` command partitions
    /// redirects on every query edge (so every partition has a decider and a projector).
    pub async fn start(opts: Opts) -> Split {
        let serial = SERIAL.clone().lock_owned().await;
        let started = Instant::now();
        // With an isolated process, the broker and the CQL node listen where its
        // namespace reaches them too, and every process uses that address.
        let netns = opts.isolated.map(|_| NetNs::create());
        let (tansu, cql) = match &netns {
            None => (kurz_testkit::Tansu::memory(), kurz_testkit::cql::start_node()),
            Some(ns) => {
                let cql = kurz_testkit::cql::start_node_on("0.0.0.0:0");
                (kurz_testkit::Tansu::memory_at(&ns.host_ip), SocketAddr::new(ns.host_ip.parse().unwrap(), cql.port()))
            }
        };
        let mut env: Vec<(String, String)> = vec![
            (
                "KURZ_LOG_URL".into(),
                format!(
                    "{}?session_timeout_ms=6000&drain_ms=5000{}{}",
                    tansu.url(),
                    kafka_extra(),
                    if opts.kafka_params.is_empty() { String::new() } else { format!("&{}", opts.kafka_params) }
                ),
            ),
            ("KURZ_STORE_URL".into(), format!("scylla://{cql}/kurz?consistency=one")),
            ("KURZ_CACHE_URL".into(), "memory".into()),
            ("KURZ_SECRET".into(), SECRET.into()),
            ("KURZ_AUTH".into(), opts.auth.into()),
            ("KURZ_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("KURZ_PARTITIONS".into(), PARTITIONS.to_string()),
            ("KURZ_CLICK_PARTITIONS".into(), CLICK_PARTITIONS.to_string()),
            ("KURZ_HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("KURZ_LOG".into(), "info".into()),
        ];
        env.extend(opts.extra_env.iter().cloned());

        let front_state = Arc::new(Front {
            writers: RwLock::new(Vec::new()),
            readers: RwLock::new(Vec::new()),
            next_write: AtomicUsize::new(0),
            next_read: AtomicUsize::new(0),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            served: Mutex::new(BTreeMap::new()),
            failovers: Mutex::new(BTreeMap::new()),
            retries: AtomicU64::new(0),
        });
        let (front, front_rt) = start_front(front_state.clone());

        let mut split = Split {
            procs: Vec::new(),
            front,
            cql,
            opts: opts.clone(),
            started_unix: unix_now(),
            front_state,
            front_rt: Some(front_rt),
            env,
            tansu,
            netns,
            _serial: serial,
        };
        // Every process at once, as an orchestrator would start them.
        let mut waits = Vec::new();
        let roles = [
            (Role::CommandApi, opts.command_apis),
            (Role::Projector, opts.projectors),
            (Role::QueryEdge, opts.query_edges),
            (Role::Watchdog, opts.watchdogs),
        ];
        for (role, n) in roles {
            for index in 0..n {
                let data = tempfile::tempdir().expect("tempdir");
                let mut p = Proc {
                    role,
                    index,
                    generation: 0,
                    child: None,
                    addr: "127.0.0.1:0".parse().unwrap(),
                    data,
                    log: Arc::new(Mutex::new(ProcLog { file: log_file(role, index), ..ProcLog::default() })),
                    unexpected_exits: Vec::new(),
                };
                let rx = split.spawn(&mut p);
                waits.push(rx);
                split.procs.push(p);
            }
        }
        for (i, rx) in waits.into_iter().enumerate() {
            split.await_listening(i, rx).await;
        }
        split.sync_pools();
        for i in 0..split.procs.len() {
            split.await_ready(i).await;
        }
        if opts.warm_up {
            split.await_partitions_serving().await;
        } else {
            split.await_owned().await;
        }
        eprintln!(
            "[split] ready in {:.1}s: front {} over {}",
            started.elapsed().as_secs_f64(),
            split.front,
            split.procs.iter().map(|p| format!("{} {}", p.name(), p.addr)).collect::<Vec<_>>().join(", ")
        );
        split
    }

    fn spawn(&self, p: &mut Proc) -> tokio::sync::oneshot::Receiver<String> {
        // `KURZ_SPLIT_BIN`: another build's binary, to compare builds under one test.
        let bin = std::env::var("KURZ_SPLIT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_kurz").to_string());
        let isolated = self.netns.as_ref().filter(|_| self.opts.isolated == Some((p.role, p.index)));
        let mut cmd = match isolated {
            // `ip netns exec` execs the binary: the child's pid is kurz's own.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name, &bin]);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg(p.role.command()).env("KURZ_DATA_DIR", p.data.path()).stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(ns) = isolated {
            cmd.env("KURZ_HTTP_ADDR", format!("{}:0", ns.ns_ip));
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", p.name()));
        p.generation += 1;
        p.note(&format!("started generation {} (pid {})", p.generation, child.id()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        spawn_reader(child.stdout.take().unwrap(), p.log.clone(), "", Some(tx));
        spawn_reader(child.stderr.take().unwrap(), p.log.clone(), "[stderr] ", None);
        p.child = Some(child);
        rx
    }

    async fn await_listening(&mut self, i: usize, rx: tokio::sync::oneshot::Receiver<String>) {
        let addr = match tokio::time::timeout(Duration::from_secs(120), rx).await {
            Ok(Ok(a)) => a,
            other => {
                let why = match other {
                    Ok(Err(_)) => "its stdout closed (it exited)".to_string(),
                    _ => "no listening line within 120 s".to_string(),
                };
                self.procs[i].poll_exit();
                panic!("{} did not start listening: {why}\n{}", self.procs[i].name(), self.procs[i].tail(200));
            }
        };
        self.procs[i].addr = addr.parse().unwrap_or_else(|e| panic!("{}: listening addr {addr}: {e}", self.procs[i].name()));
    }

    async fn await_ready(&mut self, i: usize) {
        let c = client();
        let url = format!("{}/health/ready", self.procs[i].base());
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last: String;
        loop {
            match c.get(&url).timeout(Duration::from_secs(5)).send().await {
                Ok(r) if r.status() == 200 => return,
                Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = error_chain(&e),
            }
            if self.procs[i].poll_exit().is_some() || Instant::now() > deadline {
                panic!("{} is not ready: {last}\n{}", self.procs[i].name(), self.procs[i].tail(200));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every partition of every topic has exactly one owner, by the logs.
    async fn await_owned(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let own = self.ownership();
            if own.values().all(|parts| parts.values().all(|owners| owners.len() == 1)) {
                return;
            }
            if Instant::now() > deadline {
                panic!("partitions never got one owner each:\n{}", self.report());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes through the front into every command partition and waits until each write
    /// redirects on every query edge: deciders and projectors own every partition.
    async fn await_partitions_serving(&mut self) {
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(120);
        for p in 0..PARTITIONS {
            let alias = (0..).map(|k| format!("ready-p{p}-{k}")).find(|a| partition_of_code(a) == p).unwrap();
            let target = format!("https://ready.split.test/{alias}");
            let mut last: String;
            loop {
                let r = self
                    .auth(c.post(format!("{}/urls", self.front)))
                    .header("Idempotency-Key", format!("split-ready-{alias}"))
                    .json(&serde_json::json!({ "original_url": target, "short_code": alias }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => break,
                    Ok(r) => {
                        let from = r.headers().get(BACKEND_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("front").to_string();
                        last = format!("{} from {from}: {}", r.status(), r.text().await.unwrap_or_default())
                    }
                    Err(e) => last = error_chain(&e),
                }
                if Instant::now() > deadline {
                    panic!("partition {p} never accepted a write ({last})\n{}", self.report());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for edge in self.procs.iter().filter(|p| p.role == Role::QueryEdge) {
                loop {
                    let r = c.get(format!("{}/{alias}", edge.base())).send().await;
                    let ok = matches!(&r, Ok(r) if r.status() == 302 && r.headers()["location"] == target.as_str());
                    if ok {
                        break;
                    }
                    if Instant::now() > deadline {
                        panic!("{} never served partition {p}'s link {alias}: {r:?}\n{}", edge.name(), self.report());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Adds the admin token in token mode.
    pub fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.opts.auth == "token" {
            rb.bearer_auth(ADMIN_TOKEN)
        } else {
            rb
        }
    }

    /// `front + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.front, path)
    }

    fn sync_pools(&self) {
        let pool = |role| {
            self.procs
                .iter()
                .filter(|p| p.role == role)
                .map(|p| Backend { name: format!("{}/g{}", p.name(), p.generation), base: p.base() })
                .collect()
        };
        *self.front_state.writers.write().unwrap() = pool(Role::CommandApi);
        *self.front_state.readers.write().unwrap() = pool(Role::QueryEdge);
    }

    /// Index into `procs` of the `index`th process of `role`.
    pub fn find(&self, role: Role, index: usize) -> usize {
        self.procs.iter().position(|p| p.role == role && p.index == index).unwrap_or_else(|| panic!("no {}#{index}", role.command()))
    }

    pub fn proc(&self, role: Role, index: usize) -> &Proc {
        &self.procs[self.find(role, index)]
    }

    /// `kill -9` one process. The front keeps routing to its old address (and around it,
    /// since nothing answers there) until it is restarted.
    pub fn kill9(&mut self, role: Role, index: usize) {
        let i = self.find(role, index);
        self.procs[i].poll_exit();
        self.procs[i].kill9();
        eprintln!("[split] kill -9 {}", self.procs[i].name());
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to one process.
    /// Cuts the isolated process off the network (`true`), or joins it again.
    pub fn cut(&self, cut: bool) {
        self.netns.as_ref().expect("Opts::isolated names no process").cut(cut);
    }

    pub fn signal(&self, role: Role, index: usize, signal: &str) {
        let p = &self.procs[self.find(role, index)];
        let pid = p.pid().unwrap_or_else(|| panic!("{} is not running", p.name()));
        p.note(&format!("SIG{signal}"));
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "kill -{signal} {pid} ({}) failed", p.name());
        eprintln!("[split] kill -{signal} {}", p.name());
    }

    /// Starts a killed process again (same data dir, new port) and waits until it
    /// answers `/health/ready`; the front then routes to its new address.
    pub async fn restart(&mut self, role: Role, index: usize) {
        let i = self.find(role, index);
        self.procs[i].poll_exit();
        self.procs[i].kill9();
        let mut p = std::mem::replace(
            &mut self.procs[i],
            Proc {
                role,
                index,
                generation: 0,
                child: None,
                addr: "127.0.0.1:0".parse().unwrap(),
                data: tempfile::tempdir().unwrap(),
                log: Arc::new(Mutex::new(ProcLog::default())),
                unexpected_exits: Vec::new(),
            },
        );
        let rx = self.spawn(&mut p);
        self.procs[i] = p;
        self.await_listening(i, rx).await;
        self.await_ready(i).await;
        self.sync_pools();
        eprintln!("[split] restarted {} (generation {}) on {}", self.procs[i].name(), self.procs[i].generation, self.procs[i].addr);
    }

    /// Processes that exited without the harness killing them.
    pub fn unexpected_exits(&mut self) -> Vec<String> {
        for p in &mut self.procs {
            p.poll_exit();
        }
        self.procs.iter().flat_map(|p| p.unexpected_exits.clone()).collect()
    }

    /// Answers per backend, failovers per backend, and retries, as the front counted them.
    pub fn front_stats(&self) -> String {
        format!(
            "served {:?}; transport failures routed around {:?}; resends {}",
            self.front_state.served.lock().unwrap(),
            self.front_state.failovers.lock().unwrap(),
            self.front_state.retries.load(Ordering::Relaxed)
        )
    }

    /// Answers counted per backend name prefix (e.g. `query-edge#1`).
    pub fn served_by(&self, prefix: &str) -> u64 {
        self.front_state.served.lock().unwrap().iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum()
    }

    /// Log lines of every process containing `needle`, prefixed by the process name.
    pub fn grep(&self, needle: &str) -> Vec<String> {
        self.procs.iter().flat_map(|p| p.grep(needle).into_iter().map(move |l| format!("{}: {l}", p.name()))).collect()
    }

    /// Who owns which partition, as the running processes logged it
    /// (`partitions_assigned` / `partitions_revoked` since their last start), per
    /// topic: `topic -> partition -> owners`. A partition no one owns is listed with no
    /// owner. Topics: `kurz.commands.v1` (deciders), `kurz.events.v1` and
    /// `kurz.clicks.v1` (projectors).
    pub fn ownership(&self) -> BTreeMap<String, BTreeMap<u32, Vec<String>>> {
        let mut out: BTreeMap<String, BTreeMap<u32, Vec<String>>> = BTreeMap::new();
        for (topic, n) in [("kurz.commands.v1", PARTITIONS), ("kurz.events.v1", PARTITIONS), ("kurz.clicks.v1", CLICK_PARTITIONS)] {
            out.insert(topic.to_string(), (0..n).map(|p| (p, Vec::new())).collect());
        }
        for t in self.tenures().into_iter().filter(|t| t.until.is_none()) {
            out.entry(t.topic).or_default().entry(t.partition).or_default().push(t.owner);
        }
        out
    }

    /// Every ownership period of every partition by every process generation, as the
    /// logs tell it: from `partitions_assigned` to `partitions_revoked` (logged before
    /// the revoked work drains, so an overlap found here is a real one), or to the
    /// harness's `kill -9`, or to the process's own exit.
    pub fn tenures(&self) -> Vec<Tenure> {
        let mut out = Vec::new();
        for p in &self.procs {
            let log = p.log.lock().unwrap();
            let mut generation = 0;
            let mut open: BTreeMap<(String, u32), f64> = BTreeMap::new();
            let close_all = |open: &mut BTreeMap<(String, u32), f64>, out: &mut Vec<Tenure>, gen: u32, at: Option<f64>| {
                for ((topic, partition), from) in std::mem::take(open) {
                    out.push(Tenure { owner: format!("{}/g{gen}", p.name()), topic, partition, from, until: at });
                }
            };
            for line in &log.membership {
                let Some(t) = line_time(line) else { continue };
                if line.starts_with("[harness]") {
                    if line.contains(" started generation ") {
                        close_all(&mut open, &mut out, generation, Some(t));
                        generation += 1;
                    } else if line.contains(" kill -9 ") || line.contains(" exited on its own") {
                        close_all(&mut open, &mut out, generation, Some(t));
                    }
                    continue;
                }
                let assigned = line.contains("\"event\":\"partitions_assigned\"");
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                let (Some(topic), Some(parts)) = (v["topic"].as_str(), v["partitions"].as_str()) else { continue };
                for x in parts.trim_matches(|c| c == '[' || c == ']').split(',').filter_map(|x| x.trim().parse::<u32>().ok()) {
                    let key = (topic.to_string(), x);
                    if assigned {
                        open.entry(key).or_insert(t);
                    } else if let Some(from) = open.remove(&key) {
                        out.push(Tenure { owner: format!("{}/g{generation}", p.name()), topic: key.0, partition: x, from, until: Some(t) });
                    }
                }
            }
            let running = p.is_running();
            close_all(&mut open, &mut out, generation, if running { None } else { Some(unix_now()) });
        }
        out
    }

    /// Pairs of processes that owned one partition at the same time (by their logs), as
    /// text. Deciders and projectors rely on a partition having one owner at a time.
    pub fn ownership_overlaps(&self) -> Vec<String> {
        let t = self.tenures();
        let now = unix_now();
        let rel = |u: Option<f64>| u.map_or("now".to_string(), |u| format!("+{:.1}s", u - self.started_unix));
        let mut out = Vec::new();
        for (i, a) in t.iter().enumerate() {
            for b in &t[i + 1..] {
                if a.topic != b.topic || a.partition != b.partition || a.owner == b.owner {
                    continue;
                }
                let start = a.from.max(b.from);
                let end = a.until.unwrap_or(now).min(b.until.unwrap_or(now));
                if end > start {
                    out.push(format!(
                        "{} partition {}: {} (+{:.1}s to {}) and {} (+{:.1}s to {}) both owned it for {:.1}s",
                        a.topic,
                        a.partition,
                        a.owner,
                        a.from - self.started_unix,
                        rel(a.until),
                        b.owner,
                        b.from - self.started_unix,
                        rel(b.until),
                        end - start
                    ));
                }
            }
        }
        out
    }

    /// The running process of `role` that has held a partition of `topic` the longest
    /// without a break (on tansu, the group's first member is its leader until it goes).
    pub fn longest_owner(&self, role: Role, topic: &str) -> Option<usize> {
        self.tenures()
            .into_iter()
            .filter(|t| t.topic == topic && t.until.is_none())
            .filter_map(|t| {
                let name = t.owner.split('/').next()?.to_string();
                let p = self.procs.iter().find(|p| p.name() == name && p.role == role)?;
                Some((t.from, p.index))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, i)| i)
    }

    /// `ownership()` as text, naming partitions nobody owns.
    pub fn ownership_report(&self) -> String {
        let mut s = String::new();
        for (topic, parts) in self.ownership() {
            let orphans: Vec<u32> = parts.iter().filter(|(_, o)| o.is_empty()).map(|(p, _)| *p).collect();
            s.push_str(&format!("  {topic}: {parts:?}"));
            if !orphans.is_empty() {
                s.push_str(&format!("  <- owned by no running process: {orphans:?}"));
            }
            s.push('\n');
        }
        s
    }

    /// Every process's log tail and the front's counters.
    pub fn report(&self) -> String {
        // Process tails first, the summary last: it survives `| tail`.
        let mut s = String::new();
        for p in &self.procs {
            s.push_str(&p.tail(40));
        }
        s.push_str(&format!(
            "[split] front {}: {}\n[split] partition ownership from the logs:\n{}[split] partitions owned by two processes at once: {:#?}\n",
            self.front,
            self.front_stats(),
            self.ownership_report(),
            self.ownership_overlaps()
        ));
        s
    }
}

/// Extra `kafka://` URL parameters from `KURZ_SPLIT_KAFKA_EXTRA` (e.g.
/// `max.poll.interval.ms=20000`), for experiments.
fn kafka_extra() -> String {
    std::env::var("KURZ_SPLIT_KAFKA_EXTRA").ok().filter(|v| !v.is_empty()).map(|v| format!("&{v}")).unwrap_or_default()
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp as kurz logs it
/// (`2026-11-22T04:23:34.728622Z`).
pub fn parse_ts(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min, sec) = (t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?, t.next()?.parse::<f64>().ok()?);
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3_600.0 + min * 60.0 + sec)
}

/// When a membership line happened: a kurz line's `ts`, or a harness line's `t=`.
fn line_time(line: &str) -> Option<f64> {
    if let Some(rest) = line.strip_prefix("[harness] t=") {
        return rest.split_whitespace().next()?.parse().ok();
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    parse_ts(v["ts"].as_str()?)
}

/// One process generation's ownership of one partition, from its logs.
#[derive(Debug, Clone)]
pub struct Tenure {
    pub owner: String,
    pub topic: String,
    pub partition: u32,
    /// Unix seconds.
    pub from: f64,
    /// Unix seconds; `None` while it still holds the partition.
    pub until: Option<f64>,
}

/// `<KURZ_SPLIT_LOG_DIR>/<role>#<index>.log`, when that variable is set.
fn log_file(role: Role, index: usize) -> Option<std::fs::File> {
    let dir = std::path::PathBuf::from(std::env::var_os("KURZ_SPLIT_LOG_DIR")?);
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{}#{index}.log", role.command()))).ok()
}

/// The command partition a link with `code` is decided in (as `kurz-storage` routes it).
pub fn partition_of_code(code: &str) -> u32 {
    kurz_storage::log::partition_for(&format!("link:{code}"), PARTITIONS)
}

fn start_front(state: Arc<Front>) -> (String, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("split-front").enable_all().build().unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| forward(state.clone(), req));
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), rt)
}

impl Drop for Split {
    fn drop(&mut self) {
        for p in &mut self.procs {
            p.poll_exit();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
        for p in &mut self.procs {
            p.kill9();
        }
        if let Some(rt) = self.front_rt.take() {
            rt.shutdown_background();
        }
    }
}
