//! `GET /robots.txt`: search engines may follow the links marked `crawlable` (active
//! ones), and nothing else, as Shlink does.
//!
//! The answer is built from the read store's crawlable index
//! (`ReadStore::crawlable_codes`), at most [`MAX_CODES`] codes in code order, and kept
//! for [`FRESH`]: a flood of `robots.txt` requests costs one store read a minute per
//! edge. While the store fails, the last answer is served; with none yet, a 503 JSON
//! error (never an empty file, which would allow everything).

use crate::EdgeState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use kurz_web::ApiError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most codes one answer lists (Google reads the first 500 KiB of the file; this
/// stays well under, at codes of up to 64 bytes).
pub const MAX_CODES: usize = 5_000;
/// How long an answer is served before the store is asked again.
pub const FRESH: Duration = Duration::from_secs(60);

/// The last answer and when it was built; the lock makes concurrent misses wait for one
/// store read instead of each making their own.
#[derive(Default)]
pub struct Robots(tokio::sync::Mutex<Option<(Instant, Arc<str>)>>);

/// The file for `codes`: an `Allow` line each, then `Disallow: /`.
pub fn text(codes: &[String]) -> String {
    let mut out = String::with_capacity(96 + codes.len() * 16);
    out.push_str("# Short links marked crawlable; every other path is disallowed.\nUser-agent: *\n");
    for c in codes {
        out.push_str("Allow: /");
        out.push_str(c);
        out.push('\n');
    }
    out.push_str("Disallow: /\n");
    out
}

pub async fn robots(State(s): State<EdgeState>) -> Result<Response, ApiError> {
    let mut cached = s.robots.0.lock().await;
    let body = match &*cached {
        Some((at, body)) if at.elapsed() < FRESH => body.clone(),
        stale => match s.store.crawlable_codes(MAX_CODES).await {
            Ok(codes) => {
                let body: Arc<str> = text(&codes).into();
                *cached = Some((Instant::now(), body.clone()));
                body
            }
            Err(e) => match stale {
                Some((_, body)) => {
                    tracing::warn!(event = "robots_stale", error = %e, "serving the last robots.txt while the store fails");
                    body.clone()
                }
                None => return Err(ApiError::Unavailable(format!("robots.txt could not be built: {e}"))),
            },
        },
    };
    drop(cached);
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=60")];
    Ok((headers, body.to_string()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_codes_are_allowed_and_everything_else_is_not() {
        assert_eq!(text(&[]), "# Short links marked crawlable; every other path is disallowed.\nUser-agent: *\nDisallow: /\n");
        let t = text(&["abc".into(), "x_y-z".into()]);
        let rules: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(rules, ["User-agent: *", "Allow: /abc", "Allow: /x_y-z", "Disallow: /"]);
    }
}
