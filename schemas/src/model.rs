//! Read-model rows, which are also the JSON the HTTP API returns.

use crate::{Id, Ts};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    pub id: Id,
    pub email: String,
    pub username: Option<String>,
    pub created_at: Ts,
    pub updated_at: Ts,
    /// argon2id PHC string; never rendered by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
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
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "short_code": self.short_code,
            "original_url": self.original_url,
            "title": self.title,
            "is_active": self.is_active,
            "user_id": self.user_id,
            "created_at": self.created_at.to_rfc3339(),
            "updated_at": self.updated_at.to_rfc3339(),
        })
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
