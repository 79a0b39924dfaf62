//! The shared hot cache on Redis: `redis://host:port[/db][?prefix=kurz:]`.
//!
//! One multiplexed connection per process (redis `ConnectionManager`, which reconnects
//! by itself). An entry is one string, [`CachedLink::encode`]'s `"<version>\n<link json>"`
//! (empty json: the code does not resolve), under `<prefix>link:<code>`; a Lua script
//! writes it only if the stored version is not newer, so writers never race an entry
//! backwards.
//!
//! Failure handling, so that Redis being down never fails a redirect:
//! - After an error the adapter answers errors at once for 1 s (a circuit breaker) instead
//!   of waiting on a dead server; callers then read the store.
//! - An offer that fails is kept (newest per code, up to 100k codes) and retried every
//!   250 ms until Redis answers again, so entries changed during an outage are repaired
//!   when it returns. If more codes changed than that, the cache's entries are deleted
//!   instead, since they can no longer be trusted.
//! - Every entry also carries a 1 h expiry. Events, not the expiry, keep entries right;
//!   the expiry only bounds a double fault (a writer crashing while Redis is down with
//!   unrepaired offers).

use super::{CachedLink, LinkCache};
use crate::StorageError;
use async_trait::async_trait;
use kurz_schemas::{Id, Ts};
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OFFER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = tonumber(string.match(cur, '^(%d+)'))
  if v and v > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Counts a visit of a link whose count exists, if within the limit (`ARGV[1]`), and
/// refreshes its expiry (`ARGV[2]`); -1 if no count exists. `super::next_visit`'s rule.
const COUNT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then return -1 end
local n = tonumber(cur) + 1
if n <= tonumber(ARGV[1]) then redis.call('SET', KEYS[1], n) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
"#;

/// Starts a count at the seed (`ARGV[1]`) unless one exists, then counts a visit as
/// `COUNT` does (limit `ARGV[2]`, expiry `ARGV[3]`).
const SEED: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local n = tonumber(redis.call('GET', KEYS[1])) + 1
if n <= tonumber(ARGV[2]) then redis.call('SET', KEYS[1], n) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return n
"#;

/// How long a visit count outlives its last visit. Once gone it is seeded again from
/// the projected count, which by then holds every visit.
pub const VISITS_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub const ENTRY_TTL: Duration = Duration::from_secs(3600);
const MAX_PENDING: usize = 100_000;
const BREAKER: i64 = 1_000;

struct Shared {
    conn: ConnectionManager,
    prefix: String,
    script: redis::Script,
    count: redis::Script,
    seed: redis::Script,
    pending: Mutex<HashMap<String, CachedLink>>,
    overflow: AtomicBool,
    open_until: AtomicI64,
}

pub struct RedisCache {
    shared: Arc<Shared>,
}

fn err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(format!("redis: {e}"))
}

impl RedisCache {
    /// Connects lazily: kurz starts even while Redis is down.
    /// `redis://[:password@]host:port[/db]` or `rediss://…` (TLS), with kurz's
    /// parameters after `?`: `prefix=`, and for TLS `tls_ca=<PEM file>` (trust this CA
    /// instead of the system's) and `tls_cert=`/`tls_key=` (a client certificate, for
    /// servers that ask for one). A password travels in the URL (`AUTH`), or with a
    /// user name for Redis ACLs (`rediss://user:password@…`).
    pub fn open(url: &str) -> Result<RedisCache, StorageError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let param = |name: &str| crate::query_param(query, name);
        let prefix = param("prefix").unwrap_or("kurz:").to_string();
        let client = if base.starts_with("rediss://") {
            crate::tls::install_provider();
            let read = |name: &str| -> Result<Option<Vec<u8>>, StorageError> {
                param(name)
                    .map(|path| std::fs::read(path).map_err(|e| StorageError::Config(format!("cache url {name}={path}: {e}"))))
                    .transpose()
            };
            let client_tls = match (read("tls_cert")?, read("tls_key")?) {
                (Some(client_cert), Some(client_key)) => Some(redis::ClientTlsConfig { client_cert, client_key }),
                (None, None) => None,
                _ => return Err(StorageError::Config("cache url: tls_cert and tls_key go together".into())),
            };
            redis::Client::build_with_tls(base, redis::TlsCertificates { client_tls, root_cert: read("tls_ca")? }).map_err(err)?
        } else {
            redis::Client::open(base).map_err(err)?
        };
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_response_timeout(Some(Duration::from_millis(250)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config).map_err(err)?;
        let shared = Arc::new(Shared {
            conn,
            prefix,
            script: redis::Script::new(OFFER),
            count: redis::Script::new(COUNT),
            seed: redis::Script::new(SEED),
            pending: Mutex::new(HashMap::new()),
            overflow: AtomicBool::new(false),
            open_until: AtomicI64::new(0),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let Some(s) = weak.upgrade() else { return };
                s.repair().await;
            }
        });
        Ok(RedisCache { shared })
    }

    /// Offers that failed and wait for Redis to return.
    pub fn pending(&self) -> usize {
        self.shared.pending.lock().expect("pending poisoned").len()
    }
}

impl Shared {
    fn key(&self, code: &str) -> String {
        format!("{}link:{code}", self.prefix)
    }

