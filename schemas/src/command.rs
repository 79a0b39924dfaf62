//! Commands: what a caller asked for, already validated, on its way to a decider.
//!
//! Every command carries a [`CommandId`]. A client's `Idempotency-Key` becomes the id
//! (scoped to the caller), otherwise the command-api draws one at random. The decider
//! applies a command id at most once.

use crate::personal::{self, Keys, OpenError, RecordKind};
use crate::{DomainHost, Email, Id, LinkOptions, OptionsPatch, ShortCode, TargetUrl, Ts};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct CommandId(pub String);

impl CommandId {
    pub fn random() -> CommandId {
        CommandId(uuid::Uuid::new_v4().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who issued a command, as the command-api authenticated them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Actor {
    /// `KURZ_AUTH=open`, or an unauthenticated public endpoint such as register.
    Anonymous,
    Admin,
    User(Id),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub v: u16,
    pub id: CommandId,
    pub issued_at: Ts,
    pub actor: Actor,
    /// W3C trace context of the request that issued the command, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// With an `Idempotency-Key`: a keyed digest of the request the key was sent with
    /// (an HMAC under the server secret, so it reveals nothing of the request). The
    /// outcome keeps it, and a retry with the same key must carry the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub body: CommandBody,
}

impl Command {
    pub const VERSION: u16 = 1;

    pub fn new(id: CommandId, actor: Actor, body: CommandBody) -> Command {
        Command { v: Self::VERSION, id, issued_at: Ts::now(), actor, traceparent: None, fingerprint: None, body }
    }

    pub fn with_fingerprint(mut self, fingerprint: Option<String>) -> Command {
        self.fingerprint = fingerprint;
        self
    }

    /// The aggregate key: every command for one aggregate lands in one partition.
    pub fn key(&self) -> String {
        self.body.key()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("commands always serialize")
    }

    /// Decodes a command that carries no sealed data (a sealed one fails: its personal
    /// fields are missing); [`Command::decode_opened`] opens them.
    pub fn decode(bytes: &[u8]) -> Result<Command, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The data-key subjects of the personal data this command carries.
    pub fn subjects(&self) -> Vec<&str> {
        match &self.body {
            CommandBody::CreateUser { subject, .. } | CommandBody::UpdateUser { subject, .. } => subject.as_deref().into_iter().collect(),
            CommandBody::ImportUsers { rows } => rows.iter().filter_map(|r| r.subject.as_deref()).collect(),
            _ => Vec::new(),
        }
    }

    /// Encodes with personal fields sealed under their subjects' keys: how commands are
    /// written to the log.
    pub fn encode_sealed(&self, keys: Keys, nonce: &mut dyn FnMut() -> [u8; 12]) -> Result<Vec<u8>, OpenError> {
        if self.subjects().is_empty() {
            return Ok(self.encode());
        }
        personal::encode(self, RecordKind::Command, keys, nonce)
    }

    /// The subjects whose keys [`Command::decode_opened`] needs for `bytes`.
    pub fn sealed_subjects(bytes: &[u8]) -> Vec<String> {
        personal::subjects_of(bytes, RecordKind::Command)
    }

    /// Decodes and opens sealed personal data. A command whose subject's key was
    /// erased does not open ([`OpenError::Erased`]).
    pub fn decode_opened(bytes: &[u8], keys: Keys) -> Result<Command, OpenError> {
        if !personal::may_be_sealed(bytes) {
            return Ok(Command::decode(bytes)?);
        }
        personal::decode(bytes, RecordKind::Command, keys)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandBody {
    /// `subject`: the new user's data key, made by the command-api before it appends
    /// this; the personal fields travel sealed under it ([`crate::personal`]).
    CreateUser {
        email: Email,
        username: Option<String>,
        password_hash: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
    /// `subject`: the user's data key (a user from before sealing gets this one).
    UpdateUser {
        id: Id,
        email: Option<Email>,
        username: Option<String>,
        /// A new password (argon2id PHC string): every older session of the user ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_hash: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
    },
    /// A new API key of a user (its secret stays with the caller; `key.hash` is its
    /// SHA-256). The decider sets `created_at`.
    CreateApiKey {
        id: Id,
        key: crate::ApiKey,
    },
    RevokeApiKey {
        id: Id,
        key_id: String,
    },
    /// Records that a key was used (at most once an hour per key and process).
    TouchApiKey {
        id: Id,
        key_id: String,
        at: Ts,
    },
    /// Ends one session of a user (`/auth/logout`).
    RevokeSession {
        id: Id,
        session: String,
        until: Ts,
    },
    DeleteUser {
        id: Id,
    },
    ImportUsers {
        rows: Vec<UserRow>,
    },
    /// `existing_ok`: `/shorten` semantics, where the same active URL for the same
    /// owner under this code is an answer, not a conflict.
    CreateLink {
        code: ShortCode,
        custom: bool,
        original_url: TargetUrl,
        title: Option<String>,
        user_id: Option<Id>,
        existing_ok: bool,
        #[serde(default, skip_serializing_if = "LinkOptions::is_default")]
        options: LinkOptions,
        /// The link's domain ([`crate::domain`]); none: the default one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<DomainHost>,
    },
    UpdateLink {
        code: ShortCode,
        /// The link's domain ([`crate::domain`]); none: the default one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<DomainHost>,
        id: Id,
        title: Option<String>,
        original_url: Option<TargetUrl>,
        is_active: Option<bool>,
        /// When set, the link must belong to this user (token mode ownership).
        owner: Option<Id>,
        #[serde(default, skip_serializing_if = "OptionsPatch::is_empty")]
        options: OptionsPatch,
    },
    DeleteLink {
        code: ShortCode,
        /// The link's domain ([`crate::domain`]); none: the default one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<DomainHost>,
        id: Id,
        owner: Option<Id>,
    },
    /// Rows for links whose codes all route to one partition.
    ImportLinks {
        key: String,
        rows: Vec<LinkRow>,
    },
    RecordEvent {
        code: ShortCode,
        /// The link's domain ([`crate::domain`]); none: the default one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<DomainHost>,
        url_id: Id,
        user_id: Option<Id>,
        event_type: String,
        details: serde_json::Map<String, serde_json::Value>,
        owner: Option<Id>,
    },
    /// History rows whose links all route to one partition.
    ImportEvents {
        key: String,
        rows: Vec<EventRow>,
    },
    /// Registers a domain, or replaces its fallbacks (`host`: a [`DomainHost`] or
    /// [`crate::domain::DEFAULT`]).
    PutDomain {
        host: String,
        base_url_redirect: Option<TargetUrl>,
        not_found_redirect: Option<TargetUrl>,
        expired_redirect: Option<TargetUrl>,
    },
    /// Removes a domain: its links stay, and answer again if it is registered again.
    DeleteDomain {
        host: String,
    },
    /// Grants explicit ids of a bulk load before their rows are decided: every id here
    /// is owned by the partition of [`crate::id_key`] (`key`, the first id's), which
    /// grants each at most once, so two rows with one id never both become entities,
    /// whichever partitions decide the rows.
    ReserveIds {
        kind: crate::IdKind,
        ids: Vec<Id>,
    },
}

impl CommandBody {
    pub fn key(&self) -> String {
        use CommandBody::*;
        match self {
            CreateUser { .. }
            | UpdateUser { .. }
            | RevokeSession { .. }
            | CreateApiKey { .. }
            | RevokeApiKey { .. }
            | TouchApiKey { .. }
            | DeleteUser { .. }
            | ImportUsers { .. } => crate::USERS_KEY.to_string(),
            CreateLink { code, domain, .. }
            | UpdateLink { code, domain, .. }
            | DeleteLink { code, domain, .. }
            | RecordEvent { code, domain, .. } => link_key(domain.as_ref(), code),
            PutDomain { .. } | DeleteDomain { .. } => crate::domain::DOMAINS_KEY.to_string(),
            ImportLinks { key, .. } | ImportEvents { key, .. } => key.clone(),
            ReserveIds { kind, ids } => ids.first().map_or_else(|| format!("id:{}", kind.as_str()), |id| crate::id_key(*kind, *id)),
        }
    }
}

/// A link's aggregate key. Short codes and domains never change, so they route every
/// command for a link; uniqueness of a code on a domain is decided by the one partition
/// that owns it.
pub fn link_key(domain: Option<&DomainHost>, code: &ShortCode) -> String {
    format!("link:{}", crate::domain::lookup_key(domain.map(DomainHost::as_str), code.as_str()))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: Option<Id>,
    pub email: Email,
    pub username: Option<String>,
    pub created_at: Option<Ts>,
    /// The row's data key, as for [`CommandBody::CreateUser`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkRow {
    pub id: Option<Id>,
    pub code: ShortCode,
    pub original_url: TargetUrl,
    pub title: Option<String>,
    pub is_active: bool,
    pub user_id: Option<Id>,
    pub created_at: Option<Ts>,
    pub updated_at: Option<Ts>,
    #[serde(default, skip_serializing_if = "LinkOptions::is_default")]
    pub options: LinkOptions,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainHost>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub id: Option<Id>,
    pub code: ShortCode,
    pub url_id: Id,
    pub user_id: Option<Id>,
    pub event_type: String,
    pub timestamp: Option<Ts>,
    pub details: serde_json::Map<String, serde_json::Value>,
}
