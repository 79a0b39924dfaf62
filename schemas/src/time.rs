//! Timestamps: milliseconds since the Unix epoch, rendered as RFC 3339 UTC.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Ts(pub i64);

impl Ts {
    pub fn now() -> Ts {
        Ts(Utc::now().timestamp_millis())
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    /// `2025-12-02T03:44:06Z` (milliseconds appear only when non-zero).
    pub fn to_rfc3339(self) -> String {
        match Utc.timestamp_millis_opt(self.0).single() {
            Some(t) if self.0 % 1000 == 0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            None => "1970-01-01T00:00:00Z".to_string(),
        }
    }

    /// Strict RFC 3339 (`2027-01-31T23:59:59Z`, an offset, fractional seconds): what
    /// the API takes for instants a caller sets.
    pub fn parse_rfc3339(s: &str) -> Option<Ts> {
        DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| Ts(t.timestamp_millis()))
    }

    /// Accepts the seed data's `2025-12-02 03:44:06`, ISO `T` forms, fractional seconds
    /// and RFC 3339 with an offset. Naive times are UTC.
    pub fn parse(s: &str) -> Option<Ts> {
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(Ts(t.timestamp_millis()));
        }
        for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
                return Some(Ts(t.and_utc().timestamp_millis()));
            }
        }
        None
    }
}

impl schemars::JsonSchema for Ts {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Milliseconds since the Unix epoch (UTC).",
            "type": "integer"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_seed_format_and_renders_rfc3339() {
        let t = Ts::parse("2025-12-02 03:44:06").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-12-02T03:44:06Z");
        assert_eq!(Ts::parse("2025-12-02T03:44:06.250Z").unwrap().to_rfc3339(), "2025-12-02T03:44:06.250Z");
        assert_eq!(Ts::parse("not a time"), None);
    }
}
