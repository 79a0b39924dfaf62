//! Password-protected links ([`kurz_schemas::LinkOptions::password`]).
//!
//! `GET /{code}` of a protected link answers a small HTML form (200, no `Location`), or
//! a 401 JSON error to a client that asks for JSON. The form posts the password back to
//! the same address: `POST /{code}` (or `/{code}/rest`, with the same query) with the
//! form field `password` redirects like a `GET` of an unprotected link would, and
//! records the click; a wrong password answers 401.
//!
//! What a guess may cost, checked in this order before the password is read:
//! - guesses per client address (`KURZ_RATE_AUTH`, the sign-in limit);
//! - the link, from the cache: 404 for none (or a path it does not forward), 405 for
//!   one without a password, before the body is read;
//! - a body of at most [`MAX_FORM`] bytes, as `application/x-www-form-urlencoded`;
//! - failed guesses per address and per link ([`kurz_web::lockout::Lockout`]): after
//!   [`ADDRESS_FREE_FAILURES`] (per address) or [`LINK_FREE_FAILURES`] (per link, from
//!   any address) wrong guesses in a row, guesses are refused without running argon2,
//!   for 1 s doubling up to 15 min;
//! - argon2 runs on the process's bounded hashing pool (`kurz_web::hashing`: 429 when
//!   it is full).

use super::redirect::{answer_visit, Visitor};
use crate::EdgeState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kurz_schemas::personal::SubjectKey;
use kurz_web::lockout::Lockout;
use kurz_web::ApiError;
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest unlock form read, in bytes (a 256-byte password, percent-encoded, fits).
pub const MAX_FORM: usize = 1024;
/// Wrong guesses in a row from one address before it waits.
pub const ADDRESS_FREE_FAILURES: u32 = 5;
/// Wrong guesses in a row at one link, from any address, before it waits: higher than
/// per address, so one guesser cannot lock a link's visitors out at once.
pub const LINK_FREE_FAILURES: u32 = 20;

/// What this edge needs to open a protected link: the key vault its password hashes are
/// sealed under, and the limits on guessing.
pub struct Unlock {
    pub keys: Arc<kurz_storage::vault::Keyring>,
    /// Guesses per client address; `None` with rate limits off.
    pub attempts: Option<kurz_web::ratelimit::ByAddress>,
    pub by_address: Lockout,
    pub by_link: Lockout,
}

impl Unlock {
    /// `limits_on`: `KURZ_RATE_LIMITS` (off turns the lockouts off too).
    pub fn new(keys: Arc<kurz_storage::vault::Keyring>, attempts: Option<kurz_web::ratelimit::ByAddress>, limits_on: bool) -> Unlock {
        Unlock {
            keys,
            attempts,
            by_address: Lockout::of("wrong passwords from this address", limits_on, ADDRESS_FREE_FAILURES),
            by_link: Lockout::of("wrong passwords for this link", limits_on, LINK_FREE_FAILURES),
        }
    }
}

const FORM: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><meta name="robots" content="noindex,nofollow"><title>Password required</title>
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}input,button{font:inherit;width:100%;margin:.4rem 0;padding:.5rem;box-sizing:border-box}</style></head>
<body><h1>Password required</h1><p>MESSAGE</p>
<form method="post"><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required autofocus maxlength="256"><button type="submit">Continue</button></form>
</body></html>
"#;

