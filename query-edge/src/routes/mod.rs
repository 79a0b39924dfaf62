//! Read routes.

mod events;
mod orphans;
mod reads;
mod redirect;
pub mod robots;
mod stats;
pub mod unlock;

pub use redirect::fast_path;
#[doc(hidden)]
pub use redirect::fuzz_classify;

use crate::EdgeState;
use axum::routing::{get, MethodRouter};
use kurz_schemas::Id;
use kurz_web::ApiError;

/// `limit` when absent or not an integer, and its cap.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 500;

pub fn all(s: EdgeState) -> Vec<(&'static str, MethodRouter)> {
    vec![
        ("/users", get(reads::users).with_state(s.clone())),
        ("/users/{id}", get(reads::user).with_state(s.clone())),
        ("/urls", get(reads::links).with_state(s.clone())),
        ("/urls/{id}", get(reads::link).with_state(s.clone())),
        ("/urls/{id}/stats", get(stats::stats).with_state(s.clone())),
        ("/links/{id}", get(reads::link).with_state(s.clone())),
        ("/events", get(events::list).with_state(s.clone())),
        ("/events/{id}", get(events::one).with_state(s.clone())),
        ("/", get(orphans::base).with_state(s.clone())),
        ("/visits/orphan", get(orphans::visits).with_state(s.clone())),
        ("/robots.txt", get(robots::robots).with_state(s.clone())),
        // POST: the password of a protected link (`unlock`).
        ("/{code}", get(redirect::redirect_or_stats).post(unlock::unlock).with_state(s.clone())),
        // `forward_path` links: `/{code}/rest`; any other link answers such a path 404,
        // and so does any other method (no route of this shape takes one).
        ("/{code}/{*rest}", get(redirect::redirect_or_stats).post(unlock::unlock).fallback(kurz_web::error::not_found_route).with_state(s)),
    ]
}

pub(crate) fn path_id(raw: &str, what: &str) -> Result<Id, ApiError> {
    raw.parse::<u64>().ok().and_then(|v| Id::new(v).ok()).ok_or_else(|| ApiError::NotFound(format!("{what} not found")))
}

pub(crate) fn query_id(v: Option<u64>, name: &str) -> Result<Option<Id>, ApiError> {
    v.map(|v| Id::new(v).map_err(|_| ApiError::BadRequest(format!("{name} must be a positive integer below 2^53")))).transpose()
}
