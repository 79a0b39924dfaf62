//! `GET /{code}` (redirect) and `GET /{code}+` (link stats).
//!
//! Lookups go to the hot cache first, then the read store; a store answer (found or
//! not) is offered back to the cache with the version it was read at, so it can never
//! replace a newer state the projector already put there.

use crate::capture::{ClickSink, RawClick, Visited};
use crate::metrics::{self, Found, Source};
use crate::EdgeState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_schemas::options::{Target, MAX_LOCATION};
use kurz_schemas::{CachedLink, Link, OrphanKind, ShortCode, Ts};
use kurz_web::ApiError;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Longest header value (and query string) a click keeps, in bytes.
const MAX_HEADER: usize = 512;

/// The link `code` names on the request's `domain` (a registered one,
/// [`crate::domains::Domains::domain_of`]): the domain's own link of that code, else
/// the default domain's (as Shlink answers).
pub(crate) async fn resolve(s: &EdgeState, domain: Option<&str>, code: &str) -> Result<(Option<Arc<Link>>, Source), ApiError> {
    // A path that cannot be a short code (too long, or not URL-safe) is unknown without
    // asking: it never reaches a cache or the store, so odd paths cost no memory there.
    if ShortCode::parse_lenient(code).is_err() {
        return Ok((None, Source::Refused));
    }
    if let Some(d) = domain {
        let found = lookup(s, &kurz_schemas::domain::lookup_key(Some(d), code)).await?;
        if found.0.is_some() {
            return Ok(found);
        }
    }
    lookup(s, code).await
}

/// The link under lookup key `key`: the hot cache, then the read store.
async fn lookup(s: &EdgeState, key: &str) -> Result<(Option<Arc<Link>>, Source), ApiError> {
    // The in-process tier first, without a boxed future per lookup; then the whole cache.
    if let Some(hit) = s.cache.get_local(key) {
        return Ok((hit.link, Source::Cache));
    }
    // A cache error is a miss: the store answers (slower, counted at the cache port).
    if let Ok(Some(hit)) = s.cache.get(key).await {
        return Ok((hit.link, Source::Cache));
    }
    let entry = CachedLink::read(s.store.link_by_code(key).await?.map(|vl| (vl.link, vl.version)));
    let _ = s.cache.offer(key, entry.clone()).await;
    Ok((entry.link, Source::Store))
}

/// [`resolve`] from the in-process tier alone: `None` unless it answers for sure.
fn resolve_local(s: &EdgeState, domain: Option<&str>, code: &str) -> Option<CachedLink> {
    if let Some(d) = domain {
        let hit = s.cache.get_local(&kurz_schemas::domain::lookup_key(Some(d), code))?;
        if hit.link.is_some() {
            return Some(hit);
        }
    }
    s.cache.get_local(code)
}

/// The route's first path segment, percent-decoded only when it holds an escape (codes
/// are plain ASCII, so that is rare), and the raw rest of the path after it
/// (`/{code}/rest`, for links that forward paths). Reads the request in place: the hot
/// path copies no headers and allocates no path.
pub(crate) fn code_of(uri: &Uri) -> Result<(Cow<'_, str>, Option<&str>), ApiError> {
    let path = uri.path().strip_prefix('/').unwrap_or(uri.path());
    let (raw, rest) = match path.split_once('/') {
        Some((code, rest)) => (code, Some(rest)),
        None => (path, None),
    };
    if !raw.contains('%') {
        return Ok((Cow::Borrowed(raw), rest));
    }
    let code = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::BadRequest("the short code is not valid UTF-8 once percent-decoded".into()))?;
    Ok((code, rest))
}