    fn visits_key(&self, link: Id) -> String {
        format!("{}visits:{}", self.prefix, link.get())
    }

    /// `script` on `link`'s visit count, behind the breaker.
    async fn on_visits(&self, script: &redis::Script, link: Id, args: &[u64]) -> Result<i64, StorageError> {
        self.check_breaker()?;
        let mut conn = self.conn.clone();
        let mut call = script.key(self.visits_key(link));
        for a in args {
            call.arg(*a);
        }
        call.invoke_async(&mut conn).await.map_err(|e| {
            self.trip();
            err(e)
        })
    }

    fn check_breaker(&self) -> Result<(), StorageError> {
        if Ts::now().0 < self.open_until.load(Ordering::Relaxed) {
            return Err(StorageError::Closed("redis cache (circuit open after an error)"));
        }
        Ok(())
    }

    fn trip(&self) {
        self.open_until.store(Ts::now().0 + BREAKER, Ordering::Relaxed);
    }

    async fn write(&self, code: &str, entry: &CachedLink) -> Result<(), StorageError> {
        let mut conn = self.conn.clone();
        let ttl = if entry.is_live() { ENTRY_TTL } else { super::NEGATIVE_TTL };
        let r: Result<i64, _> = self
            .script
            .key(self.key(code))
            .arg(entry.version)
            .arg(entry.encode())
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await;
        r.map(|_| ()).map_err(|e| {
            self.trip();
            err(e)
        })
    }

    fn remember(&self, code: &str, entry: CachedLink) {
        let mut p = self.pending.lock().expect("pending poisoned");
        match p.get(code) {
            Some(cur) if cur.version > entry.version => {}
            _ if p.len() >= MAX_PENDING && !p.contains_key(code) => self.overflow.store(true, Ordering::Relaxed),
            _ => {
                p.insert(code.to_string(), entry);
            }
        }
    }

    async fn repair(&self) {
        let overflow = self.overflow.load(Ordering::Relaxed);
        if !overflow && self.pending.lock().expect("pending poisoned").is_empty() {
            return;
        }
        let mut conn = self.conn.clone();
        if redis::cmd("PING").query_async::<String>(&mut conn).await.is_err() {
            return;
        }
        if overflow && self.flush().await.is_ok() {
            self.overflow.store(false, Ordering::Relaxed);
            tracing::warn!(event = "cache_flushed", "more codes changed during a Redis outage than could be repaired");
        }
        let batch: Vec<(String, CachedLink)> = self.pending.lock().expect("pending poisoned").drain().collect();
        let n = batch.len();
        for (code, entry) in batch {
            if self.write(&code, &entry).await.is_err() {
                self.remember(&code, entry);
            }
        }
        if n > 0 {
            self.open_until.store(0, Ordering::Relaxed);
            tracing::info!(event = "cache_repaired", entries = n);
        }
    }

    async fn flush(&self) -> Result<(), StorageError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}link:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            if !keys.is_empty() {
                redis::cmd("UNLINK").arg(&keys).query_async::<i64>(&mut conn).await.map_err(err)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

fn parse(raw: &str) -> Result<CachedLink, StorageError> {
    CachedLink::decode(raw).map_err(|e| StorageError::Corrupt(format!("redis cache entry: {e}")))
}

#[async_trait]
impl LinkCache for RedisCache {
    async fn get(&self, code: &str) -> Result<Option<CachedLink>, StorageError> {
        let s = &self.shared;
        s.check_breaker()?;
        let mut conn = s.conn.clone();
        let raw: Option<String> = redis::cmd("GET").arg(s.key(code)).query_async(&mut conn).await.map_err(|e| {
            s.trip();
            err(e)
        })?;
        raw.as_deref().map(parse).transpose()
    }

    async fn offer(&self, code: &str, entry: CachedLink) -> Result<(), StorageError> {
        let s = &self.shared;
        let r = match s.check_breaker() {
            Ok(()) => s.write(code, &entry).await,
            Err(e) => Err(e),
        };
        if r.is_err() {
            s.remember(code, entry);
        }
        r
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.shared.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ()).map_err(err)
    }

    async fn count_visit(&self, link: Id, max: u64) -> Result<Option<u64>, StorageError> {
        let n = self.shared.on_visits(&self.shared.count, link, &[max, VISITS_TTL.as_millis() as u64]).await?;
        Ok(u64::try_from(n).ok())
    }

    async fn seed_visits(&self, link: Id, seed: u64, max: u64) -> Result<u64, StorageError> {
        let n = self.shared.on_visits(&self.shared.seed, link, &[seed, max, VISITS_TTL.as_millis() as u64]).await?;
        u64::try_from(n).map_err(|_| StorageError::Corrupt(format!("redis visit count of link {link}: {n}")))
    }

    async fn visits(&self, link: Id) -> Result<Option<u64>, StorageError> {
        let s = &self.shared;
        s.check_breaker()?;
        let mut conn = s.conn.clone();
        let raw: Option<u64> = redis::cmd("GET").arg(s.visits_key(link)).query_async(&mut conn).await.map_err(|e| {
            s.trip();
            err(e)
        })?;
        Ok(raw)
    }
}
