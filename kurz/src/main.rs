use clap::{Parser, Subcommand};
use kurz::Config;

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
    command: Option<Role>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Role {
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
    Parked(ParkedArgs),
    /// A terminal summary of running processes, from their /metrics.
    Status(StatusArgs),
    /// Prints a public topic's records (`clicks` or `events`) as JSON lines.
    Tail(TailArgs),
    /// Loads a CSV history (users.csv, urls.csv, events.csv) with its ids and timestamps.
    Import(ImportArgs),
    /// Checks the events topic: every alias granted twice, id minted twice and command
    /// decided twice. Exit code 1 if it found any.
    VerifyLog(VerifyLogArgs),
    /// Rebuilds the read models from offset zero into a new store generation, then
    /// switches every process to it. Exit code 1 if --verify found differences.
    Replay(ReplayArgs),
}

#[derive(clap::Args)]
struct VerifyLogArgs {
    /// Check every record as it lies in the log, stale writers' skipped appends
    /// included, instead of what readers keep.
    #[arg(long)]
    raw: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: Config,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["projection", "all"])))]
struct ReplayArgs {
    /// The projection to rebuild: users, links, history, outcomes or clicks.
    projection: Option<String>,
    /// Rebuild every projection.
    #[arg(long)]
    all: bool,
    /// Compare the rebuilt generation with the serving one and report every difference.
    #[arg(long)]
    verify: bool,
    /// A running kurz to replay in (its admin API), e.g. http://127.0.0.1:8080. Needed
    /// for a running embedded kurz; unset: the replay runs in this process.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url (the admin token, in token mode).
    #[arg(long, env = "KURZ_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: Config,
}

