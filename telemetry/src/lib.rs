//! kurz's telemetry: JSON-line logs and, when configured, OpenTelemetry traces.
//!
//! - **Logs**: one JSON object per line on stdout with `ts`, `level`, `logger` (the
//!   module), `event`, `service`, the fields of the enclosing spans (so `endpoint` and
//!   `method` on request logs) and the event's own fields. Values of fields whose names
//!   look secret (`password`, `token`, `secret`, `authorization`) are replaced; JSON
//!   string escaping neutralises CR, LF and terminal escape characters.
//! - **Traces**: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set; then spans go over
//!   OTLP/HTTP (JSON) to `<endpoint>/v1/traces`, with `OTEL_SERVICE_NAME` (default: the
//!   role). Trace context crosses the log in W3C `traceparent` form: [`traceparent`]
//!   reads it from the current span, [`continue_trace`] makes a span its child.

pub mod exposition;
mod json;

/// The W3C trace-context key, in HTTP headers and in log record headers alike
/// (`kurz_schemas::headers::TRACEPARENT` names the same one).
const TRACEPARENT: &str = "traceparent";
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes and stops trace export when dropped.
pub struct Guard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. `filter` is an `EnvFilter` directive (`info`, …).
pub fn init(filter: &str, service: &'static str) -> Guard {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // One global filter, not a per-layer one. With the `EnvFilter` as a per-layer filter,
    // a process on Kafka whose consumers polled all the time (the control-topic follower)
    // silently lost later events, `listening` among them (`kurz/tests/click_spool.rs`
    // against tansu); as a global filter it loses none. So the filter also bounds which
    // spans reach the trace exporter.
    let logs = json::JsonLayer::new(service);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty());
    let provider = endpoint.and_then(|e| match tracer_provider(&e, service) {
        Ok(p) => Some(p),
        Err(err) => {
            eprintln!("kurz: tracing export disabled: {err}");
            None
        }
    });
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_opentelemetry::layer().with_tracer(p.tracer("kurz")).with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let _ = tracing_subscriber::registry().with(filter).with(logs).with(otel).try_init();
    Guard { provider }
}

fn tracer_provider(endpoint: &str, service: &'static str) -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| e.to_string())?;
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_string());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(name).build();
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// The current span's trace context as a W3C `traceparent`, if tracing is on.
pub fn traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT).filter(|t| !t.starts_with("00-00000000000000000000000000000000"))
}

/// Makes `span` a child of the trace named by `traceparent` (no-op if absent).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(tp) = traceparent {
        let carrier: HashMap<String, String> = HashMap::from([(TRACEPARENT.to_string(), tp.to_string())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        let _ = span.set_parent(cx);
    }
}
