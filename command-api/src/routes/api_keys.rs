//! `/users/{id}/api-keys`: a user's keys for programs. A key is shown once, when it is
//! made; only its SHA-256 is kept. Keys cannot manage keys: that takes a session (or
//! the admin token).

use super::{bad, path_id, to_response};
use crate::auth::UsedKey;
use crate::submit::canonical;
use crate::{AppState, Principal};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use kurz_schemas::event::Answer;
use kurz_schemas::{limits, ApiKey, CommandBody, Id, KeyScope, Ts, User};
use kurz_web::{ApiError, JsonObject};

pub const MAX_KEY_NAME_CHARS: usize = 64;

/// The caller, who must be the user (by session) or the admin, and not an API key.
async fn owner(s: &AppState, headers: &HeaderMap, user: Id) -> Result<Principal, ApiError> {
    let (p, key): (Principal, Option<UsedKey>) = s.caller(headers).await?;
    if key.is_some() {
        return Err(ApiError::Forbidden("API keys are managed with a session, not with an API key".into()));
    }
    p.require_self(user)?;
    Ok(p)
}

fn user_of(answer: &Answer) -> Result<&User, ApiError> {
    match answer {
        Answer::User { user } => Ok(user),
        other => Err(ApiError::internal(format!("unexpected answer to an API key command: {other:?}"))),
    }
}

pub async fn create(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let user = path_id(&raw, "user")?;
    let p = owner(&s, &headers, user).await?;
    let name = body.str("name")?.trim().to_string();
    if name.is_empty() {
        return Err(ApiError::BadRequest("name must not be empty".into()));
    }
    limits::text("name", &name, MAX_KEY_NAME_CHARS).map_err(bad)?;
    let scope = match body.opt_str("scope")? {
        None => KeyScope::Read,
        Some(v) => v.parse::<KeyScope>().map_err(ApiError::BadRequest)?,
    };
    let route = format!("POST /users/{user}/api-keys");
    let idem = s.idempotency(&headers, &p.scope(), &route, &canonical(&body))?;
    let (key_id, key, hash) = s.auth.mint_api_key(user, idem.id.as_str());
    let stored = ApiKey { id: key_id.clone(), name, scope, hash, created_at: Ts(0), last_used_at: None };
    let o = s.submit(idem.command(p.actor(), CommandBody::CreateApiKey { id: user, key: stored })).await?;
    if let Answer::Rejected { message } = &o.answer {
        return Err(ApiError::Status(o.status, message.clone()));
    }
    let made = user_of(&o.answer)?
        .api_keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| ApiError::internal("the new key is not in the decided user"))?;
    let mut json = made.to_json();
    json["key"] = serde_json::Value::String(key);
    Ok(to_response((StatusCode::CREATED, json)))
}

pub async fn list(State(s): State<AppState>, Path(raw): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let user = path_id(&raw, "user")?;
    // Listing is a read: a read-scoped key of the user may list (not manage) keys.
    let (p, key) = s.caller(&headers).await?;
    if key.is_none() {
        p.require_self(user)?;
    } else if key.is_some_and(|k| k.user != user) {
        return Err(ApiError::Forbidden("a user may only list their own API keys".into()));
    }
    let record = s.store.user(user).await?.ok_or_else(|| ApiError::NotFound("user not found".into()))?;
    let keys: Vec<serde_json::Value> = record.api_keys.iter().map(ApiKey::to_json).collect();
    Ok(to_response((StatusCode::OK, serde_json::Value::Array(keys))))
}

pub async fn revoke(
    State(s): State<AppState>,
    Path((raw, key_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = path_id(&raw, "user")?;
    let p = owner(&s, &headers, user).await?;
    if key_id.len() > 64 {
        return Err(ApiError::NotFound("API key not found".into()));
    }
    let idem = s.idempotency(&headers, &p.scope(), &format!("DELETE /users/{user}/api-keys/{key_id}"), b"")?;
    let o = s.submit(idem.command(p.actor(), CommandBody::RevokeApiKey { id: user, key_id: key_id.clone() })).await?;
    match &o.answer {
        Answer::Rejected { message } => Err(ApiError::Status(o.status, message.clone())),
        _ => Ok(to_response((StatusCode::OK, serde_json::json!({ "message": "revoked", "id": key_id })))),
    }
}
