//! Events: the facts a decider appended to the log. The log is the source of truth;
//! every read model is a fold over these.
//!
//! Encoding: one JSON object per record, `{"v": <version>, ...}`. [`Event::decode`]
//! reads every version ever written and upcasts it to the current [`Event`];
//! [`Event::encode`] writes the current version only. Fixtures of each version live in
//! `schemas/tests/fixtures/` and are decoded by `tests/fixtures.rs`.
//!
//! | version | change |
//! |---|---|
//! | 1 | first version |
//! | 1 (additive) | `decided.fingerprint`, optional: absent in older records |

use crate::{CommandId, HistoryEvent, Id, Link, Ts, User};
use serde::{Deserialize, Serialize};

pub const CURRENT_VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    pub id: Id,
    pub command_id: CommandId,
    pub at: Ts,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// `imported`: loaded from an outside history; no lifecycle event is recorded.
    UserCreated {
        user: User,
        imported: bool,
    },
    UserUpdated {
        user: User,
    },
    UserDeleted {
        user: User,
    },
    LinkCreated {
        link: Link,
        imported: bool,
    },
    LinkUpdated {
        link: Link,
    },
    LinkDeleted {
        link: Link,
    },
    /// A client-posted or imported history row for `/events`.
    EventRecorded {
        event: HistoryEvent,
    },
    /// The last event of every decided command: what its caller is answered.
    Decided {
        status: u16,
        answer: Answer,
        /// The command's request fingerprint ([`crate::Command::fingerprint`]), so a
        /// retry under the same idempotency key can be told from a different request.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
}

/// What a command's caller gets back. Snapshots, so an answer can be rendered even
/// after a later command changed the entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    User { user: User },
    Link { link: Link },
    Event { event: HistoryEvent },
    Count { count: u64, skipped: Vec<String> },
    Deleted { id: Id },
    Rejected { message: String },
}

/// An event with its encoding version, as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EventEnvelope {
    pub v: u16,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event encoding version {0} is newer than this build understands")]
    UnknownVersion(u16),
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u16,
}

impl Event {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&EventEnvelope { v: CURRENT_VERSION, event: self.clone() }).expect("events always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let probe: VersionProbe = serde_json::from_slice(bytes)?;
        match probe.v {
            1 => Ok(serde_json::from_slice::<EventEnvelope>(bytes)?.event),
            v => Err(DecodeError::UnknownVersion(v)),
        }
    }

    /// The link this event is about, if any.
    pub fn link(&self) -> Option<&Link> {
        match &self.body {
            EventBody::LinkCreated { link, .. } | EventBody::LinkUpdated { link } | EventBody::LinkDeleted { link } => Some(link),
            _ => None,
        }
    }
}
