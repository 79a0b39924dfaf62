use super::{bad, path_id, to_response};
use crate::submit::{command_id, render};
use crate::{AppState, Principal};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use kurz_schemas::{limits, Command, CommandBody, Email};
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
    let id = command_id(&headers, &p.scope(), "POST /users")?;
    let o = s.submit(Command::new(id, p.actor(), CommandBody::CreateUser { email, username, password_hash: None })).await?;
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
    let id = command_id(&headers, &p.scope(), &format!("PUT /users/{user}"))?;
    let o = s.submit(Command::new(id, p.actor(), CommandBody::UpdateUser { id: user, email, username })).await?;
    Ok(to_response(render(&o)?))
}

pub async fn delete(State(s): State<AppState>, Path(raw): Path<String>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    let user = path_id(&raw, "user")?;
    p.require_self(user)?;
    let id = command_id(&headers, &p.scope(), &format!("DELETE /users/{user}"))?;
    let o = s.submit(Command::new(id, p.actor(), CommandBody::DeleteUser { id: user })).await?;
    Ok(to_response(render(&o)?))
}
