use super::{bad, path_id, to_response};
use crate::submit::{command_id, render};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use kurz_schemas::{Command, CommandBody, Email};
use kurz_web::{ApiError, JsonObject, RawBody};

pub async fn create(State(s): State<AppState>, headers: HeaderMap, RawBody(body): RawBody) -> Result<Response, ApiError> {
    let p = s.principal(&headers).await?;
    p.require_admin()?;
    let body = JsonObject::parse(&body)?;
    let email = Email::parse(body.str("email")?).map_err(bad)?;
    let username = body.opt_str("username")?.map(str::to_string);
    let id = command_id(&headers, &p.scope(), "POST /users")?;
    let o = s.submit(Command::new(id, p.actor(), CommandBody::CreateUser { email, username, password_hash: None })).await?;
    Ok(to_response(render(&o)?))
}

pub async fn update(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let user = path_id(&raw, "user")?;
    let p = s.principal(&headers).await?;
    p.require_self(user)?;
    let body = JsonObject::parse(&body)?;
    let email = body.opt_str("email")?.map(Email::parse).transpose().map_err(bad)?;
    let username = body.opt_str("username")?.map(str::to_string);
    let id = command_id(&headers, &p.scope(), &format!("PUT /users/{user}"))?;
    let o = s.submit(Command::new(id, p.actor(), CommandBody::UpdateUser { id: user, email, username })).await?;
    Ok(to_response(render(&o)?))
}

pub async fn delete(State(s): State<AppState>, Path(raw): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let user = path_id(&raw, "user")?;
    let p = s.principal(&headers).await?;
    p.require_self(user)?;
    let id = command_id(&headers, &p.scope(), &format!("DELETE /users/{user}"))?;
    let o = s.submit(Command::new(id, p.actor(), CommandBody::DeleteUser { id: user })).await?;
    Ok(to_response(render(&o)?))
}
