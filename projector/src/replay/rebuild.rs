//! `kurz replay`'s steps: rebuilds the read models from offset zero into a new
//! generation of the store while the serving one keeps serving, then switches every
//! process to it through the control topic.
//!
//! Steps ([`rebuild`]):
//! 1. Pick the generation: an unfinished replay's (its `replay_started` record has no
//!    switch after it) is resumed; otherwise a number no earlier replay used. Record
//!    `replay_started` in `kurz.control.v1`.
//! 2. Apply the log to it, every partition at once, until a pass finds nothing left
//!    ([`Replay::catch_up`]). Its positions are its progress: after a `kill -9`,
//!    running the command again resumes there.
//! 3. With `verify`, compare it with the serving generation ([`crate::verify`]).
//! 4. Record `generation_switched`: every process (this one at once, the others when
//!    they read the record) serves the new generation from now on.
//! 5. Keep applying for a short grace period, so the new generation stays current
//!    while the other processes' projectors move over to it.
//!
//! A generation is the whole store, so a replay of `links` rebuilds the others'
//! tables with it (from the same log: `verify` shows they come out equal); the name
//! chooses what `verify` is about and what is recorded.

use super::{Progress, Replay};
use crate::verify::Difference;
use crate::Error;
use kurz_schemas::{ControlEvent, Ts};
use kurz_storage::store::generations::{append_control, read_control, Generations};
use kurz_storage::vault::Keyring;
use kurz_storage::EventLog;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long the replaying process keeps the new generation current after the switch.
pub const GRACE: Duration = Duration::from_secs(2);

/// What to rebuild (the body of `POST /admin/replay`).
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
    /// With `verify`: every difference between the rebuilt and the serving generation.
    pub differences: Option<Vec<Difference>>,
}

/// What a replay works on: the log, the store's generations and the data keys.
#[derive(Clone)]
pub struct Sources {
    pub log: Arc<dyn EventLog>,
    pub generations: Arc<Generations>,
    pub keys: Arc<Keyring>,
}

impl Sources {
    /// Checks a request without recording anything: an unknown projection fails here.
    pub fn check(&self, req: &ReplayRequest) -> Result<(), Error> {
        Replay::new(self.log.clone(), self.generations.clone(), self.keys.clone(), &req.projections).map(|_| ())
    }
}

/// The generation to build, and whether it resumes an unfinished replay.
pub fn pick_generation(control: &[ControlEvent], serving: u64) -> (u64, bool) {
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
pub async fn rebuild(
    src: &Sources,
    req: &ReplayRequest,
    progress: Arc<Progress>,
    generation: Arc<Mutex<Option<u64>>>,
) -> Result<ReplayReport, Error> {
    let started = Instant::now();
    let gens = &src.generations;
    let previous = gens.serving();
    let control = read_control(&*src.log).await?;
    let (target, resumed) = pick_generation(&control, previous);
    // Fails on an unknown projection before anything is recorded.
    let store = gens.store(target)?;
    let replay = Replay::new(src.log.clone(), store.clone(), src.keys.clone(), &req.projections)?;
    *generation.lock().expect("generation slot poisoned") = Some(target);
    if !resumed {
        append_control(&*src.log, &ControlEvent::ReplayStarted { generation: target, projections: req.projections.clone(), at: Ts::now() })
            .await?;
    }
    tracing::info!(event = "replay_started", generation = target, previous, resumed, projections = ?req.projections);
    replay.catch_up(&progress).await?;
    let differences = if req.verify {
        let live = gens.store(previous)?;
        Some(crate::verify::compare(&*src.log, &*live, &*store).await?)
    } else {
        None
    };
    let records = progress.get().0;
    let seconds = started.elapsed().as_secs_f64();
    append_control(&*src.log, &ControlEvent::GenerationSwitched { generation: target, previous, at: Ts::now() }).await?;
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
}
