//! kurz's projector: consumes the events and clicks topics and builds the read models.
//!
//! Each projection lives in its own folder under `projections/` and only maps an input
//! record to absolute [`Mutation`]s; `runtime` reads the log, offers link states to the
//! hot cache, and applies each batch to the read store together with the positions it
//! reaches, in one atomic step. Replaying from offset zero, or applying a batch twice,
//! therefore gives the same state.

pub mod batch;
pub mod deadletter;
pub mod metrics;
pub mod projections;
pub mod replay;
mod runtime;
pub mod verify;
pub mod watchdog;

pub use projections::{Input, Projection};
pub use runtime::{Projector, MAX_ATTEMPTS};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] kurz_storage::StorageError),
    #[error(transparent)]
    Apply(#[from] kurz_storage::store::ApplyError),
    #[error("no projection '{name}' (there are: {known})")]
    UnknownProjection { name: String, known: String },
    #[error("replay: {0}")]
    Replay(String),
    #[error("{0} is not parked")]
    NotParked(String),
}
