//! Test support shared by kurz's test suites: real backend servers on free loopback
//! ports, started and stopped by the test. A backend that cannot start is a test
//! failure, never a skip. Also the split deployment of the `kurz` binary ([`deploy`])
//! and the HTTP client of the black-box suites ([`http`]).

pub mod cql;
pub mod deploy;
pub mod http;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something listens on loopback `port` (at most 30 s, then panics).
pub fn wait_for(port: u16, what: &str) {
    wait_for_port(port, what)
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
    /// With [`RedisServer::start_tls`]: its certificates and password.
    pub tls: Option<TlsFiles>,
}

/// A throwaway certificate authority and a server certificate it signed, for
/// `localhost` and `127.0.0.1`, made with the `openssl` command line.
pub struct TlsFiles {
    pub dir: tempfile::TempDir,
    pub password: String,
}

impl TlsFiles {
    pub fn make(password: &str) -> TlsFiles {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            let out = Command::new("openssl").args(args).current_dir(dir.path()).output().expect("openssl must be installed");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=kurz test CA", "-keyout", "ca.key", "-out", "ca.pem"];
        ca.extend(ec);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        run(&ca);
        let mut csr = vec!["req", "-new", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"];
        csr.extend(ec);
        run(&csr);
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "ext.cnf",
        ]);
        TlsFiles { dir, password: password.to_string() }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
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
        RedisServer { child: Some(child), port, tls: None }
    }

    /// Redis on a TLS port only (no plaintext port), with a password (`requirepass`):
    /// a managed Redis as kurz meets it in production.
    pub fn start_tls(password: &str) -> RedisServer {
        let tls = TlsFiles::make(password);
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--tls-cert-file", &tls.path("server.pem"), "--tls-key-file", &tls.path("server.key")])
            .args(["--tls-ca-cert-file", &tls.path("ca.pem"), "--tls-auth-clients", "no", "--requirepass", password])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs Debian's redis-server)");
        wait_for_port(port, "redis-server (TLS)");
        RedisServer { child: Some(child), port, tls: Some(tls) }
    }

    /// The cache URL: `redis://` or, for [`RedisServer::start_tls`], `rediss://` with
    /// the password and the test CA (`?tls_ca=`); add parameters with `&`.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(t) => format!("rediss://:{}@localhost:{}?tls_ca={}", t.password, self.port, t.path("ca.pem")),
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server: a paused Redis keeps its socket
    /// open and answers nothing.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let ok = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill -{signal} redis-server");
    }

    /// Starts again on the same port (empty, as after a crash without persistence).
    pub fn restart(&mut self) {
        assert!(self.tls.is_none(), "restart is for the plaintext server");
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
    /// The address clients reach it at (127.0.0.1 unless [`Tansu::memory_at`]).
    host: String,
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

    /// In-memory storage, listening on every address and advertising `host` (one of
    /// this machine's addresses that another network namespace can reach).
    pub fn memory_at(host: &str) -> Tansu {
        let port = free_port();
        let mut t = Tansu::launch("memory://tansu/".into(), port, None, "0.0.0.0", &format!("tcp://{host}:{port}"));
        t.host = host.to_string();
        t
    }

    /// SQLite storage in `dir`: survives a broker restart. (tansu 0.6 resolves the
    /// database path relative to its working directory.)
    pub fn sqlite(dir: &std::path::Path) -> Tansu {
        Tansu::start("sqlite://tansu.db".into(), free_port(), Some(dir.to_path_buf()))
    }

    fn start(storage: String, port: u16, dir: Option<std::path::PathBuf>) -> Tansu {
        Tansu::start_advertising(storage, port, dir, &format!("tcp://127.0.0.1:{port}"))
    }

    /// A broker listening on `port` that tells clients to reach it at `advertised`.
    fn start_advertising(storage: String, port: u16, dir: Option<std::path::PathBuf>, advertised: &str) -> Tansu {
        Tansu::launch(storage, port, dir, "127.0.0.1", advertised)
    }

    fn launch(storage: String, port: u16, dir: Option<std::path::PathBuf>, bind: &str, advertised: &str) -> Tansu {
        let listener = format!("tcp://{bind}:{port}");
        let mut cmd = Command::new(tansu_binary());
        if let Some(d) = &dir {
            cmd.current_dir(d);
        }
        let child = cmd
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", advertised, "--storage-engine", &storage])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("the test broker {} must be installed (scripts/tansu.sh builds it): {e}", tansu_binary().display()));
        wait_for_port(port, "tansu");
        Tansu { child: Some(child), port, storage, dir, host: "127.0.0.1".into() }
    }

    pub fn url(&self) -> String {
        format!("kafka://{}:{}", self.host, self.port)
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
        let (storage, port, dir, host) = (self.storage.clone(), self.port, self.dir.clone(), self.host.clone());
        *self = if host == "127.0.0.1" {
            Tansu::start(storage, port, dir)
        } else {
            let mut t = Tansu::launch(storage, port, dir, "0.0.0.0", &format!("tcp://{host}:{port}"));
            t.host = host;
            t
        };
    }
}

/// tansu behind a TLS terminator (`socat`, with a certificate the test made): a
/// broker that clients reach over TLS only. tansu advertises the TLS address, so every
/// connection a client makes, bootstrap and partition leaders alike, is TLS.
pub struct TlsTansu {
    broker: Tansu,
    socat: Option<Child>,
    pub port: u16,
    pub tls: TlsFiles,
}

impl TlsTansu {
    pub fn start() -> TlsTansu {
        let tls = TlsFiles::make("");
        let (inner, port) = (free_port(), free_port());
        let broker = Tansu::start_advertising("memory://tansu/".into(), inner, None, &format!("tcp://localhost:{port}"));
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            tls.path("server.pem"),
            tls.path("server.key")
        );
        let socat = Command::new("socat")
            .args([listen.as_str(), &format!("TCP:127.0.0.1:{inner}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat must be installed (scripts/test.sh installs it)");
        wait_for_port(port, "socat (TLS in front of tansu)");
        TlsTansu { broker, socat: Some(socat), port, tls }
    }

    /// The log URL over TLS, trusting the test CA (`broker.address.family=v4`: the TLS
    /// port listens on 127.0.0.1 only).
    pub fn url(&self) -> String {
        format!(
            "kafka://localhost:{}?security.protocol=ssl&ssl.ca.location={}&broker.address.family=v4",
            self.port,
            self.tls.path("ca.pem")
        )
    }

    /// The broker's own plaintext port, behind the terminator.
    pub fn plaintext_port(&self) -> u16 {
        self.broker.port
    }
}

impl Drop for TlsTansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.socat.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}
