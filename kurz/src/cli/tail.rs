//! `kurz tail clicks|events`: a consumer of kurz's public topics that prints each
//! record's JSON on a line of its own (what `kcat -C -t kurz.clicks.v1` shows on
//! Kafka, for any log kurz runs on).
//!
//! The embedded log belongs to the process that runs it: tail it while that process is
//! stopped, or run kurz on `kafka://` to tail it live.

use crate::config::LogSource;
use crate::Error;
use kurz_storage::EventLog;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct Args {
    /// `clicks` (kurz.clicks.v1) or `events` (kurz.events.v1).
    topic: String,
    /// Start at the first record instead of the current end.
    #[arg(long)]
    from_beginning: bool,
    /// Stop at the end the topic had when tail started, instead of following it.
    #[arg(long)]
    exit: bool,
    #[command(flatten)]
    log: LogSource,
}

pub fn main(a: Args) -> ExitCode {
    super::run("tail", async {
        let topic = topic(&a.topic)?;
        let log = super::open_log(&a.log, "tailed")?;
        let mut out = std::io::stdout();
        run(&*log, topic, a.from_beginning, a.exit, &mut out, crate::shutdown_signal()).await.map(|_| ())
    })
}

const READ: usize = 1024;

pub fn topic(name: &str) -> Result<&'static str, Error> {
    match name {
        "clicks" | "kurz.clicks.v1" => Ok(kurz_schemas::topics::CLICKS),
        "events" | "kurz.events.v1" => Ok(kurz_schemas::topics::EVENTS),
        other => Err(Error::Config(format!("no topic '{other}': tail clicks or events"))),
    }
}

/// Prints `topic`'s records to `out`, from the beginning or from its current end; with
/// `exit_at_end`, stops once it has printed what the topic held when it started,
/// otherwise follows new records until `stop`. Returns how many it printed.
pub async fn run(
    log: &dyn EventLog,
    topic: &str,
    from_beginning: bool,
    exit_at_end: bool,
    out: &mut (dyn Write + Send),
    stop: CancellationToken,
) -> Result<u64, Error> {
    let partitions = log.partitions(topic).await?;
    let mut next = Vec::with_capacity(partitions as usize);
    let mut ends = Vec::with_capacity(partitions as usize);
    for p in 0..partitions {
        let end = log.end_offset(topic, p).await?;
        ends.push(end);
        next.push(if from_beginning { 0 } else { end });
    }
    let mut printed = 0u64;
    loop {
        let mut idle = true;
        for p in 0..partitions {
            // The events as every reader keeps them (a stale writer's late append is
            // not shown); other topics as they are.
            let from = next[p as usize];
            let read = kurz_storage::log::claims::read_settled(log, topic, p, from, READ).await?;
            let recs = if topic == kurz_schemas::topics::EVENTS {
                next[p as usize] = read.next;
                read.records
            } else {
                let recs = log.read(topic, p, from, READ).await?;
                if let Some(last) = recs.last() {
                    next[p as usize] = last.offset + 1;
                }
                recs
            };
            if next[p as usize] != from {
                idle = false;
            }
            for r in recs {
                if exit_at_end && r.offset >= ends[p as usize] {
                    continue;
                }
                out.write_all(&r.payload)?;
                out.write_all(b"\n")?;
                printed += 1;
            }
        }
        out.flush()?;
        // At the end, or held before an append that is still open.
        if exit_at_end && (idle || next.iter().zip(&ends).all(|(n, e)| n >= e)) {
            return Ok(printed);
        }
        if idle {
            tokio::select! {
                _ = stop.cancelled() => return Ok(printed),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        } else if stop.is_cancelled() {
            return Ok(printed);
        }
    }
}
