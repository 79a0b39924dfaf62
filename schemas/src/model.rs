//! Read-model rows, which are also the JSON the HTTP API returns.

use crate::{Id, LinkOptions, Ts};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    pub id: Id,
    /// Absent on the wire when sealed; empty when erased.
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub username: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
    /// argon2id PHC string; never rendered by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Sessions issued before this instant are revoked (set by a password change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_from: Option<Ts>,
    /// Sessions revoked one by one (`/auth/logout`), each kept until it would have
    /// expired anyway; at most [`User::MAX_REVOKED_SESSIONS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_sessions: Vec<RevokedSession>,
    /// API keys for programs; at most [`User::MAX_API_KEYS`]. Never rendered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
    /// The id of the user's data key in the key vault (a random UUID). On the wire the
    /// personal fields (e-mail, username, password hash, API keys, revoked sessions)
    /// travel sealed under that key (see `crate::personal`); users created before
    /// sealing have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// On the wire: the personal fields, sealed under the subject's key. Never set on a
    /// decoded user that was opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<crate::sealed::Sealed>,
    /// The subject's key was destroyed (the user was deleted): its personal fields are
    /// gone for good, in the log and every copy of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
}

/// What an API key may do: `read` (the user's private reads) or `write` (everything
/// the user's session may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    Read,
    Write,
}

impl std::str::FromStr for KeyScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(KeyScope::Read),
            "write" => Ok(KeyScope::Write),
            other => Err(format!("scope must be read or write, not '{other}'")),
        }
    }
}

/// An API key as stored: its id, name, scope, times, and a SHA-256 of its secret
/// (the key itself, 256 random bits, is shown once and kept nowhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scope: KeyScope,
    pub hash: String,
    pub created_at: Ts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Ts>,
}

impl ApiKey {
    /// The key as its owner lists it: no hash.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at.to_rfc3339(),
            "last_used_at": self.last_used_at.map(|t| t.to_rfc3339()),
        })
    }
}

/// A session ended before its expiry: its id (the token's nonce), and its expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RevokedSession {
    pub id: String,
    pub until: Ts,
}

impl User {
    /// Revocations kept per user; past this many live ones, a logout ends every
    /// session of the user instead (the list stays bounded).
    pub const MAX_REVOKED_SESSIONS: usize = 32;
    /// API keys per user.
    pub const MAX_API_KEYS: usize = 20;

    /// The user as a command's answer carries it (in `Decided` on the events topic, and
    /// in stored outcomes): without the password hash and the API keys' hashes.
    pub fn answer(&self) -> User {
        let mut u = self.clone();
        u.password_hash = None;
        for k in &mut u.api_keys {
            k.hash.clear();
        }
        u
    }

    /// A new user with no sessions history.
    pub fn new(id: Id, email: String, username: Option<String>, at: Ts, password_hash: Option<String>) -> User {
        User {
            id,
            email,
            username,
            created_at: at,
            updated_at: at,
            password_hash,
            sessions_from: None,
            revoked_sessions: Vec::new(),
            api_keys: Vec::new(),
            subject: None,
            sealed: None,
            erased: false,
        }
    }

    /// With its data-key subject.
    pub fn with_subject(mut self, subject: Option<String>) -> User {
        self.subject = subject;
        self
    }

    /// The user without its personal fields, the same whether they were erased or
    /// not: what a stored outcome keeps (the API reads them from the user's row, which
    /// an erasure deletes).
    pub fn impersonal(&self) -> User {
        User {
            email: String::new(),
            username: None,
            password_hash: None,
            revoked_sessions: Vec::new(),
            api_keys: Vec::new(),
            sealed: None,
            erased: false,
            ..self.clone()
        }
    }

    /// Whether a session issued at `issued` with id `session` is still this user's.
    pub fn accepts_session(&self, issued: Ts, session: &str) -> bool {
        self.sessions_from.is_none_or(|from| issued >= from) && !self.revoked_sessions.iter().any(|r| r.id == session)
    }

    /// Ends the session `id` (valid until `until`) as of `now`: expired revocations are
    /// dropped; past [`User::MAX_REVOKED_SESSIONS`] every session issued so far ends.
    pub fn revoke_session(&mut self, id: String, until: Ts, now: Ts) {
        self.revoked_sessions.retain(|r| r.until >= now);
        if !self.revoked_sessions.iter().any(|r| r.id == id) {
            self.revoked_sessions.push(RevokedSession { id, until });
        }
        if self.revoked_sessions.len() > Self::MAX_REVOKED_SESSIONS {
            self.end_all_sessions(now);
        }
    }

    /// Ends every session issued before `now` (a password change).
    pub fn end_all_sessions(&mut self, now: Ts) {
        self.sessions_from = Some(now);
        self.revoked_sessions.clear();
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Link {
    pub id: Id,
    pub short_code: String,
    pub original_url: String,
    pub title: Option<String>,
    pub is_active: bool,
    pub user_id: Option<Id>,
    pub created_at: Ts,
    pub updated_at: Ts,
    /// The domain the link lives on ([`crate::domain`]); none: the default one. Set at
    /// creation, never changed: with the code, it is how the link is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// How the link answers beyond a 302 to `original_url` (`LinkOptions`); left out
    /// of the encoding when all are defaults, so links from before options encode as
    /// they always did.
    #[serde(default, skip_serializing_if = "LinkOptions::is_default")]
    pub options: LinkOptions,
}

/// One row of `/events`: a link's lifecycle, a click, or a client-posted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HistoryEvent {
    pub id: Id,
    pub url_id: Id,
    pub user_id: Option<Id>,
    pub event_type: String,
    pub timestamp: Ts,
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl User {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "email": self.email,
            "username": self.username,
            "created_at": self.created_at.to_rfc3339(),
            "updated_at": self.updated_at.to_rfc3339(),
        })
    }
}

impl Link {
    /// The public link JSON: the contract's fields, then every option (defaults filled
    /// in).
    pub fn to_json(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        out.insert("id".into(), serde_json::json!(self.id));
        out.insert("short_code".into(), self.short_code.clone().into());
        out.insert("original_url".into(), self.original_url.clone().into());
        out.insert("title".into(), serde_json::json!(self.title));
        out.insert("is_active".into(), self.is_active.into());
        out.insert("user_id".into(), serde_json::json!(self.user_id));
        out.insert("created_at".into(), self.created_at.to_rfc3339().into());
        out.insert("updated_at".into(), self.updated_at.to_rfc3339().into());
        out.insert("domain".into(), serde_json::json!(self.domain));
        self.options.write_json(&mut out);
        serde_json::Value::Object(out)
    }

    /// The key the link is found by: its code, or `domain/code` ([`crate::domain::lookup_key`]).
    pub fn lookup_key(&self) -> std::borrow::Cow<'_, str> {
        crate::domain::lookup_key(self.domain.as_deref(), &self.short_code)
    }
}

impl HistoryEvent {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "url_id": self.url_id,
            "user_id": self.user_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp.to_rfc3339(),
            "details": self.details,
        })
    }
}
