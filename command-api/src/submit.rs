//! Submitting a command: append it to the commands topic under its aggregate key, then
//! wait until the projector has stored its outcome. The outcome is stored in the same
//! read-store transaction as the state it produced, so when this returns the read API
//! already serves the new state (read-your-writes), whichever process serves it.

use crate::AppState;
use kurz_schemas::event::Answer;
use kurz_schemas::{topics, Command, CommandId};
use kurz_storage::log::partition_for;
use kurz_storage::store::StoredOutcome;
use kurz_storage::NewRecord;
use kurz_web::ApiError;
use sha2::{Digest, Sha256};

impl AppState {
    pub async fn submit(&self, mut cmd: Command) -> Result<StoredOutcome, ApiError> {
        let m = crate::metrics::get();
        // The request's trace continues in the decider and the projector.
        if cmd.traceparent.is_none() {
            cmd.traceparent = kurz_telemetry::traceparent();
        }
        // A retry of a command that was already decided is answered from its outcome.
        if let Some(done) = self.store.outcome(cmd.id.as_str()).await? {
            m.commands_submitted.with_label_values(&["replayed"]).inc();
            return Ok(done);
        }
        let key = cmd.key();
        let partition = partition_for(&key, self.command_partitions);
        let mut rec =
            NewRecord::new(key, cmd.encode()).header("command-id", cmd.id.as_str()).header("schema-version", Command::VERSION.to_string());
        if let Some(tp) = &cmd.traceparent {
            rec = rec.header("traceparent", tp.as_str());
        }
        self.log.append(topics::COMMANDS, partition, vec![rec]).await.map_err(|e| {
            m.commands_submitted.with_label_values(&["log_unavailable"]).inc();
            ApiError::Unavailable(format!("command log: {e}"))
        })?;
        match self.store.wait_outcome(cmd.id.as_str(), self.settings.outcome_timeout).await? {
            Some(o) => {
                m.commands_submitted.with_label_values(&[if o.status < 400 { "accepted" } else { "rejected" }]).inc();
                Ok(o)
            }
            None => {
                m.commands_submitted.with_label_values(&["timeout"]).inc();
                Err(ApiError::Timeout(format!(
                    "command {} was accepted but its outcome is not known yet; retry with the same Idempotency-Key",
                    cmd.id.as_str()
                )))
            }
        }
    }
}

/// The command id for a request: from the client's `Idempotency-Key` (scoped to the
/// caller and the route, so two clients' keys never collide), or random.
pub fn command_id(headers: &axum::http::HeaderMap, scope: &str, route: &str) -> Result<CommandId, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(CommandId::random()),
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| ApiError::BadRequest("Idempotency-Key must be 1 to 255 visible ASCII characters".into()))?;
            let mut h = Sha256::new();
            for part in [scope, route, key] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part.as_bytes());
            }
            let digest = h.finalize();
            Ok(CommandId(format!("k-{}", digest.iter().take(16).map(|b| format!("{b:02x}")).collect::<String>())))
        }
    }
}

/// Whether the request carried an `Idempotency-Key`.
pub fn has_key(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key("idempotency-key")
}

/// The default JSON rendering of an outcome.
pub fn render(o: &StoredOutcome) -> Result<(axum::http::StatusCode, serde_json::Value), ApiError> {
    let body = match &o.answer {
        Answer::Rejected { message } => return Err(ApiError::Status(o.status, message.clone())),
        Answer::User { user } => user.to_json(),
        Answer::Link { link } => link.to_json(),
        Answer::Event { event } => event.to_json(),
        Answer::Count { count, skipped } => {
            serde_json::json!({ "count": count, "skipped": skipped.len(), "problems": skipped.iter().take(100).collect::<Vec<_>>() })
        }
        Answer::Deleted { id } => serde_json::json!({ "message": "deleted", "id": id }),
    };
    Ok((axum::http::StatusCode::from_u16(o.status).unwrap_or(axum::http::StatusCode::OK), body))
}
