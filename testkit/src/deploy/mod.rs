//! A split deployment of the `kurz` binary: every role in its own process, N of each,
//! over one shared tansu broker (the log) and one in-process CQL node (the read store,
//! standing in for ScyllaDB), behind a small round-robin HTTP front that plays the
//! nginx of `docker-compose.yml`: writes (POST/PUT/DELETE/PATCH) go to the command-api
//! processes, reads (GET/HEAD) to the query-edge processes, in turn.
//!
//! Start one with [`Split::start`], naming the build under test ([`Kurz`]: the binary,
//! known to kurz's integration tests as `env!("CARGO_BIN_EXE_kurz")`, and kurz's
//! partitioning). Processes are killed on drop; when a test panics, the front's
//! counters, the partition ownership the processes logged, and the tail of every
//! process's log (JSON lines from stdout, plus stderr) are printed. All deployments of
//! one test binary run one at a time (a process-wide lock), since each one is six or
//! more processes on a small machine.
//!
//! The front adds [`BACKEND_HEADER`] (which process answered) and [`ATTEMPTS_HEADER`] to
//! every answer, so a failing assertion can name the process. It routes around a dead
//! backend: a request that could not reach one goes to the next; one that reached a
//! backend which died before answering is resent only when that is safe (GET, HEAD, PUT,
//! DELETE, or a write with an `Idempotency-Key`).
//!
//! Modules: [`process`] (one role process: its supervisor and captured log), [`front`]
//! (the proxy), [`split`] (the deployment), [`ownership`] (who owned which partition,
//! from the logs), [`netns`] (a process cut off the network).
//!
//! Environment: `KURZ_SPLIT_LOG_DIR=<dir>` also writes every process's full log to
//! `<dir>/<role>#<index>.log`; `KURZ_SPLIT_KAFKA_EXTRA=a.b=v&…` appends parameters to
//! the `kafka://` URL (librdkafka settings, for experiments); `KURZ_SPLIT_BIN` runs
//! another build's `kurz` binary (to show what a test finds on an older build).

pub mod front;
pub mod netns;
pub mod ownership;
pub mod process;
pub mod split;

pub use crate::http::BACKEND_HEADER;
pub use front::ATTEMPTS_HEADER;
pub use netns::NetNs;
pub use ownership::Tenure;
pub use process::{Proc, ProcLog};
pub use split::{Opts, Split};

pub const ADMIN_TOKEN: &str = "split-admin-token-0123456789abcdef";
/// Shared by every process: session tokens and derived short codes must agree.
pub const SECRET: &str = "split-deployment-shared-secret-0123456789";
pub const PARTITIONS: u32 = 4;
pub const CLICK_PARTITIONS: u32 = 2;

/// The kurz build under test: what only kurz's own tests know.
#[derive(Clone, Copy, Debug)]
pub struct Kurz {
    /// The `kurz` binary: `env!("CARGO_BIN_EXE_kurz")` in kurz's integration tests.
    pub bin: &'static str,
    /// How kurz routes a record key to one of `n` partitions
    /// (`kurz_storage::log::partition_for`).
    pub partition_for: fn(&str, u32) -> u32,
}

impl Kurz {
    /// The command partition a link with `code` is decided in (as kurz routes it).
    pub fn partition_of_code(&self, code: &str) -> u32 {
        (self.partition_for)(&format!("link:{code}"), PARTITIONS)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    CommandApi,
    Projector,
    QueryEdge,
    Watchdog,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::CommandApi, Role::Projector, Role::QueryEdge];

    pub fn command(self) -> &'static str {
        match self {
            Role::CommandApi => "command-api",
            Role::Projector => "projector",
            Role::QueryEdge => "query-edge",
            Role::Watchdog => "watchdog",
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}
