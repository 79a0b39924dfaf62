//! The vault on ScyllaDB: `infra/cql/vault.cql`, in a keyspace of its own
//! (`KURZ_VAULT_URL=scylla://…/kurz_vault`), with the store URL's credentials and TLS.
//!
//! A create reads, then writes: subjects are random and minted by the one request that
//! needs them, so two writers never race on one subject (no lightweight transaction is
//! needed, and the CQL double has none).

use super::{DataKey, KeyState, Vault};
use crate::store::scylla::config::ScyllaConfig;
use crate::store::scylla::{connect_session, schema};
use crate::StorageError;
use async_trait::async_trait;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

/// The reviewed vault schema.
pub const VAULT_CQL: &str = include_str!("../../../infra/cql/vault.cql");

pub struct ScyllaVault {
    session: Session,
    get: PreparedStatement,
    put: PreparedStatement,
    erase: PreparedStatement,
}

fn engine(e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(format!("scylla vault: {e}"))
}

impl ScyllaVault {
    pub async fn open(url: &str) -> Result<ScyllaVault, StorageError> {
        let cfg = ScyllaConfig::parse(url)?;
        let session = connect_session(&cfg, "vault").await?;
        let ks = &cfg.keyspace;
        let (get, put, erase) = schema::migrate_and_prepare(&session, &cfg, VAULT_CQL, || async {
            let get = session.prepare(format!("SELECT key, erased_at FROM {ks}.vault_keys WHERE subject = ?")).await.map_err(engine)?;
            let put = session.prepare(format!("INSERT INTO {ks}.vault_keys (subject, key) VALUES (?, ?)")).await.map_err(engine)?;
            // A null bound to `key` writes a tombstone over it.
            let erase =
                session.prepare(format!("INSERT INTO {ks}.vault_keys (subject, key, erased_at) VALUES (?, ?, ?)")).await.map_err(engine)?;
            Ok((get, put, erase))
        })
        .await?;
        Ok(ScyllaVault { session, get, put, erase })
    }

    async fn state(&self, subject: &str) -> Result<KeyState, StorageError> {
        let rows = self.session.execute_unpaged(&self.get, (subject,)).await.map_err(engine)?.into_rows_result().map_err(engine)?;
        let row = rows.maybe_first_row::<(Option<Vec<u8>>, Option<i64>)>().map_err(engine)?;
        match row {
            None => Ok(KeyState::Unknown),
            Some((_, Some(at))) => Ok(KeyState::Erased { at }),
            Some((Some(key), None)) => {
                let key: [u8; 32] = key.try_into().map_err(|_| StorageError::Corrupt("vault key is not 32 bytes".into()))?;
                Ok(KeyState::Live(DataKey(key)))
            }
            Some((None, None)) => Err(StorageError::Corrupt(format!("vault subject {subject} has neither key nor tombstone"))),
        }
    }
}

#[async_trait]
impl Vault for ScyllaVault {
    async fn create(&self, subject: &str, key: &DataKey) -> Result<(), StorageError> {
        if self.state(subject).await? != KeyState::Unknown {
            return Err(StorageError::Conflict(format!("vault subject {subject} exists or was erased")));
        }
        self.session.execute_unpaged(&self.put, (subject, key.0.to_vec())).await.map_err(engine)?;
        Ok(())
    }

    /// Concurrently, 32 at a time (each is a read and a write); on a conflict, the
    /// others may be stored.
    async fn create_many(&self, keys: &[(String, DataKey)]) -> Result<(), StorageError> {
        use futures::StreamExt;
        let mut jobs = Vec::with_capacity(keys.len());
        for (s, k) in keys {
            jobs.push(self.create(s, k));
        }
        let results: Vec<Result<(), StorageError>> = futures::stream::iter(jobs).buffer_unordered(32).collect().await;
        results.into_iter().collect()
    }

    async fn get(&self, subject: &str) -> Result<KeyState, StorageError> {
        self.state(subject).await
    }

    async fn erase(&self, subject: &str, at: i64) -> Result<(), StorageError> {
        if matches!(self.state(subject).await?, KeyState::Live(_)) {
            self.session.execute_unpaged(&self.erase, (subject, None::<Vec<u8>>, at)).await.map_err(engine)?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.get(ping_subject()).await.map(|_| ())
    }
}

fn ping_subject() -> &'static str {
    "ping"
}
