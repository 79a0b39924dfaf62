//! Stalled partitions: records are waiting (the log's end is past the position) while
//! the position has not moved for `stall_after`. Pure bookkeeping over observations;
//! the watchdog feeds it and acts on what it reports.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A partition reported as stalled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stalled {
    pub topic: String,
    pub partition: u32,
    pub position: u64,
    pub end: u64,
    /// The end moved while the position stood still: the lag is growing.
    pub lag_growing: bool,
    pub still_for: Duration,
}

struct Seen {
    position: u64,
    first_end: u64,
    since: Instant,
}

#[derive(Default)]
pub struct Stalls {
    seen: HashMap<(String, u32), Seen>,
}

impl Stalls {
    /// Records that `topic`/`partition` stands at `position` with the log ending at
    /// `end`; returns the stall if it has stood still with records waiting for
    /// `stall_after` or longer.
    pub fn observe(
        &mut self,
        topic: &str,
        partition: u32,
        position: u64,
        end: u64,
        now: Instant,
        stall_after: Duration,
    ) -> Option<Stalled> {
        let k = (topic.to_string(), partition);
        if end <= position {
            self.seen.remove(&k);
            return None;
        }
        let seen = self.seen.entry(k).or_insert(Seen { position, first_end: end, since: now });
        if seen.position != position {
            *seen = Seen { position, first_end: end, since: now };
            return None;
        }
        let still_for = now.saturating_duration_since(seen.since);
        (still_for >= stall_after).then(|| Stalled {
            topic: topic.to_string(),
            partition,
            position,
            end,
            lag_growing: end > seen.first_end,
            still_for,
        })
    }

    /// Partitions currently standing still with records waiting, per topic.
    pub fn stalled_count(&self, topic: &str, now: Instant, stall_after: Duration) -> usize {
        self.seen.iter().filter(|((t, _), s)| t == topic && now.saturating_duration_since(s.since) >= stall_after).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_stalled_only_while_records_wait_and_its_position_stands() {
        let mut s = Stalls::default();
        let t0 = Instant::now();
        let after = Duration::from_secs(10);
        let at = |secs| t0 + Duration::from_secs(secs);
        // Caught up: never stalled, however long.
        assert_eq!(s.observe("e", 0, 5, 5, t0, after), None);
        assert_eq!(s.observe("e", 0, 5, 5, at(60), after), None);
        // Records wait; the position moves: not stalled.
        assert_eq!(s.observe("e", 0, 5, 9, at(61), after), None);
        assert_eq!(s.observe("e", 0, 7, 12, at(70), after), None);
        assert_eq!(s.observe("e", 0, 7, 12, at(79), after), None, "9 s still: not yet");
        let stalled = s.observe("e", 0, 7, 15, at(80), after).expect("10 s still with records waiting");
        assert_eq!((stalled.position, stalled.end, stalled.lag_growing), (7, 15, true));
        assert_eq!(s.stalled_count("e", at(80), after), 1);
        assert_eq!(s.stalled_count("c", at(80), after), 0);
        // Another partition's clock is its own.
        assert_eq!(s.observe("e", 1, 0, 3, at(80), after), None);
        // It moves again: the clock restarts.
        assert_eq!(s.observe("e", 0, 15, 16, at(81), after), None);
        assert_eq!(s.stalled_count("e", at(85), after), 0);
        // A stall whose end does not move is reported, without a growing lag.
        let flat = s.observe("e", 0, 15, 16, at(95), after).unwrap();
        assert!(!flat.lag_growing);
    }
}
