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

/// The last index read, when, and the default host's answer built from it; the lock
/// makes concurrent misses wait for one store read instead of each making their own.
#[derive(Default)]
pub struct Robots(tokio::sync::Mutex<Option<Read>>);

#[derive(Clone)]
struct Read {
    at: Instant,
    /// Lookup keys: `code` (the default domain's, answered on every host) and
    /// `host/code` (a domain's).
    keys: Arc<Vec<String>>,
    default: Arc<str>,
}

/// The codes a host's `robots.txt` allows: the default domain's links, and on a
/// registered domain its own.
fn codes_for(keys: &[String], domain: Option<&str>) -> Vec<String> {
    keys.iter()
        .filter_map(|k| match k.split_once('/') {
            None => Some(k.clone()),
            Some((host, code)) if Some(host) == domain => Some(code.to_string()),
            Some(_) => None,
        })
        .collect()
}

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

pub async fn robots(State(s): State<EdgeState>, req: axum::extract::Request) -> Result<Response, ApiError> {
    let mut cached = s.robots.0.lock().await;
    let read = match &*cached {
        Some(r) if r.at.elapsed() < FRESH => r.clone(),
        stale => match s.store.crawlable_codes(MAX_CODES).await {
            Ok(keys) => {
                let default: Arc<str> = text(&codes_for(&keys, None)).into();
                let read = Read { at: Instant::now(), keys: Arc::new(keys), default };
                *cached = Some(read.clone());
                read
            }
            Err(e) => match stale {
                Some(r) => {
                    tracing::warn!(event = "robots_stale", error = %e, "serving the last robots.txt while the store fails");
                    r.clone()
                }
                None => return Err(ApiError::Unavailable(format!("robots.txt could not be built: {e}"))),
            },
        },
    };
    drop(cached);
    let body = match s.domains.domain_of(req.headers(), req.uri()) {
        None => read.default.to_string(),
        Some(d) => text(&codes_for(&read.keys, Some(&d))),
    };
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=60")];
    Ok((headers, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_lists_its_own_codes_and_the_default_domains() {
        let keys: Vec<String> = ["abc", "go.example/promo", "x.example/other", "zzz"].iter().map(|k| k.to_string()).collect();
        assert_eq!(codes_for(&keys, None), ["abc", "zzz"]);
        assert_eq!(codes_for(&keys, Some("go.example")), ["abc", "promo", "zzz"]);
    }

    #[test]
    fn only_the_listed_codes_are_allowed_and_everything_else_is_not() {
        assert_eq!(text(&[]), "# Short links marked crawlable; every other path is disallowed.\nUser-agent: *\nDisallow: /\n");
        let t = text(&["abc".into(), "x_y-z".into()]);
        let rules: Vec<&str> = t.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(rules, ["User-agent: *", "Allow: /abc", "Allow: /x_y-z", "Disallow: /"]);
    }
}
