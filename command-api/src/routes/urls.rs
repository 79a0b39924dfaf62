use super::{bad, path_id, to_response};
use crate::codes::{keyed_code, random_code};
use crate::submit::{canonical, render, Idempotency};
use crate::{AppState, Principal};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_schemas::event::Answer;
use kurz_schemas::limits;
use kurz_schemas::{Command, CommandBody, CommandId, DomainHost, Id, Link, LinkOptions, ShortCode, TargetUrl};
use kurz_storage::store::StoredOutcome;
use kurz_web::{ApiError, JsonObject};

/// Attempts at drawing a free generated code before giving up (a collision at 7 base62
/// characters needs billions of links; five in a row means something is wrong).
const CODE_ATTEMPTS: u32 = 5;

/// A redirect target from a request: its form, then the policy (own host, deny-list).
pub(crate) fn target(s: &AppState, headers: &HeaderMap, raw: &str) -> Result<TargetUrl, ApiError> {
    let url = TargetUrl::parse(raw).map_err(|e| bad(format!("original_url: {e}")))?;
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
    s.settings.targets.check(&url, host).map_err(|e| bad(format!("original_url: {e}")))?;
    Ok(url)
}

/// A redirect target from field `field` of a request (a rule's): checked as
/// `original_url` is, the refusal naming the field.
pub(crate) fn named_target(s: &AppState, headers: &HeaderMap, field: &str, raw: &str) -> Result<TargetUrl, ApiError> {
    target(s, headers, raw).map_err(|e| match e {
        ApiError::BadRequest(m) => ApiError::BadRequest(m.replacen("original_url", field, 1)),
        other => other,
    })
}

/// The optional `title`, within its limit.
fn title(body: &JsonObject) -> Result<Option<String>, ApiError> {
    let t = body.opt_str("title")?;
    if let Some(t) = t {
        limits::text("title", t, limits::MAX_TITLE_CHARS).map_err(bad)?;
    }
    Ok(t.map(str::to_string))
}

/// The owner a new link gets: a session user always owns what it creates.
async fn owner_for(s: &AppState, p: Principal, requested: Option<u64>) -> Result<Option<Id>, ApiError> {
    let requested = requested.map(|v| Id::new(v).map_err(|_| ApiError::NotFound("user not found".into()))).transpose()?;
    let owner = match (p, requested) {
        (Principal::User(me), Some(other)) if other != me => {
            return Err(ApiError::Forbidden("links can only be created for yourself".into()))
        }
        (Principal::User(me), _) => Some(me),
        (_, r) => r,
    };
    if let Some(u) = owner {
        if s.store.user(u).await?.is_none() {
            return Err(ApiError::NotFound("user not found".into()));
        }
    }
    Ok(owner)
}

struct NewLink {
    url: TargetUrl,
    title: Option<String>,
    owner: Option<Id>,
    options: LinkOptions,
    domain: Option<DomainHost>,
}

/// The optional `domain` of a new link: a registered domain ([`kurz_schemas::domain`]).
/// A domain deleted while the link is created leaves a link that answers once the
/// domain is registered again.
async fn domain(s: &AppState, body: &JsonObject) -> Result<Option<DomainHost>, ApiError> {
    let Some(raw) = body.opt_str("domain")? else { return Ok(None) };
    let host = DomainHost::parse(raw).map_err(bad)?;
    if s.store.domain(host.as_str()).await?.is_none() {
        return Err(bad(format!("domain '{host}' is not registered (POST /domains)")));
    }
    Ok(Some(host))
}

/// How a stored link is addressed: its domain and code, as its commands route.
pub(crate) fn address(link: &Link) -> Result<(Option<DomainHost>, ShortCode), ApiError> {
    let code = ShortCode::parse_lenient(&link.short_code).map_err(ApiError::internal)?;
    let domain = link.domain.as_deref().map(DomainHost::parse).transpose().map_err(ApiError::internal)?;
    Ok((domain, code))
}

