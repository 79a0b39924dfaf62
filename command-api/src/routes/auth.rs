use super::bad;
use crate::auth::{hash_password, verify_password};
use crate::submit::canonical;
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_schemas::event::Answer;
use kurz_schemas::{Actor, CommandBody, Email};
use kurz_web::{ApiError, JsonObject};

pub const MIN_PASSWORD_LEN: usize = 8;
/// argon2 hashes any length, but an unbounded password is a free CPU burner.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A new password's length rules.
pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!("password must be at least {MIN_PASSWORD_LEN} characters")));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!("password must be at most {MAX_PASSWORD_LEN} bytes")));
    }
    Ok(())
}

/// `POST /auth/logout`: ends the session of the token it is called with; its later
/// requests answer 401 on every process. The admin token is not a session.
pub async fn logout(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if s.auth.is_admin(&headers) {
        return Err(ApiError::BadRequest("the admin token is not a session; rotate KURZ_ADMIN_TOKEN to revoke it".into()));
    }
    let (session, _) = s.auth.session(&headers, &*s.store).await?;
    let cmd = CommandBody::RevokeSession { id: session.user, session: session.id, until: session.expires };
    let o = s.submit(kurz_schemas::Command::new(kurz_schemas::CommandId::random(), Actor::User(session.user), cmd)).await?;
    match o.answer {
        Answer::User { .. } => Ok(Json(serde_json::json!({ "message": "logged out" })).into_response()),
        Answer::Rejected { message } => Err(ApiError::Status(o.status, message)),
        other => Err(ApiError::internal(format!("unexpected answer to logout: {other:?}"))),
    }
}

pub async fn register(State(s): State<AppState>, headers: HeaderMap, body: JsonObject) -> Result<Response, ApiError> {
    let email = Email::parse(body.str("email")?).map_err(bad)?;
    let password = body.str("password")?;
    check_password(password)?;
    // An anonymous route: the key is scoped by the e-mail, so two people's sign-ups
    // never share a key, and bound to the whole request (password included, through
    // an HMAC), so the same e-mail with another password is a 422, never the first
    // caller's session.
    let key = s.idempotency(&headers, &format!("register:{}", email.as_str()), "POST /auth/register", &canonical(&body))?;
    // Cheap early answer, unless this is a retry (answered from its outcome, if it is
    // the same request); the decider makes the authoritative check.
    let retry = key.keyed() && s.store.outcome(key.id.as_str()).await?.is_some();
    if !retry && s.store.user_by_email(email.as_str()).await?.is_some() {
        return Err(ApiError::Conflict("a user with this email already exists".into()));
    }
    let hash = hash_password(password.to_string()).await?;
    let username =
        Some(email.as_str().split('@').next().unwrap_or_default().chars().take(kurz_schemas::limits::MAX_USERNAME_CHARS).collect());
    let o = s
        .submit(key.command(Actor::Anonymous, CommandBody::CreateUser { email, username, password_hash: Some(hash), subject: None }))
        .await?;
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
    s.limits.logins.refuse_if_locked(&account).await?;
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
