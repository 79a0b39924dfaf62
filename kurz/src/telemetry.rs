//! Process telemetry: see the `kurz-telemetry` crate.

/// Installs JSON logs (and OTLP traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set);
/// keep the guard until exit so traces are flushed.
pub fn init(filter: &str, service: &'static str) -> kurz_telemetry::Guard {
    let guard = kurz_telemetry::init(filter, service);
    tracing::info!(event = "starting", version = env!("CARGO_PKG_VERSION"));
    guard
}
