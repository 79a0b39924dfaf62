//! `GET /{code}` (redirect) and `GET /{code}+` (link stats).
//!
//! Lookups go to the hot cache first, then the read store; a store answer (found or
//! not) is offered back to the cache with the version it was read at, so it can never
//! replace a newer state the projector already put there.

use crate::capture::{ClickSink, RawClick};
use crate::metrics::{self, Found, Source};
use crate::EdgeState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_schemas::{CachedLink, Link, ShortCode, Ts};
use kurz_web::ApiError;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Longest header value (and query string) a click keeps, in bytes.
const MAX_HEADER: usize = 512;

async fn resolve(s: &EdgeState, code: &str) -> Result<(Option<Arc<Link>>, Source), ApiError> {
    // A path that cannot be a short code (too long, or not URL-safe) is unknown without
    // asking: it never reaches a cache or the store, so odd paths cost no memory there.
    if ShortCode::parse_lenient(code).is_err() {
        return Ok((None, Source::Refused));
    }
    // The in-process tier first, without a boxed future per lookup; then the whole cache.
    if let Some(hit) = s.cache.get_local(code) {
        return Ok((hit.link, Source::Cache));
    }
    // A cache error is a miss: the store answers (slower, counted at the cache port).
    if let Ok(Some(hit)) = s.cache.get(code).await {
        return Ok((hit.link, Source::Cache));
    }
    let entry = CachedLink::read(s.store.link_by_code(code).await?.map(|vl| (vl.link, vl.version)));
    let _ = s.cache.offer(code, entry.clone()).await;
    Ok((entry.link, Source::Store))
}

/// The route's one path segment, percent-decoded only when it holds an escape (codes
/// are plain ASCII, so that is rare). Reads the request in place: the hot path copies
/// no headers and allocates no path.
fn code_of(uri: &Uri) -> Result<Cow<'_, str>, ApiError> {
    let raw = uri.path().strip_prefix('/').unwrap_or(uri.path());
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::BadRequest("the short code is not valid UTF-8 once percent-decoded".into()))
}

pub async fn redirect_or_stats(State(s): State<EdgeState>, req: Request) -> Result<Response, ApiError> {
    // The head only: a body is not `Sync`, so a future holding the request across an
    // await would not be `Send`.
    let (req, _) = req.into_parts();
    let code = code_of(&req.uri)?;
    if let Some(code) = code.strip_suffix('+') {
        return stats(&s, code).await;
    }
    let peer = req.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip());
    if let Some((refused, wait)) = peer.and_then(|p| limited(&s, p, &req.headers)) {
        return Ok(kurz_web::ratelimit::tarpit(refused, wait).await);
    }
    redirect(&s, &code, &req, peer).await
}

/// `GET /{code}` answered before the router (`kurz_web::serve::FastPath`) when the
/// path is one segment that can only be a code ([`ShortCode::is_plain_code`]: every
/// other single-segment route is a reserved name): no route matching, no middleware
/// boxes, the same span, metrics and panic handling (`kurz_web::observe`).
/// Everything else (stats, escapes, other routes) goes to the router.
///
/// A code the in-process cache holds (nearly every redirect) is answered at once, with
/// no future at all; any other waits on the whole cache and the read store.
pub fn fast_path(s: EdgeState) -> kurz_web::serve::FastPath {
    use kurz_web::observe::{observed, observed_now};
    use kurz_web::serve::Fast;
    Arc::new(move |req: Request, peer: SocketAddr| {
        let method = req.method();
        if (method != Method::GET && method != Method::HEAD) || !req.uri().path().strip_prefix('/').is_some_and(ShortCode::is_plain_code) {
            return Fast::Pass(req);
        }
        let (req, _) = req.into_parts();
        if let Some((refused, wait)) = limited(&s, peer.ip(), &req.headers) {
            return Fast::Later(Box::pin(observed("/{code}", &req.method, kurz_web::ratelimit::tarpit(refused, wait))));
        }
        let now = observed_now("/{code}", &req.method, || {
            let hit = s.cache.get_local(&req.uri.path()[1..])?;
            Some(answer(&s, hit.link, Source::Cache, &req, Some(peer.ip())).into_response())
        });
        if let Some(resp) = now {
            return Fast::Ready(resp);
        }
        let peer = Some(peer.ip());
        let s = s.clone();
        let method = req.method.clone();
        Fast::Later(Box::pin(observed(
            "/{code}",
            &method,
            async move { redirect(&s, &req.uri.path()[1..], &req, peer).await.into_response() },
        )))
    })
}

/// The 429 for a client past its redirect limit (`KURZ_RATE_REDIRECTS`), if one is set,
/// and how long to hold it (`ratelimit::tarpit`).
fn limited(s: &EdgeState, peer: IpAddr, headers: &HeaderMap) -> Option<(Response, std::time::Duration)> {
    let l = s.redirect_limit.as_ref()?;
    let key = kurz_web::ratelimit::ip_key(l.client.of(peer, headers));
    match l.limiter.check(&key) {
        kurz_web::ratelimit::Checked::Refused(r, wait) => Some((r, wait)),
        kurz_web::ratelimit::Checked::Allowed { .. } => None,
    }
}

