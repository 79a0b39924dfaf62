//! Click events, appended by the edge on every redirect. Public topic `kurz.clicks.v1`.

use crate::{Id, Ts};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Click {
    pub link_id: Id,
    pub code: String,
    pub at: Ts,
    /// Host part of the Referer header, never the full URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The link owner at click time, for `/events?user_id=`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickEnvelope {
    pub v: u16,
    #[serde(flatten)]
    pub click: Click,
}

impl Click {
    pub const VERSION: u16 = 1;

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&ClickEnvelope { v: Self::VERSION, click: self.clone() }).expect("clicks always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Click, crate::DecodeError> {
        let env: ClickEnvelope = serde_json::from_slice(bytes)?;
        match env.v {
            1 => Ok(env.click),
            v => Err(crate::DecodeError::UnknownVersion(v)),
        }
    }
}
