//! kurz's write side.
//!
//! `routes` turns each HTTP write into a validated [`kurz_schemas::Command`]; `submit`
//! appends it to the commands topic under its aggregate key and waits for its outcome;
//! `decider` runs one writer per command partition that decides every command against
//! the partition's state and appends the resulting events.

pub mod auth;
pub mod codes;
pub mod decider;
mod error;
pub mod metrics;
pub mod routes;
pub mod submit;
pub mod targets;

pub use auth::{AuthMode, Principal};
pub use error::Error;

use kurz_storage::vault::Keyring;
use kurz_storage::{EventLog, ReadStore};
use kurz_web::ApiError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Settings {
    pub auth: AuthMode,
    pub admin_token: Option<String>,
    /// Signs session tokens and keys derived short codes. Every command-api process of
    /// one deployment must share it.
    pub secret: Vec<u8>,
    /// Earlier secrets: sessions they signed still verify (rotation's grace period).
    pub previous_secrets: Vec<Vec<u8>>,
    pub import_dir: Option<PathBuf>,
    /// Base of `short_url` in `/shorten` answers; the request's Host when unset.
    pub public_url: Option<String>,
    /// How long a request waits for its command's outcome before answering 504.
    pub outcome_timeout: Duration,
    pub code_len: usize,
    /// Which redirect targets are refused beyond their form (own host, deny-list).
    pub targets: targets::TargetPolicy,
    /// Rate limits of the write routes and `/auth/*`.
    pub rate: kurz_web::ratelimit::Policy,
}

impl Settings {
    /// The callers' authentication these settings describe: the admin token, the
    /// current secret and the earlier ones whose sessions still verify. Built once per
    /// process ([`CommandApi::auth`] hands it on).
    pub fn auth(&self) -> auth::Auth {
        auth::Auth::new(self.auth, self.admin_token.clone(), self.secret.clone()).with_previous(&self.previous_secrets)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            auth: AuthMode::Token,
            admin_token: None,
            secret: Vec::new(),
            previous_secrets: Vec::new(),
            import_dir: None,
            public_url: None,
            outcome_timeout: Duration::from_secs(10),
            code_len: codes::DEFAULT_CODE_LEN,
            targets: targets::TargetPolicy::default(),
            rate: kurz_web::ratelimit::Policy::default(),
        }
    }
}

pub struct Inner {
    pub log: Arc<dyn EventLog>,
    pub store: Arc<dyn ReadStore>,
    /// Users' data keys: personal data is sealed under them in the commands and
    /// events topics.
    pub keys: Arc<Keyring>,
    pub auth: Arc<auth::Auth>,
    pub settings: Settings,
    pub command_partitions: u32,
    pub limits: Limits,
    /// API keys whose use this process recorded lately, and when.
    pub touched: quick_cache::sync::Cache<String, i64>,
}

/// The write side's rate limiters, built once from `Settings::rate`.
pub struct Limits {
    /// Writes per client address.
    pub writes: Option<kurz_web::ratelimit::ByAddress>,
    /// `/auth/*` per client address.
    pub auth: Option<kurz_web::ratelimit::ByAddress>,
    /// Writes per signed-in user.
    pub principal: Option<Arc<kurz_web::ratelimit::Limiter<u64>>>,
    /// Failed sign-ins per account, with a growing lockout.
    pub logins: auth::Lockout,
}

impl Limits {
    fn new(p: &kurz_web::ratelimit::Policy, admin: kurz_web::admin::AdminToken) -> Limits {
        Limits {
            // The operator's admin token is exempt: bulk loads and scripts of many writes
            // from one host are its job.
            writes: p.by_address("writes", Some(p.writes)).map(|l| l.exempting(move |h| admin.allows(h))),
            auth: p.by_address("auth", Some(p.auth)),
            principal: p.enabled.then(|| kurz_web::ratelimit::Limiter::new("user", p.principal)),
            logins: auth::Lockout::new(p.enabled),
        }
    }
}

