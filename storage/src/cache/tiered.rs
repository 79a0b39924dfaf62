//! A process-local near cache over a shared far cache (Redis). Reads try near, then far
//! (a far hit is copied near); offers go to both. The near tier of every edge is kept
//! current by the events it follows (see `query-edge/src/follow.rs`), so a change
//! reaches every edge within the time it takes to read one event.

use super::{CachedLink, LinkCache};
use crate::StorageError;
use async_trait::async_trait;
use std::sync::Arc;

pub struct Tiered {
    pub near: Arc<dyn LinkCache>,
    pub far: Arc<dyn LinkCache>,
}

#[async_trait]
impl LinkCache for Tiered {
    async fn get(&self, code: &str) -> Result<Option<CachedLink>, StorageError> {
        if let Some(hit) = self.near.get(code).await? {
            return Ok(Some(hit));
        }
        match self.far.get(code).await? {
            Some(hit) => {
                self.near.offer(code, hit.clone()).await?;
                Ok(Some(hit))
            }
            None => Ok(None),
        }
    }

    fn get_local(&self, code: &str) -> Option<CachedLink> {
        self.near.get_local(code)
    }

    async fn offer(&self, code: &str, entry: CachedLink) -> Result<(), StorageError> {
        self.near.offer(code, entry.clone()).await?;
        self.far.offer(code, entry).await
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.far.ping().await
    }

    // Visit counts are shared: the far tier alone keeps them.
    async fn count_visit(&self, link: kurz_schemas::Id, max: u64) -> Result<Option<u64>, StorageError> {
        self.far.count_visit(link, max).await
    }

    async fn seed_visits(&self, link: kurz_schemas::Id, seed: u64, max: u64) -> Result<u64, StorageError> {
        self.far.seed_visits(link, seed, max).await
    }

    async fn visits(&self, link: kurz_schemas::Id) -> Result<Option<u64>, StorageError> {
        self.far.visits(link).await
    }
}
