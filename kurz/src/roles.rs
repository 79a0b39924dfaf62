//! The roles as processes: `kurz serve` ([`App`], every role in one process) and
//! `kurz command-api`, `kurz projector`, `kurz query-edge`, `kurz watchdog` (one role
//! each).
//!
//! Every role takes the same limits (`KURZ_HTTP_*`, `KURZ_DRAIN_TIMEOUT_MS`:
//! [`Config::http_limits`]) and stops the same way on SIGTERM or SIGINT: its listener
//! stops accepting and in-flight requests drain for at most the drain limit; then its
//! background workers (deciders, projector, watchdog, click flusher, cache follower)
//! stop, finishing their batch, for at most the drain limit again
//! (`kurz_web::workers`).

use crate::ports::{self, Ports};
use crate::{admin, shutdown_signal, Config, Error};
use kurz_command_api::CommandApi;
use kurz_projector::watchdog::Watchdog;
use kurz_projector::Projector;
use kurz_query_edge::QueryEdge;
use kurz_web::workers::Workers;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A role a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every role in one process.
    Serve,
    CommandApi,
    Projector,
    QueryEdge,
    Watchdog,
}

impl Role {
    /// The service name in logs and traces.
    pub fn service(self) -> &'static str {
        match self {
            Role::Serve => "kurz",
            Role::CommandApi => "command-api",
            Role::Projector => "projector",
            Role::QueryEdge => "query-edge",
            Role::Watchdog => "watchdog",
        }
    }

    /// Runs the role on `listener` until `stop`, then stops it (module docs).
    pub async fn run(self, cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
        match self {
            Role::Serve => App::build(cfg).await?.run_until_stopped(listener, stop).await,
            Role::CommandApi => run_command_api(cfg, listener, stop).await,
            Role::Projector => run_projector(cfg, listener, stop).await,
            Role::QueryEdge => run_query_edge(cfg, listener, stop).await,
            Role::Watchdog => run_watchdog(cfg, listener, stop).await,
        }
    }
}

