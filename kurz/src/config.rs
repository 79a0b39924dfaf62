//! Configuration: flags, environment variables, and an optional env-style file.
//!
//! Precedence: command-line flag, then environment variable, then the file named by
//! `--config`/`KURZ_CONFIG` (lines of `KURZ_NAME=value`, `#` comments), then the default.

use clap::Args;
use kurz_command_api::AuthMode;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port; the bound address is
    /// logged as event "listening").
    #[arg(long, env = "KURZ_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: String,

    #[command(flatten)]
    pub storage: Storage,

    #[command(flatten)]
    pub delivery: Delivery,

    /// Access mode: `token` (writes need a bearer token) or `open` (no tokens anywhere).
    #[arg(long, env = "KURZ_AUTH", default_value = "token", value_parser = parse_auth)]
    pub auth: AuthMode,

    /// Admin bearer token. In token mode without one, kurz generates one and stores it in
    /// `<data dir>/admin.token`.
    #[arg(long, env = "KURZ_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Directory that `{"file": …}` bulk loads read from. Unset: file loads answer 404.
    #[arg(long, env = "KURZ_IMPORT_DIR")]
    pub import_dir: Option<PathBuf>,

    /// Server secret (signs session tokens, keys derived short codes). Every command-api
    /// process must share it. Unset: generated once into `<data dir>/secret.key`.
    #[arg(long, env = "KURZ_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Secrets used before the current `KURZ_SECRET`, comma-separated: sessions they
    /// signed still verify until they expire or the secret is dropped from this list
    /// (rotation: move the old secret here, set a new `KURZ_SECRET`).
    #[arg(long, env = "KURZ_PREVIOUS_SECRETS", hide_env_values = true, value_delimiter = ',')]
    pub previous_secrets: Vec<String>,

    /// Base of `short_url` in `/shorten` answers. Unset: `http://<Host header>`.
    #[arg(long, env = "KURZ_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// A file of host names that redirect targets may not point at (one per line, `#`
    /// comments; a name also denies its subdomains). Read at start.
    #[arg(long, env = "KURZ_DENY_HOSTS")]
    pub deny_hosts: Option<String>,

    /// How long a write waits for its outcome before answering 504 (ms).
    #[arg(long, env = "KURZ_OUTCOME_TIMEOUT_MS", default_value_t = 10_000)]
    pub outcome_timeout_ms: u64,

    /// On SIGTERM, how long in-flight requests may take to finish (ms).
    #[arg(long, env = "KURZ_DRAIN_TIMEOUT_MS", default_value_t = 10_000)]
    pub drain_timeout_ms: u64,

    /// A request head (request line and headers) must arrive whole within this time of
    /// its first byte, or of the accept for a connection's first request (ms).
    #[arg(long, env = "KURZ_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub http_header_timeout_ms: u64,

    /// How long a keep-alive connection may wait for its next request (ms). Keep it
    /// above the idle timeout of the load balancer in front (AWS ALB: 60 s).
    #[arg(long, env = "KURZ_HTTP_IDLE_TIMEOUT_MS", default_value_t = 75_000)]
    pub http_idle_timeout_ms: u64,

    /// A request body must arrive whole within this time of its head; else 408 (ms).
    #[arg(long, env = "KURZ_HTTP_BODY_TIMEOUT_MS", default_value_t = 60_000)]
    pub http_body_timeout_ms: u64,

    /// Largest request head in bytes (at least 8192); larger gets 431.
    #[arg(long, env = "KURZ_HTTP_MAX_HEADER_BYTES", default_value_t = 16_384)]
    pub http_max_header_bytes: usize,

    /// Connections open at once per listener; past it new ones wait in the listen
    /// backlog. Capped by the open-files limit less 512 (kurz raises the soft limit to
    /// the hard one at start).
    #[arg(long, env = "KURZ_HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub http_max_connections: usize,

    /// Rate limits: `on` (default) or `off` (every limit below, and the per-account
    /// sign-in lockout).
    #[arg(long, env = "KURZ_RATE_LIMITS", default_value = "on", value_parser = parse_on_off)]
    pub rate_limits: bool,

    /// Writes (POST, PUT, DELETE) per client address: `<per-second>:<burst>`.
    #[arg(long, env = "KURZ_RATE_WRITES", default_value = "50:500")]
    pub rate_writes: kurz_web::ratelimit::Rate,

    /// `/auth/register` and `/auth/login` per client address: `<per-second>:<burst>`.
    #[arg(long, env = "KURZ_RATE_AUTH", default_value = "2:30")]
    pub rate_auth: kurz_web::ratelimit::Rate,

    /// Writes per signed-in user (the admin token is exempt): `<per-second>:<burst>`.
    #[arg(long, env = "KURZ_RATE_USER", default_value = "20:200")]
    pub rate_user: kurz_web::ratelimit::Rate,

    /// Redirects per client address: `<per-second>:<burst>`, or `off` (no limit).
    #[arg(long, env = "KURZ_RATE_REDIRECTS", default_value = "off")]
    pub rate_redirects: kurz_web::ratelimit::MaybeRate,

    /// How long a browser may keep a permanent (301, 308) redirect, in seconds (at most
    /// a year); 302 and 307 answers are never kept.
    #[arg(long, env = "KURZ_REDIRECT_CACHE_SECONDS", default_value = "30", value_parser = clap::value_parser!(u32).range(0..=31_536_000))]
    pub redirect_cache_seconds: u32,

    /// Proxies whose `KURZ_CLIENT_IP_HEADER` is believed, as addresses or networks
    /// (comma-separated, e.g. `10.0.0.0/8,fd00::/8`); the client is the rightmost
    /// address in the header that is not one of them. Unset with a header set: every
    /// peer is taken for a proxy.
    #[arg(long, env = "KURZ_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: kurz_web::ratelimit::Nets,

    /// Origins whose pages may call the API from a browser (CORS), comma-separated, e.g.
    /// `https://app.example.com`. Unset: none (CORS off).
    #[arg(long, env = "KURZ_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Click capture on redirects: `on` (default) or `off`.
    #[arg(long, env = "KURZ_CLICK_CAPTURE", default_value = "on", value_parser = parse_on_off)]
    pub click_capture: bool,

    /// Disk space for clicks that wait while the log is down (MiB, in
    /// `<data dir>/click-spool`); 0 turns the spool off.
    #[arg(long, env = "KURZ_CLICK_SPOOL_MB", default_value_t = 256)]
    pub click_spool_mb: u64,

    /// A header that a trusted proxy in front of kurz sets to the client's address
    /// (e.g. `x-real-ip`); its first address is the client's. Unset: the peer address.
    /// Only set it behind a proxy that overwrites the header.
    #[arg(long, env = "KURZ_CLIENT_IP_HEADER", value_parser = parse_header_name)]
    pub client_ip_header: Option<String>,

    /// A header that a trusted proxy or CDN sets to the client's country code (e.g.
    /// `cf-ipcountry`).
    #[arg(long, env = "KURZ_COUNTRY_HEADER")]
    pub country_header: Option<String>,

    /// A GeoLite2/GeoIP2 Country or City database (`.mmdb`) for clicks' countries, when
    /// no country header gives one. kurz never downloads it.
    #[arg(long, env = "KURZ_GEOIP_DB")]
    pub geoip_db: Option<PathBuf>,

    /// Watchdog: how long a partition's position may stand still while records wait
    /// before it is reported as stalled and re-driven (ms).
    #[arg(long, env = "KURZ_WATCHDOG_STALL_MS", default_value_t = 15_000)]
    pub watchdog_stall_ms: u64,

    /// Watchdog: how long a command may go without an outcome before it is appended
    /// again (ms).
    #[arg(long, env = "KURZ_WATCHDOG_COMMAND_DEADLINE_MS", default_value_t = 30_000)]
    pub watchdog_command_deadline_ms: u64,

    /// Watchdog: delay before a parked record's first re-drive (ms); it doubles with
    /// every failed delivery, up to 5 minutes.
    #[arg(long, env = "KURZ_WATCHDOG_BACKOFF_MS", default_value_t = 1_000)]
    pub watchdog_backoff_ms: u64,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `kurz=debug,info`.
    #[arg(long, env = "KURZ_LOG", default_value = "info")]
    pub log: String,
}

