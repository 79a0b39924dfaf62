//! Test support shared by kurz's test suites: real backend servers on free loopback
//! ports, started and stopped by the test. A backend that cannot start is a test
//! failure, never a skip.

pub mod cql;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Debian's `redis-server`, with persistence off.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    pub fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs Debian's redis-server)");
        wait_for_port(port, "redis-server");
        RedisServer { child: Some(child), port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (empty, as after a crash without persistence).
    pub fn restart(&mut self) {
        self.kill();
        *self = RedisServer::start_on(self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Kafka-protocol broker: tansu 0.6.0 with kurz's patch to its group coordinator
/// (`tansu-kurz`, built by scripts/tansu.sh into ~/.cargo/bin), on a free loopback port.
pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    storage: String,
    dir: Option<std::path::PathBuf>,
}

/// `KURZ_TANSU` if set, else `~/.cargo/bin/tansu-kurz`. Never a silently different
/// broker: the unpatched one wedges groups whose leader dies.
fn tansu_binary() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("KURZ_TANSU") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    std::path::Path::new(&home).join(".cargo/bin/tansu-kurz")
}

impl Tansu {
    /// In-memory storage: gone when the broker stops.
    pub fn memory() -> Tansu {
        Tansu::start("memory://tansu/".into(), free_port(), None)
    }

    /// SQLite storage in `dir`: survives a broker restart. (tansu 0.6 resolves the
    /// database path relative to its working directory.)
    pub fn sqlite(dir: &std::path::Path) -> Tansu {
        Tansu::start("sqlite://tansu.db".into(), free_port(), Some(dir.to_path_buf()))
    }

    fn start(storage: String, port: u16, dir: Option<std::path::PathBuf>) -> Tansu {
        let listener = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(tansu_binary());
        if let Some(d) = &dir {
            cmd.current_dir(d);
        }
        let child = cmd
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener, "--storage-engine", &storage])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("the test broker {} must be installed (scripts/tansu.sh builds it): {e}", tansu_binary().display()));
        wait_for_port(port, "tansu");
        Tansu { child: Some(child), port, storage, dir }
    }

    pub fn url(&self) -> String {
        format!("kafka://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        let (storage, port, dir) = (self.storage.clone(), self.port, self.dir.clone());
        *self = Tansu::start(storage, port, dir);
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}
