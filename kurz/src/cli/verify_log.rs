//! `kurz verify-log`: checks the events topic for aliases granted twice, ids minted
//! twice and commands decided twice ([`kurz_command_api::decider::check`]), reading it
//! as every reader does (the claims rule) or, with `raw`, every record as it lies.

use crate::config::LogSource;
use kurz_command_api::decider::check::{Checker, Report};
use kurz_schemas::topics;
use kurz_storage::log::claims::read_settled;
use kurz_storage::EventLog;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Check every record as it lies in the log, stale writers' skipped appends
    /// included, instead of what readers keep.
    #[arg(long)]
    raw: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    log: LogSource,
}

/// Exit code 1 if it found any problem.
pub fn main(a: Args) -> ExitCode {
    let mut problems = 0;
    let code = super::run("verify-log", async {
        let log = super::open_log(&a.log, "checked")?;
        let report = run(&*log, a.raw).await?;
        problems = report.problems();
        super::print(&report, a.json, Report::render);
        Ok::<_, crate::Error>(())
    });
    if problems > 0 {
        ExitCode::from(1)
    } else {
        code
    }
}

pub async fn run(log: &dyn EventLog, raw: bool) -> Result<Report, crate::Error> {
    let mut checker = Checker::new();
    for p in 0..log.partitions(topics::EVENTS).await? {
        let mut from = 0;
        loop {
            let (recs, next) = if raw {
                let recs = log.read(topics::EVENTS, p, from, 8192).await?;
                let next = recs.last().map_or(from, |r| r.offset + 1);
                (recs, next)
            } else {
                let r = read_settled(log, topics::EVENTS, p, from, 8192).await?;
                (r.records, r.next)
            };
            if next == from {
                break;
            }
            for r in &recs {
                checker.add(&format!("{p}/{}", r.offset), &r.payload);
            }
            from = next;
        }
    }
    Ok(checker.report())
}
