use super::bad;
use crate::auth::{hash_password, verify_password};
use crate::submit::command_id;
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_schemas::event::Answer;
use kurz_schemas::{Actor, Command, CommandBody, Email};
use kurz_web::{ApiError, JsonObject};

pub const MIN_PASSWORD_LEN: usize = 8;
/// argon2 hashes any length, but an unbounded password is a free CPU burner.
pub const MAX_PASSWORD_LEN: usize = 1024;

pub async fn register(State(s): State<AppState>, headers: HeaderMap, body: JsonObject) -> Result<Response, ApiError> {
    let email = Email::parse(body.str("email")?).map_err(bad)?;
    let password = body.str("password")?;
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!("password must be at least {MIN_PASSWORD_LEN} characters")));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!("password must be at most {MAX_PASSWORD_LEN} bytes")));
    }
    // Cheap early answer; the decider makes the authoritative check.
    if s.store.user_by_email(email.as_str()).await?.is_some() {
        return Err(ApiError::Conflict("a user with this email already exists".into()));
    }
    let hash = hash_password(password.to_string()).await?;
    let id = command_id(&headers, "anyone", "POST /auth/register")?;
    let username =
        Some(email.as_str().split('@').next().unwrap_or_default().chars().take(kurz_schemas::limits::MAX_USERNAME_CHARS).collect());
    let o = s.submit(Command::new(id, Actor::Anonymous, CommandBody::CreateUser { email, username, password_hash: Some(hash) })).await?;
    match o.answer {
        Answer::User { user } => Ok((
            StatusCode::CREATED,
            Json(serde_json::json!({ "session_token": s.auth.issue(user.id), "user": { "id": user.id, "email": user.email } })),
        )
            .into_response()),
        Answer::Rejected { message } => Err(ApiError::Status(o.status, message)),
        other => Err(ApiError::internal(format!("unexpected answer to register: {other:?}"))),
    }
}

pub async fn login(State(s): State<AppState>, body: JsonObject) -> Result<Response, ApiError> {
    let email = body.str("email")?;
    let password = body.str("password")?.to_string();
    let account = Email::parse(email).map(|e| e.as_str().to_string()).unwrap_or_else(|_| email.trim().to_lowercase());
    if let Err(secs) = s.limits.logins.check(&account) {
        // Held before the answer, as rate-limit refusals are (`ratelimit::tarpit`).
        tokio::time::sleep(kurz_web::ratelimit::TARPIT_MAX).await;
        return Err(ApiError::TooManyRequests(secs, format!("too many failed sign-ins for this account; retry in {secs} s")));
    }
    let user = match Email::parse(email) {
        Ok(e) => s.store.user_by_email(e.as_str()).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = password.len() <= MAX_PASSWORD_LEN && verify_password(hash, password).await?;
    match (ok, user) {
        (true, Some(user)) => {
            s.limits.logins.succeeded(&account);
            Ok(Json(serde_json::json!({ "session_token": s.auth.issue(user.id), "user": user.to_json() })).into_response())
        }
        _ => {
            s.limits.logins.failed(&account);
            Err(ApiError::Unauthorized("invalid email or password".into()))
        }
    }
}
