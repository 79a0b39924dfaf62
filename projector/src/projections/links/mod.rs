//! Links by id, by code, by owner and by owner+URL. Each row carries the offset of the event that wrote it, its version, which guards the store and the hot cache against older states.
mod apply;
#[cfg(test)]
mod tests;

pub struct Links;

impl super::Projection for Links {
    fn name(&self) -> &'static str {
        "links"
    }
    fn topic(&self) -> &'static str {
        kurz_schemas::topics::EVENTS
    }
    fn apply(&self, input: super::Input<'_>, out: &mut Vec<kurz_storage::store::Mutation>) {
        apply::apply(input, out)
    }
}
