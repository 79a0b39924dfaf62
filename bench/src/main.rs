//! `kurz-bench`: kurz's benchmark harness. Every benchmark measures its baseline in the
//! same run and reports ratios to it; results go to `bench/results/<name>.{json,md}`.

mod abuse;
mod clicks;
mod creates;
mod redirects;
mod replay;
mod sealing;
mod staleness;
mod stats;

use clap::{Parser, Subcommand};

/// The allocator the `kurz` binary uses, so measured costs are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "kurz-bench", about)]
struct Cli {
    /// Where the JSON and markdown summaries go.
    #[arg(long, default_value = "bench/results")]
    out: std::path::PathBuf,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Edit-to-edge staleness over Redis with several near-cached edges.
    Staleness(staleness::Args),
    /// Create throughput and create-to-redirect latency, embedded log vs Kafka.
    Creates(creates::Args),
    /// Redirect throughput and latency (wrk), kurz vs a bare hyper 302 server.
    Redirects(redirects::Args),
    /// Click aggregates after 1M clicks with redelivered batches and projector crashes.
    Clicks(clicks::Args),
    /// Replay rate into a new store generation, embedded to embedded.
    Replay(replay::Args),
    /// What each abuse attack costs a running server, vs. the same server without it.
    Abuse(abuse::Args),
    /// What sealing users' personal data costs the event codecs, vs. plain encoding.
    Sealing(sealing::Args),
    /// Writes `<out>/<name>.md` again from `<out>/<name>.json`, without measuring (after
    /// the report's text changed). The JSON is left as it is.
    Render {
        /// staleness, creates, redirects, clicks, replay, abuse or sealing.
        name: String,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Bench::Render { name } = &cli.bench {
        std::process::exit(render(&cli.out, name));
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (name, json, md) = match cli.bench {
            Bench::Staleness(a) => {
                let v = staleness::run(a).await;
                let md = staleness::markdown(&v);
                ("staleness", v, md)
            }
            Bench::Creates(a) => {
                let v = creates::run(a).await;
                let md = creates::markdown(&v);
                ("creates", v, md)
            }
            Bench::Clicks(a) => {
                let v = clicks::run(a).await;
                let md = clicks::markdown(&v);
                ("clicks", v, md)
            }
            Bench::Abuse(a) => {
                let v = abuse::run(a).await;
                let md = abuse::markdown(&v);
                ("abuse", v, md)
            }
            Bench::Replay(a) => {
                let v = replay::run(a).await;
                let md = replay::markdown(&v);
                ("replay", v, md)
            }
            Bench::Sealing(a) => {
                let v = sealing::run(a).await;
                let md = sealing::markdown(&v);
                ("sealing", v, md)
            }
            Bench::Redirects(a) => {
                let report = redirects::run(a).await;
                let md = redirects::markdown(&report);
                ("redirects", serde_json::to_value(&report).unwrap(), md)
            }
            Bench::Render { .. } => unreachable!("handled above"),
        };
        stats::write(&cli.out, name, &json, &md).unwrap();
        println!("{md}");
    });
}

/// `kurz-bench render <name>`: the markdown of a stored JSON result. Exit code 2 for an
/// unknown name or an unreadable result.
fn render(out: &std::path::Path, name: &str) -> i32 {
    let markdown: fn(&serde_json::Value) -> Result<String, String> = match name {
        "staleness" => |v| Ok(staleness::markdown(v)),
        "creates" => |v| Ok(creates::markdown(v)),
        "redirects" => |v| {
            use serde::Deserialize;
            redirects::Report::deserialize(v).map(|r| redirects::markdown(&r)).map_err(|e| e.to_string())
        },
        "clicks" => |v| Ok(clicks::markdown(v)),
        "replay" => |v| Ok(replay::markdown(v)),
        "abuse" => |v| Ok(abuse::markdown(v)),
        "sealing" => |v| Ok(sealing::markdown(v)),
        _ => {
            eprintln!("kurz-bench render: no benchmark named '{name}'");
            return 2;
        }
    };
    let path = out.join(format!("{name}.json"));
    let v: serde_json::Value =
        match std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string())) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("kurz-bench render: {}: {e}", path.display());
                return 2;
            }
        };
    let md = match markdown(&v) {
        Ok(md) => md,
        Err(e) => {
            eprintln!("kurz-bench render: {}: {e}", path.display());
            return 2;
        }
    };
    // Only the markdown: the JSON stays byte for byte as measured.
    let md_path = out.join(format!("{name}.md"));
    if let Err(e) = std::fs::write(&md_path, md) {
        eprintln!("kurz-bench render: {}: {e}", md_path.display());
        return 2;
    }
    0
}
