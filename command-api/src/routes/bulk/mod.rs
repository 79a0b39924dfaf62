//! Bulk CSV loads. Rows become import commands, grouped by the partition their
//! aggregate lives in and chunked, so each chunk is decided by the one writer that owns
//! its keys and each row becomes one event. A row that cannot be used (bad value,
//! duplicate) is skipped and reported; the rest load. Chunk command ids derive from the
//! request's command id, so a retry with the same `Idempotency-Key` completes a load
//! that was cut off without loading any row twice.
//!
//! The CSV is read as a stream (`input.rs`) and submitted in chunks as they fill
//! (`batch.rs`): memory is bounded by the chunks in flight, not by the load's size.

use crate::codes::random_code;
use crate::{AppState, Principal};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kurz_schemas::ids::MAX_EXPLICIT_ID;
use kurz_schemas::limits::{self, MAX_CSV_FIELD_BYTES};
use kurz_schemas::options::OptionError;
use kurz_schemas::{CommandBody, DomainHost, Email, EventRow, Id, LinkOptions, LinkRow, RedirectType, ShortCode, TargetUrl, Ts, UserRow};
use kurz_web::ApiError;
use std::collections::HashMap;

mod batch;
mod input;

#[doc(hidden)]
pub use input::fuzz_rows;

use batch::{Batcher, Problems};

/// Whether the request says its body is CSV. Not `text/plain`: a cross-site HTML form
/// can send that, and no form post may load rows.
fn is_csv(headers: &HeaderMap) -> bool {
    let ctype = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "text/csv" || mime == "application/csv"
}

fn field<'a>(row: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    row.get(name).map(String::as_str).filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("null") && !v.eq_ignore_ascii_case("none"))
}

/// An optional one-line text column, within its limit.
fn text_field(row: &HashMap<String, String>, name: &'static str, max: usize) -> Result<Option<String>, String> {
    match field(row, name) {
        None => Ok(None),
        Some(v) => limits::text(name, v, max).map(|()| Some(v.to_string())).map_err(|e| e.to_string()),
    }
}

/// A row with a field past [`MAX_CSV_FIELD_BYTES`] is refused before any of it is used.
fn oversized(row: &HashMap<String, String>) -> Option<String> {
    row.iter().find(|(_, v)| v.len() > MAX_CSV_FIELD_BYTES).map(|(k, _)| format!("{k} is longer than {MAX_CSV_FIELD_BYTES} bytes"))
}

fn explicit_id(row: &HashMap<String, String>, name: &str) -> Result<Option<Id>, String> {
    match field(row, name) {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 && n < MAX_EXPLICIT_ID => Ok(Some(Id::new(n).map_err(|e| e.to_string())?)),
            _ => Err(format!("{name} '{v}' is not an integer id below 2^40")),
        },
    }
}

/// The link options a row's columns set (`valid_since`, `valid_until`, `redirect_type`,
/// `forward_query`, `forward_path`, `crawlable`, `max_visits`, and `rules` as the JSON
/// list `POST /urls` takes; absent or empty: the default), checked as
/// `POST /urls` checks them.
fn row_options(row: &HashMap<String, String>, targets: super::options::Targets<'_>) -> Result<LinkOptions, String> {
    let time =
        |name: &'static str| field(row, name).map(|v| Ts::parse_rfc3339(v).ok_or_else(|| OptionError::Time(name).to_string())).transpose();
    let flag = |name: &str| field(row, name).map(|v| parse_bool(Some(v)).map_err(|_| format!("{name} '{v}' is not a boolean"))).transpose();
    let redirect_type = field(row, "redirect_type")
        .map(|v| v.parse::<u64>().map_err(|_| OptionError::RedirectType).and_then(RedirectType::from_status).map_err(|e| e.to_string()))
        .transpose()?;
    let rules = match field(row, "rules") {
        None => Vec::new(),
        Some(cell) => {
            let list: serde_json::Value =
                serde_json::from_str(cell).map_err(|_| "rules must be a JSON array of {conditions, target}".to_string())?;
            let body = kurz_web::JsonObject(serde_json::Map::from_iter([("rules".to_string(), list)]));
            super::options::rules(&body, targets).map_err(|e| e.to_string())?.unwrap_or_default()
        }
    };
    let options = LinkOptions {
        valid_since: time("valid_since")?,
        valid_until: time("valid_until")?,
        redirect_type,
        forward_query: flag("forward_query")?,
        forward_path: flag("forward_path")?,
        rules,
        // Hashed and sealed by the route ([`MAX_PASSWORD_ROWS`]).
        password: None,
        crawlable: flag("crawlable")?,
        max_visits: field(row, "max_visits")
            .map(|v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| (1..=kurz_schemas::options::MAX_VISITS).contains(n))
                    .ok_or(OptionError::MaxVisits.to_string())
            })
            .transpose()?,
    };
    options.check().map_err(|e| e.to_string())?;
    Ok(options)
}

