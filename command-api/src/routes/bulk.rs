//! Bulk CSV loads. Rows become import commands, grouped by the partition their
//! aggregate lives in and chunked, so each chunk is decided by the one writer that owns
//! its keys and each row becomes one event. A row that cannot be used (bad value,
//! duplicate) is skipped and reported; the rest load. Chunk command ids derive from the
//! request's command id, so a retry with the same `Idempotency-Key` completes a load
//! that was cut off without loading any row twice.

use crate::codes::random_code;
use crate::submit::command_id;
use crate::{AppState, Principal};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, StreamExt, TryStreamExt};
use kurz_schemas::command::link_key;
use kurz_schemas::event::Answer;
use kurz_schemas::ids::MAX_EXPLICIT_ID;
use kurz_schemas::limits::{self, MAX_BULK_ROWS, MAX_CSV_FIELD_BYTES};
use kurz_schemas::{Command, CommandBody, CommandId, Email, EventRow, Id, LinkRow, ShortCode, TargetUrl, Ts, UserRow};
use kurz_storage::log::partition_for;
use kurz_web::{ApiError, JsonObject};
use std::collections::{BTreeMap, HashMap};

const CHUNK_ROWS: usize = 500;
const PARALLEL_CHUNKS: usize = 4;

/// Whether the request says its body is CSV. Not `text/plain`: a cross-site HTML form
/// can send that, and no form post may load rows.
fn is_csv(headers: &HeaderMap) -> bool {
    let ctype = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "text/csv" || mime == "application/csv"
}

/// The CSV of a bulk request: the body itself (`Content-Type: text/csv`), or a file in
/// the import directory named by `{"file": "<name>"}`.
async fn csv_input(s: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    if is_csv(headers) {
        return Ok(body.to_vec());
    }
    let obj = JsonObject::parse(body)
        .map_err(|_| ApiError::BadRequest("send a CSV body with Content-Type: text/csv, or a JSON object {\"file\": \"<name>\"}".into()))?;
    let name = obj.str("file")?;
    let escapes = name.is_empty() || name.contains(['/', '\\', '\0']) || name.starts_with('.') || name.contains("..");
    if escapes {
        return Err(ApiError::BadRequest("file must name a file inside the import directory".into()));
    }
    let dir = s
        .settings
        .import_dir
        .as_ref()
        .ok_or_else(|| ApiError::NotFound(format!("file '{name}' not found: no import directory is configured")))?;
    match tokio::fs::read(dir.join(name)).await {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound(format!("file '{name}' not found"))),
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => Err(ApiError::BadRequest(format!("'{name}' is not a file"))),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// CSV rows as column-name → value maps (names lowercased; unknown columns ignored by
/// the callers).
fn parse_csv(bytes: &[u8]) -> Result<Vec<HashMap<String, String>>, ApiError> {
    let mut rdr = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("CSV header: {e}")))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        if i >= MAX_BULK_ROWS {
            return Err(ApiError::BadRequest(format!("CSV rows: a bulk load takes at most {MAX_BULK_ROWS} rows; split the file")));
        }
        let rec = rec.map_err(|e| ApiError::BadRequest(format!("CSV row {}: {e}", i + 1)))?;
        rows.push(headers.iter().cloned().zip(rec.iter().map(str::to_string)).collect());
    }
    Ok(rows)
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

fn parse_bool(v: Option<&str>) -> Result<bool, String> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(true),
        Some("true" | "t" | "1" | "yes") => Ok(true),
        Some("false" | "f" | "0" | "no") => Ok(false),
        Some(other) => Err(format!("is_active '{other}' is not a boolean")),
    }
}

struct Chunk {
    key: String,
    body: CommandBody,
}

/// Rows grouped by partition, cut into commands of at most `CHUNK_ROWS`, each keyed by
/// its first row's link so it routes to the partition that owns all of them.
fn chunked<R: Clone>(
    by_partition: BTreeMap<u32, Vec<R>>,
    code: impl Fn(&R) -> &ShortCode,
    body: impl Fn(String, Vec<R>) -> CommandBody,
) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    for (p, rows) in by_partition {
        for c in rows.chunks(CHUNK_ROWS) {
            chunks.push(Chunk { key: format!("p{p}"), body: body(link_key(code(&c[0])), c.to_vec()) });
        }
    }
    chunks
}

/// Submits chunks (a few at a time) and sums their counts.
async fn submit_chunks(
    s: &AppState,
    p: Principal,
    headers: &HeaderMap,
    route: &str,
    chunks: Vec<Chunk>,
    mut problems: Vec<String>,
) -> Result<Response, ApiError> {
    let base = command_id(headers, &p.scope(), route)?;
    let outcomes: Vec<_> = stream::iter(chunks.into_iter().enumerate())
        .map(|(i, chunk)| {
            let id = CommandId(format!("{}/{}/{i}", base.as_str(), chunk.key));
            s.submit(Command::new(id, p.actor(), chunk.body))
        })
        .buffered(PARALLEL_CHUNKS)
        .try_collect()
        .await?;
    let mut count = 0;
    for o in outcomes {
        match o.answer {
            Answer::Count { count: c, skipped } => {
                count += c;
                problems.extend(skipped);
            }
            Answer::Rejected { message } => return Err(ApiError::Status(o.status, message)),
            other => return Err(ApiError::internal(format!("unexpected answer to an import: {other:?}"))),
        }
    }
    for pr in problems.iter().take(20) {
        tracing::warn!(event = "bulk_row_skipped", endpoint = route, problem = %pr);
    }
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "count": count, "skipped": problems.len(), "problems": problems.iter().take(100).collect::<Vec<_>>() })),
    )
        .into_response())
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

