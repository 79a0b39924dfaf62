//! Links by id, by code, by owner and by owner+URL. Each row carries the offset of the event that wrote it, its version, which guards the store and the hot cache against older states.
mod apply;
#[cfg(test)]
mod tests;

use kurz_schemas::CachedLink;
use kurz_storage::store::Mutation;

pub struct Links;

impl super::Projection for Links {
    fn name(&self) -> &'static str {
        "links"
    }
    fn topic(&self) -> &'static str {
        kurz_schemas::topics::EVENTS
    }
    fn apply(&self, input: super::Input<'_>, out: &mut Vec<Mutation>) {
        apply::apply(input, out)
    }
}

/// The hot-cache entry a link mutation leaves: the entry [`CachedLink::of_event`] maps
/// the event that made it to (an edge following the log offers the same one).
pub(crate) fn cache_entry(m: &Mutation) -> Option<(std::borrow::Cow<'_, str>, CachedLink)> {
    match m {
        Mutation::PutLink(vl) => Some((vl.link.lookup_key(), CachedLink::live(vl.link.clone(), vl.version))),
        Mutation::DeleteLink(vl) => Some((vl.link.lookup_key(), CachedLink::gone(vl.version))),
        _ => None,
    }
}
