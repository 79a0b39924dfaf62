//! Ports at kurz's storage edges and their adapters.
//!
//! - [`log::EventLog`]: the partitioned, durable log (commands, events, clicks).
//! - [`store::ReadStore`]: the read models the projector writes and the edge reads.
//! - [`cache::LinkCache`]: the hot redirect cache in front of the store.
//! - [`vault::Vault`]: per-subject data keys, outside the log (crypto-shredding).
//!
//! The backend behind each port is chosen by URL scheme ([`open_log`], [`open_store`],
//! [`open_cache`], [`open_vault`]). The embedded backends are always built; Kafka,
//! Scylla and Redis each need the cargo feature of their name (all on by default), and
//! a build without one answers its URL scheme with [`StorageError::NotBuilt`]. Metrics
//! are counted once, in the `Instrumented*` wrappers that every opened port is wrapped
//! in, never inside a backend. Each port has a scenario suite in [`scenarios`] that
//! every backend must pass.

pub mod cache;
pub mod error;
pub mod log;
pub mod metrics;
pub mod scenarios;
pub mod store;
#[cfg(any(feature = "scylla", feature = "redis"))]
pub mod tls;
pub mod vault;

pub use cache::{CachedLink, LinkCache};
pub use error::StorageError;
pub use log::{EventLog, NewRecord, Record};
pub use store::{ReadStore, StoreBatch};

use std::path::Path;
use std::sync::Arc;

/// How often the embedded log syncs the clicks topic by default (its `flush.ms`; see
/// [`log::embedded`]). Every other topic is synced on each append.
pub const CLICKS_FLUSH_MS: u64 = 200;

/// Opens the event log named by `url`: `embedded` (or `embedded://<dir>`) keeps it in
/// `<data_dir>/log.redb`; `embedded://[dir]?clicks_flush_ms=N` sets how often the clicks
/// topic is synced (default [`CLICKS_FLUSH_MS`]; 0: on each append, like the others).
pub fn open_log(url: &str, data_dir: &Path) -> Result<Arc<dyn EventLog>, StorageError> {
    let (scheme, rest) = split_url(url);
    let inner: Arc<dyn EventLog> = match scheme {
        "embedded" | "redb" | "file" => {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let dir = if path.is_empty() { data_dir.to_path_buf() } else { path.into() };
            let flush_ms = match query_param(query, "clicks_flush_ms") {
                None => CLICKS_FLUSH_MS,
                Some(v) => v.parse().map_err(|_| StorageError::Config(format!("clicks_flush_ms={v} is not a number of milliseconds")))?,
            };
            let log = log::embedded::RedbLog::open(&dir.join("log.redb"))?;
            log.defer_sync(kurz_schemas::topics::CLICKS, std::time::Duration::from_millis(flush_ms));
            Arc::new(log)
        }
        // kafka://host:port[,host:port][?replication=…]: see log::kafka::config.
        #[cfg(feature = "kafka")]
        "kafka" => Arc::new(log::kafka::KafkaLog::open(url)?),
        #[cfg(not(feature = "kafka"))]
        "kafka" => return Err(not_built("log", scheme, "Kafka", "kafka")),
        other => return Err(StorageError::UnsupportedBackend { port: "log", scheme: other.to_string() }),
    };
    Ok(Arc::new(log::Instrumented::new(inner)))
}

/// Opens the read store named by `url`: `embedded` keeps it in `<data_dir>/store.redb`.
pub fn open_store(url: &str, data_dir: &Path) -> Result<Arc<dyn ReadStore>, StorageError> {
    open_store_generation(url, data_dir, 0)
}

/// Opens generation `n` of the read store named by `url` (see [`store::generations`]).
pub fn open_store_generation(url: &str, data_dir: &Path, n: u64) -> Result<Arc<dyn ReadStore>, StorageError> {
    let (scheme, rest) = split_url(url);
    let inner: Arc<dyn ReadStore> = match scheme {
        "embedded" | "redb" | "file" => {
            let dir = if rest.is_empty() { data_dir.to_path_buf() } else { rest.into() };
            Arc::new(store::embedded::RedbStore::open(&store::generations::embedded_file(&dir, n))?)
        }
        // scylla://host:port[,host:port]/keyspace?consistency=…: see store::scylla.
        #[cfg(feature = "scylla")]
        "scylla" => Arc::new(store::scylla::ScyllaStore::open(&store::generations::generation_url(url, n))?),
        #[cfg(not(feature = "scylla"))]
        "scylla" => return Err(not_built("store", scheme, "Scylla", "scylla")),
        other => return Err(StorageError::UnsupportedBackend { port: "store", scheme: other.to_string() }),
    };
    Ok(Arc::new(store::Instrumented::new(inner)))
}

