//! Clicks: per-link click counts and one `/events` row per click. Counts are exactly-once because they commit with their position.
mod apply;
#[cfg(test)]
mod tests;

pub struct Clicks;

impl super::Projection for Clicks {
    fn name(&self) -> &'static str {
        "clicks"
    }
    fn topic(&self) -> &'static str {
        kurz_schemas::topics::CLICKS
    }
    fn apply(&self, input: super::Input<'_>, out: &mut Vec<kurz_storage::store::Mutation>) {
        apply::apply(input, out)
    }
}