/// Shared by every write handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Who is calling, for a write: a read-scoped API key is a 403.
    pub async fn principal(&self, headers: &axum::http::HeaderMap) -> Result<Principal, ApiError> {
        let (p, key) = self.caller(headers).await?;
        if key.is_some_and(|k| k.scope == kurz_schemas::KeyScope::Read) {
            return Err(ApiError::Forbidden("this API key may only read".into()));
        }
        Ok(p)
    }

    /// Who is calling, and with which API key if any; records the key's use.
    pub async fn caller(&self, headers: &axum::http::HeaderMap) -> Result<(Principal, Option<auth::UsedKey>), ApiError> {
        let (p, key) = self.auth.authenticate(headers, &*self.store).await?;
        if let Some(k) = &key {
            self.touch(k);
        }
        Ok((p, key))
    }

    /// Records a key's last use, at most once per [`KEY_USE_GRANULARITY_MS`] per key and
    /// process, in the background: the request never waits for it.
    fn touch(&self, k: &auth::UsedKey) {
        let now = kurz_schemas::Ts::now();
        let due = |t: i64| now.0 - t >= KEY_USE_GRANULARITY_MS;
        if !k.last_used.is_none_or(|t| due(t.0)) || !self.touched.get(&k.id).is_none_or(due) {
            return;
        }
        self.touched.insert(k.id.clone(), now.0);
        let s = self.clone();
        let body = kurz_schemas::CommandBody::TouchApiKey { id: k.user, key_id: k.id.clone(), at: now };
        let cmd = kurz_schemas::Command::new(kurz_schemas::CommandId::random(), kurz_schemas::Actor::User(k.user), body);
        tokio::spawn(async move {
            if let Err(e) = s.submit(cmd).await {
                tracing::debug!(event = "api_key_touch_failed", error = %e);
            }
        });
    }
}

/// How often a key's `last_used_at` moves: an hour (each move is an event).
pub const KEY_USE_GRANULARITY_MS: i64 = 3600 * 1000;

/// The command-api role: write routes plus the deciders.
pub struct CommandApi {
    state: AppState,
}

impl CommandApi {
    /// The log's topics must exist (see `kurz_storage::log::ensure_topics`).
    pub async fn build(
        log: Arc<dyn EventLog>,
        store: Arc<dyn ReadStore>,
        keys: Arc<Keyring>,
        settings: Settings,
    ) -> Result<CommandApi, Error> {
        let command_partitions = log.partitions(kurz_schemas::topics::COMMANDS).await?;
        let auth = Arc::new(settings.auth());
        let limits = Limits::new(&settings.rate, auth.admin_token());
        Ok(CommandApi {
            state: AppState(Arc::new(Inner {
                log,
                store,
                keys,
                auth,
                settings,
                command_partitions,
                limits,
                touched: quick_cache::sync::Cache::new(10_000),
            })),
        })
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// The write routes, for assembling with other roles' routes.
    pub fn routes(&self) -> Vec<(&'static str, axum::routing::MethodRouter)> {
        routes::all(self.state.clone())
    }

    /// The role's whole HTTP surface when it runs alone.
    pub fn router(&self) -> axum::Router {
        let checks = vec![
            kurz_web::health::store_check(self.state.store.clone()),
            kurz_web::health::log_check(self.state.log.clone(), kurz_schemas::topics::COMMANDS),
        ];
        kurz_web::finish(kurz_web::assemble(self.routes()).merge(kurz_web::health::routes(checks, self.state.auth.admin_token())))
    }

    /// Who the callers are: the one [`auth::Auth`] of this process, for the routes other
    /// roles serve beside these (the admin routes of `kurz serve`).
    pub fn auth(&self) -> Arc<auth::Auth> {
        self.state.auth.clone()
    }

    pub fn deciders(&self) -> decider::Deciders {
        decider::Deciders::new(self.state.log.clone(), self.state.keys.clone())
    }

    /// Serves the write API and runs the deciders until `stop` fires; then stops
    /// accepting and drains in-flight requests (which still need the deciders for their
    /// outcomes), and only then stops the deciders, which finish their batch: each for
    /// at most `limits.drain` (`kurz_web::workers`).
    pub async fn run_until_stopped(
        self,
        listener: tokio::net::TcpListener,
        limits: kurz_web::serve::Limits,
        stop: CancellationToken,
    ) -> Result<(), Error> {
        let mut workers = kurz_web::workers::Workers::new();
        let deciders = self.deciders();
        workers.spawn("deciders", |stop| deciders.run_until_stopped(stop));
        let drain = limits.drain;
        kurz_web::serve::serve(listener, self.router(), limits, stop).await?;
        workers.stop(drain).await;
        Ok(())
    }
}