/// Opens the hot cache named by `url`:
/// - `memory` (or `memory://?capacity=N`): an in-process cache (quick_cache, S3-FIFO);
/// - `none`: no cache, every lookup reads the store;
/// - `redis://host:port[/db][?prefix=kurz:&near_capacity=N]`: Redis, with an in-process
///   near cache of `near_capacity` entries (default 100 000; 0 turns it off) in front.
///
/// Must be called inside a tokio runtime (the Redis adapter starts a repair task).
pub fn open_cache(url: &str) -> Result<Arc<dyn LinkCache>, StorageError> {
    let (scheme, rest) = split_url(url);
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| -> Option<u64> { query_param(query, name).and_then(|v| v.parse().ok()) };
    let inner: Arc<dyn LinkCache> = match scheme {
        "memory" | "embedded" | "moka" => Arc::new(cache::memory::MemoryCache::new(param("capacity").unwrap_or(1_000_000))),
        "none" => Arc::new(cache::NoCache::default()),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => {
            let far: Arc<dyn LinkCache> = Arc::new(cache::redis::RedisCache::open(url)?);
            match param("near_capacity").unwrap_or(100_000) {
                0 => far,
                n => Arc::new(cache::tiered::Tiered { near: Arc::new(cache::memory::MemoryCache::new(n)), far }),
            }
        }
        #[cfg(not(feature = "redis"))]
        "redis" | "rediss" => return Err(not_built("cache", scheme, "Redis", "redis")),
        other => return Err(StorageError::UnsupportedBackend { port: "cache", scheme: other.to_string() }),
    };
    Ok(Arc::new(cache::Instrumented::new(inner)))
}

/// The error for a backend URL whose backend this build left out: never a silent
/// fallback to another backend.
#[cfg(not(all(feature = "kafka", feature = "scylla", feature = "redis")))]
fn not_built(port: &'static str, scheme: &str, backend: &'static str, feature: &'static str) -> StorageError {
    StorageError::NotBuilt { port, scheme: scheme.to_string(), backend, feature }
}

pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
}

fn split_url(url: &str) -> (&str, &str) {
    match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => (url, ""),
    }
}

/// Query parameters whose values are secrets, redacted by [`redact`].
const SECRET_PARAMS: &[&str] = &["password", "sasl.password", "ssl.key.password", "ssl.keystore.password", "token", "secret"];

/// `url` fit for a log line or an error: a password in its userinfo (`user:pw@`) and
/// the values of secret query parameters (`password=`, `sasl.password=`, …) become
/// `***`. Every backend URL kurz prints goes through this.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    // The authority ends at the first '/' after the last '@' (a password may hold '/').
    let authority_end = match main.rfind('@') {
        Some(at) => main[at..].find('/').map_or(main.len(), |i| at + i),
        None => main.find('/').unwrap_or(main.len()),
    };
    let (authority, path) = main.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(s) = scheme {
        out.push_str(s);
        out.push_str("://");
    }
    out.push_str(&authority);
    out.push_str(path);
    if let Some(q) = query {
        out.push('?');
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s)) => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// The vault URL used when none is configured: beside the read store. A Scylla store
/// `scylla://hosts/ks?…` keeps it in keyspace `ks_vault` of the same cluster (keyspace
/// `kurz` when the URL names none); every other store keeps it embedded in the data
/// directory.
pub fn default_vault_url(store_url: &str) -> String {
    let Some(rest) = store_url.strip_prefix("scylla://") else { return "embedded".to_string() };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, ks) = match base.split_once('/') {
        Some((a, ks)) if !ks.is_empty() => (a, ks),
        Some((a, _)) => (a, "kurz"),
        None => (base, "kurz"),
    };
    format!("scylla://{authority}/{ks}_vault{}", query.map(|q| format!("?{q}")).unwrap_or_default())
}

/// Opens the key vault named by `url`: `embedded` keeps it in `<data_dir>/vault.redb`;
/// `scylla://[user:password@]host:port[,…]/keyspace[?tls=true…]` in a keyspace of its
/// own (see [`vault`]).
pub async fn open_vault(url: &str, data_dir: &Path) -> Result<Arc<dyn vault::Vault>, StorageError> {
    let (scheme, rest) = split_url(url);
    let inner: Arc<dyn vault::Vault> = match scheme {
        "embedded" | "redb" | "file" => {
            let dir = if rest.is_empty() { data_dir.to_path_buf() } else { rest.into() };
            Arc::new(vault::embedded::RedbVault::open(&dir.join("vault.redb"))?)
        }
        #[cfg(feature = "scylla")]
        "scylla" => Arc::new(vault::scylla::ScyllaVault::open(url).await?),
        #[cfg(not(feature = "scylla"))]
        "scylla" => return Err(not_built("vault", scheme, "Scylla", "scylla")),
        other => return Err(StorageError::UnsupportedBackend { port: "vault", scheme: other.to_string() }),
    };
    Ok(Arc::new(vault::Instrumented::new(inner)))
}

