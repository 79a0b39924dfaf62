//! A bulk load's CSV, read as a stream: memory stays bounded whatever its size.
//!
//! A CSV body is spooled to an unnamed temporary file as it arrives (at most
//! [`BULK_BODY_LIMIT`] bytes, else 413); a `{"file": …}` load opens its file in the
//! import directory. A blocking task then reads the file twice: once to check it (a
//! header, UTF-8, at most [`MAX_BULK_ROWS`] rows), so a malformed file is a 400 before
//! any row loads, and once to hand its records, a bounded channel's worth at a time, to
//! the request, which groups them into chunks and submits them as they fill.

use super::is_csv;
use crate::AppState;
use axum::http::HeaderMap;
use futures::StreamExt;
use kurz_schemas::limits::MAX_BULK_ROWS;
use kurz_web::{ApiError, JsonObject, BULK_BODY_LIMIT, JSON_BODY_LIMIT};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Seek, Write};
use tokio::sync::mpsc;

/// Records in flight between the reading task and the request.
const CHANNEL_ROWS: usize = 1024;

/// One CSV row: column name (lowercased) → value. Unknown columns are ignored by the
/// callers.
pub(super) type Row = HashMap<String, String>;

/// The CSV of a bulk request, as a file positioned at its start, and a digest of the
/// request (the CSV's SHA-256, or the JSON request naming a file), which binds an
/// `Idempotency-Key` to it.
pub(super) async fn open(s: &AppState, headers: &HeaderMap, body: axum::body::Body) -> Result<(std::fs::File, [u8; 32]), ApiError> {
    if is_csv(headers) {
        return spool(body).await;
    }
    let bytes = axum::body::to_bytes(body, JSON_BODY_LIMIT).await.map_err(|e| match kurz_web::body::body_timeout(&e) {
        Some(t) => ApiError::RequestTimeout(t.to_string()),
        None => ApiError::BadRequest(format!("could not read request body: {e}")),
    })?;
    let obj = JsonObject::parse(&bytes)
        .map_err(|_| ApiError::BadRequest("send a CSV body with Content-Type: text/csv, or a JSON object {\"file\": \"<name>\"}".into()))?;
    let digest: [u8; 32] = Sha256::digest(crate::submit::canonical(&obj)).into();
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
    let path = dir.join(name);
    let name = name.to_string();
    tokio::task::spawn_blocking(move || match std::fs::File::open(&path) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => Err(ApiError::BadRequest(format!("'{name}' is not a file"))),
        Ok(f) => Ok((f, digest)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound(format!("file '{name}' not found"))),
        Err(e) => Err(ApiError::internal(e)),
    })
    .await
    .map_err(ApiError::internal)?
}

/// Writes the body to an unnamed temporary file (gone when closed), up to the bulk limit.
async fn spool(body: axum::body::Body) -> Result<(std::fs::File, [u8; 32]), ApiError> {
    let file = tokio::task::spawn_blocking(tempfile::tempfile).await.map_err(ApiError::internal)?.map_err(ApiError::internal)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    let mut digest = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match kurz_web::body::body_timeout(&e) {
            Some(t) => ApiError::RequestTimeout(t.to_string()),
            None => ApiError::BadRequest(format!("could not read request body: {e}")),
        })?;
        total += chunk.len();
        if total > BULK_BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge(BULK_BODY_LIMIT));
        }
        digest.update(&chunk);
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(ApiError::internal)?;
    }
    let mut file = file.into_std().await;
    tokio::task::spawn_blocking(move || {
        file.flush()?;
        file.rewind()?;
        Ok::<_, std::io::Error>((file, digest.finalize().into()))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

fn reader<R: std::io::Read>(input: R) -> csv::Reader<std::io::BufReader<R>> {
    csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(std::io::BufReader::new(input))
}

/// Checks the whole input (header, UTF-8, row count) and returns its column names.
fn check<R: std::io::Read>(input: R) -> Result<Vec<String>, String> {
    let mut rdr = reader(input);
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("CSV header: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let mut rec = csv::StringRecord::new();
    let mut rows = 0usize;
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => return Ok(headers),
            Ok(true) if rows >= MAX_BULK_ROWS => {
                return Err(format!("CSV rows: a bulk load takes at most {MAX_BULK_ROWS} rows; split the file"))
            }
            Ok(true) => rows += 1,
            Err(e) => return Err(format!("CSV row {}: {e}", rows + 1)),
        }
    }
}

/// The rows of `input` as a bulk load reads them, for the fuzz target (`fuzz/`): the
/// check, then every row as a column map. Not an API.
#[doc(hidden)]
pub fn fuzz_rows(input: &[u8]) -> Result<Vec<Row>, String> {
    let headers = check(input)?;
    let mut rdr = reader(input);
    let _ = rdr.headers();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("a checked input failed to read: {e}"))?;
        rows.push(headers.iter().cloned().zip(rec.iter().map(str::to_string)).collect());
    }
    Ok(rows)
}

/// The rows of a checked CSV file, in order, numbered from 1.
pub(super) async fn rows(file: std::fs::File) -> Result<mpsc::Receiver<(usize, Row)>, ApiError> {
    let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
    let (checked_tx, checked) = tokio::sync::oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let headers = match check(&file) {
            Ok(h) => h,
            Err(e) => {
                let _ = checked_tx.send(Err(e));
                return;
            }
        };
        if let Err(e) = (&file).rewind() {
            let _ = checked_tx.send(Err(format!("CSV: {e}")));
            return;
        }
        let _ = checked_tx.send(Ok(()));
        let mut rdr = reader(&file);
        let _ = rdr.headers();
        for (i, rec) in rdr.records().enumerate() {
            // Checked above; a file that changed since is cut short here.
            let Ok(rec) = rec else { return };
            let row = headers.iter().cloned().zip(rec.iter().map(str::to_string)).collect();
            if tx.blocking_send((i + 1, row)).is_err() {
                return; // the request went away
            }
        }
    });
    checked.await.map_err(ApiError::internal)?.map_err(ApiError::BadRequest)?;
    Ok(rx)
}