pub async fn redirect_or_stats(State(s): State<EdgeState>, req: Request) -> Result<Response, ApiError> {
    // The head only: a body is not `Sync`, so a future holding the request across an
    // await would not be `Send`.
    let (req, _) = req.into_parts();
    let (code, rest) = code_of(&req.uri)?;
    if let Some(code) = code.strip_suffix('+') {
        if rest.is_some() {
            return Err(ApiError::NotFound("short link not found".into()));
        }
        let domain = s.domains.domain_of(&req.headers, &req.uri);
        return stats(&s, domain.as_deref(), code).await;
    }
    let peer = req.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip());
    if let Some((refused, wait)) = peer.and_then(|p| limited(&s, p, &req.headers)) {
        return Ok(kurz_web::ratelimit::tarpit(refused, wait).await);
    }
    let domain = s.domains.domain_of(&req.headers, &req.uri);
    redirect(&s, domain.as_deref(), &code, rest, &req, peer).await
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
        let domain = s.domains.domain_of(&req.headers, &req.uri);
        // A link with a visit limit is planned here too, and only counted on the async
        // path: its plan goes along, not planned again.
        let mut limited = None;
        let now = observed_now("/{code}", &req.method, || {
            let hit = resolve_local(&s, domain.as_deref(), &req.uri.path()[1..])?;
            match plan(&s, hit.link, Source::Cache, None, &req, Some(peer.ip()), Visitor::Plain) {
                Plan::Now(r) => Some(r.into_response()),
                Plan::Limited(l) => {
                    limited = Some(l);
                    None
                }
            }
        });
        if let Some(resp) = now {
            return Fast::Ready(resp);
        }
        let peer = Some(peer.ip());
        let s = s.clone();
        let method = req.method.clone();
        Fast::Later(Box::pin(observed("/{code}", &method, async move {
            match limited {
                Some(l) => counted(&s, l, &req, peer).await.into_response(),
                None => redirect(&s, domain.as_deref(), &req.uri.path()[1..], None, &req, peer).await.into_response(),
            }
        })))
    })
}

/// The 429 for a client past its redirect limit (`KURZ_RATE_REDIRECTS`), if one is set,
/// and how long to hold it (`ratelimit::tarpit`).
pub(crate) fn limited(s: &EdgeState, peer: IpAddr, headers: &HeaderMap) -> Option<(Response, std::time::Duration)> {
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
    let looked_up = code_of(&uri).ok().map(|(c, _)| c.trim_end_matches('+').to_string()).filter(|c| ShortCode::parse_lenient(c).is_ok());
    Some((fast, looked_up))
}

async fn redirect(
    s: &EdgeState,
    domain: Option<&str>,
    code: &str,
    rest: Option<&str>,
    req: &Parts,
    peer: Option<IpAddr>,
) -> Result<Response, ApiError> {
    let (link, source) = resolve(s, domain, code).await?;
    answer_visit(s, link, source, rest, req, peer, Visitor::Plain).await
}

/// Who is asking: anyone (a protected link answers its password form), or a visitor
/// who gave the link's password (`super::unlock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Visitor {
    Plain,
    Unlocked,
}

/// What [`plan`] decided: the answer, or a redirect of a link with a visit limit,
/// which waits for its visit to be counted.
enum Plan {
    Now(Result<Response, ApiError>),
    Limited(Limited),
}

/// A redirect that is served only within the link's visit limit.
struct Limited {
    link: Arc<Link>,
    max: u64,
    status: u16,
    location: String,
    source: Source,
}

/// [`answer`], for a visitor who may have unlocked the link, counting the visit of a
/// link with a visit limit ([`within_limit`]): past it, the link answers as expired.
pub(crate) async fn answer_visit(
    s: &EdgeState,
    link: Option<Arc<Link>>,
    source: Source,
    rest: Option<&str>,
    req: &Parts,
    peer: Option<IpAddr>,
    visitor: Visitor,
) -> Result<Response, ApiError> {
    match plan(s, link, source, rest, req, peer, visitor) {
        Plan::Now(r) => r,
        Plan::Limited(l) => counted(s, l, req, peer).await,
    }
}

/// A planned redirect of a link with a visit limit: served if the visit is within it,
/// else answered as expired.
async fn counted(s: &EdgeState, l: Limited, req: &Parts, peer: Option<IpAddr>) -> Result<Response, ApiError> {
    if within_limit(s, &l.link, l.max, req).await? {
        redirected(s, l.link, l.status, &l.location, l.source, req, peer)
    } else {
        orphan(s, Found::Expired, OrphanKind::Expired, Some(&l.link), l.source, req, peer)
    }
}

