//! The `kurz` binary's library: configuration, and the assembly of the roles into
//! processes. `kurz serve` runs every role in one process; `kurz command-api`,
//! `kurz projector`, `kurz query-edge` and `kurz watchdog` run one role each.

pub mod config;
pub mod import;
pub mod parked;
pub mod replay;
pub mod secrets;
pub mod status;
pub mod tail;
pub mod telemetry;
pub mod verify_log;

pub use config::Config;

use kurz_command_api::{CommandApi, Settings};
use kurz_projector::watchdog::{self, Watchdog};
use kurz_projector::Projector;
use kurz_query_edge::QueryEdge;
use kurz_storage::store::generations::Generations;
use kurz_storage::vault::Keyring;
use kurz_storage::{EventLog, LinkCache, ReadStore};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Storage(#[from] kurz_storage::StorageError),
    #[error(transparent)]
    CommandApi(#[from] kurz_command_api::Error),
    #[error(transparent)]
    Projector(#[from] kurz_projector::Error),
    #[error(transparent)]
    QueryEdge(#[from] kurz_query_edge::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Import(#[from] import::ImportError),
}

/// The opened storage ports.
#[derive(Clone)]
pub struct Ports {
    pub log: Arc<dyn EventLog>,
    /// The serving generation of the read store (`generations`, as the read port).
    pub store: Arc<dyn ReadStore>,
    pub generations: Arc<Generations>,
    pub cache: Arc<dyn LinkCache>,
    /// Users' data keys (personal data in the log is sealed under them).
    pub keys: Arc<Keyring>,
}

impl Ports {
    pub async fn open(cfg: &Config) -> Result<Ports, Error> {
        std::fs::create_dir_all(&cfg.data_dir)?;
        let log = kurz_storage::open_log(&cfg.log_url, &cfg.data_dir)?;
        kurz_storage::log::ensure_topics(&*log, cfg.partitions, cfg.click_partitions).await?;
        let generations = Generations::open(&cfg.store_url, &cfg.data_dir, log.clone()).await?;
        let cache = kurz_storage::open_cache(&cfg.cache_url)?;
        let vault_url = cfg.vault_url.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| kurz_storage::default_vault_url(&cfg.store_url));
        let keys = Keyring::new(kurz_storage::open_vault(&vault_url, &cfg.data_dir).await?);
        Ok(Ports { log, store: generations.clone(), generations, cache, keys })
    }
}

fn settings(cfg: &Config) -> Result<Settings, Error> {
    let secret = secrets::secret(cfg.secret.as_deref(), &cfg.data_dir)?;
    let admin_token = match cfg.auth {
        kurz_command_api::AuthMode::Token => Some(secrets::admin_token(cfg.admin_token.as_deref(), &cfg.data_dir)?),
        kurz_command_api::AuthMode::Open => cfg.admin_token.clone(),
    };
    Ok(Settings {
        auth: cfg.auth,
        admin_token,
        secret,
        previous_secrets: cfg.previous_secrets.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect(),
        import_dir: cfg.import_dir.clone(),
        public_url: cfg.public_url.clone(),
        outcome_timeout: Duration::from_millis(cfg.outcome_timeout_ms),
        targets: kurz_command_api::targets::TargetPolicy::new(
            cfg.public_url.as_deref(),
            cfg.deny_hosts.as_deref().map(str::trim).filter(|p| !p.is_empty()).map(std::path::Path::new),
        )
        .map_err(Error::Config)?,
        rate: cfg.rate_policy(),
        ..Settings::default()
    })
}

fn capture_settings(cfg: &Config) -> Result<kurz_query_edge::capture::CaptureSettings, Error> {
    Ok(kurz_query_edge::capture::CaptureSettings {
        enabled: cfg.click_capture,
        secret: secrets::secret(cfg.secret.as_deref(), &cfg.data_dir)?,
        client_ip: cfg.client_ip(),
        country_header: cfg.country_header.clone().filter(|h| !h.is_empty()),
        geoip_db: cfg.geoip_db.clone().filter(|p| !p.as_os_str().is_empty()),
        spool_dir: (cfg.click_spool_mb > 0).then(|| cfg.data_dir.join("click-spool")),
        spool_max_bytes: cfg.click_spool_mb << 20,
    })
}

fn health_checks(ports: &Ports) -> Vec<(&'static str, kurz_web::health::Check)> {
    vec![kurz_web::health::store_check(ports.store.clone()), kurz_web::health::log_check(ports.log.clone(), kurz_schemas::topics::EVENTS)]
}

/// Every role in one process: the default `kurz serve`.
pub struct App {
    cfg: Config,
    ports: Ports,
    command_api: CommandApi,
    projector: Projector,
    edge: QueryEdge,
    replayer: Arc<replay::Replayer>,
    admin_auth: Arc<kurz_command_api::auth::Auth>,
}

impl App {
    pub async fn build(cfg: Config) -> Result<App, Error> {
        let ports = Ports::open(&cfg).await?;
        let settings = settings(&cfg)?;
        let admin_auth = Arc::new(kurz_command_api::auth::Auth::new(settings.auth, settings.admin_token.clone(), settings.secret.clone()));
        let command_api = CommandApi::build(ports.log.clone(), ports.store.clone(), ports.keys.clone(), settings).await?;
        let projector = parked::projector(&ports, &cfg);
        let mut edge = QueryEdge::build(ports.log.clone(), ports.store.clone(), ports.cache.clone(), &capture_settings(&cfg)?)?
            .limit_redirects(cfg.rate_policy().by_address("redirects", cfg.rate_redirects.0));
        if cfg.auth == kurz_command_api::AuthMode::Token {
            edge = edge.private_emails(admin_auth.admin_token());
        }
        Ok(App { cfg, ports, command_api, projector, edge, replayer: Arc::default(), admin_auth })
    }

    /// The storage ports this process opened (benchmarks serve more routers over them).
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    pub fn router(&self) -> axum::Router {
        let mut routes = self.command_api.routes();
        routes.extend(self.edge.routes());
        let admin = replay::admin_routes(self.ports.clone(), self.replayer.clone(), self.admin_auth.clone())
            .merge(parked::admin_routes(self.projector.clone(), self.admin_auth.clone()));
        let health = kurz_web::health::routes(health_checks(&self.ports), self.admin_auth.admin_token());
        kurz_web::finish(kurz_web::assemble(routes).merge(admin).merge(health))
    }

    /// Runs until `stop` fires. Startup: the projector catches up with the log before
    /// the listener accepts, so after a restart every acknowledged write is served.
    /// Shutdown, in order: stop accepting and drain in-flight requests (they still need
    /// the deciders and the projector), flush captured clicks, then stop the deciders and
    /// the projector, which finish their batch and store their positions.
    pub async fn run_until_stopped(self, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
        let workers = CancellationToken::new();
        let router = self.router();
        let mut tasks = tokio::task::JoinSet::new();
        {
            let p = self.projector.clone();
            let w = workers.clone();
            tasks.spawn(async move {
                let _ = p.run_until_stopped(w).await;
            });
            let d = self.command_api.deciders();
            let w = workers.clone();
            tasks.spawn(async move {
                let _ = d.run_until_stopped(w).await;
            });
            let dog = Watchdog::new(self.projector.clone(), watchdog_settings(&self.cfg));
            tasks.spawn(dog.run_until_stopped(workers.clone()));
        }
        let caught_up = self.projector.wait_caught_up(Duration::from_secs(300)).await?;
        if !caught_up {
            tracing::warn!(event = "startup_catch_up_incomplete", "serving before the projector caught up with the log");
        }
        let addr = listener.local_addr()?;
        tracing::info!(event = "listening", addr = %addr, auth = ?self.cfg.auth);

        let fast = self.edge.fast_path();
        let flusher_stop = CancellationToken::new();
        let flusher = tokio::spawn(self.edge.into_flusher().run_until_stopped(flusher_stop.clone()));

        kurz_web::serve::serve_with(listener, router, Some(fast), self.cfg.http_limits(), stop).await?;
        flusher_stop.cancel();
        let _ = flusher.await;
        // The clicks flushed last are projected before the projector stops, so the
        // store holds everything the log does (an offline `replay --verify` right after
        // finds no difference). Bounded by the drain limit.
        if let Err(e) = self.ports.log.sync(kurz_schemas::topics::CLICKS).await {
            tracing::warn!(event = "shutdown_sync_failed", error = %e);
        }
        match self.projector.wait_caught_up(Duration::from_millis(self.cfg.drain_timeout_ms)).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(event = "shutdown_projection_incomplete", "stopping before the projector caught up with the log"),
            Err(e) => tracing::warn!(event = "shutdown_projection_incomplete", error = %e),
        }
        workers.cancel();
        while tasks.join_next().await.is_some() {}
        tracing::info!(event = "stopped");
        Ok(())
    }
}

/// Serves until `stop` under the configured connection limits, then lets in-flight
/// requests finish for at most the drain limit (`kurz_web::serve`).
pub async fn serve_configured(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    cfg: &Config,
    stop: CancellationToken,
) -> Result<(), Error> {
    kurz_web::serve::serve(listener, router, cfg.http_limits(), stop).await?;
    Ok(())
}

/// `kurz command-api`: write routes and the deciders.
pub async fn run_command_api(cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
    let ports = Ports::open(&cfg).await?;
    let api = CommandApi::build(ports.log.clone(), ports.store.clone(), ports.keys.clone(), settings(&cfg)?).await?;
    let workers = CancellationToken::new();
    let deciders = tokio::spawn(api.deciders().run_until_stopped(workers.clone()));
    tracing::info!(event = "listening", addr = %listener.local_addr()?);
    serve_configured(listener, api.router(), &cfg, stop).await?;
    workers.cancel();
    let _ = deciders.await;
    Ok(())
}

/// `kurz projector`: the projections, with health and metrics on the HTTP address.
pub async fn run_projector(cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
    let ports = Ports::open(&cfg).await?;
    let projector = Projector::new(ports.log.clone(), ports.store.clone(), None, ports.keys.clone()).max_attempts(cfg.max_attempts);
    let workers = CancellationToken::new();
    let task = tokio::spawn(projector.run_until_stopped(workers.clone()));
    let reveal = kurz_web::admin::AdminToken::new(cfg.admin_token.as_deref());
    let router = kurz_web::finish(kurz_web::health::routes(health_checks(&ports), reveal));
    tracing::info!(event = "listening", addr = %listener.local_addr()?);
    serve_configured(listener, router, &cfg, stop).await?;
    workers.cancel();
    let _ = task.await;
    Ok(())
}

/// The watchdog's settings from the configuration.
pub fn watchdog_settings(cfg: &Config) -> watchdog::Settings {
    watchdog::Settings {
        stall_after: Duration::from_millis(cfg.watchdog_stall_ms),
        command_deadline: Duration::from_millis(cfg.watchdog_command_deadline_ms),
        backoff: Duration::from_millis(cfg.watchdog_backoff_ms),
        ..Default::default()
    }
}

/// `kurz watchdog`: finds stuck work and re-drives it (see
/// `kurz_projector::watchdog`); health, metrics and the parked-record admin routes on
/// the HTTP address.
pub async fn run_watchdog(cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
    let ports = Ports::open(&cfg).await?;
    let settings = settings(&cfg)?;
    let auth = Arc::new(kurz_command_api::auth::Auth::new(settings.auth, settings.admin_token.clone(), settings.secret.clone()));
    let projector = parked::projector(&ports, &cfg);
    let workers = CancellationToken::new();
    let task = tokio::spawn(Watchdog::new(projector.clone(), watchdog_settings(&cfg)).run_until_stopped(workers.clone()));
    let health = kurz_web::health::routes(health_checks(&ports), auth.admin_token());
    let router = kurz_web::finish(parked::admin_routes(projector, auth).merge(health));
    tracing::info!(event = "listening", addr = %listener.local_addr()?);
    serve_configured(listener, router, &cfg, stop).await?;
    workers.cancel();
    let _ = task.await;
    Ok(())
}

/// The cache a split query edge may use without breaking read-your-writes.
///
/// Read-your-writes needs every cache an edge reads to hold a write's new state before
/// the write is answered. The projector updates Redis before it stores the outcome, so
/// Redis qualifies; a process-local cache in a process without the projector only
/// learns of the write by following the log, a moment later. So a split edge reads
/// Redis directly (`near_capacity=0`) unless the URL asks for a near cache explicitly,
/// accepting its bounded staleness (see bench/results/staleness.md), and a `memory`
/// cache is not used at all unless it is asked for as `memory://?capacity=N`.
pub fn split_edge_cache_url(url: &str) -> String {
    let explicit = url.contains("near_capacity=") || url.contains("capacity=");
    match url.split_once("://").map(|(s, _)| s).unwrap_or(url) {
        "redis" | "rediss" if !explicit => format!("{url}{}near_capacity=0", if url.contains('?') { '&' } else { '?' }),
        "memory" | "embedded" | "moka" if !explicit => "none".to_string(),
        _ => url.to_string(),
    }
}

/// `kurz query-edge`: read routes and redirects. A near cache it is asked for follows
/// the events topic, since no projector runs in this process.
pub async fn run_query_edge(mut cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
    let chosen = split_edge_cache_url(&cfg.cache_url);
    if chosen != cfg.cache_url {
        tracing::info!(event = "edge_cache_for_read_your_writes", configured = %kurz_storage::redact(&cfg.cache_url), using = %kurz_storage::redact(&chosen));
        cfg.cache_url = chosen;
    }
    let ports = Ports::open(&cfg).await?;
    let follower_stop = CancellationToken::new();
    let follower = tokio::spawn(kurz_query_edge::follow::run_until_stopped(ports.log.clone(), ports.cache.clone(), follower_stop.clone()));
    let admin = kurz_web::admin::AdminToken::new(cfg.admin_token.as_deref());
    let mut edge = QueryEdge::build(ports.log.clone(), ports.store.clone(), ports.cache.clone(), &capture_settings(&cfg)?)?
        .limit_redirects(cfg.rate_policy().by_address("redirects", cfg.rate_redirects.0))
        .reveal_health_to(admin.clone());
    if cfg.auth == kurz_command_api::AuthMode::Token {
        edge = edge.private_emails(admin);
    }
    tracing::info!(event = "listening", addr = %listener.local_addr()?);
    edge.run_until_stopped(listener, cfg.http_limits(), stop).await?;
    follower_stop.cancel();
    let _ = follower.await;
    Ok(())
}

/// A token cancelled on SIGTERM or SIGINT.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!(event = "shutdown_requested");
        t.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use super::split_edge_cache_url as pick;

    #[test]
    fn split_edges_only_use_caches_that_keep_read_your_writes() {
        assert_eq!(pick("redis://r:6379"), "redis://r:6379?near_capacity=0");
        assert_eq!(pick("redis://r:6379?prefix=k:"), "redis://r:6379?prefix=k:&near_capacity=0");
        assert_eq!(pick("redis://r:6379?near_capacity=5000"), "redis://r:6379?near_capacity=5000");
        assert_eq!(pick("memory"), "none");
        assert_eq!(pick("memory://?capacity=10"), "memory://?capacity=10");
        assert_eq!(pick("none"), "none");
    }
}
