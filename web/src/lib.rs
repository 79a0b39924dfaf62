//! HTTP plumbing shared by `command-api` and `query-edge`.

pub mod admin;
pub mod body;
pub mod error;
pub mod hashing;
pub mod health;
pub mod limits;
pub mod lockout;
pub mod observe;
pub mod params;
pub mod ratelimit;
pub mod serve;
pub mod workers;

pub use body::{JsonBytes, JsonObject, RawBody};
pub use error::ApiError;
pub use params::Params;

use axum::Router;

/// Default request-body limit for JSON endpoints (1 MiB). Bulk loads have their own.
pub const JSON_BODY_LIMIT: usize = 1 << 20;
/// Body limit of the `/…/bulk` endpoints (64 MiB of CSV).
pub const BULK_BODY_LIMIT: usize = 64 << 20;

/// The layers every kurz HTTP role wraps its routes in: a JSON 404 for unknown routes,
/// a JSON 405, panics turned into a JSON 500, RED metrics and a tracing span per route.
pub fn finish(router: Router) -> Router {
    hashing::refused();
    router
        .fallback(error::not_found_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(observe::red_metrics))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panic_response))
}

/// Builds a router from `(path, method router)` pairs, merging the methods of pairs that
/// share a path, so roles that serve different methods of one path (`GET /users` on the
/// edge, `POST /users` on the command-api) combine into one process.
pub fn assemble(routes: Vec<(&'static str, axum::routing::MethodRouter)>) -> Router {
    let mut by_path: Vec<(&'static str, axum::routing::MethodRouter)> = Vec::new();
    for (path, mr) in routes {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(mr),
            None => by_path.push((path, mr)),
        }
    }
    by_path.into_iter().fold(Router::new(), |r, (p, mr)| r.route(p, mr))
}
