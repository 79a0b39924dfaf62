//! `kurz parked list|redrive|skip` and the admin routes behind it: the parked records
//! (see `kurz_projector::batch`) and the watchdog's re-drive, on demand.
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `GET /admin/parked` | | `{"count": n, "parked": [record…]}` |
//! | `POST /admin/parked/redrive` | `{"topic"?, "partition"?, "key"?}` (`{}`: all) | `{"delivered", "failed", "dead_lettered"}` |
//! | `POST /admin/parked/skip` | `{"topic", "partition", "key", "offset"}` | the same; 404 if not parked |
//!
//! Admin only in token mode, like `/admin/replay`.

use crate::{Error, Ports};
use kurz_projector::watchdog::parked::{self, Redriven, Selector};
use kurz_projector::Projector;
use kurz_storage::store::{ParkedId, ParkedRecord};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub enum Action {
    List,
    Redrive(Selector),
    Skip(ParkedId),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Report {
    List { count: usize, parked: Vec<ParkedRecord> },
    Redriven { delivered: usize, failed: usize, dead_lettered: usize },
}

impl Report {
    fn redriven(r: Redriven) -> Report {
        Report::Redriven { delivered: r.delivered, failed: r.failed, dead_lettered: r.dead_lettered }
    }

    pub fn render(&self) -> String {
        match self {
            Report::List { parked, .. } if parked.is_empty() => "nothing is parked\n".to_string(),
            Report::List { count, parked } => {
                let mut out = format!("{count} parked record(s)\n{:<22} {:<8} {:<24} {:>8}  reason\n", "topic", "part", "key", "attempts");
                for r in parked {
                    out.push_str(&format!(
                        "{:<22} {:<8} {:<24} {:>8}  {} (offset {})\n",
                        r.topic,
                        r.partition,
                        r.key,
                        r.attempts,
                        r.reason.replace(['\r', '\n'], " "),
                        r.offset
                    ));
                }
                out
            }
            Report::Redriven { delivered, failed, dead_lettered } => {
                format!("delivered {delivered}, failed again {failed}, dead-lettered {dead_lettered}\n")
            }
        }
    }
}

pub async fn act(projector: &Projector, action: Action) -> Result<Report, Error> {
    Ok(match action {
        Action::List => {
            let parked = projector.store().parked().await?;
            Report::List { count: parked.len(), parked }
        }
        Action::Redrive(sel) => Report::redriven(parked::redrive(projector, &sel).await?),
        Action::Skip(id) => Report::redriven(parked::skip(projector, &id).await?),
    })
}

/// The projector a process acts on parked records with.
pub fn projector(ports: &Ports, cfg: &crate::Config) -> Projector {
    Projector::new(ports.log.clone(), ports.store.clone(), Some(ports.cache.clone()), ports.keys.clone()).max_attempts(cfg.max_attempts)
}

/// Runs `action` in this process (storage it can open) or against a running kurz's
/// admin API (`url`).
pub async fn cli(action: Action, url: Option<String>, token: Option<String>, cfg: crate::Config) -> Result<Report, Error> {
    let Some(base) = url else {
        let ports = Ports::open(&cfg).await.map_err(|e| {
            Error::Config(format!("cannot open kurz's storage ({e}); against a running embedded kurz, use --url and its admin token"))
        })?;
        return act(&projector(&ports, &cfg), action).await;
    };
    let base = base.trim_end_matches('/').to_string();
    let http = reqwest::Client::new();
    let req = match &action {
        Action::List => http.get(format!("{base}/admin/parked")),
        Action::Redrive(sel) => http.post(format!("{base}/admin/parked/redrive")).json(&serde_json::json!({
            "topic": sel.topic, "partition": sel.partition, "key": sel.key,
        })),
        Action::Skip(id) => http.post(format!("{base}/admin/parked/skip")).json(id),
    };
    let req = match &token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let remote = |e: reqwest::Error| Error::Config(format!("{base}: {e}"));
    let r = req.send().await.map_err(remote)?;
    let status = r.status();
    let body = r.text().await.map_err(remote)?;
    if !status.is_success() {
        return Err(Error::Config(format!("{base} answered {status}: {body}")));
    }
    serde_json::from_str(&body).map_err(|e| Error::Config(format!("{base}: unexpected answer ({e}): {body}")))
}

/// `GET /admin/parked`, `POST /admin/parked/redrive`, `POST /admin/parked/skip`.
pub fn admin_routes(projector: Projector, auth: Arc<kurz_command_api::auth::Auth>) -> axum::Router {
    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::Json;
    use kurz_command_api::auth::AdminOnly;
    use kurz_web::ApiError;

    #[derive(Clone)]
    struct St {
        projector: Projector,
        auth: Arc<kurz_command_api::auth::Auth>,
    }
    impl kurz_command_api::auth::HasAuth for St {
        fn auth(&self) -> &kurz_command_api::auth::Auth {
            &self.auth
        }
    }
    fn failed(e: Error) -> ApiError {
        match e {
            Error::Projector(kurz_projector::Error::NotParked(what)) => ApiError::NotFound(format!("{what} is not parked")),
            other => ApiError::Internal(other.to_string()),
        }
    }
    async fn run(st: &St, action: Action) -> Result<Json<Report>, ApiError> {
        act(&st.projector, action).await.map(Json).map_err(failed)
    }
    async fn list(State(st): State<St>, _: AdminOnly) -> Result<Json<Report>, ApiError> {
        run(&st, Action::List).await
    }
    async fn redrive(State(st): State<St>, _: AdminOnly, headers: HeaderMap, body: kurz_web::RawBody) -> Result<Json<Report>, ApiError> {
        let sel: Selector = if body.0.iter().all(u8::is_ascii_whitespace) {
            Selector::default()
        } else if !kurz_web::body::is_json(&headers) {
            return Err(ApiError::UnsupportedMediaType("send the selector with Content-Type: application/json".into()));
        } else {
            serde_json::from_slice(&body.0)
                .map_err(|e| ApiError::BadRequest(format!("expected {{\"topic\"?, \"partition\"?, \"key\"?}}: {e}")))?
        };
        run(&st, Action::Redrive(sel)).await
    }
    async fn skip(State(st): State<St>, _: AdminOnly, body: kurz_web::JsonBytes) -> Result<Json<Report>, ApiError> {
        let id: ParkedId = serde_json::from_slice(&body.0)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"topic\", \"partition\", \"key\", \"offset\"}}: {e}")))?;
        run(&st, Action::Skip(id)).await
    }
    axum::Router::new()
        .route("/admin/parked", axum::routing::get(list))
        .route("/admin/parked/redrive", axum::routing::post(redrive))
        .route("/admin/parked/skip", axum::routing::post(skip))
        .with_state(St { projector, auth })
}
