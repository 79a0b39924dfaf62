//! What a hot-cache entry holds for a short code: the link state one log offset left,
//! and the encoding a shared cache stores it in.
//!
//! Every writer builds entries here, so they agree: the projector (from the link
//! mutations it applies), an edge following the log (from the events, [`CachedLink::of_event`])
//! and a reader that missed (from what the read store answered, [`CachedLink::read`]).
//! The cache port (`kurz_storage::cache`) keeps the newest version per code.

use crate::event::EventBody;
use crate::Link;
use std::sync::Arc;

/// A code's state as of log offset `version`. The link is shared, so a cache hit on the
/// redirect path costs a reference count, not a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedLink {
    /// `None`: the code is known not to resolve (unknown or deleted).
    pub link: Option<Arc<Link>>,
    pub version: u64,
}

impl CachedLink {
    /// The code resolves to `link` (created or updated at offset `version`).
    pub fn live(link: impl Into<Arc<Link>>, version: u64) -> CachedLink {
        CachedLink { link: Some(link.into()), version }
    }

    /// The code does not resolve (deleted at offset `version`): a negative entry.
    pub fn gone(version: u64) -> CachedLink {
        CachedLink { link: None, version }
    }

    /// What a read of the store answered: the link at the offset it was written at, or
    /// for a code the store does not hold, a negative entry at version 0 (any event's
    /// state replaces it).
    pub fn read(found: Option<(Link, u64)>) -> CachedLink {
        match found {
            Some((link, version)) => CachedLink::live(link, version),
            None => CachedLink::gone(0),
        }
    }

    /// The lookup key ([`Link::lookup_key`]) of the link a link event at offset
    /// `version` is about and the entry it leaves: created or updated, the link;
    /// deleted, a negative entry. `None` for other events.
    pub fn of_event(body: &EventBody, version: u64) -> Option<(std::borrow::Cow<'_, str>, CachedLink)> {
        let (link, entry) = match body {
            EventBody::LinkCreated { link, .. } | EventBody::LinkUpdated { link } => (link, CachedLink::live(link.clone(), version)),
            EventBody::LinkDeleted { link } => (link, CachedLink::gone(version)),
            _ => return None,
        };
        Some((link.lookup_key(), entry))
    }

    /// Whether the code resolves (the entry is not a negative one).
    pub fn is_live(&self) -> bool {
        self.link.is_some()
    }

    /// The entry as a shared cache stores it: `"<version>\n<link json>"`, the json
    /// empty for a negative entry. The version leads, so a store can compare versions
    /// without parsing the link (the Redis backend's script reads `^(%d+)`).
    pub fn encode(&self) -> String {
        let mut out = format!("{}\n", self.version).into_bytes();
        if let Some(link) = &self.link {
            serde_json::to_writer(&mut out, &**link).expect("a link always serializes");
        }
        String::from_utf8(out).expect("json is UTF-8")
    }

    /// Reads what [`encode`](CachedLink::encode) wrote.
    pub fn decode(raw: &str) -> Result<CachedLink, EntryError> {
        let (v, json) = raw.split_once('\n').ok_or(EntryError::NoVersion)?;
        let version = v.parse().map_err(|_| EntryError::BadVersion)?;
        let link = if json.is_empty() { None } else { Some(Arc::new(serde_json::from_str::<Link>(json)?)) };
        Ok(CachedLink { link, version })
    }
}

/// Why a stored cache entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("no version line")]
    NoVersion,
    #[error("the version is not a number")]
    BadVersion,
    #[error("link: {0}")]
    Link(#[from] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Id, Ts};

    fn link(code: &str) -> Link {
        Link {
            domain: None,
            id: Id::new(7).unwrap(),
            short_code: code.into(),
            original_url: "https://example.com/a?b=c".into(),
            title: Some("t\nwith a newline".into()),
            is_active: true,
            user_id: None,
            created_at: Ts(1),
            updated_at: Ts(2),
            options: Default::default(),
        }
    }

    #[test]
    fn link_events_map_to_the_state_they_leave() {
        let l = link("abc");
        let created = EventBody::LinkCreated { link: l.clone(), imported: false };
        let updated = EventBody::LinkUpdated { link: l.clone() };
        let deleted = EventBody::LinkDeleted { link: l.clone() };
        assert_eq!(CachedLink::of_event(&created, 4), Some(("abc".into(), CachedLink::live(l.clone(), 4))));
        assert_eq!(CachedLink::of_event(&updated, 5), Some(("abc".into(), CachedLink::live(l.clone(), 5))));
        assert_eq!(CachedLink::of_event(&deleted, 6), Some(("abc".into(), CachedLink::gone(6))));
        let other = EventBody::Decided { status: 200, answer: crate::Answer::Deleted { id: l.id }, fingerprint: None };
        assert_eq!(CachedLink::of_event(&other, 7), None);
        // A link on a domain is cached under its host and code.
        let on = Link { domain: Some("go.example".into()), ..l.clone() };
        let created = EventBody::LinkCreated { link: on.clone(), imported: false };
        assert_eq!(CachedLink::of_event(&created, 8), Some(("go.example/abc".into(), CachedLink::live(on, 8))));
        assert!(CachedLink::live(l.clone(), 1).is_live() && !CachedLink::gone(1).is_live());
    }

    #[test]
    fn a_store_read_is_a_live_entry_or_a_negative_one_at_version_0() {
        let l = link("abc");
        assert_eq!(CachedLink::read(Some((l.clone(), 9))), CachedLink::live(l, 9));
        assert_eq!(CachedLink::read(None), CachedLink::gone(0));
    }

    #[test]
    fn entries_round_trip_through_their_encoding() {
        let live = CachedLink::live(link("abc"), 42);
        let raw = live.encode();
        assert!(raw.starts_with("42\n{\"id\":"), "{raw}");
        assert_eq!(raw.lines().count(), 2, "the link json holds no raw newline");
        assert_eq!(CachedLink::decode(&raw).unwrap(), live);
        assert_eq!(CachedLink::gone(3).encode(), "3\n");
        assert_eq!(CachedLink::decode("3\n").unwrap(), CachedLink::gone(3));
        assert!(matches!(CachedLink::decode("3"), Err(EntryError::NoVersion)));
        assert!(matches!(CachedLink::decode("x\n"), Err(EntryError::BadVersion)));
        assert!(matches!(CachedLink::decode("3\n{"), Err(EntryError::Link(_))));
    }
}