async fn admin_csv(s: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Vec<HashMap<String, String>>, ApiError> {
    parse_csv(&csv_input(s, headers, body).await?)
}

pub async fn users(
    State(s): State<AppState>,
    BulkAdmin(p): BulkAdmin,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let rows = admin_csv(&s, &headers, &body).await?;
    let mut problems = Vec::new();
    let mut good = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let parsed = (|| -> Result<UserRow, String> {
            if let Some(p) = oversized(row) {
                return Err(p);
            }
            let email = Email::parse(field(row, "email").ok_or("email is missing")?).map_err(|e| e.to_string())?;
            Ok(UserRow {
                id: explicit_id(row, "id")?,
                email,
                username: text_field(row, "username", limits::MAX_USERNAME_CHARS)?,
                created_at: field(row, "created_at").and_then(Ts::parse),
            })
        })();
        match parsed {
            Ok(r) => good.push(r),
            Err(e) => problems.push(format!("row {}: {e}", i + 1)),
        }
    }
    let chunks = good
        .chunks(CHUNK_ROWS)
        .map(|c| Chunk { key: kurz_schemas::USERS_KEY.to_string(), body: CommandBody::ImportUsers { rows: c.to_vec() } })
        .collect();
    submit_chunks(&s, p, &headers, "POST /users/bulk", chunks, problems).await
}

pub async fn urls(
    State(s): State<AppState>,
    BulkAdmin(p): BulkAdmin,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let rows = admin_csv(&s, &headers, &body).await?;
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
    let mut problems = Vec::new();
    let mut by_partition: BTreeMap<u32, Vec<LinkRow>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let parsed = (|| -> Result<LinkRow, String> {
            if let Some(p) = oversized(row) {
                return Err(p);
            }
            let code = match field(row, "short_code") {
                Some(c) => ShortCode::parse_lenient(c).map_err(|e| e.to_string())?,
                None => random_code(s.settings.code_len),
            };
            let url =
                TargetUrl::parse(field(row, "original_url").ok_or("original_url is missing")?).map_err(|e| format!("original_url: {e}"))?;
            s.settings.targets.check(&url, host).map_err(|e| format!("original_url: {e}"))?;
            Ok(LinkRow {
                id: explicit_id(row, "id")?,
                code,
                original_url: url,
                title: text_field(row, "title", limits::MAX_TITLE_CHARS)?,
                is_active: parse_bool(field(row, "is_active"))?,
                user_id: explicit_id(row, "user_id")?,
                created_at: field(row, "created_at").and_then(Ts::parse),
                updated_at: field(row, "updated_at").and_then(Ts::parse),
            })
        })();
        match parsed {
            Ok(r) => by_partition.entry(partition_for(&link_key(&r.code), s.command_partitions)).or_default().push(r),
            Err(e) => problems.push(format!("row {}: {e}", i + 1)),
        }
    }
    let chunks = chunked(by_partition, |r| &r.code, |key, rows| CommandBody::ImportLinks { key, rows });
    submit_chunks(&s, p, &headers, "POST /urls/bulk", chunks, problems).await
}

pub async fn events(
    State(s): State<AppState>,
    BulkAdmin(p): BulkAdmin,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let rows = admin_csv(&s, &headers, &body).await?;
    let mut problems = Vec::new();
    let mut by_partition: BTreeMap<u32, Vec<EventRow>> = BTreeMap::new();
    let mut codes: HashMap<Id, Option<ShortCode>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let parsed: Result<EventRow, String> = async {
            if let Some(p) = oversized(row) {
                return Err(p);
            }
            let url_id = explicit_id(row, "url_id")?.ok_or("url_id is missing")?;
            let code = match codes.get(&url_id) {
                Some(c) => c.clone(),
                None => {
                    let c = s
                        .store
                        .link(url_id)
                        .await
                        .map_err(|e| e.to_string())?
                        .and_then(|l| ShortCode::parse_lenient(&l.link.short_code).ok());
                    codes.insert(url_id, c.clone());
                    c
                }
            }
            .ok_or_else(|| format!("url {url_id} is unknown"))?;
            let details = match field(row, "details") {
                None => serde_json::Map::new(),
                Some(d) => match serde_json::from_str::<serde_json::Value>(d) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => return Err("details is not a JSON object".to_string()),
                },
            };
            limits::details(&details).map_err(|e| e.to_string())?;
            let event_type = field(row, "event_type").ok_or("event_type is missing")?;
            if event_type.len() > limits::MAX_EVENT_TYPE_BYTES || event_type.chars().any(char::is_control) {
                return Err(format!("event_type must be at most {} bytes of text", limits::MAX_EVENT_TYPE_BYTES));
            }
            Ok(EventRow {
                id: explicit_id(row, "id")?,
                code,
                url_id,
                user_id: explicit_id(row, "user_id")?,
                event_type: event_type.to_string(),
                timestamp: field(row, "timestamp").and_then(Ts::parse),
                details,
            })
        }
        .await;
        match parsed {
            Ok(r) => by_partition.entry(partition_for(&link_key(&r.code), s.command_partitions)).or_default().push(r),
            Err(e) => problems.push(format!("row {}: {e}", i + 1)),
        }
    }
    let chunks = chunked(by_partition, |r| &r.code, |key, rows| CommandBody::ImportEvents { key, rows });
    submit_chunks(&s, p, &headers, "POST /events/bulk", chunks, problems).await
}