/// Where the event log is: all that `kurz tail` and `kurz verify-log` read.
#[derive(Debug, Clone, Args)]
pub struct LogSource {
    /// Directory of the embedded backends' files, the secret and the generated admin token.
    #[arg(long, env = "KURZ_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Event-log backend: `embedded` (`log.redb` under the data dir) or
    /// `kafka://host:port[,host:port]?replication=3` (librdkafka settings pass through as
    /// `a.b=value`; README: Configuration). `kafka://` needs the `kafka` cargo feature
    /// (on by default).
    #[arg(long, env = "KURZ_LOG_URL", default_value = "embedded")]
    pub log_url: String,

    /// An env-style file of `KURZ_*=value` settings, read before the environment.
    #[arg(long, env = "KURZ_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Every storage port: what `kurz replay` and `kurz parked` open.
#[derive(Debug, Clone, Args)]
pub struct Storage {
    #[command(flatten)]
    pub log: LogSource,

    /// Read-store backend: `embedded` (`store.redb` under the data dir) or
    /// `scylla://[user:password@]host:port[,host:port]/keyspace?consistency=local_quorum`
    /// (README: Configuration). `scylla://` needs the `scylla` cargo feature (on by
    /// default).
    #[arg(long, env = "KURZ_STORE_URL", default_value = "embedded")]
    pub store_url: String,

