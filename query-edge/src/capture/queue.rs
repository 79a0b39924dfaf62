//! The queue between redirects and the flusher: a few mutex-guarded vectors (shards),
//! one picked per worker thread, so recording a click is an uncontended lock and a
//! move, and wakes nobody; the flusher swaps every shard's vector out once per linger
//! period. Bounded: a full shard drops further clicks (the caller counts them).

use super::RawClick;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard number (modulo the shard count), handed out round-robin.
    static THREAD_SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

pub struct ClickQueue {
    shards: Box<[Mutex<Vec<RawClick>>]>,
    per_shard: usize,
}

impl ClickQueue {
    /// Holds at most about `capacity` clicks in all.
    pub fn new(capacity: usize) -> ClickQueue {
        let n = std::thread::available_parallelism().map_or(4, |n| n.get()).clamp(2, 64) * 2;
        ClickQueue { shards: (0..n).map(|_| Mutex::new(Vec::new())).collect(), per_shard: capacity.div_ceil(n).max(1) }
    }

    /// Queues `click`; false if this thread's shard is full (the click is dropped).
    pub fn push(&self, click: RawClick) -> bool {
        let i = THREAD_SLOT.with(|s| *s) % self.shards.len();
        let mut shard = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= self.per_shard {
            return false;
        }
        shard.push(click);
        true
    }

    /// Moves every queued click into `out`, oldest first per shard. A shard keeps its
    /// vector's capacity, so redirects push into memory that is already there instead of
    /// growing a fresh vector from nothing every linger period.
    pub fn take_all(&self, out: &mut Vec<RawClick>) {
        for s in self.shards.iter() {
            let mut shard = s.lock().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.drain(..));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kurz_schemas::Ts;

    fn click(n: i64) -> RawClick {
        RawClick {
            visited: crate::capture::Visited::Link(crate::capture::test_link(1, "c")),
            at: Ts(n),
            head: false,
            referer: None,
            user_agent: None,
            addr: None,
            query: None,
            country: None,
        }
    }

    #[test]
    fn every_thread_s_clicks_come_out_once_and_the_bound_holds() {
        let q = std::sync::Arc::new(ClickQueue::new(64));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || (0..10).filter(|i| q.push(click(t * 100 + i))).count())
            })
            .collect();
        let pushed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let mut out = Vec::new();
        q.take_all(&mut out);
        assert_eq!(out.len(), pushed);
        let mut ats: Vec<i64> = out.iter().map(|c| c.at.0).collect();
        ats.sort();
        ats.dedup();
        assert_eq!(ats.len(), pushed, "no click twice");
        q.take_all(&mut out);
        assert_eq!(out.len(), pushed, "taken clicks are gone from the queue");
        assert!(q.shards.iter().any(|s| s.lock().unwrap().capacity() > 0), "shards keep their capacity");

        let small = ClickQueue::new(1);
        assert!(small.push(click(1)));
        assert!(!small.push(click(2)), "a full shard refuses");
    }
}
