//! Events: the facts a decider appended to the log. The log is the source of truth;
//! every read model is a fold over these.
//!
//! Encoding: one JSON object per record, `{"v": <version>, ...}`. [`Event::decode`]
//! reads every version ever written and upcasts it to the current [`Event`];
//! [`Event::encode`] writes the lowest version that holds the event ([`Event::version`]). Fixtures of each version live in
//! `schemas/tests/fixtures/` and are decoded by `tests/fixtures.rs`.
//!
//! | version | change |
//! |---|---|
//! | 1 | first version |
//! | 1 (additive) | `decided.fingerprint`, optional: absent in older records |
//! | 2 | a user's personal fields (e-mail, username, password hash, API keys, revoked sessions) travel sealed under its data key: `user.subject`, `user.sealed`, and `user.erased` once the key is destroyed ([`crate::personal`]). Write with [`Event::encode_sealed`], read with [`Event::decode_opened`]. A v1 record reads as before. |
//! | 3 | `ids_reserved`: explicit ids a bulk load brought, granted by the partition that owns them, and the `reserved` answer (the ids refused). Only these two are written as v3 (each record carries the lowest version that holds it, [`Event::version`]), so a v2 reader stops only where a bulk load brought explicit ids. |
//! | 4 | domains ([`crate::domain`]): `domain_registered`, `domain_deleted`, the `domain` answer, and a link's `domain`. Only those records are written as v4: a v3 reader would take a domain's link for the default domain's, so it must stop there. |

use crate::personal::{self, Keys, OpenError, RecordKind};
use crate::{CommandId, HistoryEvent, Id, Link, Ts, User};
use serde::{Deserialize, Serialize};

pub const CURRENT_VERSION: u16 = 4;

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
    /// Explicit ids granted to a bulk load (ids of `kind` owned by this partition);
    /// each is granted once, ever.
    IdsReserved {
        kind: crate::IdKind,
        ids: Vec<Id>,
    },
    /// A domain was registered, or its fallbacks replaced.
    DomainRegistered {
        domain: crate::Domain,
    },
    DomainDeleted {
        domain: crate::Domain,
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
    User {
        user: User,
    },
    Link {
        link: Link,
    },
    Event {
        event: HistoryEvent,
    },
    Count {
        count: u64,
        skipped: Vec<String>,
    },
    Deleted {
        id: Id,
    },
    Rejected {
        message: String,
    },
    Domain {
        domain: crate::Domain,
    },
    /// Of the ids a `reserve_ids` command asked for, those already granted before.
    Reserved {
        refused: Vec<Id>,
    },
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
    #[error("{0}")]
    Sealed(#[from] crate::personal::OpenError),
}

#[derive(Deserialize)]
pub(crate) struct VersionProbe {
    pub(crate) v: u16,
}

impl Event {
    /// The lowest encoding version that holds this event: what it is written as, so
    /// a reader one version behind reads every event it could understand.
    pub fn version(&self) -> u16 {
        match &self.body {
            EventBody::DomainRegistered { .. }
            | EventBody::DomainDeleted { .. }
            | EventBody::Decided { answer: Answer::Domain { .. }, .. } => 4,
            EventBody::Decided { answer: Answer::Link { link }, .. } if link.domain.is_some() => 4,
            _ if self.link().is_some_and(|l| l.domain.is_some()) => 4,
            EventBody::IdsReserved { .. } | EventBody::Decided { answer: Answer::Reserved { .. }, .. } => 3,
            _ => 2,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&EventEnvelope { v: self.version(), event: self.clone() }).expect("events always serialize")
    }

    /// Decodes without opening sealed personal data: a sealed user comes out with
    /// empty personal fields and its `sealed` value (enough for whoever reads links,
    /// clicks or ids; [`Event::decode_opened`] for users).
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        let probe: VersionProbe = serde_json::from_slice(bytes)?;
        match probe.v {
            1..=CURRENT_VERSION => Ok(serde_json::from_slice::<EventEnvelope>(bytes)?.event),
            v => Err(DecodeError::UnknownVersion(v)),
        }
    }

    /// The data-key subjects of the users this event carries.
    pub fn subjects(&self) -> Vec<&str> {
        self.users().into_iter().filter_map(|u| u.subject.as_deref()).collect()
    }

    /// The users this event carries.
    pub fn users(&self) -> Vec<&User> {
        match &self.body {
            EventBody::UserCreated { user, .. } | EventBody::UserUpdated { user } | EventBody::UserDeleted { user } => vec![user],
            EventBody::Decided { answer: Answer::User { user }, .. } => vec![user],
            _ => Vec::new(),
        }
    }

    /// Encodes with every user's personal fields sealed under its subject's key: how
    /// events are written to the log. An event without users encodes as [`Event::encode`].
    pub fn encode_sealed(&self, keys: Keys, nonce: &mut dyn FnMut() -> [u8; 12]) -> Result<Vec<u8>, OpenError> {
        if self.subjects().is_empty() {
            return Ok(self.encode());
        }
        personal::encode(&EventEnvelope { v: self.version(), event: self.clone() }, RecordKind::Event, keys, nonce)
    }

    /// The subjects whose keys [`Event::decode_opened`] needs for `bytes`.
    pub fn sealed_subjects(bytes: &[u8]) -> Vec<String> {
        personal::subjects_of(bytes, RecordKind::Event)
    }

    /// Decodes and opens sealed personal data; a user whose key was erased comes out
    /// erased (no personal fields, `erased: true`).
    pub fn decode_opened(bytes: &[u8], keys: Keys) -> Result<Event, DecodeError> {
        if !personal::may_be_sealed(bytes) {
            return Event::decode(bytes);
        }
        let probe: VersionProbe = serde_json::from_slice(bytes)?;
        if !matches!(probe.v, 1..=CURRENT_VERSION) {
            return Err(DecodeError::UnknownVersion(probe.v));
        }
        Ok(personal::decode::<EventEnvelope>(bytes, RecordKind::Event, keys)?.event)
    }

    /// The link this event is about, if any.
    pub fn link(&self) -> Option<&Link> {
        match &self.body {
            EventBody::LinkCreated { link, .. } | EventBody::LinkUpdated { link } | EventBody::LinkDeleted { link } => Some(link),
            _ => None,
        }
    }
}
