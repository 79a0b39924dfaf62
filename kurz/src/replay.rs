//! `kurz replay <projection>|--all [--verify]`: rebuilds the read models from offset
//! zero into a new generation of the store while the serving one keeps serving, then
//! switches every process to it through the control topic.
//!
//! Steps (`run`):
//! 1. Pick the generation: an unfinished replay's (its `replay_started` record has no
//!    switch after it) is resumed; otherwise a number no earlier replay used. Record
//!    `replay_started` in `kurz.control.v1`.
//! 2. Apply the log to it, every partition at once, until a pass finds nothing left
//!    (`kurz_projector::replay`). Its positions are its progress: after a `kill -9`,
//!    running the command again resumes there.
//! 3. With `--verify`, compare it with the serving generation (`kurz_projector::verify`).
//! 4. Record `generation_switched`: every process (this one at once, the others when
//!    they read the record) serves the new generation from now on.
//! 5. Keep applying for a short grace period, so the new generation stays current
//!    while the other processes' projectors move over to it.
//!
//! A generation is the whole store, so `kurz replay links` rebuilds the others'
//! tables with it (from the same log: `--verify` shows they come out equal); the name
//! chooses what `--verify` is about and what is recorded. The embedded store lives in
//! the serving process, so against a running `kurz serve` the command goes through its
//! admin API (`--url`), which runs the same steps there.

use crate::{Error, Ports};
use kurz_projector::replay::{Progress, Replay};
use kurz_projector::verify::Difference;
use kurz_schemas::{ControlEvent, Ts};
use kurz_storage::store::generations::{append_control, read_control};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long the replaying process keeps the new generation current after the switch.
pub const GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayRequest {
    /// Projection names, or `["all"]`.
    pub projections: Vec<String>,
    #[serde(default)]
    pub verify: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayReport {
    pub generation: u64,
    pub previous: u64,
    /// An unfinished replay of this generation was resumed.
    pub resumed: bool,
    pub records: u64,
    pub seconds: f64,
    pub records_per_s: f64,
    /// With `--verify`: every difference between the rebuilt and the serving generation.
    pub differences: Option<Vec<Difference>>,
}

/// The generation to build, and whether it resumes an unfinished replay.
fn pick_generation(control: &[ControlEvent], serving: u64) -> (u64, bool) {
    let mut unfinished = None;
    let mut highest = serving;
    for c in control {
        match c {
            ControlEvent::ReplayStarted { generation, .. } => {
                highest = highest.max(*generation);
                unfinished = Some(*generation);
            }
            ControlEvent::GenerationSwitched { generation, .. } => {
                highest = highest.max(*generation);
                if unfinished == Some(*generation) {
                    unfinished = None;
                }
            }
        }
    }
    match unfinished {
        Some(g) if g > serving => (g, true),
        _ => (highest + 1, false),
    }
}

/// Runs a replay in this process (steps in the module docs). `progress` is updated as
/// records are applied; `generation` learns the generation as soon as it is chosen.
pub async fn run(
    ports: &Ports,
    req: &ReplayRequest,
    progress: Arc<Progress>,
    generation: Arc<Mutex<Option<u64>>>,
) -> Result<ReplayReport, Error> {
    let started = Instant::now();
    let gens = &ports.generations;
    let previous = gens.serving();
    let control = read_control(&*ports.log).await?;
    let (target, resumed) = pick_generation(&control, previous);
    // Fails on an unknown projection before anything is recorded.
    let store = gens.store(target)?;
    let replay = Replay::new(ports.log.clone(), store.clone(), ports.keys.clone(), &req.projections)?;
    *generation.lock().expect("generation slot poisoned") = Some(target);
    if !resumed {
        append_control(
            &*ports.log,
            &ControlEvent::ReplayStarted { generation: target, projections: req.projections.clone(), at: Ts::now() },
        )
        .await?;
    }
    tracing::info!(event = "replay_started", generation = target, previous, resumed, projections = ?req.projections);
    replay.catch_up(&progress).await?;
    let differences = if req.verify {
        let live = gens.store(previous)?;
        Some(kurz_projector::verify::compare(&*ports.log, &*live, &*store).await?)
    } else {
        None
    };
    let records = progress.get().0;
    let seconds = started.elapsed().as_secs_f64();
    append_control(&*ports.log, &ControlEvent::GenerationSwitched { generation: target, previous, at: Ts::now() }).await?;
    gens.switch_to(target)?;
    let grace = CancellationToken::new();
    let g = grace.clone();
    tokio::spawn(async move {
        tokio::time::sleep(GRACE).await;
        g.cancel();
    });
    replay.follow_until(&progress, grace).await?;
    gens.close_others(target);
    tracing::info!(event = "replay_finished", generation = target, records, seconds);
    Ok(ReplayReport {
        generation: target,
        previous,
        resumed,
        records,
        seconds,
        records_per_s: records as f64 / seconds.max(1e-9),
        differences,
    })
}

/// A progress line: bar, counts, rate and ETA.
pub fn progress_line(done: u64, total: u64, elapsed: Duration) -> String {
    const WIDTH: usize = 30;
    let frac = if total == 0 { 0.0 } else { (done as f64 / total as f64).min(1.0) };
    let filled = (frac * WIDTH as f64).round() as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-3);
    let eta = if rate > 0.0 && total > done { format!("{:.0}s", (total - done) as f64 / rate) } else { "-".into() };
    format!("[{}{}] {:>3.0}% {done}/{total} records, {rate:.0}/s, ETA {eta}", "#".repeat(filled), "-".repeat(WIDTH - filled), frac * 100.0)
}

