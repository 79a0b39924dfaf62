//! The JSON-lines log layer.

use serde_json::{Map, Value};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

type Sink = std::sync::Arc<dyn Fn(&[u8]) + Send + Sync>;

pub struct JsonLayer {
    service: &'static str,
    sink: Sink,
}

impl JsonLayer {
    /// Writes to stdout.
    pub fn new(service: &'static str) -> JsonLayer {
        JsonLayer::with_sink(
            service,
            std::sync::Arc::new(|line: &[u8]| {
                let _ = std::io::stdout().lock().write_all(line);
            }),
        )
    }

    pub fn with_sink(service: &'static str, sink: Sink) -> JsonLayer {
        JsonLayer { service, sink }
    }
}

struct SpanFields(Map<String, Value>);

struct Fields<'a>(&'a mut Map<String, Value>);

fn secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "token", "secret", "authorization"].iter().any(|s| n.contains(s))
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, v: Value) {
        let v = if secret(field.name()) { Value::String("[redacted]".into()) } else { v };
        self.0.insert(field.name().to_string(), v);
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut map = Map::new();
        attrs.record(&mut Fields(&mut map));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(map));
        }
    }

    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(f) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Fields(&mut f.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)));
        line.insert("level".into(), Value::String(meta.level().as_str().to_ascii_lowercase()));
        line.insert("logger".into(), Value::String(meta.target().to_string()));
        line.insert("service".into(), Value::String(self.service.to_string()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    for (k, v) in &f.0 {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        if !fields.contains_key("event") {
            let msg = fields.get("message").cloned().unwrap_or(Value::String(meta.name().to_string()));
            fields.insert("event".into(), msg);
        }
        for (k, v) in fields {
            line.insert(k, v);
        }
        let mut out = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        out.push(b'\n');
        (self.sink)(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn lines_carry_the_standard_fields_span_fields_and_no_secrets_or_raw_control_characters() {
        let lines: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = lines.clone();
        let layer = JsonLayer::with_sink("query-edge", Arc::new(move |b: &[u8]| sink.lock().unwrap().extend_from_slice(b)));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("http", endpoint = "/{code}", method = "GET");
            let _e = span.enter();
            tracing::warn!(
                event = "request_failed",
                user_id = 42,
                password = "hunter2",
                note = "line1\r\nFAKE {\"level\":\"info\"}\u{1b}[31m"
            );
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "CR/LF inside a value do not split the line: {text}");
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        for (k, want) in
            [("level", "warn"), ("event", "request_failed"), ("service", "query-edge"), ("endpoint", "/{code}"), ("method", "GET")]
        {
            assert_eq!(v[k], want, "{k} in {v}");
        }
        assert_eq!(v["user_id"], 42);
        assert!(v["logger"].as_str().unwrap().contains("json"));
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["password"], "[redacted]");
        assert!(!text.contains("hunter2"));
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "control characters are escaped");
    }
}
