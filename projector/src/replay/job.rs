//! A replay running in the background of a serving process, and what is known of it:
//! the job behind `POST /admin/replay` and `GET /admin/replay`.

use super::rebuild::{rebuild, ReplayReport, ReplayRequest, Sources};
use super::Progress;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The replay this process runs or ran.
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

/// A replay's progress and outcome (the answer of `GET /admin/replay`).
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
    pub fn start(&self, src: Sources, req: ReplayRequest) -> Result<(), Box<ReplayStatus>> {
        let mut state = self.state.lock().expect("replayer poisoned");
        if let Some(job) = state.as_ref() {
            if job.outcome.lock().expect("outcome poisoned").is_none() {
                return Err(Box::new(status_of(job)));
            }
        }
        let job = Job { started: Instant::now(), progress: Arc::default(), generation: Arc::default(), outcome: Arc::default() };
        let (progress, generation, outcome) = (job.progress.clone(), job.generation.clone(), job.outcome.clone());
        tokio::spawn(async move {
            let r = rebuild(&src, &req, progress, generation).await.map_err(|e| e.to_string());
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