/// What the admin API knows of the replay this process runs or ran.
#[derive(Default)]
pub struct Replayer {
    state: Mutex<Option<Job>>,
}

struct Job {
    started: Instant,
    progress: Arc<Progress>,
    generation: Arc<Mutex<Option<u64>>>,
    outcome: Arc<Mutex<Option<Result<ReplayReport, String>>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayStatus {
    /// `running`, `done`, `failed` or `idle`.
    pub state: String,
    pub generation: Option<u64>,
    pub done: u64,
    pub total: u64,
    pub seconds: f64,
    pub report: Option<ReplayReport>,
    pub error: Option<String>,
}

impl Replayer {
    /// Starts a replay in the background, unless one is running (`Err` then).
    pub fn start(&self, ports: Ports, req: ReplayRequest) -> Result<(), Box<ReplayStatus>> {
        let mut state = self.state.lock().expect("replayer poisoned");
        if let Some(job) = state.as_ref() {
            if job.outcome.lock().expect("outcome poisoned").is_none() {
                return Err(Box::new(status_of(job)));
            }
        }
        let job = Job { started: Instant::now(), progress: Arc::default(), generation: Arc::default(), outcome: Arc::default() };
        let (progress, generation, outcome) = (job.progress.clone(), job.generation.clone(), job.outcome.clone());
        tokio::spawn(async move {
            let r = run(&ports, &req, progress, generation).await.map_err(|e| e.to_string());
            if let Err(e) = &r {
                tracing::error!(event = "replay_failed", error = %e);
            }
            *outcome.lock().expect("outcome poisoned") = Some(r);
        });
        *state = Some(job);
        Ok(())
    }

    pub fn status(&self) -> ReplayStatus {
        match self.state.lock().expect("replayer poisoned").as_ref() {
            Some(job) => status_of(job),
            None => ReplayStatus { state: "idle".into(), generation: None, done: 0, total: 0, seconds: 0.0, report: None, error: None },
        }
    }
}

fn status_of(job: &Job) -> ReplayStatus {
    let (done, total) = job.progress.get();
    let outcome = job.outcome.lock().expect("outcome poisoned").clone();
    let (state, report, error) = match outcome {
        None => ("running", None, None),
        Some(Ok(r)) => ("done", Some(r), None),
        Some(Err(e)) => ("failed", None, Some(e)),
    };
    ReplayStatus {
        state: state.into(),
        generation: *job.generation.lock().expect("generation slot poisoned"),
        done,
        total,
        seconds: job.started.elapsed().as_secs_f64(),
        report,
        error,
    }
}

/// `POST /admin/replay` (start; 202, or 409 while one runs) and `GET /admin/replay`
/// (progress and the report). Admin only in token mode.
pub fn admin_routes(ports: Ports, replayer: Arc<Replayer>, auth: Arc<kurz_command_api::auth::Auth>) -> axum::Router {
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::Json;
    use kurz_command_api::auth::AdminOnly;
    use kurz_web::ApiError;

    #[derive(Clone)]
    struct St {
        ports: Ports,
        replayer: Arc<Replayer>,
        auth: Arc<kurz_command_api::auth::Auth>,
    }
    impl kurz_command_api::auth::HasAuth for St {
        fn auth(&self) -> &kurz_command_api::auth::Auth {
            &self.auth
        }
    }
    async fn start(State(st): State<St>, _: AdminOnly, body: kurz_web::JsonBytes) -> Result<axum::response::Response, ApiError> {
        let req: ReplayRequest = serde_json::from_slice(&body.0)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"projections\": [names or \"all\"], \"verify\": bool}}: {e}")))?;
        if req.projections.is_empty() {
            return Err(ApiError::BadRequest("name the projections to replay, or [\"all\"]".into()));
        }
        Replay::new(st.ports.log.clone(), st.ports.store.clone(), st.ports.keys.clone(), &req.projections)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        match st.replayer.start(st.ports.clone(), req) {
            Ok(()) => Ok((StatusCode::ACCEPTED, Json(st.replayer.status())).into_response()),
            Err(running) => Ok((StatusCode::CONFLICT, Json(running)).into_response()),
        }
    }
    async fn status(State(st): State<St>, _: AdminOnly) -> Result<Json<ReplayStatus>, ApiError> {
        Ok(Json(st.replayer.status()))
    }
    axum::Router::new().route("/admin/replay", axum::routing::post(start).get(status)).with_state(St { ports, replayer, auth })
}

