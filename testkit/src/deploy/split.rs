//! The deployment: the broker, the CQL node, the role processes and the front, started
//! together, and what a test does to them (kill, restart, stop, cut off) and asks of
//! them (logs, ownership, a report).

use super::front::{self, Backend};
use super::netns::NetNs;
use super::process::{spawn_reader, Proc, ProcLog};
use super::{unix_now, Kurz, Role, ADMIN_TOKEN, BACKEND_HEADER, CLICK_PARTITIONS, PARTITIONS, SECRET};
use crate::http::{error_chain, Api};
use reqwest::Method;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

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
    kurz: Kurz,
    front_running: front::Running,
    env: Vec<(String, String)>,
    pub tansu: crate::Tansu,
    netns: Option<NetNs>,
    _serial: tokio::sync::OwnedMutexGuard<()>,
}

/// Extra `kafka://` URL parameters from `KURZ_SPLIT_KAFKA_EXTRA` (e.g.
/// `max.poll.interval.ms=20000`), for experiments.
fn kafka_extra() -> String {
    std::env::var("KURZ_SPLIT_KAFKA_EXTRA").ok().filter(|v| !v.is_empty()).map(|v| format!("&{v}")).unwrap_or_default()
}

impl Split {
    /// Starts the broker, the CQL node, every process of `kurz` and the front, and
    /// returns once the deployment is ready: every process answers `/health/ready`,
    /// and then either a link created through the front in each of the `PARTITIONS`
    /// command partitions redirects on every query edge (so every partition has a
    /// decider and a projector), or, without [`Opts::warm_up`], every partition has
    /// one owner by the logs.
    pub async fn start(kurz: Kurz, opts: Opts) -> Split {
        let serial = SERIAL.clone().lock_owned().await;
        let started = Instant::now();
        // With an isolated process, the broker and the CQL node listen where its
        // namespace reaches them too, and every process uses that address.
        let netns = opts.isolated.map(|_| NetNs::create());
        let (tansu, cql) = match &netns {
            None => (crate::Tansu::memory(), crate::cql::start_node()),
            Some(ns) => {
                let cql = crate::cql::start_node_on("0.0.0.0:0");
                (crate::Tansu::memory_at(&ns.host_ip), SocketAddr::new(ns.host_ip.parse().unwrap(), cql.port()))
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

        let front_running = front::start();
        let mut split = Split {
            procs: Vec::new(),
            front: front_running.base.clone(),
            cql,
            opts: opts.clone(),
            started_unix: unix_now(),
            kurz,
            front_running,
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
                let mut p = Proc::new(role, index, ProcLog::for_process(role, index));
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
        let bin = std::env::var("KURZ_SPLIT_BIN").unwrap_or_else(|_| self.kurz.bin.to_string());
        let isolated = self.netns.as_ref().filter(|_| self.opts.isolated == Some((p.role, p.index)));
        let mut cmd = match isolated {
            Some(ns) => ns.command(&bin),
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
        let c = crate::http::client();
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
        let front = self.api();
        let deadline = Instant::now() + Duration::from_secs(120);
        for p in 0..PARTITIONS {
            let alias = (0..).map(|k| format!("ready-p{p}-{k}")).find(|a| self.kurz.partition_of_code(a) == p).unwrap();
            let target = format!("https://ready.split.test/{alias}");
            let body = serde_json::json!({ "original_url": target, "short_code": alias });
            let key = format!("split-ready-{alias}");
            let mut last: String;
            loop {
                match front.try_call(Method::POST, "/urls", Some(&body), self.token(), &[("Idempotency-Key", &key)]).await {
                    Ok(r) if (200..300).contains(&r.status) => break,
                    Ok(r) => {
                        let from = r.header(BACKEND_HEADER).unwrap_or_else(|| "front".into());
                        last = format!("{} from {from}: {}", r.status, r.text)
                    }
                    Err(e) => last = e,
                }
                if Instant::now() > deadline {
                    panic!("partition {p} never accepted a write ({last})\n{}", self.report());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            for edge in self.procs.iter().filter(|p| p.role == Role::QueryEdge) {
                let edge_api = Api::new(edge.base());
                loop {
                    let r = edge_api.try_call(Method::GET, &format!("/{alias}"), None, None, &[]).await;
                    let ok = matches!(&r, Ok(r) if r.status == 302 && r.location().as_deref() == Some(target.as_str()));
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

    /// The admin token in token mode, to send with writes; `None` in open mode.
    pub fn token(&self) -> Option<&'static str> {
        (self.opts.auth == "token").then_some(ADMIN_TOKEN)
    }

    /// `front + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.front, path)
    }

    /// An HTTP test client on the front.
    pub fn api(&self) -> Api {
        Api::new(self.front.clone())
    }

    /// The command partition a link with `code` is decided in (as kurz routes it).
    pub fn partition_of_code(&self, code: &str) -> u32 {
        self.kurz.partition_of_code(code)
    }

    fn sync_pools(&self) {
        let pool = |role| {
            self.procs
                .iter()
                .filter(|p| p.role == role)
                .map(|p| Backend { name: format!("{}/g{}", p.name(), p.generation), base: p.base() })
                .collect()
        };
        self.front_running.state.set_pools(pool(Role::CommandApi), pool(Role::QueryEdge));
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

    /// Cuts the isolated process off the network (`true`), or joins it again.
    pub fn cut(&self, cut: bool) {
        self.netns.as_ref().expect("Opts::isolated names no process").cut(cut);
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to one process.
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
        let mut p = std::mem::replace(&mut self.procs[i], Proc::new(role, index, ProcLog::default()));
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
        self.front_running.state.stats()
    }

    /// Answers counted per backend name prefix (e.g. `query-edge#1`).
    pub fn served_by(&self, prefix: &str) -> u64 {
        self.front_running.state.served_by(prefix)
    }

    /// Log lines of every process containing `needle`, prefixed by the process name.
    pub fn grep(&self, needle: &str) -> Vec<String> {
        self.procs.iter().flat_map(|p| p.grep(needle).into_iter().map(move |l| format!("{}: {l}", p.name()))).collect()
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

impl Drop for Split {
    /// Kills every process (after printing the report when the test panicked); the
    /// front and the broker go with the fields.
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
    }
}
