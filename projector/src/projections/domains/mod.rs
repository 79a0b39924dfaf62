//! The domain registry: hosts links may live on, and the fallbacks of each and of the
//! default one (`kurz_schemas::domain`). Edges read it whole, often; it is small.
mod apply;
#[cfg(test)]
mod tests;

pub struct Domains;

impl super::Projection for Domains {
    fn name(&self) -> &'static str {
        "domains"
    }
    fn topic(&self) -> &'static str {
        kurz_schemas::topics::EVENTS
    }
    fn apply(&self, input: super::Input<'_>, out: &mut Vec<kurz_storage::store::Mutation>) {
        apply::apply(input, out)
    }
}
