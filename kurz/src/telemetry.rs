//! Logging: one JSON object per line on stdout.

use tracing_subscriber::EnvFilter;

pub fn init(filter: &str, service: &'static str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .try_init();
    tracing::info!(event = "starting", service, version = env!("CARGO_PKG_VERSION"));
}
