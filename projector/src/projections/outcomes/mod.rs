//! Command outcomes by command id: what a waiting or retrying caller is answered. Written in the same batch as the state the command produced, which is what makes a 2xx mean read-your-writes.
mod apply;
#[cfg(test)]
mod tests;

pub struct Outcomes;

impl super::Projection for Outcomes {
    fn name(&self) -> &'static str {
        "outcomes"
    }
    fn topic(&self) -> &'static str {
        kurz_schemas::topics::EVENTS
    }
    fn apply(&self, input: super::Input<'_>, out: &mut Vec<kurz_storage::store::Mutation>) {
        apply::apply(input, out)
    }
}
