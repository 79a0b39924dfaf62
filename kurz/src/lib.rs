//! The `kurz` binary's library: configuration, the assembly of the roles into
//! processes, the operator's admin routes and commands.
//!
//! - [`roles`]: `kurz serve` runs every role in one process ([`App`]); `kurz
//!   command-api`, `kurz projector`, `kurz query-edge` and `kurz watchdog` run one
//!   role each, all started and stopped the same way.
//! - [`ports`]: opening the storage backends the configuration names, and what each
//!   role builds from the configuration.
//! - [`admin`]: the operator's HTTP routes (`/admin/replay`, `/admin/parked`).
//! - [`cli`]: the operator commands (`kurz replay`, `parked`, `status`, `tail`,
//!   `import`, `verify-log`), each with its own flags.

pub mod admin;
pub mod cli;
pub mod config;
pub mod ports;
pub mod roles;
pub mod secrets;
pub mod telemetry;

pub use config::Config;
pub use ports::Ports;
pub use roles::App;

use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    /// A running kurz that an operator command talks to failed or refused.
    #[error("{0}")]
    Remote(String),
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
    Import(#[from] cli::import::ImportError),
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
