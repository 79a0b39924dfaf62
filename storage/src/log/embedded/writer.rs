//! The writer thread (group commit) and the syncer thread (deferred-sync topics).

use super::batch::encode_batch;
use super::partition::Partition;
use super::{AppendReq, Deferred, DeferredMap, TopicMap, Topics};
use crate::StorageError;
use kurz_schemas::Ts;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Syncs the deferred topics' written batches and publishes them, each topic at its
/// interval, until the log is dropped (the writer thread syncs them a last time when it
/// stops).
pub(super) fn syncer_loop(topics: Weak<TopicMap>, deferred: Weak<DeferredMap>) {
    let mut last: HashMap<String, Instant> = HashMap::new();
    loop {
        let (Some(topics), Some(deferred)) = (topics.upgrade(), deferred.upgrade()) else { return };
        let due: Vec<(String, Duration)> = deferred.read().expect("deferred map poisoned").iter().map(|(t, d)| (t.clone(), *d)).collect();
        let mut wait = Duration::from_millis(200);
        for (topic, every) in due {
            let at = last.entry(topic.clone()).or_insert_with(Instant::now);
            let left = every.saturating_sub(at.elapsed());
            if !left.is_zero() {
                wait = wait.min(left);
                continue;
            }
            *at = Instant::now();
            wait = wait.min(every);
            let parts = topics.read().expect("topic map poisoned").get(&topic).cloned();
            for part in parts.iter().flat_map(|p| p.iter()) {
                sync_deferred(part);
            }
        }
        drop((topics, deferred));
        std::thread::sleep(wait);
    }
}

/// Syncs what a deferred-sync partition has written and publishes it.
pub(super) fn sync_deferred(part: &Partition) {
    let (batches, len, next) = {
        let mut t = part.tail.lock().expect("tail poisoned");
        if t.unsynced.is_empty() {
            return;
        }
        (std::mem::take(&mut t.unsynced), t.len, t.next)
    };
    // A failed sync is not retried: the batches stay unpublished and the partition
    // stops (see `Partition::failed`); a restart recovers what reached the disk.
    if part.sync().is_ok() {
        part.publish(&batches, len, next);
    }
}

pub(super) fn writer_loop(topics: Topics, deferred: Deferred, mut rx: mpsc::Receiver<AppendReq>) {
    const MAX_BATCH: usize = 512;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match write_group(&topics, &deferred, &batch) {
            Ok(offsets) => {
                for (req, offs) in batch.into_iter().zip(offsets) {
                    let _ = req.reply.send(offs);
                }
            }
            Err(e) => {
                tracing::error!(event = "log_append_failed", error = %e);
                let msg = e.to_string();
                for req in batch {
                    let _ = req.reply.send(Err(StorageError::Engine(msg.clone())));
                }
            }
        }
    }
    // The log is closing: what deferred topics wrote reaches the disk now.
    for parts in topics.read().expect("topic map poisoned").values() {
        for part in parts.iter() {
            sync_deferred(part);
        }
    }
}

/// One pending partition of a group: the bytes to append and the batches in them.
pub(super) struct Pending {
    pub(super) parts: Arc<Vec<Partition>>,
    pub(super) p: usize,
    /// Synced by the syncer thread, not by the group.
    pub(super) deferred: bool,
    /// Where the group's bytes go in the file, and the offset of its first record.
    pub(super) base: u64,
    pub(super) buf: Vec<u8>,
    /// `(first_offset, position in buf)` of each batch, and the end offset after them.
    pub(super) batches: Vec<(u64, u64)>,
    pub(super) next: u64,
}

/// Writes a group of appends: each partition's batches in one write, then one fsync per
/// touched file (deferred-sync topics: none), then publishes. On failure, truncates
/// every touched file back. The writer thread is the only one that moves a tail, so
/// the tails read here stay put until the group is done: a conditional append whose
/// partition (after the group's earlier appends) does not end where it expects is
/// answered [`StorageError::Moved`] and writes nothing.
pub(super) fn write_group(
    topics: &Topics,
    deferred: &Deferred,
    group: &[AppendReq],
) -> Result<Vec<Result<Vec<u64>, StorageError>>, StorageError> {
    let now = Ts::now();
    let mut pending: Vec<((String, u32), Pending)> = Vec::new();
    let mut offsets = Vec::with_capacity(group.len());
    {
        let topics = topics.read().expect("topic map poisoned");
        let deferred = deferred.read().expect("deferred map poisoned");
        for req in group {
            let parts = topics.get(&req.topic).ok_or_else(|| StorageError::UnknownTopic(req.topic.clone()))?;
            if req.partition as usize >= parts.len() {
                return Err(StorageError::UnknownPartition { topic: req.topic.clone(), partition: req.partition });
            }
            if let Some(why) = parts[req.partition as usize].failed.get() {
                offsets.push(Err(super::partition::stopped_error(&parts[req.partition as usize].path, why)));
                continue;
            }
            let key = (req.topic.clone(), req.partition);
            let i = match pending.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    let (base, next) = {
                        let t = parts[req.partition as usize].tail.lock().expect("tail poisoned");
                        (t.len, t.next)
                    };
                    let deferred = deferred.contains_key(&req.topic);
                    let pd = Pending {
                        parts: parts.clone(),
                        p: req.partition as usize,
                        deferred,
                        base,
                        buf: Vec::new(),
                        batches: Vec::new(),
                        next,
                    };
                    pending.push((key, pd));
                    pending.len() - 1
                }
            };
            let pd = &mut pending[i].1;
            let first = pd.next;
            if let Some(expected) = req.expect.filter(|e| *e != first) {
                offsets.push(Err(StorageError::Moved { topic: req.topic.clone(), partition: req.partition, expected, found: first }));
                continue;
            }
            if req.records.is_empty() {
                offsets.push(Ok(Vec::new()));
                continue;
            }
            pd.batches.push((first, pd.buf.len() as u64));
            encode_batch(&mut pd.buf, now, first, &req.records);
            pd.next += req.records.len() as u64;
            offsets.push(Ok((first..pd.next).collect()));
        }
    }
    // A group of refused conditional appends only writes nothing.
    pending.retain(|(_, pd)| !pd.batches.is_empty());
    let mut written: Vec<&Pending> = Vec::new();
    let result = (|| -> Result<(), StorageError> {
        for (_, pd) in &pending {
            written.push(pd);
            pd.parts[pd.p].file.write_all_at(&pd.buf, pd.base)?;
        }
        for (_, pd) in pending.iter().filter(|(_, pd)| !pd.deferred) {
            pd.parts[pd.p].sync()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for pd in written {
            let _ = pd.parts[pd.p].file.set_len(pd.base);
        }
        return Err(e);
    }
    for (_, pd) in &pending {
        let part = &pd.parts[pd.p];
        let batches: Vec<(u64, u64)> = pd.batches.iter().map(|&(first, at)| (first, pd.base + at)).collect();
        let len = pd.base + pd.buf.len() as u64;
        let mut t = part.tail.lock().expect("tail poisoned");
        t.len = len;
        t.next = pd.next;
        if pd.deferred {
            t.unsynced.extend(batches);
        } else {
            // Synced above, and so is anything a deferred sync had not yet published.
            let mut all = std::mem::take(&mut t.unsynced);
            all.extend(batches);
            drop(t);
            part.publish(&all, len, pd.next);
        }
    }
    Ok(offsets)
}
