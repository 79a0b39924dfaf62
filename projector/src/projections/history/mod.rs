//! The `/events` history: link lifecycle events (created, updated, deleted) and client-posted or imported events.
mod apply;
#[cfg(test)]
mod tests;

pub struct History;

impl super::Projection for History {
    fn name(&self) -> &'static str {
        "history"
    }
    fn topic(&self) -> &'static str {
        kurz_schemas::topics::EVENTS
    }
    fn apply(&self, input: super::Input<'_>, out: &mut Vec<kurz_storage::store::Mutation>) {
        apply::apply(input, out)
    }
}
