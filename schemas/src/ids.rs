//! Integer ids that are safe in JSON and unique without a central counter.
//!
//! Layout of a generated id (53 bits, so every id is an exact IEEE-754 double):
//!
//! ```text
//!  52        12 11      6 5     0
//! [ ms since 2024-01-01 ][partition][ seq ]
//!       40 bits            6 bits   6 bits
//! ```
//!
//! Each decider partition owns its own generator, so two partitions never mint the same
//! id; within a partition the generator is monotonic (a burst past 64 ids per
//! millisecond borrows the next millisecond) and is restored from the highest id in the
//! partition's history, so a clock that steps back after a restart cannot repeat an id.
//! Ids are written into events, so replay reproduces them exactly. Bit 52 is never set
//! by the generator: it is reserved for ids derived from log positions (clicks).

use serde::{Deserialize, Serialize};

/// 2^53: the largest integer a JSON double carries exactly.
pub const MAX_JSON_ID: u64 = 1 << 53;
/// 2024-01-01T00:00:00Z in Unix milliseconds.
pub const ID_EPOCH_MS: i64 = 1_704_067_200_000;
pub const MAX_PARTITIONS: u32 = 64;
/// Ids at or above this value are derived from click-log positions.
pub const CLICK_ID_BASE: u64 = 1 << 52;
/// Explicit ids given by bulk loads must stay below this, clear of generated ids.
pub const MAX_EXPLICIT_ID: u64 = 1 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Id(u64);

/// The kinds of explicit id a bulk load may bring, each its own namespace (user ids
/// need none: every user is decided by one partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// A link's (`/urls`) id.
    Link,
    /// A history row's (`/events`) id.
    Event,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Link => "link",
            IdKind::Event => "event",
        }
    }
}

/// The key of the partition that owns explicit id `id` of `kind`: the one decider that
/// grants it ([`crate::CommandBody::ReserveIds`]), whichever partition the row it
/// belongs to is decided in.
pub fn id_key(kind: IdKind, id: Id) -> String {
    format!("id:{}:{}", kind.as_str(), id.get())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("id must be a positive integer below 2^53")]
    OutOfRange,
}

impl Id {
    pub fn new(v: u64) -> Result<Id, IdError> {
        if v == 0 || v >= MAX_JSON_ID {
            Err(IdError::OutOfRange)
        } else {
            Ok(Id(v))
        }
    }
    pub fn get(self) -> u64 {
        self.0
    }
    /// The id the orphan visits' aggregates are stored under, in the read store's click
    /// aggregates ([`crate::analytics::ORPHANS`]): in the click-derived range, which no
    /// link id reaches (link ids stay below [`CLICK_ID_BASE`]). Never in a public answer.
    pub const ORPHAN_AGGREGATES: Id = Id(MAX_JSON_ID - 1);

    /// Id of the click stored at `offset` of click-log `partition`.
    pub fn for_click(partition: u32, offset: u64) -> Id {
        Id(CLICK_ID_BASE | ((offset & ((1 << 46) - 1)) << 6) | (partition as u64 & 63))
    }
}

impl TryFrom<u64> for Id {
    type Error = IdError;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        Id::new(v)
    }
}
impl From<Id> for u64 {
    fn from(v: Id) -> u64 {
        v.0
    }
}
impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The per-partition id generator. Pure: the caller passes the clock.
#[derive(Debug, Clone)]
pub struct IdGen {
    partition: u64,
    last: u64,
}

impl IdGen {
    pub fn new(partition: u32) -> IdGen {
        assert!(partition < MAX_PARTITIONS, "at most {MAX_PARTITIONS} partitions");
        IdGen { partition: partition as u64, last: 0 }
    }

    /// Records an id seen in this partition's history.
    pub fn observe(&mut self, id: Id) {
        if id.0 < CLICK_ID_BASE && id.0 > self.last && (id.0 >> 6) & 63 == self.partition {
            self.last = id.0;
        }
    }

    pub fn next(&mut self, now_ms: i64) -> Id {
        let ms = (now_ms - ID_EPOCH_MS).max(0) as u64;
        let floor = (ms << 12) | (self.partition << 6);
        let id = if floor > self.last {
            floor
        } else {
            let seq = self.last & 63;
            if seq == 63 {
                (((self.last >> 12) + 1) << 12) | (self.partition << 6)
            } else {
                self.last + 1
            }
        };
        debug_assert!(id < CLICK_ID_BASE);
        self.last = id;
        Id(id)
    }
}

impl schemars::JsonSchema for Id {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Id".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A kurz id: a positive integer that fits a JSON number exactly (below 2^53).",
            "type": "integer",
            "minimum": 1,
            "exclusiveMaximum": MAX_JSON_ID
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_monotonic_and_json_safe_across_partitions() {
        let now = ID_EPOCH_MS + 86_400_000 * 700;
        let mut seen = HashSet::new();
        for p in [0u32, 1, 63] {
            let mut g = IdGen::new(p);
            let mut prev = 0;
            for i in 0..10_000 {
                // the clock stands still, then steps back: ids still grow
                let id = g.next(now - (i % 3)).get();
                assert!(id > prev && id < CLICK_ID_BASE && id < MAX_JSON_ID);
                assert_eq!((id >> 6) & 63, p as u64);
                assert!(seen.insert(id));
                prev = id;
            }
        }
    }

    #[test]
    fn restored_generator_never_repeats() {
        let now = ID_EPOCH_MS + 5_000;
        let mut a = IdGen::new(3);
        let ids: Vec<Id> = (0..500).map(|_| a.next(now)).collect();
        let mut b = IdGen::new(3);
        for id in &ids {
            b.observe(*id);
        }
        let next = b.next(now - 10_000);
        assert!(next > *ids.last().unwrap());
    }

    #[test]
    fn id_range_is_checked() {
        assert!(Id::new(0).is_err());
        assert!(Id::new(MAX_JSON_ID).is_err());
        assert!(Id::new(MAX_JSON_ID - 1).is_ok());
        assert!(serde_json::from_str::<Id>("9007199254740993").is_err());
        assert!(Id::for_click(5, 7).get() >= CLICK_ID_BASE);
    }
}