/// `kurz replay`: in this process on the configured storage, or through a running
/// kurz's admin API with `url`. Draws progress on stderr; returns the report.
pub async fn cli(req: ReplayRequest, url: Option<String>, token: Option<String>, cfg: crate::Config) -> Result<ReplayReport, Error> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_line = Instant::now() - Duration::from_secs(10);
    let mut draw = |done: u64, total: u64, last: bool| {
        let line = progress_line(done, total, started.elapsed());
        if tty {
            eprint!("\r{line}{}", if last { "\n" } else { "" });
            let _ = std::io::stderr().flush();
        } else if last || last_line.elapsed() >= Duration::from_secs(1) {
            eprintln!("{line}");
            last_line = Instant::now();
        }
    };
    match url {
        None => {
            let ports = Ports::open(&cfg).await.map_err(|e| {
                Error::Config(format!("cannot open kurz's storage ({e}); against a running embedded kurz, use --url and its admin token"))
            })?;
            let progress: Arc<Progress> = Arc::default();
            let job = run(&ports, &req, progress.clone(), Arc::default());
            tokio::pin!(job);
            loop {
                tokio::select! {
                    r = &mut job => {
                        let (done, total) = progress.get();
                        draw(done, total.max(done), true);
                        return r;
                    }
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        let (done, total) = progress.get();
                        draw(done, total, false);
                    }
                }
            }
        }
        Some(base) => {
            let base = base.trim_end_matches('/').to_string();
            let http = reqwest::Client::new();
            let with_auth = |r: reqwest::RequestBuilder| match &token {
                Some(t) => r.bearer_auth(t),
                None => r,
            };
            let remote = |e: reqwest::Error| Error::Config(format!("{base}: {e}"));
            let r = with_auth(http.post(format!("{base}/admin/replay")).json(&req)).send().await.map_err(remote)?;
            let status = r.status();
            if status != reqwest::StatusCode::ACCEPTED {
                let body = r.text().await.unwrap_or_default();
                return Err(Error::Config(format!("{base} refused the replay ({status}): {body}")));
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let r = with_auth(http.get(format!("{base}/admin/replay"))).send().await.map_err(remote)?;
                let s: ReplayStatus = r.json().await.map_err(remote)?;
                match s.state.as_str() {
                    "running" => draw(s.done, s.total, false),
                    "done" => {
                        draw(s.done, s.total.max(s.done), true);
                        return s.report.ok_or_else(|| Error::Config("the server reported no result".into()));
                    }
                    _ => return Err(Error::Config(format!("the replay failed on {base}: {}", s.error.unwrap_or_default()))),
                }
            }
        }
    }
}

impl ReplayReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "generation {} now serves (was {}){}: {} records in {:.2} s, {:.0} records/s\n",
            self.generation,
            self.previous,
            if self.resumed { ", resumed" } else { "" },
            self.records,
            self.seconds,
            self.records_per_s
        );
        if let Some(d) = &self.differences {
            out += &format!("verify: {} differences between the rebuilt and the serving generation\n", d.len());
            for x in d {
                out += &format!(
                    "  {}: live {} rebuilt {}\n",
                    x.what,
                    x.live.as_deref().unwrap_or("(missing)"),
                    x.rebuilt.as_deref().unwrap_or("(missing)")
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(g: u64) -> ControlEvent {
        ControlEvent::ReplayStarted { generation: g, projections: vec!["all".into()], at: Ts(0) }
    }
    fn switched(g: u64, p: u64) -> ControlEvent {
        ControlEvent::GenerationSwitched { generation: g, previous: p, at: Ts(0) }
    }

    #[test]
    fn an_unfinished_replay_is_resumed_and_a_new_one_never_reuses_a_number() {
        assert_eq!(pick_generation(&[], 0), (1, false));
        assert_eq!(pick_generation(&[started(1)], 0), (1, true), "killed before its switch: resumed");
        assert_eq!(pick_generation(&[started(1), switched(1, 0)], 1), (2, false));
        // An abandoned generation (another replay finished after it) is never reused:
        // its store may hold part of a replay.
        assert_eq!(pick_generation(&[started(1), started(2), switched(2, 0)], 2), (3, false));
        assert_eq!(pick_generation(&[started(3), switched(3, 0), started(4)], 3), (4, true));
    }

    #[test]
    fn the_progress_line_shows_share_rate_and_eta() {
        let l = progress_line(500, 1000, Duration::from_secs(1));
        assert!(l.starts_with("[###############---------------]  50% 500/1000 records, 500/s, ETA 1s"), "{l}");
        assert!(progress_line(0, 0, Duration::ZERO).contains("ETA -"));
    }
}