fn parse_bool(v: Option<&str>) -> Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(true),
        Some("true" | "t" | "1" | "yes") => Ok(true),
        Some("false" | "f" | "0" | "no") => Ok(false),
        Some(other) => Err(format!("is_active '{other}' is not a boolean")),
    }
}

/// The admin bulk loads' principal, checked from the head before the body is read.
pub struct BulkAdmin(Principal);

impl axum::extract::FromRequestParts<AppState> for BulkAdmin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, s: &AppState) -> Result<Self, ApiError> {
        let p = s.principal(&parts.headers).await?;
        p.require_admin()?;
        if !is_csv(&parts.headers) && !kurz_web::body::is_json(&parts.headers) {
            return Err(ApiError::UnsupportedMediaType(
                "send a CSV body with Content-Type: text/csv, or a JSON object {\"file\": \"<name>\"} with Content-Type: application/json"
                    .into(),
            ));
        }
        Ok(BulkAdmin(p))
    }
}

/// The load's answer: rows loaded, and the problems of those skipped.
fn answer(route: &str, count: u64, problems: Problems) -> Response {
    for pr in problems.listed.iter().take(20) {
        tracing::warn!(event = "bulk_row_skipped", endpoint = route, problem = %pr);
    }
    (StatusCode::CREATED, Json(serde_json::json!({ "count": count, "skipped": problems.count, "problems": problems.listed })))
        .into_response()
}

pub async fn users(
    State(s): State<AppState>,
    BulkAdmin(p): BulkAdmin,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    const ROUTE: &str = "POST /users/bulk";
    let (file, digest) = input::open(&s, &headers, body).await?;
    let key = s.idempotency(&headers, &p.scope(), ROUTE, &digest)?;
    let mut rows = input::rows(file).await?;
    let mut batch = Batcher::new(&s, p, key, |_, rows| CommandBody::ImportUsers { rows });
    while let Some((i, row)) = rows.recv().await {
        let parsed = (|| -> Result<UserRow, String> {
            if let Some(p) = oversized(&row) {
                return Err(p);
            }
            let email = Email::parse(field(&row, "email").ok_or("email is missing")?).map_err(|e| e.to_string())?;
            Ok(UserRow {
                id: explicit_id(&row, "id")?,
                email,
                username: text_field(&row, "username", limits::MAX_USERNAME_CHARS)?,
                created_at: field(&row, "created_at").and_then(Ts::parse),
                subject: None,
            })
        })();
        match parsed {
            Ok(r) => batch.push(0, || kurz_schemas::USERS_KEY.to_string(), r).await?,
            Err(e) => batch.problems.add(format!("row {i}: {e}")),
        }
    }
    let (count, problems) = batch.finish().await?;
    Ok(answer(ROUTE, count, problems))
}

pub async fn urls(
    State(s): State<AppState>,
    BulkAdmin(p): BulkAdmin,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    const ROUTE: &str = "POST /urls/bulk";
    let (file, digest) = input::open(&s, &headers, body).await?;
    let key = s.idempotency(&headers, &p.scope(), ROUTE, &digest)?;
    let mut rows = input::rows(file).await?;
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
    let mut batch = Batcher::new(&s, p, key, |key, rows| CommandBody::ImportLinks { key, rows });
    let targets = |field: &str, raw: &str| super::urls::named_target(&s, &headers, field, raw);
    let mut passwords = 0usize;
    // The registry is small (at most MAX_DOMAINS): read once per load.
    let mut registered: Option<std::collections::HashSet<String>> = None;
    while let Some((i, row)) = rows.recv().await {
        let domain = match field(&row, "domain") {
            None => Ok(None),
            Some(d) => match DomainHost::parse(d) {
                Err(e) => Err(e.to_string()),
                Ok(d) => {
                    if registered.is_none() {
                        registered = Some(s.store.domains().await?.into_iter().map(|d| d.host).collect());
                    }
                    match registered.as_ref().is_some_and(|r| r.contains(d.as_str())) {
                        true => Ok(Some(d)),
                        false => Err(format!("domain '{d}' is not registered")),
                    }
                }
            },
        };
        let parsed = (|| -> Result<LinkRow, String> {
            if let Some(p) = oversized(&row) {
                return Err(p);
            }
            let domain = domain?;
            let code = match field(&row, "short_code") {
                Some(c) => ShortCode::parse_lenient(c).map_err(|e| e.to_string())?,
                None => random_code(s.settings.code_len),
            };
            let url = TargetUrl::parse(field(&row, "original_url").ok_or("original_url is missing")?)
                .map_err(|e| format!("original_url: {e}"))?;
            s.settings.targets.check(&url, host).map_err(|e| format!("original_url: {e}"))?;
            Ok(LinkRow {
                id: explicit_id(&row, "id")?,
                code,
                original_url: url,
                title: text_field(&row, "title", limits::MAX_TITLE_CHARS)?,
                is_active: parse_bool(field(&row, "is_active"))?,
                user_id: explicit_id(&row, "user_id")?,
                created_at: field(&row, "created_at").and_then(Ts::parse),
                updated_at: field(&row, "updated_at").and_then(Ts::parse),
                options: row_options(&row, &targets)?,
                domain,
            })
        })();
        // A password costs an argon2 run on the bounded hashing pool: a load takes at
        // most MAX_PASSWORD_ROWS of them, and the rest are refused, never loaded
        // unprotected.
        let parsed = match (parsed, field(&row, "password")) {
            (Ok(mut r), Some(pw)) => match super::options::check_password(pw) {
                Err(e) => Err(e.to_string()),
                Ok(()) if passwords >= MAX_PASSWORD_ROWS => Err(format!("password: a load sets at most {MAX_PASSWORD_ROWS} passwords")),
                Ok(()) => {
                    passwords += 1;
                    match super::urls::sealed_password(&s, pw.to_string()).await {
                        Ok(sealed) => {
                            r.options.password = Some(sealed);
                            Ok(r)
                        }
                        Err(e) => {
                            tracing::warn!(event = "bulk_password_not_sealed", row = i, error = %e);
                            Err("password: could not be hashed and sealed now; load the row again".to_string())
                        }
                    }
                }
            },
            (parsed, _) => parsed,
        };
        match parsed {
            Ok(r) => batch.push_for_link(r.domain.clone().as_ref(), &r.code.clone(), s.command_partitions, r).await?,
            Err(e) => batch.problems.add(format!("row {i}: {e}")),
        }
    }
    let (count, problems) = batch.finish().await?;
    Ok(answer(ROUTE, count, problems))
}

