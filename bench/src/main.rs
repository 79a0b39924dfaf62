//! `kurz-bench`: kurz's benchmark harness. Every benchmark measures its baseline in the
//! same run and reports ratios to it; results go to `bench/results/<name>.{json,md}`.

mod clicks;
mod creates;
mod redirects;
mod replay;
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
}

fn main() {
    let cli = Cli::parse();
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
            Bench::Replay(a) => {
                let v = replay::run(a).await;
                let md = replay::markdown(&v);
                ("replay", v, md)
            }
            Bench::Redirects(a) => {
                let v = redirects::run(a).await;
                let md = redirects::markdown(&v);
                ("redirects", v, md)
            }
        };
        stats::write(&cli.out, name, &json, &md).unwrap();
        println!("{md}");
    });
}