#[cfg(test)]
mod redact_tests {
    use super::redact;

    #[test]
    fn the_vault_sits_beside_the_store_unless_configured() {
        for (store, vault) in [
            ("embedded", "embedded"),
            ("scylla://db:9042/links", "scylla://db:9042/links_vault"),
            ("scylla://u:pw@a,b/links?tls=true&rf=3", "scylla://u:pw@a,b/links_vault?tls=true&rf=3"),
            ("scylla://db", "scylla://db/kurz_vault"),
            ("scylla://db/?tls=true", "scylla://db/kurz_vault?tls=true"),
        ] {
            assert_eq!(super::default_vault_url(store), vault, "{store}");
        }
    }

    #[test]
    fn credentials_never_survive_redaction() {
        for (url, want) in [
            ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
            ("rediss://kurz:p%40ss/w@cache:6380", "rediss://kurz:***@cache:6380"),
            ("scylla://kurz:s3cret@a:9042,b:9042/kurz?consistency=one", "scylla://kurz:***@a:9042,b:9042/kurz?consistency=one"),
            (
                "kafka://b1:9093?security.protocol=sasl_ssl&sasl.username=k&sasl.password=pw",
                "kafka://b1:9093?security.protocol=sasl_ssl&sasl.username=k&sasl.password=***",
            ),
            ("redis://cache:6379?prefix=kurz:", "redis://cache:6379?prefix=kurz:"),
            ("embedded", "embedded"),
            ("http://admin:tok@127.0.0.1:8080", "http://admin:***@127.0.0.1:8080"),
        ] {
            assert_eq!(redact(url), want, "{url}");
        }
        for secret in ["hunter2", "s3cret", "p%40ss", "=pw"] {
            for url in ["redis://:hunter2@c", "scylla://u:s3cret@h/k", "rediss://kurz:p%40ss/w@cache:6380", "kafka://b?sasl.password=pw"] {
                assert!(!redact(url).contains(secret.trim_start_matches('=')) || !url.contains(secret), "{url}");
            }
        }
    }
}

#[cfg(test)]
mod feature_tests {
    use super::*;

    /// What a URL of a backend left out of this build answers.
    #[cfg(not(all(feature = "kafka", feature = "scylla", feature = "redis")))]
    fn assert_not_built(e: Option<StorageError>, port: &str, scheme: &str, backend: &str, feature: &str) {
        let e = e.unwrap_or_else(|| panic!("{scheme}:// opened without the `{feature}` feature"));
        let text = e.to_string();
        assert!(
            matches!(&e, StorageError::NotBuilt { port: p, scheme: s, feature: f, .. } if *p == port && s == scheme && *f == feature),
            "{e:?}"
        );
        assert!(text.contains(&format!("built without {backend} support (cargo feature `{feature}`)")), "{text}");
        assert!(text.starts_with("configuration: ") && text.contains(&format!("'{scheme}://")), "{text}");
    }

    #[test]
    fn an_unknown_scheme_is_refused_by_every_port() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log("nosuch://x", dir.path()).err();
        assert!(matches!(log, Some(StorageError::UnsupportedBackend { port: "log", .. })), "{log:?}");
        let store = open_store("nosuch://x", dir.path()).err();
        assert!(matches!(store, Some(StorageError::UnsupportedBackend { port: "store", .. })), "{store:?}");
        let cache = open_cache("nosuch://x").err();
        assert!(matches!(cache, Some(StorageError::UnsupportedBackend { port: "cache", .. })), "{cache:?}");
    }

    #[cfg(not(feature = "kafka"))]
    #[test]
    fn kafka_urls_need_the_kafka_feature() {
        let dir = tempfile::tempdir().unwrap();
        assert_not_built(open_log("kafka://127.0.0.1:9092", dir.path()).err(), "log", "kafka", "Kafka", "kafka");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing embedded was opened instead");
    }

    #[cfg(not(feature = "scylla"))]
    #[tokio::test]
    async fn scylla_urls_need_the_scylla_feature() {
        let dir = tempfile::tempdir().unwrap();
        let url = "scylla://127.0.0.1:9042/kurz";
        assert_not_built(open_store(url, dir.path()).err(), "store", "scylla", "Scylla", "scylla");
        assert_not_built(open_store_generation(url, dir.path(), 2).err(), "store", "scylla", "Scylla", "scylla");
        assert_not_built(open_vault(&default_vault_url(url), dir.path()).await.err(), "vault", "scylla", "Scylla", "scylla");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing embedded was opened instead");
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn redis_urls_need_the_redis_feature() {
        for scheme in ["redis", "rediss"] {
            assert_not_built(open_cache(&format!("{scheme}://127.0.0.1:6379/0")).err(), "cache", scheme, "Redis", "redis");
        }
    }
}
