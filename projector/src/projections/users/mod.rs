//! Users by id and by email.
mod apply;
#[cfg(test)]
mod tests;

pub struct Users;

impl super::Projection for Users {
    fn name(&self) -> &'static str {
        "users"
    }
    fn topic(&self) -> &'static str {
        kurz_schemas::topics::EVENTS
    }
    fn apply(&self, input: super::Input<'_>, out: &mut Vec<kurz_storage::store::Mutation>) {
        apply::apply(input, out)
    }
}
