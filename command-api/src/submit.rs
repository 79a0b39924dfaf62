//! Submitting a command: append it to the commands topic under its aggregate key, then
//! wait until the projector has stored its outcome. The outcome is stored in the same
//! read-store transaction as the state it produced, so when this returns the read API
//! already serves the new state (read-your-writes), whichever process serves it.

use crate::AppState;
use hmac::{Hmac, Mac};
use kurz_schemas::event::Answer;
use kurz_schemas::personal::OpenError;
use kurz_schemas::{headers, topics, Command, CommandBody, CommandId};
use kurz_storage::log::partition_for;
use kurz_storage::store::StoredOutcome;
use kurz_storage::vault::Keyring;
use kurz_storage::NewRecord;
use kurz_web::ApiError;
use sha2::{Digest, Sha256};

impl AppState {
    /// [`idempotency`] under this deployment's secret.
    pub fn idempotency(&self, headers: &axum::http::HeaderMap, scope: &str, route: &str, request: &[u8]) -> Result<Idempotency, ApiError> {
        idempotency(self.auth.secret(), headers, scope, route, request)
    }

    pub async fn submit(&self, mut cmd: Command) -> Result<StoredOutcome, ApiError> {
        let m = crate::metrics::get();
        // The request's trace continues in the decider and the projector.
        if cmd.traceparent.is_none() {
            cmd.traceparent = kurz_telemetry::traceparent();
        }
        // A retry of a command that was already decided is answered from its outcome,
        // if it is the same request.
        if let Some(done) = self.store.outcome(cmd.id.as_str()).await? {
            same_request(&cmd, &done)?;
            m.commands_submitted.with_label_values(&["replayed"]).inc();
            return self.with_personal(done).await;
        }
        self.assign_subjects(&mut cmd).await?;
        let payload = self.seal(&cmd).await?;
        let key = cmd.key();
        let partition = partition_for(&key, self.command_partitions);
        let mut rec = NewRecord::new(key, payload)
            .header(headers::COMMAND_ID, cmd.id.as_str())
            .header(headers::SCHEMA_VERSION, Command::VERSION.to_string());
        if let Some(tp) = &cmd.traceparent {
            rec = rec.header(headers::TRACEPARENT, tp.as_str());
        }
        self.log.append(topics::COMMANDS, partition, vec![rec]).await.map_err(|e| {
            m.commands_submitted.with_label_values(&["log_unavailable"]).inc();
            ApiError::Unavailable(format!("command log: {e}"))
        })?;
        match self.store.wait_outcome(cmd.id.as_str(), self.settings.outcome_timeout).await? {
            Some(o) => {
                // Two requests under one key raced: the decider took the first.
                same_request(&cmd, &o)?;
                m.commands_submitted.with_label_values(&[if o.status < 400 { "accepted" } else { "rejected" }]).inc();
                self.with_personal(o).await
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

impl AppState {
    /// Gives every user a command creates, or changes the personal data of, a data key:
    /// a new one for a new user (stored in the vault before the command is appended),
    /// the user's own for an update (a new one for a user from before sealing).
    async fn assign_subjects(&self, cmd: &mut Command) -> Result<(), ApiError> {
        let vault = |e: kurz_storage::StorageError| ApiError::Unavailable(format!("key vault: {e}"));
        match &mut cmd.body {
            CommandBody::CreateUser { subject: subject @ None, .. } => *subject = Some(self.keys.mint().await.map_err(vault)?),
            CommandBody::UpdateUser { id, email, username, password_hash, subject: subject @ None }
                if email.is_some() || username.is_some() || password_hash.is_some() =>
            {
                let own = self.store.user(*id).await?.and_then(|u| u.subject);
                *subject = Some(match own {
                    Some(s) => s,
                    None => self.keys.mint().await.map_err(vault)?,
                });
            }
            CommandBody::ImportUsers { rows } => {
                let bare: Vec<&mut kurz_schemas::UserRow> = rows.iter_mut().filter(|r| r.subject.is_none()).collect();
                let minted = self.keys.mint_many(bare.len()).await.map_err(vault)?;
                for (row, s) in bare.into_iter().zip(minted) {
                    row.subject = Some(s);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The command's bytes for the log, personal data sealed.
    async fn seal(&self, cmd: &Command) -> Result<Vec<u8>, ApiError> {
        let subjects = cmd.subjects();
        if !subjects.is_empty() {
            self.keys.load_all(&subjects).await.map_err(|e| ApiError::Unavailable(format!("key vault: {e}")))?;
        }
        cmd.encode_sealed(&|s| self.keys.key(s), &mut Keyring::nonce).map_err(|e| match e {
            OpenError::Erased(_) => ApiError::NotFound("user not found".into()),
            e => ApiError::internal(format!("sealing a command: {e}")),
        })
    }

    /// An outcome keeps a user without its personal fields (an erasure must not leave
    /// them there); the answer takes them from the user's row, written in the same
    /// store step as the outcome. A user deleted since is answered without them.
    async fn with_personal(&self, mut o: StoredOutcome) -> Result<StoredOutcome, ApiError> {
        if let Answer::User { user } = &mut o.answer {
            if user.email.is_empty() {
                if let Some(row) = self.store.user(user.id).await? {
                    *user = row.answer();
                }
            }
        }
        Ok(o)
    }
}

/// An outcome answers a command only if it was decided for the same request: the same
/// key sent with another body is a 422 (IETF `Idempotency-Key` draft, section 2.7), so
/// a key can never hand one request's result (a user, a session token) to another.
/// An outcome without a fingerprint predates them and answers no keyed request.
fn same_request(cmd: &Command, done: &StoredOutcome) -> Result<(), ApiError> {
    match &cmd.fingerprint {
        Some(f) if done.fingerprint.as_ref() != Some(f) => {
            crate::metrics::get().commands_submitted.with_label_values(&["key_reused"]).inc();
            Err(ApiError::Unprocessable("this Idempotency-Key was already used with a different request; use a new key".into()))
        }
        _ => Ok(()),
    }
}

/// A request's idempotency: its command id and, with a key, its fingerprint.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub id: CommandId,
    pub fingerprint: Option<String>,
}

impl Idempotency {
    pub fn keyed(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// `body` as a command under this key.
    pub fn command(&self, actor: kurz_schemas::Actor, body: kurz_schemas::CommandBody) -> Command {
        Command::new(self.id.clone(), actor, body).with_fingerprint(self.fingerprint.clone())
    }
}

/// The longest `Idempotency-Key` taken.
pub const MAX_KEY_LEN: usize = 255;

/// A request's idempotency from its `Idempotency-Key`, or a random command id without one.
///
/// The key is scoped: the command id is a digest of `(scope, route, key)`, where the
/// scope names the caller (a user, the admin, or for anonymous routes what identifies
/// the request, such as the e-mail of a sign-up), so two callers' keys never meet.
/// `request` is the request's canonical bytes (a JSON body re-serialized with sorted
/// keys, a CSV's digest): its HMAC under the server secret is the fingerprint, which
/// reveals nothing of the request (a password, say) to whoever reads the log.
pub fn idempotency(
    secret: &[u8],
    headers: &axum::http::HeaderMap,
    scope: &str,
    route: &str,
    request: &[u8],
) -> Result<Idempotency, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(Idempotency { id: CommandId::random(), fingerprint: None });
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or_else(|| ApiError::BadRequest(format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters")))?;
    let mut h = Sha256::new();
    for part in [scope, route, key] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let id = CommandId(format!("k-{}", hex::encode(&h.finalize()[..16])));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("hmac takes any key length");
    mac.update(b"kurz-idempotency-v1");
    mac.update(&(route.len() as u64).to_be_bytes());
    mac.update(route.as_bytes());
    mac.update(request);
    Ok(Idempotency { id, fingerprint: Some(hex::encode(&mac.finalize().into_bytes()[..16])) })
}

/// A JSON body's canonical bytes for [`idempotency`]: its object with keys sorted
/// (serde_json's map is ordered), whatever order and spacing the client sent.
pub fn canonical(body: &kurz_web::JsonObject) -> Vec<u8> {
    serde_json::to_vec(&body.0).expect("a JSON object serializes")
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
        Answer::Reserved { refused } => serde_json::json!({ "refused": refused }),
        Answer::Domain { domain } => domain.to_json(),
    };
    Ok((axum::http::StatusCode::from_u16(o.status).unwrap_or(axum::http::StatusCode::OK), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &str) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        h.insert("idempotency-key", key.parse().unwrap());
        h
    }

    #[test]
    fn keys_are_scoped_and_bound_to_the_request() {
        let k = |scope, route, key, body: &[u8]| idempotency(b"secret", &keyed(key), scope, route, body).unwrap();
        let a = k("user:1", "POST /urls", "k", b"{\"a\":1}");
        assert!(a.keyed());
        assert_eq!(a.id, k("user:1", "POST /urls", "k", b"{\"a\":2}").id, "the id is the key's");
        assert_ne!(a.fingerprint, k("user:1", "POST /urls", "k", b"{\"a\":2}").fingerprint, "the fingerprint is the request's");
        assert_ne!(a.id, k("user:2", "POST /urls", "k", b"{\"a\":1}").id, "scoped by caller");
        assert_ne!(a.id, k("user:1", "PUT /urls/1", "k", b"{\"a\":1}").id, "scoped by route");
        assert_ne!(a.fingerprint, idempotency(b"other", &keyed("k"), "user:1", "POST /urls", b"{\"a\":1}").unwrap().fingerprint);
        let none = idempotency(b"secret", &axum::http::HeaderMap::new(), "user:1", "POST /urls", b"").unwrap();
        assert!(!none.keyed());
        assert!(idempotency(b"secret", &keyed(&"x".repeat(MAX_KEY_LEN + 1)), "s", "r", b"").is_err());
    }

    #[test]
    fn an_outcome_answers_only_its_own_request() {
        let out = |fp: Option<&str>| StoredOutcome {
            status: 201,
            answer: Answer::Deleted { id: kurz_schemas::Id::new(1).unwrap() },
            at: kurz_schemas::Ts(0),
            fingerprint: fp.map(str::to_string),
        };
        let cmd = |fp: Option<&str>| {
            Command::new(
                CommandId("c".into()),
                kurz_schemas::Actor::Admin,
                kurz_schemas::CommandBody::DeleteUser { id: kurz_schemas::Id::new(1).unwrap() },
            )
            .with_fingerprint(fp.map(str::to_string))
        };
        assert!(same_request(&cmd(Some("f")), &out(Some("f"))).is_ok());
        assert!(matches!(same_request(&cmd(Some("f")), &out(Some("g"))), Err(ApiError::Unprocessable(_))));
        assert!(same_request(&cmd(Some("f")), &out(None)).is_err(), "an outcome from before fingerprints answers no keyed request");
        assert!(same_request(&cmd(None), &out(Some("g"))).is_ok(), "an unkeyed command has a random id");
    }
}
