use super::{path_id, query_id, DEFAULT_LIMIT, MAX_LIMIT};
use crate::EdgeState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use kurz_storage::store::LinkQuery;
use kurz_web::{ApiError, Params};
use serde_json::Value;

pub const DEFAULT_PER_PAGE: usize = 20;

/// A user as this caller may see it: without `email` in token mode unless the caller
/// holds the admin token.
fn user_json(u: &kurz_schemas::User, emails: bool) -> Value {
    let mut v = u.to_json();
    if !emails {
        if let Some(o) = v.as_object_mut() {
            o.remove("email");
        }
    }
    v
}

pub async fn users(State(s): State<EdgeState>, headers: HeaderMap, q: Params) -> Result<Json<Value>, ApiError> {
    let page = q.strict_usize("page", 1)?.max(1);
    let per_page = q.strict_usize("per_page", DEFAULT_PER_PAGE)?.clamp(1, MAX_LIMIT);
    let users = s.store.users(page, per_page).await?;
    let emails = s.shows_emails(&headers);
    Ok(Json(Value::Array(users.iter().map(|u| user_json(u, emails)).collect())))
}

pub async fn user(State(s): State<EdgeState>, headers: HeaderMap, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = path_id(&raw, "user")?;
    let u = s.store.user(id).await?.ok_or_else(|| ApiError::NotFound("user not found".into()))?;
    Ok(Json(user_json(&u, s.shows_emails(&headers))))
}

pub async fn links(State(s): State<EdgeState>, q: Params) -> Result<Json<Value>, ApiError> {
    let user_id = query_id(q.id("user_id")?, "user_id")?;
    let is_active = q.bool("is_active")?;
    let limit = q.limit(DEFAULT_LIMIT, MAX_LIMIT);
    let links = s.store.links(&LinkQuery { user_id, is_active, limit }).await?;
    Ok(Json(Value::Array(links.iter().map(|l| l.to_json()).collect())))
}

pub async fn link(State(s): State<EdgeState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = path_id(&raw, "url")?;
    let l = s.store.link(id).await?.ok_or_else(|| ApiError::NotFound("url not found".into()))?;
    Ok(Json(l.link.to_json()))
}
