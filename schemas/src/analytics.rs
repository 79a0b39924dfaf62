//! The clicks projection's key scheme: the names of a link's click aggregates, which
//! the projector writes (`projector/src/projections/clicks`) and the stats route reads
//! (`query-edge/src/routes/stats.rs`). The read store holds them as opaque names; only
//! these two interpret them.
//!
//! - `h:<hour start, ms, 13 digits>`: a link's clicks in one UTC hour;
//! - `d:<UTC day, 6 digits>:<dimension>:<value>`: its clicks on one day whose
//!   [`Dimension`] had `value`.
//!
//! - `o:<hour start, ms, 13 digits>:<kind>`: orphan visits of one [`OrphanKind`] in
//!   one UTC hour, stored under [`ORPHANS`] (no link has that id).
//!
//! Numbers are zero-padded, so within a kind names sort by time and a time range is a
//! name range. The names are stored: they never change.

use crate::click::OrphanKind;
use crate::Id;

/// The aggregates' owner for orphan visits.
pub const ORPHANS: Id = Id::ORPHAN_AGGREGATES;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// A breakdown of a day's clicks, kept per link and UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// The referrer's host, `direct` without one.
    Referrer,
    /// The user agent's browser family, `unknown` without one.
    Browser,
    Os,
    Device,
    /// The country header's value, `unknown` without one.
    Country,
    /// The `utm_source` query parameter; a click without one is not counted here.
    UtmSource,
}

impl Dimension {
    /// Every dimension, in the order the projector writes them and the stats answer
    /// lists them.
    pub const ALL: [Dimension; 6] =
        [Dimension::Referrer, Dimension::Browser, Dimension::Os, Dimension::Device, Dimension::Country, Dimension::UtmSource];

    /// Its name inside aggregate names.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Referrer => "referrer",
            Dimension::Browser => "browser",
            Dimension::Os => "os",
            Dimension::Device => "device",
            Dimension::Country => "country",
            Dimension::UtmSource => "utm_source",
        }
    }

    /// The key of its top values in the stats answer (`GET /urls/{id}/stats`).
    pub fn answer_key(self) -> &'static str {
        match self {
            Dimension::Referrer => "referrers",
            Dimension::Browser => "browsers",
            Dimension::Os => "os",
            Dimension::Device => "devices",
            Dimension::Country => "countries",
            Dimension::UtmSource => "utm_sources",
        }
    }

    /// The dimension named `name` ([`Dimension::name`]).
    pub fn from_name(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// The clicks of the UTC hour that starts at `hour_start_ms`.
pub fn hour(hour_start_ms: i64) -> String {
    format!("h:{:013}", hour_start_ms.max(0))
}

/// The hour start of an [`hour`] name.
pub fn parse_hour(name: &str) -> Option<i64> {
    name.strip_prefix("h:")?.parse().ok()
}

/// The clicks on UTC day `day` (days since the Unix epoch) whose `dim` had `value`.
pub fn dim(day: i64, dim: Dimension, value: &str) -> String {
    format!("d:{:06}:{}:{value}", day.max(0), dim.name())
}

/// Where day `day`'s [`dim`] names start: `[day_start(a), day_start(b))` holds days
/// `a` to `b - 1`.
pub fn day_start(day: i64) -> String {
    format!("d:{:06}:", day.max(0))
}

/// `(day, dimension, value)` of a [`dim`] name; `None` for another name, or a dimension
/// this build does not know.
pub fn parse_dim(name: &str) -> Option<(i64, Dimension, &str)> {
    let rest = name.strip_prefix("d:")?;
    let (day, rest) = rest.split_once(':')?;
    let (dim, value) = rest.split_once(':')?;
    Some((day.parse().ok()?, Dimension::from_name(dim)?, value))
}

/// The orphan visits of `kind` in the UTC hour that starts at `hour_start_ms`. Hours
/// first, so a time range is one name range ([`orphan_hour_start`]).
pub fn orphan_hour(hour_start_ms: i64, kind: OrphanKind) -> String {
    format!("o:{:013}:{}", hour_start_ms.max(0), kind.as_str())
}

/// Where hour `hour_start_ms`'s [`orphan_hour`] names start.
pub fn orphan_hour_start(hour_start_ms: i64) -> String {
    format!("o:{:013}:", hour_start_ms.max(0))
}

/// `(hour start, kind)` of an [`orphan_hour`] name.
pub fn parse_orphan_hour(name: &str) -> Option<(i64, OrphanKind)> {
    let (hour, kind) = name.strip_prefix("o:")?.split_once(':')?;
    Some((hour.parse().ok()?, OrphanKind::from_name(kind)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_and_answer_keys_never_change() {
        let names: Vec<_> = Dimension::ALL.iter().map(|d| (d.name(), d.answer_key())).collect();
        assert_eq!(
            names,
            [
                ("referrer", "referrers"),
                ("browser", "browsers"),
                ("os", "os"),
                ("device", "devices"),
                ("country", "countries"),
                ("utm_source", "utm_sources")
            ]
        );
        assert_eq!(hour(7 * HOUR_MS), "h:0000025200000");
        assert_eq!(dim(19_000, Dimension::Referrer, "news.io"), "d:019000:referrer:news.io");
        assert_eq!(dim(-1, Dimension::Device, "desktop"), "d:000000:device:desktop", "days before the epoch clamp to 0");
    }

    #[test]
    fn names_round_trip_through_their_parsers() {
        for d in Dimension::ALL {
            assert_eq!(Dimension::from_name(d.name()), Some(d));
            // Values may hold the separator (a host with a port).
            let name = dim(20_123, d, "a:b");
            assert_eq!(parse_dim(&name), Some((20_123, d, "a:b")));
            assert!(day_start(20_123) <= name && name < day_start(20_124), "{name} sorts within its day");
            assert_eq!(parse_hour(&name), None);
        }
        assert_eq!(Dimension::from_name(""), None);
        assert_eq!(parse_dim("d:000001:shoe_size:42"), None, "an unknown dimension is not read");
        let h = 1_700_000_000_000 / HOUR_MS * HOUR_MS;
        assert_eq!(parse_hour(&hour(h)), Some(h));
        assert_eq!(parse_dim(&hour(h)), None);
        assert!(hour(h) < hour(h + HOUR_MS), "hours sort by time");
    }

    #[test]
    fn orphan_names_sort_by_hour_then_kind_and_parse_back() {
        assert_eq!(orphan_hour(7 * HOUR_MS, OrphanKind::NotFound), "o:0000025200000:not_found");
        for kind in OrphanKind::ALL {
            let name = orphan_hour(7 * HOUR_MS, kind);
            assert_eq!(parse_orphan_hour(&name), Some((7 * HOUR_MS, kind)));
            assert!(orphan_hour_start(7 * HOUR_MS) <= name && name < orphan_hour_start(8 * HOUR_MS));
            assert_eq!(parse_hour(&name), None);
            assert_eq!(parse_dim(&name), None);
        }
        assert_eq!(parse_orphan_hour("o:0000025200000:lost"), None);
        assert!(ORPHANS.get() >= crate::ids::CLICK_ID_BASE, "no link id reaches it");
    }
}
