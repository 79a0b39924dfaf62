use clap::{Parser, Subcommand};
use kurz::cli;
use kurz::roles::{self, Role};
use kurz::Config;
use std::process::ExitCode;

/// mimalloc rather than glibc malloc: kurz allocates many short-lived buffers on every
/// core (requests, click batches, store pages), where glibc's arena locking, heap
/// trimming and page re-faulting cost more than the work (bench/results/clicks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// kurz: an event-sourced URL shortener. With no command, runs `serve`.
#[derive(Parser)]
#[command(name = "kurz", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Action>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Action {
    /// Every role in one process (the default).
    Serve(Config),
    /// The write API and the per-partition deciders.
    CommandApi(Config),
    /// The projections that build the read models.
    Projector(Config),
    /// Redirects and the read API.
    QueryEdge(Config),
    /// Finds stuck work and re-drives it: parked records, stalled partitions, commands
    /// without an outcome.
    Watchdog(Config),
    /// Lists, re-drives or skips parked records (poison records and those waiting
    /// behind them).
    Parked(cli::parked::Args),
    /// A terminal summary of running processes, from their /metrics.
    Status(cli::status::Args),
    /// Prints a public topic's records (`clicks` or `events`) as JSON lines.
    Tail(cli::tail::Args),
    /// Loads a CSV history (users.csv, urls.csv, events.csv) with its ids and timestamps.
    Import(cli::import::Args),
    /// Checks the events topic: every alias granted twice, id minted twice and command
    /// decided twice. Exit code 1 if it found any.
    VerifyLog(cli::verify_log::Args),
    /// Rebuilds the read models from offset zero into a new store generation, then
    /// switches every process to it. Exit code 1 if --verify found differences.
    Replay(cli::replay::Args),
}

fn main() -> ExitCode {
    // Before any thread: every file kurz makes is its user's alone.
    kurz::secrets::private_umask();
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = kurz::config::load_config_file(&args) {
        eprintln!("kurz: {e}");
        return ExitCode::from(2);
    }
    let parsed = Cli::parse_from(args);
    match parsed.command {
        None => roles::main(Role::Serve, parsed.config),
        Some(Action::Serve(c)) => roles::main(Role::Serve, c),
        Some(Action::CommandApi(c)) => roles::main(Role::CommandApi, c),
        Some(Action::Projector(c)) => roles::main(Role::Projector, c),
        Some(Action::QueryEdge(c)) => roles::main(Role::QueryEdge, c),
        Some(Action::Watchdog(c)) => roles::main(Role::Watchdog, c),
        Some(Action::Parked(a)) => cli::parked::main(a),
        Some(Action::Status(a)) => cli::status::main(a),
        Some(Action::Tail(a)) => cli::tail::main(a),
        Some(Action::Import(a)) => cli::import::main(a),
        Some(Action::VerifyLog(a)) => cli::verify_log::main(a),
        Some(Action::Replay(a)) => cli::replay::main(a),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// The long flags of a command, sorted.
    fn flags(cli: &clap::Command, name: &str) -> Vec<String> {
        let mut f: Vec<String> =
            cli.find_subcommand(name).unwrap().get_arguments().filter_map(|a| a.get_long().map(String::from)).collect();
        f.sort();
        f
    }

    fn sorted(words: &str) -> Vec<String> {
        let mut w: Vec<String> = words.split_whitespace().map(String::from).collect();
        w.sort();
        w
    }

    #[test]
    fn each_command_takes_only_the_flags_it_uses() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let log = "config data-dir log-url";
        let storage = format!("{log} store-url vault-url cache-url partitions click-partitions");
        assert_eq!(flags(&cli, "tail"), sorted(&format!("{log} from-beginning exit")));
        assert_eq!(flags(&cli, "verify-log"), sorted(&format!("{log} raw json")));
        assert_eq!(flags(&cli, "status"), sorted("url interval"));
        assert_eq!(flags(&cli, "replay"), sorted(&format!("{storage} all verify url token json")));
        assert_eq!(flags(&cli, "parked"), sorted(&format!("{storage} max-attempts url token json")));
        let serve = flags(&cli, "serve");
        assert!(serve.len() > 35 && serve.contains(&"http-addr".to_string()), "{serve:?}");
    }
}
