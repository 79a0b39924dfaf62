//! `kurz import <dir>`: loads a CSV history like the replaced service's (`users.csv`,
//! `urls.csv`, `events.csv`) with its ids and timestamps.
//!
//! `users.csv` and `urls.csv` are the final state and become `UserCreated` /
//! `LinkCreated` events (imported: no history row of their own). `events.csv` is the
//! history behind them: its rows become history that `/events` serves, and are not
//! re-applied to the links (an `updated` row does not change a link, a `deleted` row
//! does not delete one), so the links keep the state `urls.csv` gives them.
//!
//! The rows go through the bulk routes of a command-api (`POST /users/bulk`, …), so
//! every row is decided like any other write: ids already present are skipped, which
//! makes a second import a no-op. With `--url` that is a running deployment; without,
//! kurz starts in this process on the configured storage (the embedded default while
//! no other kurz holds it), imports, waits for the read model and stops.
//!
//! Before loading, the files are checked against each other, and every inconsistent
//! row is reported without stopping the import: a history row of an unknown link or
//! user, a change older than its link's creation, a `deleted` row of a link that
//! `urls.csv` says is active, a link of an unknown user.

use super::Remote;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Directory holding users.csv, urls.csv and events.csv (any of them).
    dir: PathBuf,
    /// A running command-api to load through (e.g. http://127.0.0.1:8080). Unset: kurz
    /// starts in this process on the configured storage, imports and stops.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url (the admin token, in token mode).
    #[arg(long, env = "KURZ_IMPORT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Rows per bulk request.
    #[arg(long, default_value_t = 5000)]
    chunk: usize,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// The kurz that imports when no --url is given.
    #[command(flatten)]
    config: crate::Config,
}

pub fn main(a: Args) -> ExitCode {
    super::run("import", async {
        let report = run(a.dir, a.url, a.token, a.chunk, a.config).await?;
        super::print(&report, a.json, Report::render);
        Ok::<_, crate::Error>(())
    })
}

/// The files, in load order: users before the links they own, links before history.
pub const FILES: [(&str, &str); 3] = [("users.csv", "/users/bulk"), ("urls.csv", "/urls/bulk"), ("events.csv", "/events/bulk")];

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct FileReport {
    pub file: String,
    pub rows: u64,
    /// Rows that became events now.
    pub imported: u64,
    /// Rows skipped because their id (or email, or short code) is already there: a
    /// second import skips everything.
    pub skipped: u64,
    /// Why rows were skipped (at most 100 per request, as the bulk routes answer).
    pub skipped_examples: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub files: Vec<FileReport>,
    /// Inconsistent rows by kind; each entry names the file, row and ids.
    pub inconsistencies: BTreeMap<&'static str, Vec<String>>,
}

impl Report {
    /// A human summary: counts per file and per kind of inconsistency, then every
    /// inconsistent row.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            out += &format!("{}: {} rows, {} imported, {} already present\n", f.file, f.rows, f.imported, f.skipped);
        }
        let total: usize = self.inconsistencies.values().map(Vec::len).sum();
        out += &format!("{total} inconsistent rows (imported as they are):\n");
        for (kind, rows) in &self.inconsistencies {
            out += &format!("  {kind}: {}\n", rows.len());
        }
        for (kind, rows) in &self.inconsistencies {
            for r in rows {
                out += &format!("{kind}: {r}\n");
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}: {1}")]
    File(PathBuf, String),
    #[error("{endpoint}: HTTP {status}: {body}")]
    Rejected { endpoint: String, status: u16, body: String },
    #[error("{0}")]
    Http(String),
}

type Row = HashMap<String, String>;

fn read_rows(path: &Path) -> Result<Vec<Row>, ImportError> {
    let err = |e: &dyn std::fmt::Display| ImportError::File(path.to_path_buf(), e.to_string());
    let mut r = csv::Reader::from_path(path).map_err(|e| err(&e))?;
    let headers = r.headers().map_err(|e| err(&e))?.clone();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| err(&e))?;
        rows.push(headers.iter().zip(rec.iter()).map(|(h, v)| (h.trim().to_string(), v.trim().to_string())).collect());
    }
    Ok(rows)
}

/// Timestamps as the files write them (`2025-12-02 03:44:06`, or RFC 3339), as
/// milliseconds, so differently written times compare correctly.
fn millis(s: &str) -> Option<i64> {
    kurz_schemas::Ts::parse(s).map(|t| t.0)
}

