//! `POST /admin/replay` (start; 202, or 409 while one runs) and `GET /admin/replay`
//! (progress and the report).

use super::Admin;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_command_api::auth::{AdminOnly, Auth};
use kurz_projector::replay::{ReplayRequest, ReplayStatus, Replayer, Sources};
use kurz_web::ApiError;
use std::sync::Arc;

type St = Admin<(Sources, Arc<Replayer>)>;

pub fn routes(src: Sources, replayer: Arc<Replayer>, auth: Arc<Auth>) -> axum::Router {
    axum::Router::new().route("/admin/replay", axum::routing::post(start).get(status)).with_state(Admin { inner: (src, replayer), auth })
}

async fn start(State(st): State<St>, _: AdminOnly, body: kurz_web::JsonBytes) -> Result<Response, ApiError> {
    let (src, replayer) = st.inner;
    let req: ReplayRequest = serde_json::from_slice(&body.0)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"projections\": [names or \"all\"], \"verify\": bool}}: {e}")))?;
    if req.projections.is_empty() {
        return Err(ApiError::BadRequest("name the projections to replay, or [\"all\"]".into()));
    }
    src.check(&req).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    match replayer.start(src, req) {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(replayer.status())).into_response()),
        Err(running) => Ok((StatusCode::CONFLICT, Json(running)).into_response()),
    }
}

async fn status(State(st): State<St>, _: AdminOnly) -> Json<ReplayStatus> {
    Json(st.inner.1.status())
}
