//! Redirect throughput and latency: `kurz serve` against a bare hyper server that answers
//! every request with a fixed 302 (the ceiling), in the same process and the same tokio
//! runtime, driven by Debian's `wrk` over loopback.
//!
//! kurz runs on the embedded default (`--auth open`, `--log warn`, telemetry initialised as
//! the binary does) and is loaded over `POST /urls/bulk` with a hot set and a large set.
//! Runs alternate (ceiling, kurz hot, kurz large; repeated) so machine noise hits every
//! side, and medians are reported. kurz's own view comes from its
//! `kurz_http_request_duration_seconds` histogram, scraped around each run. When a target
//! is missed, one more hot-set run each of the ceiling and of kurz is sampled with `perf`
//! and summarised.
//!
//! `run.rs` drives the servers and the rounds, with wrk (`wrk.rs`), this process's CPU
//! time (`cpu.rs`), kurz's `/metrics` (`server_view.rs`) and perf (`profile.rs`);
//! everything it measured is one [`Report`]
//! (`report.rs`), written as JSON and rendered as markdown with its findings
//! (`findings.rs`).

use clap::ValueEnum;
use std::path::PathBuf;

mod cpu;
mod findings;
mod profile;
mod report;
mod run;
mod server_view;
mod wrk;

pub use report::{markdown, Report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Links in the hot set (all cached after warm-up).
    #[arg(long, default_value_t = 1000)]
    pub hot: usize,
    /// Links in the large set (uniformly random codes).
    #[arg(long, default_value_t = 1_000_000)]
    pub links: usize,
    /// Rows per `POST /urls/bulk` request.
    #[arg(long, default_value_t = 50_000)]
    pub chunk: usize,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Seconds per wrk run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Alternating rounds (ceiling, kurz hot, kurz large). Even, so the options round
    /// and its baseline each run first in half of them.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Sample this process with `perf` during extra hot-set runs (the ceiling, kurz HEAD, the
    /// edge with capture on, kurz GET): when a target is missed, always, or never.
    #[arg(long, value_enum, default_value_t = Profile::Auto)]
    pub profile: Profile,
    /// Keep the perf recordings in this directory (default: deleted with the run's temp dir).
    #[arg(long)]
    pub perf_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Profile {
    Auto,
    Always,
    Never,
}

/// Runs the benchmark (exits with code 2 if `wrk` is not installed).
pub async fn run(args: Args) -> Report {
    run::run(args).await
}
