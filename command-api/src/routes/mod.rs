//! Write routes. Each handler authenticates, validates the request into a command, and
//! submits it.

mod api_keys;
pub(crate) mod auth;
#[doc(hidden)]
pub mod bulk;
mod domains;
mod events;
pub(crate) mod options;
pub(crate) mod urls;
mod users;

use crate::AppState;
use axum::routing::{delete, post, put, MethodRouter};
use kurz_schemas::Id;
use kurz_web::ApiError;

pub fn all(state: AppState) -> Vec<(&'static str, MethodRouter)> {
    let bulk_limit = axum::extract::DefaultBodyLimit::max(kurz_web::BULK_BODY_LIMIT);
    let json_limit = axum::extract::DefaultBodyLimit::max(kurz_web::JSON_BODY_LIMIT);
    let s = state;
    // Per-address limits run first, before authentication: a refused caller costs a
    // lookup, not a token check or a body.
    let limited = |class: &Option<kurz_web::ratelimit::ByAddress>, routes: Vec<(&'static str, MethodRouter)>| match class {
        None => routes,
        Some(l) => routes
            .into_iter()
            .map(|(p, mr)| (p, mr.layer(axum::middleware::from_fn_with_state(l.clone(), kurz_web::ratelimit::by_address))))
            .collect(),
    };
    let auth = limited(
        &s.limits.auth,
        vec![
            ("/auth/register", post(auth::register).with_state(s.clone()).layer(json_limit)),
            ("/auth/login", post(auth::login).with_state(s.clone()).layer(json_limit)),
            ("/auth/logout", post(auth::logout).with_state(s.clone()).layer(json_limit)),
        ],
    );
    let mut writes = limited(&s.limits.writes, writes(s.clone(), bulk_limit, json_limit));
    writes.extend(auth);
    writes
}

fn writes(
    s: AppState,
    bulk_limit: axum::extract::DefaultBodyLimit,
    json_limit: axum::extract::DefaultBodyLimit,
) -> Vec<(&'static str, MethodRouter)> {
    vec![
        ("/users", post(users::create).with_state(s.clone()).layer(json_limit)),
        ("/users/bulk", post(bulk::users).with_state(s.clone()).layer(bulk_limit)),
        ("/users/{id}", put(users::update).delete(users::delete).with_state(s.clone()).layer(json_limit)),
        ("/users/{id}/api-keys", post(api_keys::create).get(api_keys::list).with_state(s.clone()).layer(json_limit)),
        ("/users/{id}/api-keys/{key_id}", delete(api_keys::revoke).with_state(s.clone()).layer(json_limit)),
        ("/urls", post(urls::create).with_state(s.clone()).layer(json_limit)),
        ("/links/create", post(urls::create).with_state(s.clone()).layer(json_limit)),
        ("/urls/bulk", post(bulk::urls).with_state(s.clone()).layer(bulk_limit)),
        ("/urls/{id}", put(urls::update).delete(urls::delete).with_state(s.clone()).layer(json_limit)),
        ("/domains", post(domains::put).get(domains::list).with_state(s.clone()).layer(json_limit)),
        ("/domains/{host}", delete(domains::delete).get(domains::get).with_state(s.clone()).layer(json_limit)),
        ("/shorten", post(urls::shorten).with_state(s.clone()).layer(json_limit)),
        ("/events", post(events::create).with_state(s.clone()).layer(json_limit)),
        ("/events/bulk", post(bulk::events).with_state(s).layer(bulk_limit)),
    ]
}

/// A path id; anything that is not one is a 404, as an unmatched route would be.
pub(crate) fn path_id(raw: &str, what: &str) -> Result<Id, ApiError> {
    raw.parse::<u64>().ok().and_then(|v| Id::new(v).ok()).ok_or_else(|| ApiError::NotFound(format!("{what} not found")))
}

pub(crate) fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

pub(crate) fn to_response(r: (axum::http::StatusCode, serde_json::Value)) -> axum::response::Response {
    use axum::response::IntoResponse;
    (r.0, axum::Json(r.1)).into_response()
}
