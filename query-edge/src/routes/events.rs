use super::{path_id, query_id, DEFAULT_LIMIT, MAX_LIMIT};
use crate::EdgeState;
use axum::extract::{Path, State};
use axum::Json;
use kurz_storage::store::EventQuery;
use kurz_web::{ApiError, Params};
use serde_json::Value;

pub async fn list(State(s): State<EdgeState>, q: Params) -> Result<Json<Value>, ApiError> {
    let url_id = query_id(q.id("url_id")?, "url_id")?;
    let user_id = query_id(q.id("user_id")?, "user_id")?;
    let event_type = q.get("event_type").map(str::to_string);
    let limit = q.limit(DEFAULT_LIMIT, MAX_LIMIT);
    let rows = s.store.history(&EventQuery { url_id, user_id, event_type, limit }).await?;
    Ok(Json(Value::Array(rows.iter().map(|e| e.to_json()).collect())))
}

pub async fn one(State(s): State<EdgeState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = path_id(&raw, "event")?;
    let e = s.store.history_event(id).await?.ok_or_else(|| ApiError::NotFound("event not found".into()))?;
    Ok(Json(e.to_json()))
}
