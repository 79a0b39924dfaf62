use super::to_response;
use crate::submit::{canonical, render};
use crate::{AppState, Principal};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use kurz_schemas::limits::{self, MAX_EVENT_TYPE_BYTES};
use kurz_schemas::{CommandBody, Id};
use kurz_web::{ApiError, JsonObject};

pub async fn create(State(s): State<AppState>, p: Principal, headers: HeaderMap, body: JsonObject) -> Result<Response, ApiError> {
    let url_id = body.opt_id("url_id")?.ok_or_else(|| ApiError::BadRequest("url_id is required".into()))?;
    let event_type = body.str("event_type")?.trim().to_string();
    if event_type.is_empty() || event_type.len() > MAX_EVENT_TYPE_BYTES || event_type.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!("event_type must be 1 to {MAX_EVENT_TYPE_BYTES} bytes of text")));
    }
    let user_id = body.opt_id("user_id")?;
    let details = body.opt_object("details")?.cloned().unwrap_or_default();
    limits::details(&details).map_err(super::bad)?;

    let link = match Id::new(url_id) {
        Ok(id) => s.store.link(id).await?,
        Err(_) => None,
    }
    .ok_or_else(|| ApiError::NotFound("url not found".into()))?
    .link;
    let user_id = match (p, user_id) {
        (Principal::User(me), Some(u)) if u != me.get() => {
            return Err(ApiError::Forbidden("events can only be recorded as yourself".into()))
        }
        (Principal::User(me), _) => Some(me),
        (_, Some(u)) => {
            let id = Id::new(u).map_err(|_| ApiError::NotFound("user not found".into()))?;
            s.store.user(id).await?.ok_or_else(|| ApiError::NotFound("user not found".into()))?;
            Some(id)
        }
        (_, None) => None,
    };
    let (domain, code) = super::urls::address(&link)?;
    let key = s.idempotency(&headers, &p.scope(), "POST /events", &canonical(&body))?;
    let cmd = CommandBody::RecordEvent { code, url_id: link.id, user_id, event_type, details, owner: p.owner(), domain };
    let o = s.submit(key.command(p.actor(), cmd)).await?;
    Ok(to_response(render(&o)?))
}
