//! The control topic (`kurz.control.v1`, one partition): decisions every process of a
//! deployment must agree on, in one order. Today: which read-store generation serves
//! (`replay`). The current generation is the one named by the last
//! [`ControlEvent::GenerationSwitched`]; 0 when there is none.

use crate::Ts;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ControlEvent {
    /// A replay began building `generation` from offset zero.
    ReplayStarted {
        generation: u64,
        /// The projections it was asked for (`["all"]` for `--all`).
        projections: Vec<String>,
        at: Ts,
    },
    /// `generation` caught up with the log and serves from now on. Every process
    /// switches its reads and its projector to it when it reads this record.
    GenerationSwitched { generation: u64, previous: u64, at: Ts },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Envelope {
    v: u16,
    #[serde(flatten)]
    event: ControlEvent,
}

impl ControlEvent {
    pub const VERSION: u16 = 1;

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope { v: Self::VERSION, event: self.clone() }).expect("control events always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<ControlEvent, crate::DecodeError> {
        let env: Envelope = serde_json::from_slice(bytes)?;
        match env.v {
            1 => Ok(env.event),
            v => Err(crate::DecodeError::UnknownVersion(v)),
        }
    }

    /// The generation that serves after this record, if it decides one.
    pub fn serving(&self) -> Option<u64> {
        match self {
            ControlEvent::GenerationSwitched { generation, .. } => Some(*generation),
            ControlEvent::ReplayStarted { .. } => None,
        }
    }
}
