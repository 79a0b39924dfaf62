use kurz_web::ApiError;

/// Errors of the write side outside a single HTTP request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] kurz_storage::StorageError),
    #[error("topic layout: {0}")]
    Topics(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Another writer appended to a decider's events partition: this decider's state
    /// is stale (it may no longer own the partition) and must be restored.
    /// An event of the partition does not decode: restoring on without it would decide
    /// against a state that misses it, so the partition stops (fails closed).
    #[error(
        "events partition {partition}: the event at offset {offset} does not decode ({reason}); nothing is decided until it can be read"
    )]
    Unreadable { partition: u32, offset: u64, reason: String },
    /// A record's personal data could not be sealed (its key is not there).
    #[error("sealing: {0}")]
    Sealing(#[from] kurz_schemas::personal::OpenError),
    #[error("events partition {partition} moved under its decider: expected end {expected}, found {found}")]
    Fenced { partition: u32, expected: u64, found: u64 },
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::Storage(s) => ApiError::from(s),
            other => ApiError::internal(other),
        }
    }
}
