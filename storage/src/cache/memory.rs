//! In-process cache on moka (TinyLFU admission, bounded by entry count).

use super::{CachedLink, LinkCache};
use crate::StorageError;
use async_trait::async_trait;
use moka::ops::compute::Op;
use moka::sync::Cache;

pub struct MokaCache {
    inner: Cache<String, CachedLink>,
}

impl MokaCache {
    pub fn new(capacity: u64) -> MokaCache {
        MokaCache { inner: Cache::builder().max_capacity(capacity).build() }
    }
}

#[async_trait]
impl LinkCache for MokaCache {
    async fn get(&self, code: &str) -> Result<Option<CachedLink>, StorageError> {
        Ok(self.inner.get(code))
    }

    async fn offer(&self, code: &str, entry: CachedLink) -> Result<(), StorageError> {
        self.inner.entry(code.to_string()).and_compute_with(|cur| match cur {
            Some(cur) if cur.value().version > entry.version => Op::Nop,
            _ => Op::Put(entry),
        });
        Ok(())
    }
}
