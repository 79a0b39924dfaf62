//! `/domains` (admin): the hosts links may live on besides the default one, and the
//! fallbacks of each ([`kurz_schemas::domain`]).
//!
//! - `POST /domains` `{host, base_url_redirect?, not_found_redirect?, expired_redirect?}`
//!   registers a host (201) or replaces its fallbacks (200); `host: "default"` sets the
//!   fallbacks of every other host. A fallback left out is removed.
//! - `GET /domains` lists the registry (the default entry first, always);
//!   `GET /domains/{host}` reads one.
//! - `DELETE /domains/{host}` removes one: its links stay, and answer again once the
//!   host is registered again.
//!
//! In token mode each needs the admin token. The registry holds at most
//! [`MAX_DOMAINS`] hosts, decided in one partition.

use super::{bad, to_response};
use crate::submit::{canonical, render};
use crate::{AppState, Principal};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_schemas::domain::{DomainHost, DEFAULT, MAX_DOMAINS};
use kurz_schemas::{CommandBody, TargetUrl};
use kurz_web::{ApiError, JsonObject};

const FIELDS: [&str; 4] = ["host", "base_url_redirect", "not_found_redirect", "expired_redirect"];

/// A registry name from outside: `default`, or a [`DomainHost`] (lowercased).
fn host(raw: &str) -> Result<String, kurz_schemas::ValueError> {
    if raw.eq_ignore_ascii_case(DEFAULT) {
        return Ok(DEFAULT.to_string());
    }
    DomainHost::parse(raw).map(String::from)
}

/// A fallback target, checked as a link's target is (form, own host, deny-list).
fn fallback(s: &AppState, headers: &HeaderMap, body: &JsonObject, field: &str) -> Result<Option<TargetUrl>, ApiError> {
    let Some(raw) = body.opt_str(field)? else { return Ok(None) };
    super::urls::named_target(s, headers, field, raw).map(Some)
}

pub async fn put(State(s): State<AppState>, p: Principal, headers: HeaderMap, body: JsonObject) -> Result<Response, ApiError> {
    p.require_admin()?;
    if let Some(unknown) = body.0.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let unknown: String = unknown.chars().take(64).collect();
        return Err(bad(format!("unknown field '{unknown}'; a domain has {}", FIELDS.join(", "))));
    }
    let host = host(body.str("host")?).map_err(|e| bad(format!("host: {e}")))?;
    let cmd = CommandBody::PutDomain {
        base_url_redirect: fallback(&s, &headers, &body, "base_url_redirect")?,
        not_found_redirect: fallback(&s, &headers, &body, "not_found_redirect")?,
        expired_redirect: fallback(&s, &headers, &body, "expired_redirect")?,
        host,
    };
    let key = s.idempotency(&headers, &p.scope(), "POST /domains", &canonical(&body))?;
    let o = s.submit(key.command(p.actor(), cmd)).await?;
    Ok(to_response(render(&o)?))
}

pub async fn list(State(s): State<AppState>, p: Principal) -> Result<Response, ApiError> {
    p.require_admin()?;
    let mut domains = s.store.domains().await?;
    domains.sort_by(|a, b| (!a.is_default(), &a.host).cmp(&(!b.is_default(), &b.host)));
    let mut out: Vec<serde_json::Value> = domains.iter().map(|d| d.to_json()).collect();
    if !domains.first().is_some_and(|d| d.is_default()) {
        out.insert(
            0,
            serde_json::json!({
                "host": DEFAULT, "is_default": true, "base_url_redirect": null, "not_found_redirect": null,
                "expired_redirect": null, "created_at": null, "updated_at": null,
            }),
        );
    }
    Ok(Json(serde_json::json!({ "domains": out, "max_domains": MAX_DOMAINS })).into_response())
}

/// The registry name in a path; anything else is a 404, as an unknown host would be.
fn path_host(raw: &str) -> Result<String, ApiError> {
    host(raw).map_err(|_| ApiError::NotFound("domain not found".into()))
}

pub async fn get(State(s): State<AppState>, p: Principal, Path(raw): Path<String>) -> Result<Response, ApiError> {
    p.require_admin()?;
    let host = path_host(&raw)?;
    let d = s.store.domain(&host).await?.ok_or_else(|| ApiError::NotFound("domain not found".into()))?;
    Ok(Json(d.to_json()).into_response())
}

pub async fn delete(State(s): State<AppState>, p: Principal, headers: HeaderMap, Path(raw): Path<String>) -> Result<Response, ApiError> {
    p.require_admin()?;
    let host = path_host(&raw)?;
    let key = s.idempotency(&headers, &p.scope(), &format!("DELETE /domains/{host}"), b"")?;
    let o = s.submit(key.command(p.actor(), CommandBody::DeleteDomain { host })).await?;
    Ok(to_response(render(&o)?))
}
