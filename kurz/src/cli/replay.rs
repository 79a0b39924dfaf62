//! `kurz replay <projection>|--all [--verify]`: rebuilds the read models into a new
//! store generation and switches every process to it (the steps:
//! `kurz_projector::replay::rebuild`). The embedded store lives in the serving process,
//! so against a running `kurz serve` the command goes through its admin API (`--url`),
//! which runs the same steps there. Draws progress on stderr.

use super::{AdminApi, Remote};
use crate::config::Storage;
use crate::{Error, Ports};
use kurz_projector::replay::{rebuild, Progress, ReplayReport, ReplayRequest, ReplayStatus};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["projection", "all"])))]
pub struct Args {
    /// The projection to rebuild: users, links, history, outcomes or clicks.
    projection: Option<String>,
    /// Rebuild every projection.
    #[arg(long)]
    all: bool,
    /// Compare the rebuilt generation with the serving one and report every difference.
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    api: AdminApi,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    storage: Storage,
}

/// Exit code 1 if `--verify` found differences.
pub fn main(a: Args) -> ExitCode {
    let mut differences = 0;
    let code = super::run("replay", async {
        let projections = if a.all { vec!["all".to_string()] } else { a.projection.clone().into_iter().collect() };
        let req = ReplayRequest { projections, verify: a.verify };
        let report = match a.api.remote()? {
            Some(remote) => through(&remote, &req).await?,
            None => here(&a.storage, &req).await?,
        };
        differences = report.differences.as_ref().map_or(0, Vec::len);
        super::print(&report, a.json, render);
        Ok::<_, Error>(())
    });
    if differences > 0 {
        ExitCode::from(1)
    } else {
        code
    }
}

/// Draws the progress line on stderr: redrawn in place on a terminal, else a line a
/// second.
struct Drawing {
    tty: bool,
    started: Instant,
    last_line: Instant,
}

impl Drawing {
    fn new() -> Drawing {
        use std::io::IsTerminal;
        Drawing { tty: std::io::stderr().is_terminal(), started: Instant::now(), last_line: Instant::now() - Duration::from_secs(10) }
    }

    fn draw(&mut self, done: u64, total: u64, last: bool) {
        use std::io::Write;
        let line = progress_line(done, total, self.started.elapsed());
        if self.tty {
            eprint!("\r{line}{}", if last { "\n" } else { "" });
            let _ = std::io::stderr().flush();
        } else if last || self.last_line.elapsed() >= Duration::from_secs(1) {
            eprintln!("{line}");
            self.last_line = Instant::now();
        }
    }
}

/// The replay in this process, on the configured storage.
async fn here(storage: &Storage, req: &ReplayRequest) -> Result<ReplayReport, Error> {
    let ports = Ports::open_for_tool(storage).await?;
    let mut drawing = Drawing::new();
    let progress: Arc<Progress> = Arc::default();
    let sources = ports.replay_sources();
    let job = rebuild(&sources, req, progress.clone(), Arc::default());
    tokio::pin!(job);
    loop {
        tokio::select! {
            r = &mut job => {
                let (done, total) = progress.get();
                drawing.draw(done, total.max(done), true);
                return Ok(r?);
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let (done, total) = progress.get();
                drawing.draw(done, total, false);
            }
        }
    }
}

/// The replay in a running kurz: started with `POST /admin/replay`, followed with
/// `GET /admin/replay`.
async fn through(remote: &Remote, req: &ReplayRequest) -> Result<ReplayReport, Error> {
    let mut drawing = Drawing::new();
    let (status, body) = remote.send(remote.request(reqwest::Method::POST, "/admin/replay").json(req)).await?;
    if status != reqwest::StatusCode::ACCEPTED {
        return Err(Error::Remote(format!("{} refused the replay ({status}): {body}", remote.shown())));
    }
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s: ReplayStatus = remote.json(remote.request(reqwest::Method::GET, "/admin/replay")).await?;
        match s.state.as_str() {
            "running" => drawing.draw(s.done, s.total, false),
            "done" => {
                drawing.draw(s.done, s.total.max(s.done), true);
                return s.report.ok_or_else(|| Error::Remote("the server reported no result".into()));
            }
            _ => return Err(Error::Remote(format!("the replay failed on {}: {}", remote.shown(), s.error.unwrap_or_default()))),
        }
    }
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

/// The report as text: the switch, the rate and every difference `--verify` found.
pub fn render(r: &ReplayReport) -> String {
    let mut out = format!(
        "generation {} now serves (was {}){}: {} records in {:.2} s, {:.0} records/s\n",
        r.generation,
        r.previous,
        if r.resumed { ", resumed" } else { "" },
        r.records,
        r.seconds,
        r.records_per_s
    );
    if let Some(d) = &r.differences {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_share_rate_and_eta() {
        let l = progress_line(500, 1000, Duration::from_secs(1));
        assert!(l.starts_with("[###############---------------]  50% 500/1000 records, 500/s, ETA 1s"), "{l}");
        assert!(progress_line(0, 0, Duration::ZERO).contains("ETA -"));
    }
}