/// Creates a link under `alias`, or under generated codes until one is free.
/// `derive`: draw codes from the link's identity (for `/shorten`), so concurrent
/// requests for the same URL meet at the same code.
async fn create_link(
    s: &AppState,
    key: Idempotency,
    p: Principal,
    link: NewLink,
    alias: Option<ShortCode>,
    derive: bool,
) -> Result<StoredOutcome, ApiError> {
    let base = key.id.clone();
    let keyed = key.keyed();
    let attempts = if alias.is_some() { 1 } else { CODE_ATTEMPTS };
    for attempt in 0..attempts {
        let code = match &alias {
            Some(a) => a.clone(),
            None if derive => {
                let owner = link.owner.map(|o| o.get().to_string()).unwrap_or_default();
                let domain = link.domain.as_ref().map_or("", DomainHost::as_str);
                // A link on no domain keeps the code it always derived.
                let parts: &[&[u8]] = match domain {
                    "" => &[b"shorten", owner.as_bytes(), link.url.as_str().as_bytes()],
                    d => &[b"shorten", owner.as_bytes(), link.url.as_str().as_bytes(), d.as_bytes()],
                };
                keyed_code(s.auth.secret(), parts, attempt, s.settings.code_len)
            }
            None if keyed => keyed_code(s.auth.secret(), &[b"create", base.as_str().as_bytes()], attempt, s.settings.code_len),
            None => random_code(s.settings.code_len),
        };
        let id = if attempt == 0 { base.clone() } else { CommandId(format!("{}#{attempt}", base.as_str())) };
        let body = CommandBody::CreateLink {
            code,
            custom: alias.is_some(),
            original_url: link.url.clone(),
            title: link.title.clone(),
            user_id: link.owner,
            existing_ok: derive,
            options: link.options.clone(),
            domain: link.domain.clone(),
        };
        let o = s.submit(Command::new(id, p.actor(), body).with_fingerprint(key.fingerprint.clone())).await?;
        if o.status == 409 && alias.is_none() {
            continue; // the generated code is taken: draw the next one
        }
        return Ok(o);
    }
    Err(ApiError::Unavailable("could not find a free short code".into()))
}

pub async fn create(State(s): State<AppState>, p: Principal, headers: HeaderMap, body: JsonObject) -> Result<Response, ApiError> {
    let url = target(&s, &headers, body.str("original_url")?)?;
    let title = title(&body)?;
    let user_id = body.opt_id("user_id")?;
    let alias = body.opt_str("short_code")?.map(ShortCode::parse).transpose().map_err(bad)?;
    let mut options = super::options::of_new(&body, &|field, raw| named_target(&s, &headers, field, raw))?;
    let password = super::options::password(&body)?;
    let owner = owner_for(&s, p, user_id).await?;
    let domain = domain(&s, &body).await?;
    if let Some(Some(password)) = password {
        options.password = Some(sealed_password(&s, password).await?);
    }
    let key = s.idempotency(&headers, &p.scope(), "POST /urls", &canonical(&body))?;
    let o = create_link(&s, key, p, NewLink { url, title, owner, options, domain }, alias, false).await?;
    Ok(to_response(render(&o)?))
}

pub async fn shorten(State(s): State<AppState>, p: Principal, headers: HeaderMap, body: JsonObject) -> Result<Response, ApiError> {
    let url = target(&s, &headers, body.str("url")?).map_err(|e| match e {
        ApiError::BadRequest(m) => ApiError::BadRequest(m.replacen("original_url", "url", 1)),
        other => other,
    })?;
    let title = title(&body)?;
    let user_id = body.opt_id("user_id")?;
    let owner = owner_for(&s, p, user_id).await?;
    let domain = domain(&s, &body).await?;
    let base = short_base(&s, &headers);
    let existing = s.store.active_link_for(owner, url.as_str()).await?;
    if let Some(existing) = existing.filter(|l| l.domain.as_deref() == domain.as_ref().map(DomainHost::as_str)) {
        return Ok((StatusCode::OK, Json(shorten_json(&base, &existing))).into_response());
    }
    let key = s.idempotency(&headers, &p.scope(), "POST /shorten", &canonical(&body))?;
    let new = NewLink { url, title, owner, options: LinkOptions::default(), domain };
    let o = create_link(&s, key, p, new, None, true).await?;
    match &o.answer {
        Answer::Link { link } => {
            Ok((StatusCode::from_u16(o.status).unwrap_or(StatusCode::CREATED), Json(shorten_json(&base, link))).into_response())
        }
        _ => Ok(to_response(render(&o)?)),
    }
}

