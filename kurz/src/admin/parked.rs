//! `GET /admin/parked`, `POST /admin/parked/redrive`, `POST /admin/parked/skip`: the
//! parked records (see `kurz_projector::batch`) and the watchdog's re-drive, on demand.

use super::Admin;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use kurz_command_api::auth::{AdminOnly, Auth};
use kurz_projector::watchdog::parked::{act, Action, Report, Selector};
use kurz_projector::Projector;
use kurz_storage::store::ParkedId;
use kurz_web::ApiError;
use std::sync::Arc;

type St = Admin<Projector>;

pub fn routes(projector: Projector, auth: Arc<Auth>) -> axum::Router {
    axum::Router::new()
        .route("/admin/parked", axum::routing::get(list))
        .route("/admin/parked/redrive", axum::routing::post(redrive))
        .route("/admin/parked/skip", axum::routing::post(skip))
        .with_state(Admin { inner: projector, auth })
}

async fn run(st: &St, action: Action) -> Result<Json<Report>, ApiError> {
    act(&st.inner, action).await.map(Json).map_err(|e| match e {
        kurz_projector::Error::NotParked(what) => ApiError::NotFound(format!("{what} is not parked")),
        other => ApiError::Internal(other.to_string()),
    })
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
