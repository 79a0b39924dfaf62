#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no {port} backend for scheme '{scheme}'")]
    UnsupportedBackend { port: &'static str, scheme: String },
    /// A backend URL whose backend this build left out (its cargo feature was off).
    #[error("configuration: {port} URL '{scheme}://…': this kurz was built without {backend} support (cargo feature `{feature}`)")]
    NotBuilt { port: &'static str, scheme: String, backend: &'static str, feature: &'static str },
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("partition {partition} out of range for topic '{topic}'")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("the {0} is shut down")]
    Closed(&'static str),
    #[error("configuration: {0}")]
    Config(String),
    /// A write that would replace what must not be replaced (a vault key).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A conditional append found the partition ending elsewhere: another writer got
    /// in first. Nothing was appended.
    #[error("{topic}[{partition}] ends at {found}, not at {expected}: another writer appended")]
    Moved { topic: String, partition: u32, expected: u64, found: u64 },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    pub fn engine(e: impl std::fmt::Display) -> StorageError {
        StorageError::Engine(e.to_string())
    }
}

macro_rules! engine_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self { StorageError::Engine(e.to_string()) }
        }
    )*};
}
engine_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        StorageError::Corrupt(e.to_string())
    }
}