/// Every inconsistent row of the three files (those present in `dir`).
pub fn check(dir: &Path) -> Result<BTreeMap<&'static str, Vec<String>>, ImportError> {
    let load = |name: &str| -> Result<Vec<Row>, ImportError> {
        let p = dir.join(name);
        if p.exists() {
            read_rows(&p)
        } else {
            Ok(Vec::new())
        }
    };
    let (users, urls, events) = (load("users.csv")?, load("urls.csv")?, load("events.csv")?);
    let get = |r: &Row, k: &str| r.get(k).cloned().unwrap_or_default();
    let user_ids: HashSet<String> = users.iter().map(|r| get(r, "id")).collect();
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut links: HashMap<String, (Option<i64>, bool)> = HashMap::new();
    for (i, r) in urls.iter().enumerate() {
        let (id, user) = (get(r, "id"), get(r, "user_id"));
        if !user.is_empty() && !users.is_empty() && !user_ids.contains(&user) {
            out.entry("link_of_unknown_user")
                .or_default()
                .push(format!("urls.csv row {} (url {id}): user_id {user} is not in users.csv", i + 1));
        }
        let active = matches!(get(r, "is_active").to_ascii_lowercase().as_str(), "true" | "1" | "t" | "yes");
        links.insert(id, (millis(&get(r, "created_at")), active));
    }
    for (i, r) in events.iter().enumerate() {
        let (id, url, user, kind, at) = (get(r, "id"), get(r, "url_id"), get(r, "user_id"), get(r, "event_type"), get(r, "timestamp"));
        let row = format!("events.csv row {} (event {id}, url {url})", i + 1);
        let Some((created, active)) = links.get(&url) else {
            out.entry("history_of_unknown_link").or_default().push(format!("{row}: url_id {url} is not in urls.csv"));
            continue;
        };
        if !user.is_empty() && !users.is_empty() && !user_ids.contains(&user) {
            out.entry("history_of_unknown_user").or_default().push(format!("{row}: user_id {user} is not in users.csv"));
        }
        if kind != "created" {
            if let (Some(c), Some(t)) = (created, millis(&at)) {
                if t < *c {
                    let kind_name = match kind.as_str() {
                        "updated" => "update_before_create",
                        "deleted" => "delete_before_create",
                        _ => "change_before_create",
                    };
                    out.entry(kind_name).or_default().push(format!("{row}: {kind} at {at}, before the link was created"));
                }
            }
        }
        if kind == "deleted" && *active {
            out.entry("deleted_but_active").or_default().push(format!("{row}: deleted, but urls.csv has the link active"));
        }
    }
    Ok(out)
}

/// Checks `dir`'s files, then loads them: through the command-api at `url`, or through
/// kurz started in this process on `cfg`'s storage.
pub async fn run(
    dir: PathBuf,
    url: Option<String>,
    token: Option<String>,
    chunk: usize,
    cfg: crate::Config,
) -> Result<Report, crate::Error> {
    let inconsistencies = check(&dir)?;
    let files = match url {
        Some(base) => load(&dir, &remote(&base, token)?, chunk).await?,
        None => {
            let token = match cfg.auth {
                kurz_command_api::AuthMode::Token => Some(crate::secrets::admin_token(cfg.admin_token.as_deref(), cfg.storage.data_dir())?),
                kurz_command_api::AuthMode::Open => None,
            };
            let app = crate::App::build(cfg).await?;
            // A loopback port only this import knows.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let remote = remote(&format!("http://{}", listener.local_addr()?), token)?;
            let stop = tokio_util::sync::CancellationToken::new();
            let server = tokio::spawn(app.run_until_stopped(listener, stop.clone()));
            let loaded = load(&dir, &remote, chunk).await;
            // Every load was answered after the read model had it; stopping stores the
            // projector's positions.
            stop.cancel();
            server.await.map_err(|e| crate::Error::Config(format!("kurz stopped abnormally: {e}")))??;
            loaded?
        }
    };
    Ok(Report { files, inconsistencies })
}

/// The client of the command-api that loads the rows: a bulk request may take long.
fn remote(base: &str, token: Option<String>) -> Result<Remote, ImportError> {
    Remote::new(base, token, Duration::from_secs(300)).map_err(|e| ImportError::Http(e.to_string()))
}