/// The most rows with a `password` one load may hash (about 50 ms of a hashing
/// thread each).
pub const MAX_PASSWORD_ROWS: usize = 100;

/// Links' codes by id, for event rows: looked up once each, and at most this many kept.
const CODES_KEPT: usize = 100_000;

pub async fn events(
    State(s): State<AppState>,
    BulkAdmin(p): BulkAdmin,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    const ROUTE: &str = "POST /events/bulk";
    let (file, digest) = input::open(&s, &headers, body).await?;
    let key = s.idempotency(&headers, &p.scope(), ROUTE, &digest)?;
    let mut rows = input::rows(file).await?;
    let mut batch = Batcher::new(&s, p, key, |key, rows| CommandBody::ImportEvents { key, rows });
    let codes: quick_cache::unsync::Cache<Id, Option<(Option<DomainHost>, ShortCode)>> = quick_cache::unsync::Cache::new(CODES_KEPT);
    let mut codes = codes;
    while let Some((i, row)) = rows.recv().await {
        let parsed: Result<(Option<DomainHost>, EventRow), String> = async {
            if let Some(p) = oversized(&row) {
                return Err(p);
            }
            let url_id = explicit_id(&row, "url_id")?.ok_or("url_id is missing")?;
            let code = match codes.get(&url_id) {
                Some(c) => c.clone(),
                None => {
                    let c = s.store.link(url_id).await.map_err(|e| e.to_string())?.and_then(|l| crate::routes::urls::address(&l.link).ok());
                    codes.insert(url_id, c.clone());
                    c
                }
            }
            .ok_or_else(|| format!("url {url_id} is unknown"))?;
            let details = match field(&row, "details") {
                None => serde_json::Map::new(),
                Some(d) => match serde_json::from_str::<serde_json::Value>(d) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => return Err("details is not a JSON object".to_string()),
                },
            };
            limits::details(&details).map_err(|e| e.to_string())?;
            let event_type = field(&row, "event_type").ok_or("event_type is missing")?;
            if event_type.len() > limits::MAX_EVENT_TYPE_BYTES || event_type.chars().any(char::is_control) {
                return Err(format!("event_type must be at most {} bytes of text", limits::MAX_EVENT_TYPE_BYTES));
            }
            let (domain, code) = code;
            Ok((
                domain,
                EventRow {
                    id: explicit_id(&row, "id")?,
                    code,
                    url_id,
                    user_id: explicit_id(&row, "user_id")?,
                    event_type: event_type.to_string(),
                    timestamp: field(&row, "timestamp").and_then(Ts::parse),
                    details,
                },
            ))
        }
        .await;
        match parsed {
            Ok((domain, r)) => batch.push_for_link(domain.as_ref(), &r.code.clone(), s.command_partitions, r).await?,
            Err(e) => batch.problems.add(format!("row {i}: {e}")),
        }
    }
    let (count, problems) = batch.finish().await?;
    Ok(answer(ROUTE, count, problems))
}