/// The answer to a visit of `link`, short of counting it against a visit limit: to an
/// active link inside its validity window, the redirect with its status, `Location`
/// (the request's query and path forwarded as the link asks,
/// [`kurz_schemas::LinkOptions::target`]) and `Cache-Control`, and its click recorded;
/// else the orphan answer. A link without options costs one comparison more than a
/// plain 302.
fn plan(
    s: &EdgeState,
    link: Option<Arc<Link>>,
    source: Source,
    rest: Option<&str>,
    req: &Parts,
    peer: Option<IpAddr>,
    visitor: Visitor,
) -> Plan {
    let not_found = |found, kind, link: Option<&Link>| Plan::Now(orphan(s, found, kind, link, source, req, peer));
    let link = match link {
        Some(l) if l.is_active => l,
        Some(l) => return not_found(Found::Inactive, OrphanKind::NotFound, Some(&l)),
        None => return not_found(Found::NotFound, OrphanKind::NotFound, None),
    };
    let base = if link.options.rules.is_empty() {
        link.original_url.as_str()
    } else {
        link.options.pick(&link.original_url, &RequestVisit::new(s, req))
    };
    let (status, location) = match link.options.target(base, rest, req.uri.query(), Ts::now) {
        Target::Redirect { status, location } => (status, location),
        Target::Expired => return not_found(Found::Expired, OrphanKind::Expired, Some(&link)),
        Target::NoPath => return not_found(Found::NotFound, OrphanKind::NotFound, Some(&link)),
        Target::TooLong => {
            return Plan::Now(Err(ApiError::Status(414, format!("the forwarded address would exceed {MAX_LOCATION} bytes"))));
        }
    };
    if visitor == Visitor::Plain && link.options.is_protected() {
        metrics::redirect(Found::Protected, source).inc();
        return Plan::Now(Ok(super::unlock::challenge(&req.headers, false)));
    }
    if let Some(max) = link.options.max_visits {
        let location = location.into_owned();
        return Plan::Limited(Limited { link, max, status, location, source });
    }
    Plan::Now(redirected(s, link.clone(), status, &location, source, req, peer))
}

/// The redirect itself, with its click recorded.
fn redirected(
    s: &EdgeState,
    link: Arc<Link>,
    status: u16,
    location: &str,
    source: Source,
    req: &Parts,
    peer: Option<IpAddr>,
) -> Result<Response, ApiError> {
    metrics::redirect(Found::Found, source).inc();
    let location = HeaderValue::from_str(location)
        .or_else(|_| url::Url::parse(location).map_err(|_| ()).and_then(|u| HeaderValue::from_str(u.as_str()).map_err(|_| ())))
        .map_err(|_| ApiError::internal(format!("link {} has a target that is not a valid Location", link.id)))?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FOUND);
    let cache = if link.options.redirect_type().is_permanent() { &s.redirect_cache.permanent } else { &s.redirect_cache.temporary };
    if s.clicks.enabled() {
        s.clicks.record(raw_click(&s.clicks, Visited::Link(link), &req.method, &req.uri, &req.headers, peer));
    }
    Ok((status, [(header::LOCATION, location), (header::CACHE_CONTROL, cache.clone())]).into_response())
}

/// A visit that reaches no link: recorded as an orphan visit of `kind` (with the code
/// asked for, and for `expired` the link), and answered with the host's fallback for
/// it ([`crate::domains::Domains::fallback`]), else a 404.
fn orphan(
    s: &EdgeState,
    found: Found,
    kind: OrphanKind,
    link: Option<&Link>,
    source: Source,
    req: &Parts,
    peer: Option<IpAddr>,
) -> Result<Response, ApiError> {
    metrics::redirect(found, source).inc();
    if s.clicks.enabled() {
        let code = match link {
            Some(l) => Some(l.short_code.as_str().into()),
            None => code_of(&req.uri).ok().map(|(c, _)| c).filter(|c| ShortCode::parse_lenient(c).is_ok()).map(|c| c.into()),
        };
        let link_id = link.filter(|_| kind == OrphanKind::Expired).map(|l| l.id);
        s.clicks.record(raw_click(&s.clicks, Visited::Orphan { kind, code, link_id }, &req.method, &req.uri, &req.headers, peer));
    }
    match s.domains.fallback(&req.headers, &req.uri, kind) {
        Some(target) => Ok(fallback_redirect(s, target)),
        None => Err(ApiError::NotFound("short link not found or inactive".into())),
    }
}

/// A 302 to a domain's fallback, with a temporary redirect's `Cache-Control`
/// ([`crate::RedirectCache`]): the fallback may change, and the next visit may find a
/// link.
pub(crate) fn fallback_redirect(s: &EdgeState, target: HeaderValue) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, target), (header::CACHE_CONTROL, s.redirect_cache.temporary.clone())]).into_response()
}

