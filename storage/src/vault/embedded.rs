//! The embedded vault: `vault.redb`, one table of subject → key or tombstone.
//!
//! redb copies on write: an erased key's old page is freed, not wiped, and its bytes
//! stay in the file until the page is reused. The embedded vault is for one machine
//! (development, a single node); see `infra/backend-tls.md` on erasure at rest.

use super::{DataKey, KeyState, Vault};
use crate::StorageError;
use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

/// subject → `[1, key…]` (live, 33 bytes) or `[0, erased-at as i64 BE]` (9 bytes).
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");

pub struct RedbVault {
    db: Arc<Database>,
}

impl RedbVault {
    pub fn open(path: &Path) -> Result<RedbVault, StorageError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = Database::create(path)?;
        let w = db.begin_write()?;
        w.open_table(KEYS)?;
        w.commit()?;
        Ok(RedbVault { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(StorageError::engine)?
    }
}

fn decode(v: &[u8]) -> Result<KeyState, StorageError> {
    match v {
        [1, key @ ..] if key.len() == 32 => Ok(KeyState::Live(DataKey(key.try_into().expect("32 bytes")))),
        [0, at @ ..] if at.len() == 8 => Ok(KeyState::Erased { at: i64::from_be_bytes(at.try_into().expect("8 bytes")) }),
        _ => Err(StorageError::Corrupt("vault entry of unknown form".into())),
    }
}

#[async_trait]
impl Vault for RedbVault {
    async fn create(&self, subject: &str, key: &DataKey) -> Result<(), StorageError> {
        self.create_many(&[(subject.to_string(), key.clone())]).await
    }

    /// One durable write for all of them: all are stored, or none.
    async fn create_many(&self, keys: &[(String, DataKey)]) -> Result<(), StorageError> {
        let keys = keys.to_vec();
        self.blocking(move |db| {
            let mut w = db.begin_write()?;
            w.set_durability(Durability::Immediate)?;
            {
                let mut t = w.open_table(KEYS)?;
                for (subject, key) in &keys {
                    if t.get(subject.as_str())?.is_some() {
                        return Err(StorageError::Conflict(format!("vault subject {subject} exists or was erased")));
                    }
                    let mut v = [0u8; 33];
                    v[0] = 1;
                    v[1..].copy_from_slice(&key.0);
                    t.insert(subject.as_str(), v.as_slice())?;
                    v.fill(0);
                }
            }
            w.commit()?;
            Ok(())
        })
        .await
    }

    async fn get(&self, subject: &str) -> Result<KeyState, StorageError> {
        let subject = subject.to_string();
        self.blocking(move |db| {
            let r = db.begin_read()?;
            let t = r.open_table(KEYS)?;
            let found = t.get(subject.as_str())?;
            match found {
                None => Ok(KeyState::Unknown),
                Some(v) => decode(v.value()),
            }
        })
        .await
    }

    async fn erase(&self, subject: &str, at: i64) -> Result<(), StorageError> {
        let subject = subject.to_string();
        self.blocking(move |db| {
            let mut w = db.begin_write()?;
            w.set_durability(Durability::Immediate)?;
            {
                let mut t = w.open_table(KEYS)?;
                let live = matches!(t.get(subject.as_str())?.map(|v| v.value().first().copied()), Some(Some(1)));
                if live {
                    let mut v = [0u8; 9];
                    v[1..].copy_from_slice(&at.to_be_bytes());
                    t.insert(subject.as_str(), v.as_slice())?;
                }
            }
            w.commit()?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.db.begin_read()?;
        Ok(())
    }
}