/// How the edge classifies a request target, for the fuzz target (`fuzz/`): `None` if
/// it is not a valid URI; else whether the fast path takes it, and the code the router
/// path would look up (`None`: answered 404 without a lookup, or a 400). Panics if the
/// fast path would take a path that the lookup refuses. Not an API.
#[doc(hidden)]
pub fn fuzz_classify(target: &str) -> Option<(bool, Option<String>)> {
    let uri: Uri = target.parse().ok()?;
    let segment = uri.path().strip_prefix('/');
    let fast = segment.is_some_and(ShortCode::is_plain_code);
    if fast {
        assert!(ShortCode::parse_lenient(segment.unwrap_or_default()).is_ok(), "the fast path took a non-code: {target:?}");
    }
    let looked_up = code_of(&uri).ok().map(|c| c.trim_end_matches('+').to_string()).filter(|c| ShortCode::parse_lenient(c).is_ok());
    Some((fast, looked_up))
}

async fn redirect(s: &EdgeState, code: &str, req: &Parts, peer: Option<IpAddr>) -> Result<Response, ApiError> {
    let (link, source) = resolve(s, code).await?;
    answer(s, link, source, req, peer)
}

/// The redirect for what the lookup found: a 302 to an active link (and its click
/// recorded), else a 404.
fn answer(s: &EdgeState, link: Option<Arc<Link>>, source: Source, req: &Parts, peer: Option<IpAddr>) -> Result<Response, ApiError> {
    let link = match link {
        Some(l) if l.is_active => l,
        Some(_) => {
            metrics::redirect(Found::Inactive, source).inc();
            return Err(ApiError::NotFound("short link not found or inactive".into()));
        }
        None => {
            metrics::redirect(Found::NotFound, source).inc();
            return Err(ApiError::NotFound("short link not found or inactive".into()));
        }
    };
    metrics::redirect(Found::Found, source).inc();
    let location = HeaderValue::from_str(&link.original_url)
        .or_else(|_| url::Url::parse(&link.original_url).map_err(|_| ()).and_then(|u| HeaderValue::from_str(u.as_str()).map_err(|_| ())))
        .map_err(|_| ApiError::internal(format!("link {} has a target that is not a valid Location", link.id)))?;
    if s.clicks.enabled() {
        s.clicks.record(raw_click(&s.clicks, link, &req.method, &req.uri, &req.headers, peer));
    }
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// What the click event needs, copied from the request: no parsing here (the flusher
/// does that, off the request path).
fn raw_click(sink: &ClickSink, link: Arc<Link>, method: &Method, uri: &Uri, headers: &HeaderMap, peer: Option<IpAddr>) -> RawClick {
    let text = |h: &HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let addr = peer.map(|p| sink.client_ip.of(p, headers));
    RawClick {
        link,
        at: Ts::now(),
        head: method == Method::HEAD,
        referer: text(&header::REFERER).map(clipped),
        user_agent: text(&header::USER_AGENT).map(clipped),
        addr,
        query: uri.query().map(clipped),
        country: sink.country_header.as_ref().and_then(text).map(clipped),
    }
}

/// At most [`MAX_HEADER`] bytes of `v`, cut at a character boundary.
fn clipped(v: &str) -> String {
    if v.len() <= MAX_HEADER {
        return v.to_owned();
    }
    let mut end = MAX_HEADER;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_owned()
}

async fn stats(s: &EdgeState, code: &str) -> Result<Response, ApiError> {
    let (link, _) = resolve(s, code).await?;
    let link = link.ok_or_else(|| ApiError::NotFound("short link not found".into()))?;
    let clicks = s.store.click_count(link.id).await?;
    Ok(Json(serde_json::json!({
        "short_code": link.short_code,
        "original_url": link.original_url,
        "title": link.title,
        "is_active": link.is_active,
        "click_count": clicks,
        "created_at": link.created_at.to_rfc3339(),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_from_the_path_and_decoded_only_when_escaped() {
        let uri = |p: &str| p.parse::<Uri>().unwrap();
        assert!(matches!(code_of(&uri("/abc?x=1")).unwrap(), Cow::Borrowed("abc")));
        assert_eq!(code_of(&uri("/ab%63")).unwrap(), "abc");
        assert_eq!(code_of(&uri("/abc%2B")).unwrap(), "abc+", "an escaped + still asks for stats");
        assert!(matches!(code_of(&uri("/%FF")), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn long_values_are_clipped_at_a_character_boundary() {
        assert_eq!(clipped("short"), "short");
        let long = "é".repeat(MAX_HEADER);
        let c = clipped(&long);
        assert!(c.len() <= MAX_HEADER && c.len() >= MAX_HEADER - 1);
        assert!(long.starts_with(&c));
    }
}
