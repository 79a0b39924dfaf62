//! The key vault port: one data key per subject (a user), kept outside the log.
//!
//! Personal data in the public topics is sealed under its subject's data key
//! (crypto-shredding): erasing the key makes every copy of the data in the log, in
//! every consumer and in every backup unreadable at once, while the records around
//! it (links, clicks) stay. The vault is therefore the one store that is not derived
//! from the log and never replayed; its erasures are final.
//!
//! - [`Vault::create`] makes the key of a new subject. Subjects are random (minted by
//!   the request that needs one), so two writers never create the same subject; a
//!   subject that exists, or was erased, is refused.
//! - [`Vault::get`] tells a live key from an erased one (a tombstone is kept, without
//!   the key) and from a subject never seen.
//! - [`Vault::erase`] destroys the key; idempotent.
//!
//! Backends: `embedded` (`<data dir>/vault.redb`) and `scylla://…/keyspace` (a keyspace
//! of its own: store generations come and go with replays, the vault stays).

pub mod embedded;
pub mod keyring;
#[cfg(feature = "scylla")]
pub mod scylla;

pub use keyring::Keyring;

use crate::{metrics, StorageError};
use async_trait::async_trait;
use std::sync::Arc;

/// A 256-bit data key. Its bytes never reach a log line or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(pub [u8; 32]);

impl DataKey {
    /// A fresh key from the OS's CSPRNG.
    pub fn random() -> DataKey {
        use rand::RngCore;
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        DataKey(k)
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(***)")
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        // Best effort: the copy this value held does not outlive it.
        for b in self.0.iter_mut() {
            // SAFETY: a volatile write to a byte this value owns.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    Live(DataKey),
    /// The subject existed; its key was destroyed at this time (ms since the epoch).
    Erased {
        at: i64,
    },
    Unknown,
}

#[async_trait]
pub trait Vault: Send + Sync + 'static {
    /// Stores `key` for a new `subject`. A subject that exists or was erased is an
    /// error ([`StorageError::Conflict`]): keys are never replaced.
    async fn create(&self, subject: &str, key: &DataKey) -> Result<(), StorageError>;
    /// [`Vault::create`] for many subjects; a backend may store them in one write.
    async fn create_many(&self, keys: &[(String, DataKey)]) -> Result<(), StorageError> {
        for (s, k) in keys {
            self.create(s, k).await?;
        }
        Ok(())
    }
    async fn get(&self, subject: &str) -> Result<KeyState, StorageError>;
    /// Destroys the subject's key, keeping a tombstone (when, not what). Erasing an
    /// erased or unknown subject is a no-op.
    async fn erase(&self, subject: &str, at: i64) -> Result<(), StorageError>;
    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// The longest subject taken (a UUID is 36 characters).
pub const MAX_SUBJECT_LEN: usize = 64;

fn check_subject(subject: &str) -> Result<(), StorageError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN || !subject.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(StorageError::Config(format!("a vault subject is 1 to {MAX_SUBJECT_LEN} of [A-Za-z0-9-]")));
    }
    Ok(())
}

/// Checks subjects and counts operations once, whatever the backend.
pub struct Instrumented {
    inner: Arc<dyn Vault>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn Vault>) -> Instrumented {
        Instrumented { inner }
    }

    fn count<T>(op: &str, r: &Result<T, StorageError>) {
        let result = if r.is_ok() { "ok" } else { "error" };
        metrics::get().vault_ops.with_label_values(&[op, result]).inc();
    }
}

#[async_trait]
impl Vault for Instrumented {
    async fn create(&self, subject: &str, key: &DataKey) -> Result<(), StorageError> {
        check_subject(subject)?;
        let r = self.inner.create(subject, key).await;
        Self::count("create", &r);
        r
    }
    async fn create_many(&self, keys: &[(String, DataKey)]) -> Result<(), StorageError> {
        for (s, _) in keys {
            check_subject(s)?;
        }
        let r = self.inner.create_many(keys).await;
        metrics::get().vault_ops.with_label_values(&["create", if r.is_ok() { "ok" } else { "error" }]).inc_by(keys.len() as u64);
        r
    }
    async fn get(&self, subject: &str) -> Result<KeyState, StorageError> {
        check_subject(subject)?;
        let r = self.inner.get(subject).await;
        Self::count("get", &r);
        r
    }
    async fn erase(&self, subject: &str, at: i64) -> Result<(), StorageError> {
        check_subject(subject)?;
        let r = self.inner.erase(subject, at).await;
        Self::count("erase", &r);
        r
    }
    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }
}
