//! Click events, appended by the edge on every redirect: the public topic
//! `kurz.clicks.v1`, read by kurz's own projector and by outside analytics consumers.
//!
//! Every record is JSON with a `v` field (and a `schema-version` header). Versions:
//! - **v1**: link, code, time, referrer host, the raw `User-Agent`, link owner.
//! - **v2** (current): v1 without the raw user agent, plus its class (browser, OS,
//!   device), a bot flag, a HEAD flag, UTM parameters, a salted visitor hash (never the
//!   IP) and a country. Bots and HEAD requests are recorded and flagged, not counted.
//!
//! New fields only ever get added, as optional; a consumer written against v1 reads v2
//! records. The JSON Schema of each version is in `schemas/json/` (generated from the
//! types here, see `tests/json_schema.rs`), and `schemas/asyncapi.yaml` documents the
//! topics.

use crate::{Id, Ts};
use serde::{Deserialize, Serialize};

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
        let env: ClickEnvelope = serde_json::from_slice(bytes)?;
        match env.v {
            1 | 2 => Ok(env.click),
            v => Err(crate::DecodeError::UnknownVersion(v)),
        }
    }
}
