//! Test support: runs the real `kurz` binary on a free loopback port, black-box.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use kurz_testkit::deploy;

/// The build under test, for split deployments ([`deploy::Split`]).
pub const KURZ: deploy::Kurz = deploy::Kurz { bin: env!("CARGO_BIN_EXE_kurz"), partition_for: kurz_storage::log::partition_for };

/// The command partition a link with `code` is decided in (as kurz routes it, over
/// [`deploy::PARTITIONS`], which is also `KURZ_PARTITIONS` of [`Server`]).
pub fn partition_of_code(code: &str) -> u32 {
    KURZ.partition_of_code(code)
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

#[derive(Clone, Debug)]
pub struct Opts {
    /// `open` or `token`.
    pub auth: &'static str,
    pub import_dir: Option<PathBuf>,
    pub extra_env: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts { auth: "open", import_dir: None, extra_env: Vec::new() }
    }
}

pub struct Server {
    child: Option<Child>,
    /// The Redis this server's cache lives in, when the suite runs with
    /// `KURZ_TEST_CACHE=redis` (see scripts/test.sh).
    pub redis: Option<kurz_testkit::RedisServer>,
    /// The broker this server's log lives in, when the suite runs with
    /// `KURZ_TEST_LOG=kafka` (see scripts/test.sh).
    pub kafka: Option<kurz_testkit::Tansu>,
    /// With `KURZ_TEST_DEPLOY=split`: two processes of each role behind a round-robin
    /// front, over tansu and the CQL double (see `kurz_testkit::deploy`); `base` is the
    /// front.
    pub split: Option<deploy::Split>,
    pub base: String,
    pub data: tempfile::TempDir,
    opts: Opts,
    pub logs: Arc<Mutex<Vec<String>>>,
}

/// The replaced service's data set (a copy of `../shared/seed-data`, kept in the repo so
/// a clean clone can run every test).
pub fn seed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/seed-data")
}

impl Server {
    pub fn start(opts: Opts) -> Server {
        let data = tempfile::tempdir().expect("tempdir");
        let redis = match std::env::var("KURZ_TEST_CACHE").as_deref() {
            Ok("redis") => Some(kurz_testkit::RedisServer::start()),
            Ok("memory") | Err(_) => None,
            Ok(other) => panic!("KURZ_TEST_CACHE must be redis or memory, not {other}"),
        };
        let kafka = match std::env::var("KURZ_TEST_LOG").as_deref() {
            Ok("kafka") => Some(kurz_testkit::Tansu::memory()),
            Ok("embedded") | Err(_) => None,
            Ok(other) => panic!("KURZ_TEST_LOG must be kafka or embedded, not {other}"),
        };
        if std::env::var("KURZ_TEST_DEPLOY").as_deref() == Ok("split") {
            return Server::start_split(opts, data);
        }
        let mut s =
            Server { child: None, redis, kafka, split: None, base: String::new(), data, opts, logs: Arc::new(Mutex::new(Vec::new())) };
        s.spawn();
        s
    }

    fn start_split(opts: Opts, data: tempfile::TempDir) -> Server {
        // As in production, the edges share one Redis: visit limits are counted there.
        let redis = kurz_testkit::RedisServer::start();
        let mut extra_env = vec![("KURZ_ADMIN_TOKEN".to_string(), ADMIN_TOKEN.to_string()), ("KURZ_CACHE_URL".to_string(), redis.url())];
        if let Some(d) = &opts.import_dir {
            extra_env.push(("KURZ_IMPORT_DIR".into(), d.display().to_string()));
        }
        extra_env.extend(opts.extra_env.iter().cloned());
        let so = deploy::Opts { auth: opts.auth, extra_env, warm_up: false, ..deploy::Opts::default() };
        // Its own runtime: callers are sync, and the deployment keeps no task on it
        // (its front runs on a runtime of its own).
        let sp = std::thread::spawn(move || tokio::runtime::Runtime::new().unwrap().block_on(deploy::Split::start(KURZ, so)))
            .join()
            .unwrap_or_else(|_| panic!("the split deployment did not start"));
        let base = sp.front.clone();
        Server { child: None, redis: Some(redis), kafka: None, split: Some(sp), base, data, opts, logs: Arc::new(Mutex::new(Vec::new())) }
    }

    pub fn open() -> Server {
        Server::start(Opts::default())
    }

    pub fn token() -> Server {
        Server::start(Opts { auth: "token", ..Opts::default() })
    }

    fn spawn(&mut self) {
        assert!(self.split.is_none(), "a split deployment's processes are managed by deploy::Split");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kurz"));
        cmd.arg("serve")
            .env("KURZ_HTTP_ADDR", "127.0.0.1:0")
            .env("KURZ_DATA_DIR", self.data.path())
            .env("KURZ_AUTH", self.opts.auth)
            .env("KURZ_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("KURZ_PARTITIONS", "4")
            .env("KURZ_CLICK_PARTITIONS", "2")
            .env("KURZ_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(r) = &self.redis {
            cmd.env("KURZ_CACHE_URL", r.url());
        }
        if let Some(k) = &self.kafka {
            // A short group session: a killed process's partitions move on quickly.
            cmd.env("KURZ_LOG_URL", format!("{}?session_timeout_ms=6000", k.url()));
        }
        if let Some(d) = &self.opts.import_dir {
            cmd.env("KURZ_IMPORT_DIR", d);
        }
        for (k, v) in &self.opts.extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn kurz");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"event\":\"listening\"") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let _ = tx.send(v["addr"].as_str().unwrap().to_string());
                }
                logs.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("kurz did not start listening; logs:\n{}", self.logs.lock().unwrap().join("\n"))
        });
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        Command::new("kill").args(["-TERM", &c.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "kurz did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same data directory (new port).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