    /// Key vault (users' data keys, for crypto-shredding): `embedded` (`vault.redb` in
    /// the data dir) or `scylla://…/keyspace` (the `scylla` cargo feature, as for the
    /// store). Unset: beside the read store (a Scylla store's cluster, keyspace
    /// `<store keyspace>_vault`). Every process of one deployment must use the same
    /// vault, and it is never rebuilt from the log: back it up (an erasure in it is
    /// final).
    #[arg(long, env = "KURZ_VAULT_URL")]
    pub vault_url: Option<String>,

    /// Hot-cache backend: `memory` (in-process, quick_cache; `memory://?capacity=N`
    /// entries), `none`, or `redis://[:password@]host:port[/db]?near_capacity=N`
    /// (`rediss://` for TLS; README: Configuration). `redis://` needs the `redis` cargo
    /// feature (on by default).
    #[arg(long, env = "KURZ_CACHE_URL", default_value = "memory")]
    pub cache_url: String,

    /// Partitions of the commands and events topics, when kurz creates them (max 64).
    #[arg(long, env = "KURZ_PARTITIONS", default_value_t = 8)]
    pub partitions: u32,

    /// Partitions of the clicks topic, when kurz creates it (max 64).
    #[arg(long, env = "KURZ_CLICK_PARTITIONS", default_value_t = 8)]
    pub click_partitions: u32,
}

impl Storage {
    /// The directory of the embedded backends' files and the generated secrets.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.log.data_dir
    }
}

/// How often a record is delivered before it is dead-lettered: the projector's and
/// `kurz parked`'s.
#[derive(Debug, Clone, Args)]
pub struct Delivery {
    /// Deliveries of a record before it goes to the dead-letter topic
    /// (kurz.deadletter.v1); a process that dies on it counts one.
    #[arg(long, env = "KURZ_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
}

impl Config {
    /// The rate limits (`kurz_web::ratelimit`).
    pub fn rate_policy(&self) -> kurz_web::ratelimit::Policy {
        kurz_web::ratelimit::Policy {
            enabled: self.rate_limits,
            writes: self.rate_writes,
            auth: self.rate_auth,
            redirects: self.rate_redirects.0,
            principal: self.rate_user,
            client: self.client_ip(),
        }
    }

    /// How a request's client address is found (rate limits, clicks).
    pub fn client_ip(&self) -> kurz_web::ratelimit::ClientIp {
        kurz_web::ratelimit::ClientIp {
            header: self
                .client_ip_header
                .as_deref()
                .filter(|h| !h.is_empty())
                .and_then(|h| axum::http::HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes()).ok()),
            trusted: self.trusted_proxies.0.clone(),
        }
    }

    /// The server loop's limits (`kurz_web::limits`).
    pub fn http_limits(&self) -> kurz_web::serve::Limits {
        use std::time::Duration;
        kurz_web::serve::Limits {
            header_read: Duration::from_millis(self.http_header_timeout_ms.max(1)),
            idle: Duration::from_millis(self.http_idle_timeout_ms.max(1)),
            body_read: Duration::from_millis(self.http_body_timeout_ms.max(1)),
            max_header_bytes: self.http_max_header_bytes.max(kurz_web::serve::MIN_HEADER_BYTES),
            max_connections: self.http_max_connections.max(1),
            drain: Duration::from_millis(self.drain_timeout_ms),
            cors_origins: self.cors_origins.clone(),
        }
    }
}

fn parse_header_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    axum::http::HeaderName::from_bytes(s.to_ascii_lowercase().as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| format!("'{s}' is not a header name"))
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("'{s}' is not on or off")),
    }
}

fn parse_auth(s: &str) -> Result<AuthMode, String> {
    s.parse()
}

/// Loads the config file named by `--config <path>`, `--config=<path>` or `KURZ_CONFIG`
/// into the environment, without overriding variables that are already set. Runs before
/// argument parsing, so the file's values act as env-level defaults.
pub fn load_config_file(args: &[String]) -> Result<(), String> {
    let mut path = std::env::var("KURZ_CONFIG").ok();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            path = it.next().cloned();
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.to_string());
        }
    }
    let Some(path) = path else { return Ok(()) };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("config file {path}: {e}"))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("config file {path}:{}: expected KEY=value", n + 1))?;
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        if !k.starts_with("KURZ_") {
            return Err(format!("config file {path}:{}: unknown setting {k} (settings start with KURZ_)", n + 1));
        }
        if std::env::var_os(k).is_none() {
            // SAFETY: runs in main before any thread is started.
            unsafe { std::env::set_var(k, v) };
        }
    }
    Ok(())
}