/// The process around a role: checks the secrets and the data directory (a bad one
/// exits with 2, naming the setting), starts telemetry, binds the HTTP address, runs
/// the role until SIGTERM or SIGINT.
pub fn main(role: Role, cfg: Config) -> ExitCode {
    if let Err(e) = crate::secrets::check(cfg.secret.as_deref(), cfg.admin_token.as_deref(), &cfg.previous_secrets) {
        eprintln!("kurz: configuration: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = crate::secrets::private_dir(cfg.storage.data_dir()) {
        eprintln!("kurz: data directory {}: {e}", cfg.storage.data_dir().display());
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async move {
        let _telemetry = crate::telemetry::init(&cfg.log, role.service());
        // Room for the connection cap (KURZ_HTTP_MAX_CONNECTIONS is held inside it).
        let files = kurz_web::limits::raise_fd_limit();
        let limits = cfg.http_limits();
        tracing::info!(event = "http_limits", open_files = ?files, max_connections = limits.effective_connections(),
            header_timeout_ms = limits.header_read.as_millis() as u64, idle_timeout_ms = limits.idle.as_millis() as u64,
            body_timeout_ms = limits.body_read.as_millis() as u64, max_header_bytes = limits.max_header_bytes,
            drain_timeout_ms = limits.drain.as_millis() as u64);
        let listener = tokio::net::TcpListener::bind(&cfg.http_addr).await?;
        role.run(cfg, listener, shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(event = "fatal", error = %e);
            eprintln!("kurz: {e}");
            // A configuration error is the operator's to fix (exit 2, as a usage error),
            // a backend URL this build has no support for included.
            let config = matches!(e, Error::Config(_) | Error::Storage(kurz_storage::StorageError::NotBuilt { .. }));
            ExitCode::from(if config { 2 } else { 1 })
        }
    }
}

/// Logs the bound address once the role is about to accept (tests and operators read
/// it from the `listening` event when the port was 0).
fn listening(listener: &tokio::net::TcpListener, cfg: &Config) -> Result<(), Error> {
    tracing::info!(event = "listening", addr = %listener.local_addr()?, auth = ?cfg.auth);
    Ok(())
}

/// Every role in one process: the default `kurz serve`.
pub struct App {
    cfg: Config,
    ports: Ports,
    command_api: CommandApi,
    projector: Projector,
    edge: QueryEdge,
    replayer: Arc<kurz_projector::replay::Replayer>,
}

impl App {
    pub async fn build(cfg: Config) -> Result<App, Error> {
        let ports = Ports::open(&cfg.storage).await?;
        let command_api = CommandApi::build(ports.log.clone(), ports.store.clone(), ports.keys.clone(), ports::settings(&cfg)?).await?;
        let projector = ports.projector(cfg.delivery.max_attempts);
        let mut edge = QueryEdge::build(ports.log.clone(), ports.store.clone(), ports.cache.clone(), &ports::capture_settings(&cfg)?)?
            .limit_redirects(cfg.rate_policy().by_address("redirects", cfg.rate_redirects.0))
            .redirect_cache_seconds(cfg.redirect_cache_seconds)
            .protect_links(ports::unlock(&cfg, &ports));
        if cfg.auth == kurz_command_api::AuthMode::Token {
            edge = edge.private_emails(command_api.auth().admin_token());
        }
        Ok(App { cfg, ports, command_api, projector, edge, replayer: Arc::default() })
    }

    /// The storage ports this process opened (benchmarks serve more routers over them).
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    pub fn router(&self) -> axum::Router {
        let auth = self.command_api.auth();
        let mut routes = self.command_api.routes();
        routes.extend(self.edge.routes());
        let admin = admin::replay::routes(self.ports.replay_sources(), self.replayer.clone(), auth.clone())
            .merge(admin::parked::routes(self.projector.clone(), auth.clone()));
        let health = kurz_web::health::routes(self.ports.health_checks(), auth.admin_token());
        kurz_web::finish(kurz_web::assemble(routes).merge(admin).merge(health))
    }

    /// Runs until `stop` fires. Startup: the projector catches up with the log before
    /// the listener accepts, so after a restart every acknowledged write is served.
    /// Shutdown, in order: stop accepting and drain in-flight requests (they still need
    /// the deciders and the projector), flush captured clicks and let the projector
    /// catch up with them (each within the drain limit), then stop the deciders, the
    /// projector and the watchdog, which finish their batch and store their positions.
    pub async fn run_until_stopped(self, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
        let router = self.router();
        let limits = self.cfg.http_limits();
        let drain = limits.drain;
        let mut workers = Workers::new();
        let projector = self.projector.clone();
        workers.spawn("projector", |stop| projector.run_until_stopped(stop));
        let deciders = self.command_api.deciders();
        workers.spawn("deciders", |stop| deciders.run_until_stopped(stop));
        let dog = Watchdog::new(self.projector.clone(), ports::watchdog_settings(&self.cfg));
        workers.spawn("watchdog", |stop| dog.run_until_stopped(stop));
        if !self.projector.wait_caught_up(Duration::from_secs(300)).await? {
            tracing::warn!(event = "startup_catch_up_incomplete", "serving before the projector caught up with the log");
        }
        self.edge.load_domains().await;
        workers.spawn("domains", self.edge.domains_refresher(kurz_query_edge::domains::DEFAULT_REFRESH));
        listening(&listener, &self.cfg)?;

        let fast = self.edge.fast_path();
        let mut flusher = Workers::new();
        let clicks = self.edge.into_flusher();
        flusher.spawn("click_flusher", |stop| clicks.run_until_stopped(stop));
        kurz_web::serve::serve_with(listener, router, Some(fast), limits, stop).await?;
        flusher.stop(drain).await;
        // The clicks flushed last are projected before the projector stops, so the
        // store holds everything the log does (an offline `replay --verify` right after
        // finds no difference).
        if let Err(e) = self.ports.log.sync(kurz_schemas::topics::CLICKS).await {
            tracing::warn!(event = "shutdown_sync_failed", error = %e);
        }
        match self.projector.wait_caught_up(drain).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(event = "shutdown_projection_incomplete", "stopping before the projector caught up with the log"),
            Err(e) => tracing::warn!(event = "shutdown_projection_incomplete", error = %e),
        }
        workers.stop(drain).await;
        tracing::info!(event = "stopped");
        Ok(())
    }
}

/// `kurz command-api`: write routes and the deciders.
async fn run_command_api(cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
    let ports = Ports::open(&cfg.storage).await?;
    let api = CommandApi::build(ports.log.clone(), ports.store.clone(), ports.keys.clone(), ports::settings(&cfg)?).await?;
    listening(&listener, &cfg)?;
    api.run_until_stopped(listener, cfg.http_limits(), stop).await?;
    Ok(())
}

/// Serves `router` until `stop`, then stops `workers` (module docs).
async fn serve_then_stop(
    cfg: &Config,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    workers: Workers,
    stop: CancellationToken,
) -> Result<(), Error> {
    listening(&listener, cfg)?;
    let limits = cfg.http_limits();
    let drain = limits.drain;
    kurz_web::serve::serve(listener, router, limits, stop).await?;
    workers.stop(drain).await;
    Ok(())
}

/// `kurz projector`: the projections, with health and metrics on the HTTP address.
async fn run_projector(cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
    let ports = Ports::open(&cfg.storage).await?;
    let projector =
        Projector::new(ports.log.clone(), ports.store.clone(), None, ports.keys.clone()).max_attempts(cfg.delivery.max_attempts);
    let mut workers = Workers::new();
    workers.spawn("projector", |stop| projector.run_until_stopped(stop));
    let reveal = kurz_web::admin::AdminToken::new(cfg.admin_token.as_deref());
    let router = kurz_web::finish(kurz_web::health::routes(ports.health_checks(), reveal));
    serve_then_stop(&cfg, listener, router, workers, stop).await
}

/// `kurz watchdog`: finds stuck work and re-drives it (see
/// `kurz_projector::watchdog`); health, metrics and the parked-record admin routes on
/// the HTTP address.
async fn run_watchdog(cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
    let ports = Ports::open(&cfg.storage).await?;
    let auth = Arc::new(ports::settings(&cfg)?.auth());
    let projector = ports.projector(cfg.delivery.max_attempts);
    let mut workers = Workers::new();
    let dog = Watchdog::new(projector.clone(), ports::watchdog_settings(&cfg));
    workers.spawn("watchdog", |stop| dog.run_until_stopped(stop));
    let health = kurz_web::health::routes(ports.health_checks(), auth.admin_token());
    let router = kurz_web::finish(admin::parked::routes(projector, auth).merge(health));
    serve_then_stop(&cfg, listener, router, workers, stop).await
}

/// `kurz query-edge`: read routes and redirects. A near cache it is asked for follows
/// the events topic, since no projector runs in this process.
async fn run_query_edge(mut cfg: Config, listener: tokio::net::TcpListener, stop: CancellationToken) -> Result<(), Error> {
    let chosen = ports::split_edge_cache_url(&cfg.storage.cache_url);
    if chosen != cfg.storage.cache_url {
        tracing::info!(event = "edge_cache_for_read_your_writes", configured = %kurz_storage::redact(&cfg.storage.cache_url), using = %kurz_storage::redact(&chosen));
        cfg.storage.cache_url = chosen;
    }
    let ports = Ports::open(&cfg.storage).await?;
    let mut workers = Workers::new();
    let (log, cache) = (ports.log.clone(), ports.cache.clone());
    workers.spawn("cache_follower", |stop| kurz_query_edge::follow::run_until_stopped(log, cache, stop));
    let admin = kurz_web::admin::AdminToken::new(cfg.admin_token.as_deref());
    let mut edge = QueryEdge::build(ports.log.clone(), ports.store.clone(), ports.cache.clone(), &ports::capture_settings(&cfg)?)?
        .limit_redirects(cfg.rate_policy().by_address("redirects", cfg.rate_redirects.0))
        .redirect_cache_seconds(cfg.redirect_cache_seconds)
        .protect_links(ports::unlock(&cfg, &ports))
        .reveal_health_to(admin.clone());
    if cfg.auth == kurz_command_api::AuthMode::Token {
        edge = edge.private_emails(admin);
    }
    let drain = cfg.http_limits().drain;
    listening(&listener, &cfg)?;
    edge.run_until_stopped(listener, cfg.http_limits(), stop).await?;
    workers.stop(drain).await;
    Ok(())
}
