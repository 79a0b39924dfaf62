//! Wire types shared by every kurz role.
//!
//! This crate does no I/O: it holds validated newtypes ([`ShortCode`], [`Email`],
//! [`TargetUrl`], [`Id`]), the commands the write side accepts, and the versioned event
//! encodings that the log stores. Decoders accept every version ever written; see
//! `tests/fixtures.rs`. It also holds what the roles share without importing each
//! other: record [`headers`], the hot cache's entries ([`cache`]) and the names of the
//! click aggregates ([`analytics`]).

pub mod analytics;
pub mod cache;
pub mod click;
pub mod command;
pub mod control;
pub mod domain;
pub mod event;
pub mod ids;
pub mod limits;
pub mod model;
pub mod options;
pub mod personal;
pub mod rules;
pub mod sealed;
pub mod time;
pub mod values;

pub use cache::CachedLink;
pub use click::{Agent, Click, ClickEnvelope, ClickRecord, ClickV1, Device, Orphan, OrphanEnvelope, OrphanKind, Utm};
pub use command::{Actor, Command, CommandBody, CommandId, EventRow, LinkRow, UserRow};
pub use control::ControlEvent;
pub use domain::{Domain, DomainHost};
pub use event::{Answer, DecodeError, Event, EventBody, EventEnvelope};
pub use ids::{id_key, Id, IdError, IdGen, IdKind, MAX_JSON_ID};
pub use model::{ApiKey, HistoryEvent, KeyScope, Link, RevokedSession, User};
pub use options::{LinkOptions, OptionsPatch, RedirectType};
pub use time::Ts;
pub use values::{Email, ShortCode, TargetUrl, ValueError};

/// Topic names. The `.v1` suffix is part of the public contract for outside consumers.
pub mod topics {
    pub const COMMANDS: &str = "kurz.commands.v1";
    pub const EVENTS: &str = "kurz.events.v1";
    pub const CLICKS: &str = "kurz.clicks.v1";
    /// One partition: replay and generation switches (see [`crate::control`]).
    pub const CONTROL: &str = "kurz.control.v1";
    /// One partition: records the projector gave up on after its attempts ran out,
    /// byte for byte, with `kurz-dlq-*` headers saying where from and why.
    pub const DEAD_LETTERS: &str = "kurz.deadletter.v1";
}

/// The record envelope: names of the headers kurz writes on its topics' records (the
/// payload is the versioned JSON of [`Command`], [`Event`], [`Click`] or
/// [`ControlEvent`]). Documented for outside consumers in `schemas/TOPICS.md`.
pub mod headers {
    /// The command a record belongs to (commands, and the events deciding it).
    pub const COMMAND_ID: &str = "command-id";
    /// The payload's encoding version.
    pub const SCHEMA_VERSION: &str = "schema-version";
    /// W3C trace context, from the HTTP request to the read model.
    pub const TRACEPARENT: &str = "traceparent";
    /// On an event: the offset of the command it decides (restore resumes after it).
    pub const COMMAND_OFFSET: &str = "command-offset";
    /// On an event: the offset its writer claims for it and its append's range
    /// (`"<offset> <first> <end>"`); readers keep an append only if it landed whole there.
    pub const CLAIM: &str = "claim";
    /// On a click: its random id (16 hex digits), the same on every copy of it.
    pub const CLICK_ID: &str = "click-id";
    /// On a click: present on a copy sent again from the edge's spool.
    pub const CLICK_RETRY: &str = "click-retry";
    /// On a command the projector's watchdog appended again (its count of re-drives).
    pub const REDRIVE: &str = "kurz-redrive";
    /// On a dead letter: where the record came from and why it was given up.
    pub const DLQ_TOPIC: &str = "kurz-dlq-topic";
    pub const DLQ_PARTITION: &str = "kurz-dlq-partition";
    pub const DLQ_OFFSET: &str = "kurz-dlq-offset";
    pub const DLQ_REASON: &str = "kurz-dlq-reason";
    pub const DLQ_ATTEMPTS: &str = "kurz-dlq-attempts";
}

/// The aggregate key every user command is routed by. User volume is low and e-mail
/// uniqueness needs one writer, so all users live in one decider partition.
pub const USERS_KEY: &str = "users";
