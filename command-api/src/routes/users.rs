use super::{bad, path_id, to_response};
use crate::auth::{hash_password, verify_password};
use crate::submit::{canonical, render};
use crate::{AppState, Principal};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use kurz_schemas::{limits, CommandBody, Email};
use kurz_web::{ApiError, JsonObject};

/// The optional `username`, within its limit.
fn username(body: &JsonObject) -> Result<Option<String>, ApiError> {
    let u = body.opt_str("username")?;
    if let Some(u) = u {
        limits::text("username", u, limits::MAX_USERNAME_CHARS).map_err(bad)?;
    }
    Ok(u.map(str::to_string))
}

pub async fn create(State(s): State<AppState>, p: Principal, headers: HeaderMap, body: JsonObject) -> Result<Response, ApiError> {
    p.require_admin()?;
    let email = Email::parse(body.str("email")?).map_err(bad)?;
    let username = username(&body)?;
    let key = s.idempotency(&headers, &p.scope(), "POST /users", &canonical(&body))?;
    let o = s.submit(key.command(p.actor(), CommandBody::CreateUser { email, username, password_hash: None, subject: None })).await?;
    Ok(to_response(render(&o)?))
}

pub async fn update(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    p: Principal,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let user = path_id(&raw, "user")?;
    p.require_self(user)?;
    let email = body.opt_str("email")?.map(Email::parse).transpose().map_err(bad)?;
    let username = username(&body)?;
    let password_hash = match body.opt_str("password")? {
        None => None,
        Some(new) => Some(new_password(&s, p, user, new, body.opt_str("current_password")?).await?),
    };
    let changes_password = password_hash.is_some();
    let key = s.idempotency(&headers, &p.scope(), &format!("PUT /users/{user}"), &canonical(&body))?;
    let o = s.submit(key.command(p.actor(), CommandBody::UpdateUser { id: user, email, username, password_hash, subject: None })).await?;
    let (status, mut json) = render(&o)?;
    // A password change ended every older session, the caller's too: a user changing
    // their own gets a new one.
    if let (true, Principal::User(_), kurz_schemas::event::Answer::User { user: u }) = (changes_password, p, &o.answer) {
        let issued = u.sessions_from.map_or(kurz_schemas::Ts::now(), |f| f.max(kurz_schemas::Ts::now()));
        json["session_token"] = serde_json::Value::String(s.auth.issue_at(u.id, issued));
    }
    Ok(to_response((status, json)))
}

/// Checks a password change and hashes the new password. A user changing their own
/// password proves the current one (failures count toward the sign-in lockout); the
/// admin (or anyone, in open mode) may set one outright.
async fn new_password(s: &AppState, p: Principal, user: kurz_schemas::Id, new: &str, current: Option<&str>) -> Result<String, ApiError> {
    crate::routes::auth::check_password(new)?;
    if let Principal::User(_) = p {
        let record = s.store.user(user).await?.ok_or_else(|| ApiError::NotFound("user not found".into()))?;
        if let Some(hash) = record.password_hash {
            let current = current.ok_or_else(|| ApiError::BadRequest("changing the password needs current_password".into()))?;
            s.limits.logins.refuse_if_locked(&record.email).await?;
            if current.len() > crate::routes::auth::MAX_PASSWORD_LEN || !verify_password(Some(hash), current.to_string()).await? {
                s.limits.logins.failed(&record.email);
                return Err(ApiError::Forbidden("current_password is not right".into()));
            }
            s.limits.logins.succeeded(&record.email);
        }
    }
    hash_password(new.to_string()).await
}

pub async fn delete(State(s): State<AppState>, Path(raw): Path<String>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    let user = path_id(&raw, "user")?;
    p.require_self(user)?;
    let key = s.idempotency(&headers, &p.scope(), &format!("DELETE /users/{user}"), b"")?;
    let o = s.submit(key.command(p.actor(), CommandBody::DeleteUser { id: user })).await?;
    Ok(to_response(render(&o)?))
}
