//! One folder per projection. Every folder has the same roles:
//! - `mod.rs`: the projection type: its name, the topic it reads;
//! - `apply.rs`: the pure mapping from one input record to mutations;
//! - `tests.rs`: that mapping's tests, including idempotence.

pub mod clicks;
pub mod domains;
pub mod history;
pub mod links;
pub mod outcomes;
pub mod users;

use kurz_schemas::{Click, Event, Orphan};
use kurz_storage::store::Mutation;

/// A decoded log record with its place in the log.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    Event {
        event: &'a Event,
        partition: u32,
        offset: u64,
    },
    Click {
        click: &'a Click,
        partition: u32,
        offset: u64,
    },
    /// A visit that reached no link (clicks topic, v3).
    Orphan {
        orphan: &'a Orphan,
    },
}

pub trait Projection: Send + Sync + 'static {
    /// The name its positions are stored under.
    fn name(&self) -> &'static str;
    fn topic(&self) -> &'static str;
    fn apply(&self, input: Input<'_>, out: &mut Vec<Mutation>);
}

/// Every projection kurz maintains.
pub fn all() -> Vec<Box<dyn Projection>> {
    vec![
        Box::new(users::Users),
        Box::new(links::Links),
        Box::new(history::History),
        Box::new(outcomes::Outcomes),
        Box::new(clicks::Clicks),
        Box::new(domains::Domains),
    ]
}
