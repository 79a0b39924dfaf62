//! Opening the storage ports a process works on, and what every role builds from the
//! configuration beside them: the command-api's settings, the edge's click capture,
//! the projector, the watchdog's settings, the health checks.

use crate::config::{Config, Storage};
use crate::{secrets, Error};
use kurz_command_api::Settings;
use kurz_projector::{watchdog, Projector};
use kurz_storage::store::generations::Generations;
use kurz_storage::vault::Keyring;
use kurz_storage::{EventLog, LinkCache, ReadStore};
use std::sync::Arc;
use std::time::Duration;

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
    /// Opens every port the configuration names, creating the log's topics if they are
    /// missing.
    pub async fn open(cfg: &Storage) -> Result<Ports, Error> {
        let data_dir = cfg.data_dir();
        std::fs::create_dir_all(data_dir)?;
        let log = kurz_storage::open_log(&cfg.log.log_url, data_dir)?;
        kurz_storage::log::ensure_topics(&*log, cfg.partitions, cfg.click_partitions).await?;
        let generations = Generations::open(&cfg.store_url, data_dir, log.clone()).await?;
        let cache = kurz_storage::open_cache(&cfg.cache_url)?;
        let vault_url = cfg.vault_url.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| kurz_storage::default_vault_url(&cfg.store_url));
        let keys = Keyring::new(kurz_storage::open_vault(&vault_url, data_dir).await?);
        Ok(Ports { log, store: generations.clone(), generations, cache, keys })
    }

    /// Opens the ports for an operator command: an embedded store can only be opened
    /// while no kurz holds it, which the error says.
    pub async fn open_for_tool(cfg: &Storage) -> Result<Ports, Error> {
        Ports::open(cfg).await.map_err(|e| {
            Error::Config(format!("cannot open kurz's storage ({e}); against a running embedded kurz, use --url and its admin token"))
        })
    }

    /// The projector of this process (also what acts on parked records), at most
    /// `max_attempts` deliveries of a record before it is dead-lettered.
    pub fn projector(&self, max_attempts: u32) -> Projector {
        Projector::new(self.log.clone(), self.store.clone(), Some(self.cache.clone()), self.keys.clone()).max_attempts(max_attempts)
    }

    /// What a replay works on.
    pub fn replay_sources(&self) -> kurz_projector::replay::Sources {
        kurz_projector::replay::Sources { log: self.log.clone(), generations: self.generations.clone(), keys: self.keys.clone() }
    }

    /// `/health/ready`'s checks: the read store and the events topic answer.
    pub fn health_checks(&self) -> Vec<(&'static str, kurz_web::health::Check)> {
        vec![kurz_web::health::store_check(self.store.clone()), kurz_web::health::log_check(self.log.clone(), kurz_schemas::topics::EVENTS)]
    }
}

/// The command-api's settings (and the process's authentication, [`Settings::auth`]).
pub fn settings(cfg: &Config) -> Result<Settings, Error> {
    let data_dir = cfg.storage.data_dir();
    let secret = secrets::secret(cfg.secret.as_deref(), data_dir)?;
    let admin_token = match cfg.auth {
        kurz_command_api::AuthMode::Token => Some(secrets::admin_token(cfg.admin_token.as_deref(), data_dir)?),
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

/// How the edge captures clicks.
/// What an edge needs for password-protected links: the vault the passwords are sealed
/// under, and guesses limited per address as sign-ins are (`KURZ_RATE_AUTH`).
pub fn unlock(cfg: &Config, ports: &Ports) -> kurz_query_edge::routes::unlock::Unlock {
    let attempts = cfg.rate_policy().by_address("link_passwords", Some(cfg.rate_auth));
    kurz_query_edge::routes::unlock::Unlock::new(ports.keys.clone(), attempts, cfg.rate_limits)
}

pub fn capture_settings(cfg: &Config) -> Result<kurz_query_edge::capture::CaptureSettings, Error> {
    Ok(kurz_query_edge::capture::CaptureSettings {
        enabled: cfg.click_capture,
        secret: secrets::secret(cfg.secret.as_deref(), cfg.storage.data_dir())?,
        client_ip: cfg.client_ip(),
        country_header: cfg.country_header.clone().filter(|h| !h.is_empty()),
        geoip_db: cfg.geoip_db.clone().filter(|p| !p.as_os_str().is_empty()),
        spool_dir: (cfg.click_spool_mb > 0).then(|| cfg.storage.data_dir().join("click-spool")),
        spool_max_bytes: cfg.click_spool_mb << 20,
    })
}

/// The watchdog's settings.
pub fn watchdog_settings(cfg: &Config) -> watchdog::Settings {
    watchdog::Settings {
        stall_after: Duration::from_millis(cfg.watchdog_stall_ms),
        command_deadline: Duration::from_millis(cfg.watchdog_command_deadline_ms),
        backoff: Duration::from_millis(cfg.watchdog_backoff_ms),
        ..Default::default()
    }
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
