//! `GET /{code}` (redirect) and `GET /{code}+` (link stats).
//!
//! Lookups go to the hot cache first, then the read store; a store answer (found or
//! not) is offered back to the cache with the version it was read at, so it can never
//! replace a newer state the projector already put there.

use crate::capture::{ClickSink, RawClick};
use crate::{metrics, EdgeState};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use kurz_schemas::{Link, Ts};
use kurz_storage::CachedLink;
use kurz_web::ApiError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Longest header value (and query string) a click keeps.
const MAX_HEADER: usize = 512;

async fn resolve(s: &EdgeState, code: &str) -> Result<(Option<Arc<Link>>, &'static str), ApiError> {
    // A cache error is a miss: the store answers (slower, counted at the cache port).
    if let Ok(Some(hit)) = s.cache.get(code).await {
        return Ok((hit.link, "cache"));
    }
    let found = s.store.link_by_code(code).await?;
    let entry = match found {
        Some(vl) => CachedLink { link: Some(Arc::new(vl.link)), version: vl.version },
        None => CachedLink { link: None, version: 0 },
    };
    let _ = s.cache.offer(code, entry.clone()).await;
    Ok((entry.link, "store"))
}

pub async fn redirect_or_stats(
    State(s): State<EdgeState>,
    method: Method,
    Path(code): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Response, ApiError> {
    if let Some(code) = code.strip_suffix('+') {
        return stats(&s, code).await;
    }
    let (link, source) = resolve(&s, &code).await?;
    let m = metrics::get();
    let link = match link {
        Some(l) if l.is_active => l,
        Some(_) => {
            m.redirects.with_label_values(&["inactive", source]).inc();
            return Err(ApiError::NotFound("short link not found or inactive".into()));
        }
        None => {
            m.redirects.with_label_values(&["not_found", source]).inc();
            return Err(ApiError::NotFound("short link not found or inactive".into()));
        }
    };
    m.redirects.with_label_values(&["found", source]).inc();
    let location = HeaderValue::from_str(&link.original_url)
        .or_else(|_| url::Url::parse(&link.original_url).map_err(|_| ()).and_then(|u| HeaderValue::from_str(u.as_str()).map_err(|_| ())))
        .map_err(|_| ApiError::internal(format!("link {} has a target that is not a valid Location", link.id)))?;
    if s.clicks.enabled() {
        s.clicks.record(raw_click(&s.clicks, link, &method, &uri, &headers, peer.map(|Extension(ConnectInfo(a))| a.ip())));
    }
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// What the click event needs, copied from the request: no parsing here (the flusher
/// does that, off the request path).
fn raw_click(sink: &ClickSink, link: Arc<Link>, method: &Method, uri: &Uri, headers: &HeaderMap, peer: Option<IpAddr>) -> RawClick {
    let text = |h: &HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let clipped = |v: &str| v.chars().take(MAX_HEADER).collect::<String>();
    let addr = match &sink.client_ip_header {
        Some(h) => text(h).and_then(|v| v.split(',').next()).and_then(|a| a.trim().parse().ok()),
        None => peer,
    };
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