/// Posts each file to its bulk route in chunks of `chunk` rows (the header repeated),
/// through `remote` (a command-api, with a token of admin rights if the deployment
/// asks for one).
pub async fn load(dir: &Path, remote: &Remote, chunk: usize) -> Result<Vec<FileReport>, ImportError> {
    let mut reports = Vec::new();
    for (file, endpoint) in FILES {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ImportError::File(path.clone(), e.to_string()))?;
        let mut report = FileReport { file: file.to_string(), ..FileReport::default() };
        for body in chunks(&text, chunk.max(1)).map_err(|e| ImportError::File(path.clone(), e))? {
            report.rows += body.rows;
            let req = remote.request(reqwest::Method::POST, endpoint).header("content-type", "text/csv").body(body.text);
            let (status, text) = remote.send(req).await.map_err(|e| ImportError::Http(format!("{endpoint}: {e}")))?;
            if status != reqwest::StatusCode::CREATED {
                return Err(ImportError::Rejected { endpoint: endpoint.to_string(), status: status.as_u16(), body: text });
            }
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ImportError::Http(format!("{endpoint}: {e}")))?;
            report.imported += v["count"].as_u64().unwrap_or(0);
            report.skipped += v["skipped"].as_u64().unwrap_or(0);
            let room = 100usize.saturating_sub(report.skipped_examples.len());
            report
                .skipped_examples
                .extend(v["problems"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(String::from)).take(room));
        }
        reports.push(report);
    }
    Ok(reports)
}

struct Chunk {
    text: String,
    rows: u64,
}

/// Splits a CSV text into bodies of at most `rows` records, each with the header. Splits
/// on record boundaries (quoted fields may hold newlines), re-encoding the records.
fn chunks(text: &str, rows: usize) -> Result<Vec<Chunk>, String> {
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = r.byte_headers().map_err(|e| e.to_string())?.clone();
    let mut out = Vec::new();
    let mut w: Option<(csv::Writer<Vec<u8>>, u64)> = None;
    for rec in r.byte_records() {
        let rec = rec.map_err(|e| e.to_string())?;
        let (writer, n) = w.get_or_insert_with(|| {
            let mut wr = csv::Writer::from_writer(Vec::new());
            let _ = wr.write_byte_record(&header);
            (wr, 0)
        });
        writer.write_byte_record(&rec).map_err(|e| e.to_string())?;
        *n += 1;
        if *n as usize >= rows {
            let (writer, n) = w.take().expect("just filled");
            out.push(Chunk { text: String::from_utf8_lossy(&writer.into_inner().map_err(|e| e.to_string())?).into_owned(), rows: n });
        }
    }
    if let Some((writer, n)) = w {
        out.push(Chunk { text: String::from_utf8_lossy(&writer.into_inner().map_err(|e| e.to_string())?).into_owned(), rows: n });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_the_header_and_quoted_newlines() {
        let text = "id,details\n1,\"{\"\"a\"\":1}\"\n2,\"two\nlines\"\n3,x\n";
        let c = chunks(text, 2).unwrap();
        assert_eq!(c.iter().map(|c| c.rows).collect::<Vec<_>>(), vec![2, 1]);
        assert!(c.iter().all(|c| c.text.starts_with("id,details\n")));
        let back: Vec<Vec<String>> = c
            .iter()
            .flat_map(|c| {
                csv::Reader::from_reader(c.text.as_bytes())
                    .records()
                    .map(|r| r.unwrap().iter().map(String::from).collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(
            back,
            vec![vec!["1".to_string(), "{\"a\":1}".into()], vec!["2".into(), "two\nlines".into()], vec!["3".into(), "x".into()]]
        );
    }

    #[test]
    fn inconsistent_rows_are_found_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("users.csv"), "id,username,email,created_at\n1,a,a@x.io,2025-01-01 00:00:00\n").unwrap();
        std::fs::write(
            dir.path().join("urls.csv"),
            "id,user_id,short_code,original_url,title,is_active,created_at,updated_at\n\
             10,1,aaa,https://x.io/1,t,True,2025-02-01 00:00:00,2025-02-01 00:00:00\n\
             11,9,bbb,https://x.io/2,t,False,2025-02-01 00:00:00,2025-02-01 00:00:00\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("events.csv"),
            "id,url_id,user_id,event_type,timestamp,details\n\
             1,10,1,created,2025-02-01 00:00:00,{}\n\
             2,10,1,updated,2025-01-15 00:00:00,{}\n\
             3,10,1,deleted,2025-03-01 00:00:00,{}\n\
             4,99,1,updated,2025-03-01 00:00:00,{}\n\
             5,11,1,deleted,2025-03-01 00:00:00,{}\n\
             6,10,7,updated,2025-03-01 00:00:00,{}\n",
        )
        .unwrap();
        let found = check(dir.path()).unwrap();
        let n = |k: &str| found.get(k).map_or(0, Vec::len);
        assert_eq!(n("update_before_create"), 1, "{found:?}");
        assert_eq!(n("deleted_but_active"), 1, "row 3 only: link 11 is inactive");
        assert_eq!(n("history_of_unknown_link"), 1);
        assert_eq!(n("history_of_unknown_user"), 1);
        assert_eq!(n("link_of_unknown_user"), 1);
        assert!(found["update_before_create"][0].contains("event 2"));
    }
}