/// Whether the caller asked for JSON rather than a page: `Accept` names
/// `application/json` and not `text/html`.
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// The answer to a visit of a protected link without its password: the form (200, or
/// 401 after a wrong one), or a 401 JSON error for a JSON client. Never a `Location`,
/// never cached or framed; the page holds no link data, only fixed text.
pub(crate) fn challenge(headers: &HeaderMap, wrong: bool) -> Response {
    if wants_json(headers) {
        let why = if wrong { "wrong password" } else { "this link is password protected: POST the form field `password` to this address" };
        return ApiError::Unauthorized(why.into()).into_response();
    }
    let message = if wrong { "Wrong password. Try again." } else { "This link is protected. Enter its password to continue." };
    let status = if wrong { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let mut resp = (status, FORM.replace("MESSAGE", message)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// `POST /{code}` and `POST /{code}/{*rest}` (module docs).
pub async fn unlock(State(s): State<EdgeState>, req: Request) -> Result<Response, ApiError> {
    let Some(u) = s.unlock.as_ref() else {
        return Err(ApiError::internal("this edge was built without a key vault: it cannot open protected links"));
    };
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip());
    if let (Some(l), Some(peer)) = (&u.attempts, peer) {
        let key = kurz_web::ratelimit::ip_key(l.client.of(peer, req.headers()));
        if let kurz_web::ratelimit::Checked::Refused(resp, wait) = l.limiter.check(&key) {
            return Ok(kurz_web::ratelimit::tarpit(resp, wait).await);
        }
    }
    let (parts, body) = req.into_parts();
    // The link first: a POST to anything but a protected link is answered as the path
    // answers other methods (404 for no link, 405 for a link without a password) before
    // a byte of the body is read.
    let (code, rest) = super::redirect::code_of(&parts.uri)?;
    let domain = s.domains.domain_of(&parts.headers, &parts.uri);
    let (link, source) = super::redirect::resolve(&s, domain.as_deref(), &code).await?;
    let Some(link) = link.filter(|l| l.is_active && l.options.live_at(kurz_schemas::Ts::now())) else {
        return Err(ApiError::NotFound("short link not found or inactive".into()));
    };
    if rest.is_some_and(|r| !r.is_empty()) && !link.options.forwards_path() {
        return Err(ApiError::NotFound("short link not found or inactive".into()));
    }
    let Some(sealed) = link.options.password.clone() else {
        return Err(ApiError::Status(405, "this link takes no password: GET it".into()));
    };
    let form = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !form.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::UnsupportedMediaType("send the password as application/x-www-form-urlencoded, field `password`".into()));
    }
    let body = axum::body::to_bytes(body, MAX_FORM).await.map_err(|e| match kurz_web::body::body_timeout(&e) {
        Some(t) => ApiError::RequestTimeout(t.to_string()),
        None => ApiError::PayloadTooLarge(MAX_FORM),
    })?;
    let password = url::form_urlencoded::parse(&body).find(|(k, _)| k == "password").map(|(_, v)| v.into_owned());
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Err(ApiError::BadRequest("the form field `password` is required".into()));
    };

    let address = peer.map(|p| format!("{}", kurz_web::ratelimit::ip_key(s.clicks.client_ip.of(p, &parts.headers))));
    let link_key = link.id.to_string();
    if let Some(a) = &address {
        u.by_address.refuse_if_locked(a).await?;
    }
    u.by_link.refuse_if_locked(&link_key).await?;

    let (link, phc) = match open(u, &sealed).await? {
        Some(phc) => (link, phc),
        // The cache held the link's version from before its password was replaced,
        // whose key was erased with it: the store holds the current one (and the cache
        // gets it too).
        None => {
            let key = link.lookup_key().into_owned();
            let fresh = s.store.link_by_code(&key).await?;
            let entry = kurz_schemas::CachedLink::read(fresh.map(|vl| (vl.link, vl.version)));
            let _ = s.cache.offer(&key, entry.clone()).await;
            let Some(fresh) = entry.link.filter(|l| l.is_active) else {
                return Err(ApiError::NotFound("short link not found or inactive".into()));
            };
            let Some(fresh_sealed) = fresh.options.password.clone() else {
                return Err(ApiError::Status(405, "this link takes no password: GET it".into()));
            };
            if fresh_sealed.subject == sealed.subject {
                return Err(ApiError::internal(format!(
                    "the password key of subject {} is erased, and the store still holds it",
                    sealed.subject
                )));
            }
            let sealed = fresh_sealed;
            let phc = open(u, &sealed)
                .await?
                .ok_or_else(|| ApiError::internal(format!("the password key of subject {} is erased", sealed.subject)))?;
            (fresh, phc)
        }
    };
    if !kurz_web::hashing::verify_password(Some(phc), password).await? {
        if let Some(a) = &address {
            u.by_address.failed(a);
        }
        u.by_link.failed(&link_key);
        crate::metrics::unlocks("wrong").inc();
        return Ok(challenge(&parts.headers, true));
    }
    if let Some(a) = &address {
        u.by_address.succeeded(a);
    }
    u.by_link.succeeded(&link_key);
    crate::metrics::unlocks("right").inc();
    // The redirect a GET of an unprotected link would give, with its click, but always a
    // 302 kept by no cache: a 307 or 308 would make the browser post the password on to
    // the target, and a kept 301 would skip the password next time.
    let mut resp = answer_visit(&s, Some(link), source, rest, &parts, peer, Visitor::Unlocked).await?;
    if resp.status().is_redirection() {
        *resp.status_mut() = StatusCode::FOUND;
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The link's password hash, opened with its key from the vault; `None` if the key was
/// erased (the password was replaced or removed since this copy of the link). A key the
/// vault does not know or a seal that does not open is an internal error (logged once),
/// never a match.
async fn open(u: &Unlock, sealed: &kurz_schemas::sealed::Sealed) -> Result<Option<String>, ApiError> {
    u.keys.load_all(std::slice::from_ref(&sealed.subject)).await?;
    let key = match u.keys.key(&sealed.subject) {
        Some(SubjectKey::Live(key)) => key,
        Some(_) => return Ok(None),
        None => return Err(ApiError::internal(format!("the password key of subject {} is not in the vault", sealed.subject))),
    };
    let plain = kurz_schemas::sealed::open(&key, sealed).map_err(ApiError::internal)?;
    String::from_utf8(plain).map(Some).map_err(ApiError::internal)
}