/// Whether this visit of a link with `max` visits is within them. A visit that counts
/// (not a bot, not HEAD, as the click projection counts) takes the next number from the
/// cache's shared count ([`kurz_storage::LinkCache::count_visit`]; a refused visit is
/// not counted), seeded from the projected click count the first time; one that does
/// not count only reads it. A limit is a promise: while the cache fails, such a visit
/// is answered 503 rather than risk serving past it.
async fn within_limit(s: &EdgeState, link: &Link, max: u64, req: &Parts) -> Result<bool, ApiError> {
    let bot = req.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).is_some_and(|ua| s.agents.shared(ua).1);
    let counted = req.method != Method::HEAD && !bot;
    let down = |_| ApiError::Unavailable(format!("the visit count of link {} cannot be read", link.id));
    let n = if counted {
        match s.cache.count_visit(link.id, max).await.map_err(down)? {
            Some(n) => n,
            None => {
                let seed = s.store.click_count(link.id).await?;
                s.cache.seed_visits(link.id, seed, max).await.map_err(down)?
            }
        }
    } else {
        match s.cache.visits(link.id).await.map_err(down)? {
            Some(n) => n.saturating_add(1),
            None => s.store.click_count(link.id).await?.saturating_add(1),
        }
    };
    Ok(n <= max)
}

/// What a redirect rule may ask of a request ([`kurz_schemas::rules::Visit`]): the
/// user agent is classified on the first condition that asks, at most once.
struct RequestVisit<'a> {
    s: &'a EdgeState,
    req: &'a Parts,
    agent: std::cell::OnceCell<Option<crate::capture::agent::Classified>>,
    now: std::cell::OnceCell<Ts>,
}

impl<'a> RequestVisit<'a> {
    fn new(s: &'a EdgeState, req: &'a Parts) -> RequestVisit<'a> {
        RequestVisit { s, req, agent: Default::default(), now: Default::default() }
    }

    fn header(&self, name: &HeaderName) -> Option<&'a str> {
        self.req.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl kurz_schemas::rules::Visit for RequestVisit<'_> {
    fn agent(&self) -> Option<&kurz_schemas::Agent> {
        self.agent.get_or_init(|| self.header(&header::USER_AGENT).map(|ua| self.s.agents.shared(ua))).as_ref().map(|a| &a.0)
    }
    fn accept_language(&self) -> Option<&str> {
        self.header(&header::ACCEPT_LANGUAGE)
    }
    fn country(&self) -> Option<&str> {
        self.s.clicks.country_header.as_ref().and_then(|h| self.header(h))
    }
    fn query(&self) -> Option<&str> {
        self.req.uri.query()
    }
    fn now(&self) -> Ts {
        *self.now.get_or_init(Ts::now)
    }
}

/// What the click event needs, copied from the request: no parsing here (the flusher
/// does that, off the request path).
pub(crate) fn raw_click(
    sink: &ClickSink,
    visited: Visited,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> RawClick {
    let text = |h: &HeaderName| headers.get(h).and_then(|v| v.to_str().ok());
    let addr = peer.map(|p| sink.client_ip.of(p, headers));
    RawClick {
        visited,
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

async fn stats(s: &EdgeState, domain: Option<&str>, code: &str) -> Result<Response, ApiError> {
    let (link, _) = resolve(s, domain, code).await?;
    let link = link.ok_or_else(|| ApiError::NotFound("short link not found".into()))?;
    let clicks = s.store.click_count(link.id).await?;
    let mut out = serde_json::Map::new();
    out.insert("short_code".into(), link.short_code.clone().into());
    out.insert("original_url".into(), link.original_url.clone().into());
    out.insert("title".into(), serde_json::json!(link.title));
    out.insert("is_active".into(), link.is_active.into());
    out.insert("click_count".into(), clicks.into());
    out.insert("created_at".into(), link.created_at.to_rfc3339().into());
    out.insert("domain".into(), serde_json::json!(link.domain));
    link.options.write_json(&mut out);
    Ok(Json(serde_json::Value::Object(out)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_from_the_path_and_decoded_only_when_escaped() {
        let uri = |p: &str| p.parse::<Uri>().unwrap();
        assert!(matches!(code_of(&uri("/abc?x=1")).unwrap(), (Cow::Borrowed("abc"), None)));
        assert_eq!(code_of(&uri("/ab%63")).unwrap().0, "abc");
        assert_eq!(code_of(&uri("/abc%2B")).unwrap().0, "abc+", "an escaped + still asks for stats");
        assert_eq!(code_of(&uri("/abc/x/y%20z?q=1")).unwrap(), (Cow::Borrowed("abc"), Some("x/y%20z")));
        assert_eq!(code_of(&uri("/abc/")).unwrap(), (Cow::Borrowed("abc"), Some("")));
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