#[derive(clap::Args)]
struct ParkedArgs {
    #[command(subcommand)]
    action: ParkedAction,
    /// A running kurz to act on (its admin API), e.g. http://127.0.0.1:8080. Needed for
    /// a running embedded kurz; unset: this process opens the configured storage.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Bearer token for --url (the admin token, in token mode).
    #[arg(long, global = true, env = "KURZ_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum ParkedAction {
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

#[derive(clap::Args)]
struct ImportArgs {
    /// Directory holding users.csv, urls.csv and events.csv (any of them).
    dir: std::path::PathBuf,
    /// A running command-api to load through (e.g. http://127.0.0.1:8080). Unset: kurz
    /// starts in this process on the configured storage, imports and stops.
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for --url (the admin token, in token mode).
    #[arg(long, env = "KURZ_IMPORT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Rows per bulk request.
    #[arg(long, default_value_t = 5000)]
    chunk: usize,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: Config,
}

#[derive(clap::Args)]
struct TailArgs {
    /// `clicks` (kurz.clicks.v1) or `events` (kurz.events.v1).
    topic: String,
    /// Start at the first record instead of the current end.
    #[arg(long)]
    from_beginning: bool,
    /// Stop at the end the topic had when tail started, instead of following it.
    #[arg(long)]
    exit: bool,
    #[command(flatten)]
    config: Config,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// Base URLs of the processes to summarise.
    #[arg(long = "url", default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    urls: Vec<String>,
    /// Seconds between the two scrapes that rates are computed from.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
}

fn main() -> std::process::ExitCode {
    // Before any thread: every file kurz makes is its user's alone.
    kurz::secrets::private_umask();
    let args: Vec<String> = std::env::args().collect();
    if let Err(e) = kurz::config::load_config_file(&args) {
        eprintln!("kurz: {e}");
        return std::process::ExitCode::from(2);
    }
    let cli = Cli::parse_from(args);
    match cli.command {
        Some(Role::Status(a)) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            return tool("status", rt, async {
                let text = kurz::status::run(&a.urls, std::time::Duration::from_secs_f64(a.interval.max(0.1))).await?;
                print!("{text}");
                Ok::<_, String>(())
            });
        }
        Some(Role::Tail(a)) => {
            return tool("tail", multi_thread(), async {
                let topic = kurz::tail::topic(&a.topic)?;
                let log = kurz_storage::open_log(&a.config.log_url, &a.config.data_dir).map_err(|e| {
                    kurz::Error::Config(format!(
                        "cannot open the log {} ({e}); an embedded log can only be tailed while its kurz is stopped",
                        kurz_storage::redact(&a.config.log_url)
                    ))
                })?;
                let mut out = std::io::stdout();
                kurz::tail::run(&*log, topic, a.from_beginning, a.exit, &mut out, kurz::shutdown_signal()).await.map(|_| ())
            });
        }
        Some(Role::Import(a)) => {
            return tool("import", multi_thread(), async {
                let json = a.json;
                let report = kurz::import::run(a.dir, a.url, a.token, a.chunk, a.config).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                } else {
                    print!("{}", report.render());
                }
                Ok::<_, kurz::Error>(())
            });
        }
        Some(Role::Parked(a)) => {
            return tool("parked", multi_thread(), async {
                use kurz::parked::Action;
                let action = match a.action {
                    ParkedAction::List => Action::List,
                    ParkedAction::Redrive { topic, partition, key } => {
                        Action::Redrive(kurz_projector::watchdog::parked::Selector { topic, partition, key })
                    }
                    ParkedAction::Skip { topic, partition, key, offset } => {
                        Action::Skip(kurz_storage::store::ParkedId { topic, partition, key, offset })
                    }
                };
                let report = kurz::parked::cli(action, a.url, a.token, a.config).await?;
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                } else {
                    print!("{}", report.render());
                }
                Ok::<_, kurz::Error>(())
            });
        }
        Some(Role::VerifyLog(a)) => {
            let mut problems = 0;
            let code = tool("verify-log", multi_thread(), async {
                let log = kurz_storage::open_log(&a.config.log_url, &a.config.data_dir).map_err(|e| {
                    kurz::Error::Config(format!(
                        "cannot open the log {} ({e}); an embedded log can only be checked while its kurz is stopped",
                        kurz_storage::redact(&a.config.log_url)
                    ))
                })?;
                let report = kurz::verify_log::run(&*log, a.raw).await?;
                problems = report.problems();
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                } else {
                    print!("{}", report.render());
                }
                Ok::<_, kurz::Error>(())
            });
            return if problems > 0 { std::process::ExitCode::from(1) } else { code };
        }
        Some(Role::Replay(a)) => {
            let mut differences = 0;
            let code = tool("replay", multi_thread(), async {
                let projections = if a.all { vec!["all".to_string()] } else { a.projection.into_iter().collect() };
                let req = kurz::replay::ReplayRequest { projections, verify: a.verify };
                let report = kurz::replay::cli(req, a.url, a.token, a.config).await?;
                differences = report.differences.as_ref().map_or(0, Vec::len);
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                } else {
                    print!("{}", report.render());
                }
                Ok::<_, kurz::Error>(())
            });
            return if differences > 0 { std::process::ExitCode::from(1) } else { code };
        }
        _ => {}
    }
    let (role, cfg) = match cli.command {
        None => ("serve", cli.config),
        Some(Role::Serve(c)) => ("serve", c),
        Some(Role::CommandApi(c)) => ("command-api", c),
        Some(Role::Projector(c)) => ("projector", c),
        Some(Role::QueryEdge(c)) => ("query-edge", c),
        Some(Role::Watchdog(c)) => ("watchdog", c),
        Some(Role::Status(_))
        | Some(Role::Tail(_))
        | Some(Role::Import(_))
        | Some(Role::Replay(_))
        | Some(Role::Parked(_))
        | Some(Role::VerifyLog(_)) => {
            unreachable!("handled above")
        }
    };
    // A short secret or admin token stops the start: exit code 2, naming the setting.
    if let Err(e) = kurz::secrets::check(cfg.secret.as_deref(), cfg.admin_token.as_deref(), &cfg.previous_secrets) {
        eprintln!("kurz: configuration: {e}");
        return std::process::ExitCode::from(2);
    }
    if let Err(e) = kurz::secrets::private_dir(&cfg.data_dir) {
        eprintln!("kurz: data directory {}: {e}", cfg.data_dir.display());
        return std::process::ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async move {
        let _telemetry = kurz::telemetry::init(
            &cfg.log,
            match role {
                "command-api" => "command-api",
                "projector" => "projector",
                "query-edge" => "query-edge",
                "watchdog" => "watchdog",
                _ => "kurz",
            },
        );
        // Room for the connection cap (KURZ_HTTP_MAX_CONNECTIONS is held inside it).
        let files = kurz_web::limits::raise_fd_limit();
        let limits = cfg.http_limits();
        tracing::info!(event = "http_limits", open_files = ?files, max_connections = limits.effective_connections(),
            header_timeout_ms = limits.header_read.as_millis() as u64, idle_timeout_ms = limits.idle.as_millis() as u64,
            body_timeout_ms = limits.body_read.as_millis() as u64, max_header_bytes = limits.max_header_bytes);
        let listener = tokio::net::TcpListener::bind(&cfg.http_addr).await?;
        let stop = kurz::shutdown_signal();
        match role {
            "command-api" => kurz::run_command_api(cfg, listener, stop).await,
            "projector" => kurz::run_projector(cfg, listener, stop).await,
            "query-edge" => kurz::run_query_edge(cfg, listener, stop).await,
            "watchdog" => kurz::run_watchdog(cfg, listener, stop).await,
            _ => kurz::App::build(cfg).await?.run_until_stopped(listener, stop).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(event = "fatal", error = %e);
            eprintln!("kurz: {e}");
            // A configuration error is the operator's to fix (exit 2, as a usage error).
            std::process::ExitCode::from(if matches!(e, kurz::Error::Config(_)) { 2 } else { 1 })
        }
    }
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

/// Runs a one-shot command (`kurz status`, `tail`, `import`): its output is its own,
/// an error goes to stderr as `kurz <name>: …` with a failing exit code.
fn tool<E: std::fmt::Display>(
    name: &str,
    rt: tokio::runtime::Runtime,
    work: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    match rt.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kurz {name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