fn short_base(s: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &s.settings.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// `/shorten`'s answer. A link on a domain gets its short URL there, with the scheme
/// of the default one.
fn shorten_json(base: &str, l: &Link) -> serde_json::Value {
    let base = match &l.domain {
        None => base.to_string(),
        Some(d) => format!("{}://{d}", base.split_once("://").map_or("https", |(scheme, _)| scheme)),
    };
    serde_json::json!({
        "id": l.id,
        "short_code": l.short_code,
        "short_url": format!("{base}/{}", l.short_code),
        "domain": l.domain,
        "original_url": l.original_url,
        "title": l.title,
    })
}

/// A link password as the link keeps it: hashed with argon2id on the hashing pool (429
/// when it is full), then sealed under a fresh data key of its own in the key vault, so
/// the public events topic never carries the hash in the clear
/// ([`kurz_schemas::LinkOptions::password`]).
pub(crate) async fn sealed_password(s: &AppState, password: String) -> Result<kurz_schemas::sealed::Sealed, ApiError> {
    let phc = kurz_web::hashing::hash_password(password).await?;
    let subject = s.keys.mint().await?;
    let Some(kurz_schemas::personal::SubjectKey::Live(key)) = s.keys.key(&subject) else {
        return Err(ApiError::internal(format!("the key of subject {subject} was minted but is not loaded")));
    };
    Ok(kurz_schemas::sealed::seal(&key, kurz_storage::vault::Keyring::nonce(), &subject, phc.as_bytes()))
}

/// Once a decided update replaced a link's password, or a delete removed the link, the
/// old password's key is erased: the hash sealed under it, in the log and in every
/// copy, can no longer be opened (crypto-shredding). Best effort: a failure is logged
/// and leaves a key nobody uses.
async fn forget_password(s: &AppState, before: &Link, o: &StoredOutcome) {
    let Some(old) = before.options.password.as_ref().filter(|_| (200..300).contains(&o.status)) else { return };
    // A retried update answers the outcome it already had: the link as read may already
    // hold that update's password, which stays.
    if let Answer::Link { link } = &o.answer {
        if link.options.password.as_ref().is_some_and(|p| p.subject == old.subject) {
            return;
        }
    }
    if let Err(e) = s.keys.erase(&old.subject, kurz_schemas::Ts::now().0).await {
        tracing::warn!(event = "link_password_key_not_erased", link = before.id.get(), error = %e);
    }
}

async fn existing_link(s: &AppState, raw: &str) -> Result<Link, ApiError> {
    let id = path_id(raw, "url")?;
    Ok(s.store.link(id).await?.ok_or_else(|| ApiError::NotFound("url not found".into()))?.link)
}

pub async fn update(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    p: Principal,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let link = existing_link(&s, &raw).await?;
    let title = title(&body)?;
    let original_url = body.opt_str("original_url")?.map(|u| target(&s, &headers, u)).transpose()?;
    let is_active = body.opt_bool("is_active")?;
    let mut options = super::options::patch(&body, &|field, raw| named_target(&s, &headers, field, raw))?;
    options.password = match super::options::password(&body)? {
        Some(Some(password)) => Some(Some(sealed_password(&s, password).await?)),
        other => other.map(|_| None),
    };
    let (domain, code) = address(&link)?;
    let key = s.idempotency(&headers, &p.scope(), &format!("PUT /urls/{}", link.id), &canonical(&body))?;
    let replaced = options.password.is_some();
    let cmd = CommandBody::UpdateLink { code, id: link.id, title, original_url, is_active, owner: p.owner(), options, domain };
    let o = s.submit(key.command(p.actor(), cmd)).await?;
    if replaced {
        forget_password(&s, &link, &o).await;
    }
    Ok(to_response(render(&o)?))
}

pub async fn delete(State(s): State<AppState>, Path(raw): Path<String>, p: Principal, headers: HeaderMap) -> Result<Response, ApiError> {
    let link = existing_link(&s, &raw).await?;
    let (domain, code) = address(&link)?;
    let key = s.idempotency(&headers, &p.scope(), &format!("DELETE /urls/{}", link.id), b"")?;
    let o = s.submit(key.command(p.actor(), CommandBody::DeleteLink { code, id: link.id, owner: p.owner(), domain })).await?;
    forget_password(&s, &link, &o).await;
    Ok(to_response(render(&o)?))
}
