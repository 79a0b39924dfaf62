//! `kurz parked list|redrive|skip`: the parked records (poison records and those
//! waiting behind them) and the watchdog's re-drive, on demand: in this process on the
//! configured storage, or through a running kurz's `/admin/parked` routes (`--url`).

use super::AdminApi;
use crate::config::{Delivery, Storage};
use crate::{Error, Ports};
use kurz_projector::watchdog::parked::{act, Action, Report, Selector};
use kurz_storage::store::ParkedId;
use reqwest::Method;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Command,
    #[command(flatten)]
    api: AdminApi,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    storage: Storage,
    #[command(flatten)]
    delivery: Delivery,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Every parked record, by topic, partition, key and offset.
    List,
    /// Delivers parked records now, key by key in offset order, whether due or not.
    Redrive {
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        partition: Option<u32>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Sends one parked record to the dead-letter topic without delivering it, then
    /// re-drives the rest of its key.
    Skip {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partition: u32,
        #[arg(long)]
        key: String,
        #[arg(long)]
        offset: u64,
    },
}

pub fn main(a: Args) -> ExitCode {
    super::run("parked", async {
        let action = match a.action {
            Command::List => Action::List,
            Command::Redrive { topic, partition, key } => Action::Redrive(Selector { topic, partition, key }),
            Command::Skip { topic, partition, key, offset } => Action::Skip(ParkedId { topic, partition, key, offset }),
        };
        let report = match a.api.remote()? {
            Some(remote) => {
                let req = match &action {
                    Action::List => remote.request(Method::GET, "/admin/parked"),
                    Action::Redrive(sel) => remote.request(Method::POST, "/admin/parked/redrive").json(&serde_json::json!({
                        "topic": sel.topic, "partition": sel.partition, "key": sel.key,
                    })),
                    Action::Skip(id) => remote.request(Method::POST, "/admin/parked/skip").json(id),
                };
                remote.json(req).await?
            }
            None => {
                let ports = Ports::open_for_tool(&a.storage).await?;
                act(&ports.projector(a.delivery.max_attempts), action).await?
            }
        };
        super::print(&report, a.json, render);
        Ok::<_, Error>(())
    })
}

/// The report as text: a table of parked records, or what a re-drive did.
pub fn render(r: &Report) -> String {
    match r {
        Report::List { parked, .. } if parked.is_empty() => "nothing is parked\n".to_string(),
        Report::List { count, parked } => {
            let mut out = format!("{count} parked record(s)\n{:<22} {:<8} {:<24} {:>8}  reason\n", "topic", "part", "key", "attempts");
            for r in parked {
                out.push_str(&format!(
                    "{:<22} {:<8} {:<24} {:>8}  {} (offset {})\n",
                    r.topic,
                    r.partition,
                    r.key,
                    r.attempts,
                    r.reason.replace(['\r', '\n'], " "),
                    r.offset
                ));
            }
            out
        }
        Report::Redriven { delivered, failed, dead_lettered } => {
            format!("delivered {delivered}, failed again {failed}, dead-lettered {dead_lettered}\n")
        }
    }
}
