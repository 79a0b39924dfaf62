//! The operator commands: each parses its own flags (only those it uses), runs in this
//! process or against a running kurz's admin API ([`Remote`]), and renders its answer
//! as text or, with `--json`, as JSON. Output is the command's own; an error goes to
//! stderr as `kurz <command>: …` with a failing exit code.

pub mod import;
pub mod parked;
pub mod replay;
pub mod status;
pub mod tail;
pub mod verify_log;

use crate::Error;
use std::process::ExitCode;
use std::time::Duration;

/// A running kurz to act on, and the bearer token to do it with.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminApi {
    /// A running kurz to act on (its admin API), e.g. http://127.0.0.1:8080. Needed for a
    /// running embedded kurz; unset: this process opens the configured storage.
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Bearer token for --url (the admin token, in token mode).
    #[arg(long, global = true, env = "KURZ_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl AdminApi {
    /// The client for `--url`, if one was given.
    pub fn remote(&self) -> Result<Option<Remote>, Error> {
        self.url.as_deref().map(|u| Remote::new(u, self.token.clone(), Duration::from_secs(30))).transpose()
    }
}

/// An HTTP client of one kurz: every request carries the token; errors name the base
/// URL (with any credentials in it redacted).
pub struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Remote {
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Remote, Error> {
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(|e| Error::Remote(format!("HTTP client: {e}")))?;
        Ok(Remote { base: base.trim_end_matches('/').to_string(), token, http })
    }

    /// A request to `path` (from the root, e.g. `/admin/replay`), with the token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends `req`; answers its status and body.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, String), Error> {
        let failed = |e: reqwest::Error| Error::Remote(format!("{}: {}", self.shown(), e.without_url()));
        let r = req.send().await.map_err(failed)?;
        let status = r.status();
        let body = r.text().await.map_err(failed)?;
        Ok((status, body))
    }

    /// Sends `req` and reads a successful answer's JSON; any other answer is an error
    /// that quotes it.
    pub async fn json<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, Error> {
        let (status, body) = self.send(req).await?;
        if !status.is_success() {
            return Err(Error::Remote(format!("{} answered {status}: {body}", self.shown())));
        }
        serde_json::from_str(&body).map_err(|e| Error::Remote(format!("{}: unexpected answer ({e}): {body}", self.shown())))
    }

    /// The base URL as it may be shown.
    pub fn shown(&self) -> String {
        kurz_storage::redact(&self.base)
    }
}

/// Prints `report` as pretty JSON, or as `render` gives it.
pub fn print<T: serde::Serialize>(report: &T, json: bool, render: impl FnOnce(&T) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
    } else {
        print!("{}", render(report));
    }
}

/// Runs a command's work on a multi-threaded runtime; an error goes to stderr.
pub fn run<E: std::fmt::Display>(name: &str, work: impl std::future::Future<Output = Result<(), E>>) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kurz {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the log for a command that reads it: an embedded log only while no kurz holds
/// it, which the error says.
pub fn open_log(src: &crate::config::LogSource, what: &str) -> Result<std::sync::Arc<dyn kurz_storage::EventLog>, Error> {
    kurz_storage::open_log(&src.log_url, &src.data_dir).map_err(|e| {
        Error::Config(format!(
            "cannot open the log {} ({e}); an embedded log can only be {what} while its kurz is stopped",
            kurz_storage::redact(&src.log_url)
        ))
    })
}
