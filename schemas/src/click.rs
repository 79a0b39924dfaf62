//! Click events, appended by the edge on every redirect: the public topic
//! `kurz.clicks.v1`, read by kurz's own projector and by outside analytics consumers.
//!
//! Every record is JSON with a `v` field (and a `schema-version` header). Versions:
//! - **v1**: link, code, time, referrer host, the raw `User-Agent`, link owner.
//! - **v2** (current for link clicks): v1 without the raw user agent, plus its class
//!   (browser, OS, device), a bot flag, a HEAD flag, UTM parameters, a salted visitor
//!   hash (never the IP) and a country. Bots and HEAD requests are recorded and
//!   flagged, not counted.
//! - **v3**: an orphan visit ([`Orphan`]): a request for the root path, for no link
//!   (an unknown or inactive code, or a path that cannot be a code), or for a link
//!   outside its validity window. It has no `link_id` unless a link was found, and
//!   carries the same visitor fields as v2. Link clicks are still written as v2, so a
//!   consumer of link clicks reads versions 1 and 2 and skips the rest.
//!
//! New fields only ever get added, as optional; a consumer written against v1 reads v2
//! records. The JSON Schema of each version is in `schemas/json/` (generated from the
//! types here, see `tests/json_schema.rs`), and `schemas/asyncapi.yaml` documents the
//! topics.

use crate::{Id, Ts};
use serde::{Deserialize, Serialize};

/// The version a record written by kurz has, read from its first bytes
/// (`{"v":N,`, which [`Click::encode`] and [`Orphan::encode`] always write first); `None`
/// for any other layout. Lets a reader pick the decoder without parsing twice.
pub fn leading_version(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"{\"v\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 4 || rest.get(digits) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// A click as the current version writes it, and as every version decodes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Click {
    /// The link's id.
    pub link_id: Id,
    /// The short code that was followed.
    pub code: String,
    /// When the redirect was served (milliseconds since the Unix epoch).
    pub at: Ts,
    /// Host part of the `Referer` header, never the full URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<String>,
    /// v1 only: the raw `User-Agent` header. v2 records carry `agent` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The link owner at click time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Id>,
    /// v2: the user agent's class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Agent>,
    /// v2: a known crawler, bot or tool (recorded, not counted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    /// v2: a HEAD request (recorded, not counted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub head: bool,
    /// v2: `utm_*` parameters of the short URL's query string.
    #[serde(default, skip_serializing_if = "Utm::is_empty")]
    pub utm: Utm,
    /// v2: a hash of the visitor's address and user agent, salted with a secret that
    /// changes every UTC day: the same visitor gives the same hash within a day, and
    /// nothing links two days or leads back to the address. 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor: Option<String>,
    /// v2: ISO 3166-1 alpha-2 country, from a trusted header or a GeoLite2 database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a user agent is, as far as analytics cares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Agent {
    /// Browser family, e.g. `Chrome`, `Safari`, `Firefox`; `other` when unknown.
    pub browser: String,
    /// Operating system family, e.g. `Windows`, `iOS`, `Android`; `other` when unknown.
    pub os: String,
    pub device: Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Desktop,
    Mobile,
    Tablet,
    Bot,
    Other,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Bot => "bot",
            Device::Other => "other",
        }
    }
}

/// Urchin tracking parameters, each at most 128 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    pub fn is_empty(&self) -> bool {
        self == &Utm::default()
    }
}

/// The exact shape of a v1 record, frozen: kept for its published JSON Schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClickV1 {
    /// Always 1.
    pub v: u16,
    pub link_id: Id,
    pub code: String,
    pub at: Ts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClickEnvelope {
    /// The record's version: 1 or 2.
    pub v: u16,
    #[serde(flatten)]
    pub click: Click,
}

impl Click {
    pub const VERSION: u16 = 2;

    /// A click with nothing known but its link, code and time.
    pub fn new(link_id: Id, code: impl Into<String>, at: Ts) -> Click {
        Click {
            link_id,
            code: code.into(),
            at,
            referrer_host: None,
            user_agent: None,
            owner_id: None,
            agent: None,
            bot: false,
            head: false,
            utm: Utm::default(),
            visitor: None,
            country: None,
        }
    }

    /// Whether the click counts in analytics: bots and HEAD requests do not.
    pub fn counted(&self) -> bool {
        !self.bot && !self.head
    }

    /// The [`ClickEnvelope`] of this click, without copying it: the click's own JSON
    /// object with `"v"` as its first member (what the flattened envelope writes).
    pub fn encode(&self) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::with_capacity(256);
        write!(out, "{{\"v\":{}", Self::VERSION).expect("writes to a Vec");
        let at = out.len();
        serde_json::to_writer(&mut out, self).expect("clicks always serialize");
        // The click's object always has members (link_id, code, at): its `{` becomes
        // the `,` after `"v":2`, in place.
        out[at] = b',';
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Click, crate::DecodeError> {
        if let Some(v @ Orphan::VERSION..) = leading_version(bytes) {
            return Err(crate::DecodeError::UnknownVersion(v));
        }
        let env: ClickEnvelope = serde_json::from_slice(bytes)?;
        match env.v {
            1 | 2 => Ok(env.click),
            v => Err(crate::DecodeError::UnknownVersion(v)),
        }
    }
}

/// What an orphan visit asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrphanKind {
    /// The root path, `/`.
    Base,
    /// No active link: an unknown or inactive code, or a path that cannot be a code.
    NotFound,
    /// A link outside its validity window.
    Expired,
}

