//! The keyring: the vault as the codecs use it. It mints subjects, loads the keys a
//! batch of records needs (concurrently, and cached), and answers the synchronous
//! lookups of [`kurz_schemas::personal`].
//!
//! Caching: an erased key stays erased, so erasures are cached for good. A live key is
//! cached for [`LIVE_FOR`] and then loaded again, so a process that did not erase a key
//! itself stops using it within that time.

use super::{DataKey, KeyState, Vault};
use crate::StorageError;
use futures::StreamExt;
use kurz_schemas::personal::SubjectKey;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a live key is used before it is loaded again.
pub const LIVE_FOR: Duration = Duration::from_secs(300);
/// Keys stored in one vault write.
const MINT_CHUNK: usize = 256;
/// Keys loaded at once.
const CONCURRENCY: usize = 32;

#[derive(Clone)]
enum Entry {
    Live([u8; 32], Instant),
    Erased,
}

pub struct Keyring {
    vault: Arc<dyn Vault>,
    cache: quick_cache::sync::Cache<String, Entry>,
}

impl Keyring {
    pub fn new(vault: Arc<dyn Vault>) -> Arc<Keyring> {
        Arc::new(Keyring { vault, cache: quick_cache::sync::Cache::new(100_000) })
    }

    /// A keyring over an embedded vault in `dir` (`vault.redb`), as `open_vault("embedded", dir)`.
    pub fn embedded(dir: &std::path::Path) -> Result<Arc<Keyring>, StorageError> {
        let vault = super::embedded::RedbVault::open(&dir.join("vault.redb"))?;
        Ok(Keyring::new(Arc::new(super::Instrumented::new(Arc::new(vault)))))
    }

    pub fn vault(&self) -> &Arc<dyn Vault> {
        &self.vault
    }

    /// A new subject with a fresh key, stored in the vault before it is returned.
    pub async fn mint(&self) -> Result<String, StorageError> {
        Ok(self.mint_many(1).await?.remove(0))
    }

    /// `n` new subjects ([`Keyring::mint`]), stored in few writes.
    pub async fn mint_many(&self, n: usize) -> Result<Vec<String>, StorageError> {
        let fresh: Vec<(String, DataKey)> = (0..n).map(|_| (uuid::Uuid::new_v4().to_string(), DataKey::random())).collect();
        for chunk in fresh.chunks(MINT_CHUNK) {
            self.vault.create_many(chunk).await?;
        }
        Ok(fresh
            .into_iter()
            .map(|(s, k)| {
                self.cache.insert(s.clone(), Entry::Live(k.0, Instant::now()));
                s
            })
            .collect())
    }

    /// Loads the keys of `subjects` that are not cached (or whose live copy is older
    /// than [`LIVE_FOR`]), and answers the subjects the vault never saw. The log names
    /// only subjects whose key was stored before the record was appended, so an
    /// unknown one means a vault other than the one the records were written with
    /// (see [`unknown_subject`]).
    pub async fn load<S: AsRef<str>>(&self, subjects: &[S]) -> Result<Vec<String>, StorageError> {
        let mut wanted: Vec<String> = subjects
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| match self.cache.get(*s) {
                Some(Entry::Erased) => false,
                Some(Entry::Live(_, at)) => at.elapsed() > LIVE_FOR,
                None => true,
            })
            .map(str::to_string)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut jobs = Vec::with_capacity(wanted.len());
        for s in wanted {
            let vault = self.vault.clone();
            jobs.push(async move {
                let r = vault.get(&s).await;
                (s, r)
            });
        }
        let got: Vec<(String, Result<KeyState, StorageError>)> = futures::stream::iter(jobs).buffer_unordered(CONCURRENCY).collect().await;
        let mut unknown = Vec::new();
        for (s, state) in got {
            match state? {
                KeyState::Live(k) => self.cache.insert(s, Entry::Live(k.0, Instant::now())),
                KeyState::Erased { .. } => self.cache.insert(s, Entry::Erased),
                KeyState::Unknown => unknown.push(s),
            }
        }
        Ok(unknown)
    }

    /// [`Keyring::load`], where a subject the vault does not know is an error.
    pub async fn load_all<S: AsRef<str>>(&self, subjects: &[S]) -> Result<(), StorageError> {
        match self.load(subjects).await?.first() {
            Some(s) => Err(unknown_subject(s)),
            None => Ok(()),
        }
    }

    /// A loaded key, for [`kurz_schemas::personal::Keys`].
    pub fn key(&self, subject: &str) -> Option<SubjectKey> {
        match self.cache.get(subject)? {
            Entry::Live(k, _) => Some(SubjectKey::Live(k)),
            Entry::Erased => Some(SubjectKey::Erased),
        }
    }

    /// Destroys the subject's key in the vault (crypto-shredding).
    pub async fn erase(&self, subject: &str, at_ms: i64) -> Result<(), StorageError> {
        self.vault.erase(subject, at_ms).await?;
        self.cache.insert(subject.to_string(), Entry::Erased);
        Ok(())
    }

    /// A fresh nonce for sealing.
    pub fn nonce() -> [u8; 12] {
        use rand::RngCore;
        let mut n = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut n);
        n
    }
}

/// The error for a subject the vault does not know.
pub fn unknown_subject(subject: &str) -> StorageError {
    StorageError::Config(format!(
        "the key vault has no key for subject {subject}: KURZ_VAULT_URL must name the vault this log was written with"
    ))
}
