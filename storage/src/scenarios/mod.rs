//! Scenario suites, one per port. Every backend's tests call these unchanged, so a
//! backend passes exactly the behaviour the port promises.

pub mod cache;
pub mod log;
pub mod store;
pub mod vault;