impl OrphanKind {
    pub const ALL: [OrphanKind; 3] = [OrphanKind::Base, OrphanKind::NotFound, OrphanKind::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            OrphanKind::Base => "base",
            OrphanKind::NotFound => "not_found",
            OrphanKind::Expired => "expired",
        }
    }

    pub fn from_name(name: &str) -> Option<OrphanKind> {
        OrphanKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A visit that reached no link (v3 records of the clicks topic): counted apart from
/// every link's clicks (`GET /visits/orphan`). It never holds the requested path beyond
/// a code: what else a visitor typed may be anything, a secret included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Orphan {
    pub orphan: OrphanKind,
    /// When it was answered (milliseconds since the Unix epoch).
    pub at: Ts,
    /// The short code asked for, when the path's first segment can be one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// `expired`: the link that was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_id: Option<Id>,
    /// Host part of the `Referer` header, never the full URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Agent>,
    /// A known crawler, bot or tool (recorded, not counted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bot: bool,
    /// A HEAD request (recorded, not counted).
    #[serde(default, skip_serializing_if = "is_false")]
    pub head: bool,
    /// The salted daily visitor hash, as in a v2 click.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrphanEnvelope {
    /// Always 3.
    pub v: u16,
    #[serde(flatten)]
    pub orphan: Orphan,
}

impl Orphan {
    pub const VERSION: u16 = 3;

    /// Whether it counts in the orphan visits: bots and HEAD requests do not.
    pub fn counted(&self) -> bool {
        !self.bot && !self.head
    }

    /// The [`OrphanEnvelope`] of this visit, `"v"` first.
    pub fn encode(&self) -> Vec<u8> {
        use std::io::Write;
        let mut out = Vec::with_capacity(192);
        write!(out, "{{\"v\":{}", Self::VERSION).expect("writes to a Vec");
        let at = out.len();
        serde_json::to_writer(&mut out, self).expect("orphans always serialize");
        // The object always has members (orphan, at).
        out[at] = b',';
        out
    }
}

/// A record of the clicks topic: a link's click, or an orphan visit.
#[derive(Debug, Clone, PartialEq)]
pub enum ClickRecord {
    Link(Click),
    Orphan(Orphan),
}

impl ClickRecord {
    pub fn version(&self) -> u16 {
        match self {
            ClickRecord::Link(_) => Click::VERSION,
            ClickRecord::Orphan(_) => Orphan::VERSION,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            ClickRecord::Link(c) => c.encode(),
            ClickRecord::Orphan(o) => o.encode(),
        }
    }

    /// Any version of either: one parse for every record kurz wrote
    /// ([`leading_version`]), a probe first for any other layout.
    pub fn decode(bytes: &[u8]) -> Result<ClickRecord, crate::DecodeError> {
        let v = match leading_version(bytes) {
            Some(v) => v,
            None => serde_json::from_slice::<crate::event::VersionProbe>(bytes)?.v,
        };
        match v {
            1 | 2 => Click::decode(bytes).map(ClickRecord::Link),
            3 => {
                let env: OrphanEnvelope = serde_json::from_slice(bytes)?;
                match env.v {
                    3 => Ok(ClickRecord::Orphan(env.orphan)),
                    v => Err(crate::DecodeError::UnknownVersion(v)),
                }
            }
            v => Err(crate::DecodeError::UnknownVersion(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leading_version_is_read_only_from_kurzs_own_layout() {
        assert_eq!(leading_version(br#"{"v":2,"link_id":1}"#), Some(2));
        assert_eq!(leading_version(br#"{"v":3,"orphan":"base","at":0}"#), Some(3));
        for other in [&br#"{"link_id":1,"v":2}"#[..], br#"{"v":2}"#, br#"{"v":,"#, br#"{"v":99999,"#, b"", br#"{ "v":2,"#] {
            assert_eq!(leading_version(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn orphans_and_clicks_decode_to_their_kind_in_any_member_order() {
        let o = Orphan {
            orphan: OrphanKind::Expired,
            at: Ts(5),
            code: Some("abc".into()),
            link_id: Some(Id::new(7).unwrap()),
            referrer_host: None,
            agent: None,
            bot: false,
            head: true,
            visitor: None,
            country: Some("DE".into()),
        };
        let bytes = o.encode();
        assert_eq!(ClickRecord::decode(&bytes).unwrap(), ClickRecord::Orphan(o.clone()));
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), serde_json::to_string(&OrphanEnvelope { v: 3, orphan: o.clone() }).unwrap());
        assert!(matches!(Click::decode(&bytes), Err(crate::DecodeError::UnknownVersion(3))), "no link click");
        let reordered = br#"{"orphan":"base","at":9,"v":3}"#;
        assert!(matches!(ClickRecord::decode(reordered).unwrap(), ClickRecord::Orphan(Orphan { orphan: OrphanKind::Base, .. })));
        let click = Click::new(Id::new(1).unwrap(), "abc", Ts(1));
        assert_eq!(ClickRecord::decode(&click.encode()).unwrap(), ClickRecord::Link(click));
        assert!(matches!(ClickRecord::decode(br#"{"v":4,"orphan":"base","at":0}"#), Err(crate::DecodeError::UnknownVersion(4))));
        assert!(ClickRecord::decode(br#"{"v":3,"orphan":"elsewhere","at":0}"#).is_err());
        assert!(!o.counted(), "HEAD requests are not counted");
    }
}
