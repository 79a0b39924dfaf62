//! Personal data in records: where it sits, and how it is sealed on the way into the
//! log and opened on the way out (crypto-shredding, see [`crate::sealed`]).
//!
//! A user's e-mail, user name, password hash, API-key hashes and revoked sessions are
//! its *personal fields*. In a record they sit in an object that names the user's
//! `subject` (the id of its data key in the key vault):
//!
//! - events: `user` of `user_created`, `user_updated`, `user_deleted`, and `answer.user`
//!   of `decided`;
//! - commands: the `body` of `create_user` and `update_user`, each row of
//!   `import_users`.
//!
//! [`seal_record`] moves the personal fields of each such object into one `sealed`
//! value; [`open_record`] puts them back. When the subject's key was erased, an event's
//! object opens as an erased user (`"erased": true`, no personal fields), and a command
//! does not open at all ([`OpenError::Erased`]): nothing may be decided on data its
//! owner had erased. Objects without a subject (users from before sealing) are left as
//! they are. Only these paths are looked at: a client's free-form JSON (a history
//! row's `details`) is never taken for personal data, whatever keys it has.
//!
//! Pure: the caller brings the keys ([`Keys`]) and the nonces.

use crate::sealed::{self, SealError, Sealed};
use serde_json::{Map, Value};

/// The fields a sealed object carries instead of its plain ones.
pub const PERSONAL_FIELDS: [&str; 5] = ["email", "username", "password_hash", "api_keys", "revoked_sessions"];

/// A subject's key as the caller knows it.
#[derive(Clone, Copy)]
pub enum SubjectKey {
    Live([u8; 32]),
    Erased,
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubjectKey::Live(_) => "Live(***)",
            SubjectKey::Erased => "Erased",
        })
    }
}

/// The key of a subject, or `None` when the caller has not loaded it.
pub type Keys<'a> = &'a dyn Fn(&str) -> Option<SubjectKey>;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The caller did not load this subject's key (a bug of the caller, or a vault that
    /// does not know the subject).
    #[error("no key loaded for subject {0}")]
    Missing(String),
    /// A command's personal data was erased before the command was decided.
    #[error("the personal data of subject {0} was erased")]
    Erased(String),
    #[error("sealed personal data: {0}")]
    Seal(#[from] SealError),
    #[error("malformed record: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Which kind of record a JSON value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Event,
    Command,
}

fn type_of(v: &Value, tag: &str) -> String {
    v.get(tag).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The objects of `record` that may hold personal fields.
fn objects(record: &mut Value, kind: RecordKind) -> Vec<&mut Map<String, Value>> {
    match kind {
        RecordKind::Event => match type_of(record, "type").as_str() {
            "user_created" | "user_updated" | "user_deleted" => record.get_mut("user").and_then(Value::as_object_mut).into_iter().collect(),
            "decided" => match record.get_mut("answer") {
                Some(a) if type_of(a, "kind") == "user" => a.get_mut("user").and_then(Value::as_object_mut).into_iter().collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        },
        RecordKind::Command => {
            let Some(body) = record.get_mut("body") else { return Vec::new() };
            match type_of(body, "type").as_str() {
                "create_user" | "update_user" => body.as_object_mut().into_iter().collect(),
                "import_users" => match body.get_mut("rows").and_then(Value::as_array_mut) {
                    Some(rows) => rows.iter_mut().filter_map(Value::as_object_mut).collect(),
                    None => Vec::new(),
                },
                _ => Vec::new(),
            }
        }
    }
}

/// Whether `bytes` may hold a sealed value: records without one skip the JSON walk.
pub fn may_be_sealed(bytes: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"sealed\"";
    bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// `record` as JSON bytes, personal fields sealed ([`seal_record`]).
pub fn encode<T: serde::Serialize>(
    record: &T,
    kind: RecordKind,
    keys: Keys,
    nonce: &mut dyn FnMut() -> [u8; 12],
) -> Result<Vec<u8>, OpenError> {
    let mut v = serde_json::to_value(record)?;
    seal_record(&mut v, kind, keys, nonce)?;
    Ok(serde_json::to_vec(&v)?)
}

/// The subjects whose keys opening the record `bytes` needs (none without a sealed value).
pub fn subjects_of(bytes: &[u8], kind: RecordKind) -> Vec<String> {
    if !may_be_sealed(bytes) {
        return Vec::new();
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => sealed_subjects(&mut v, kind),
        Err(_) => Vec::new(),
    }
}

/// The record `bytes`, opened ([`open_record`]) and decoded.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], kind: RecordKind, keys: Keys) -> Result<T, OpenError> {
    let mut v: Value = serde_json::from_slice(bytes)?;
    open_record(&mut v, kind, keys)?;
    Ok(serde_json::from_value(v)?)
}

/// The subjects whose keys opening `record` needs.
pub fn sealed_subjects(record: &mut Value, kind: RecordKind) -> Vec<String> {
    let mut out: Vec<String> = objects(record, kind)
        .into_iter()
        .filter_map(|o| o.get("sealed").and_then(|s| s.get("subject")).and_then(Value::as_str).map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Seals the personal fields of every object of `record` that names a subject. An
/// event's user whose key was erased is written erased; a command's is an error.
pub fn seal_record(record: &mut Value, kind: RecordKind, keys: Keys, nonce: &mut dyn FnMut() -> [u8; 12]) -> Result<(), OpenError> {
    for obj in objects(record, kind) {
        let Some(subject) = obj.get("subject").and_then(Value::as_str).map(str::to_string) else { continue };
        let key = match keys(&subject) {
            Some(SubjectKey::Live(k)) => Some(k),
            Some(SubjectKey::Erased) if kind == RecordKind::Event => None,
            Some(SubjectKey::Erased) => return Err(OpenError::Erased(subject)),
            None => return Err(OpenError::Missing(subject)),
        };
        let mut personal = Map::new();
        for f in PERSONAL_FIELDS {
            if let Some(x) = obj.remove(f) {
                personal.insert(f.to_string(), x);
            }
        }
        let Some(key) = key else {
            // The key is gone (the user was deleted): whatever personal data the writer
            // still held is not written; the user goes out erased.
            obj.insert("erased".into(), Value::Bool(true));
            continue;
        };
        let plain = serde_json::to_vec(&personal)?;
        obj.insert("sealed".into(), serde_json::to_value(sealed::seal(&key, nonce(), &subject, &plain))?);
    }
    Ok(())
}

/// Opens every sealed object of `record`.
pub fn open_record(record: &mut Value, kind: RecordKind, keys: Keys) -> Result<(), OpenError> {
    for obj in objects(record, kind) {
        let Some(s) = obj.remove("sealed") else { continue };
        let s: Sealed = serde_json::from_value(s)?;
        if obj.get("subject").and_then(Value::as_str) != Some(s.subject.as_str()) {
            return Err(OpenError::Seal(SealError::Forged));
        }
        match keys(&s.subject) {
            None => return Err(OpenError::Missing(s.subject)),
            Some(SubjectKey::Erased) if kind == RecordKind::Event => {
                obj.insert("erased".into(), Value::Bool(true));
            }
            Some(SubjectKey::Erased) => return Err(OpenError::Erased(s.subject)),
            Some(SubjectKey::Live(k)) => {
                let personal: Map<String, Value> = serde_json::from_slice(&sealed::open(&k, &s)?)?;
                for (f, x) in personal {
                    if PERSONAL_FIELDS.contains(&f.as_str()) {
                        obj.insert(f, x);
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Answer;
    use crate::{Actor, ApiKey, Command, CommandBody, CommandId, Email, Event, EventBody, HistoryEvent, Id, KeyScope, Ts, User, UserRow};

    const KEY: [u8; 32] = [9; 32];

    fn live(s: &str) -> Option<SubjectKey> {
        s.starts_with("s-").then_some(SubjectKey::Live(KEY))
    }
    fn erased(_: &str) -> Option<SubjectKey> {
        Some(SubjectKey::Erased)
    }
    fn nonces() -> impl FnMut() -> [u8; 12] {
        let mut n = 0u8;
        move || {
            n += 1;
            [n; 12]
        }
    }

    fn user() -> User {
        let mut u = User::new(Id::new(7).unwrap(), "ann@example.com".into(), Some("ann".into()), Ts(1), Some("$argon2id$v=19$x".into()))
            .with_subject(Some("s-1".into()));
        u.api_keys.push(ApiKey {
            id: "k1".into(),
            name: "ci".into(),
            scope: KeyScope::Read,
            hash: "ab".repeat(32),
            created_at: Ts(1),
            last_used_at: None,
        });
        u
    }

    fn ev(body: EventBody) -> Event {
        Event { id: Id::new(1).unwrap(), command_id: CommandId("c".into()), at: Ts(1), body }
    }

    #[test]
    fn user_events_carry_no_personal_field_in_the_clear_and_open_to_the_same_event() {
        for body in [
            EventBody::UserCreated { user: user(), imported: false },
            EventBody::UserUpdated { user: user() },
            EventBody::UserDeleted { user: user() },
            EventBody::Decided { status: 201, answer: Answer::User { user: user().answer() }, fingerprint: None },
        ] {
            let e = ev(body);
            let bytes = e.encode_sealed(&live, &mut nonces()).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            for secret in ["ann@example.com", "argon2id", "\"ann\"", &"ab".repeat(32), "\"ci\""] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains("\"v\":2") && text.contains("\"subject\":\"s-1\""), "{text}");
            assert_eq!(Event::sealed_subjects(&bytes), vec!["s-1".to_string()]);
            assert_eq!(Event::decode_opened(&bytes, &live).unwrap(), e);
            // Without the key: the record still reads, with no personal fields.
            let plain = Event::decode(&bytes).unwrap();
            assert!(plain.users().iter().all(|u| u.email.is_empty() && u.sealed.is_some() && u.password_hash.is_none()));
        }
    }

    #[test]
    fn an_erased_subject_opens_as_an_erased_user_and_the_rest_of_the_event_stays() {
        let e = ev(EventBody::UserCreated { user: user(), imported: true });
        let bytes = e.encode_sealed(&live, &mut nonces()).unwrap();
        let got = Event::decode_opened(&bytes, &erased).unwrap();
        let EventBody::UserCreated { user: u, imported } = got.body else { panic!() };
        assert!(imported && u.erased && u.email.is_empty() && u.username.is_none() && u.password_hash.is_none() && u.api_keys.is_empty());
        assert_eq!((u.id, u.created_at, u.subject.as_deref()), (user().id, Ts(1), Some("s-1")));
        assert!(matches!(Event::decode_opened(&bytes, &|_| None), Err(crate::DecodeError::Sealed(OpenError::Missing(_)))));
        // Writing a user whose key is already gone writes it erased, never in the clear.
        let late = e.encode_sealed(&erased, &mut nonces()).unwrap();
        assert!(!String::from_utf8_lossy(&late).contains("ann@"));
        let EventBody::UserCreated { user: u, .. } = Event::decode_opened(&late, &live).unwrap().body else { panic!() };
        assert!(u.erased && u.email.is_empty());
    }

    #[test]
    fn sealed_values_cannot_be_moved_to_another_subject_or_tampered_with() {
        let bytes = ev(EventBody::UserUpdated { user: user() }).encode_sealed(&live, &mut nonces()).unwrap();
        let moved = String::from_utf8(bytes.clone()).unwrap().replacen("\"subject\":\"s-1\"", "\"subject\":\"s-2\"", 1);
        assert!(Event::decode_opened(moved.as_bytes(), &live).is_err());
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        v["user"]["sealed"]["ct"] = Value::String("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
        assert!(matches!(
            Event::decode_opened(&serde_json::to_vec(&v).unwrap(), &live),
            Err(crate::DecodeError::Sealed(OpenError::Seal(SealError::Forged)))
        ));
    }

    #[test]
    fn commands_seal_their_personal_fields_and_do_not_open_once_erased() {
        let rows = (0..3)
            .map(|i| UserRow {
                id: None,
                email: Email::parse(&format!("row{i}@example.com")).unwrap(),
                username: Some(format!("row{i}")),
                created_at: None,
                subject: Some(format!("s-row{i}")),
            })
            .collect();
        for body in [
            CommandBody::CreateUser {
                email: Email::parse("ann@example.com").unwrap(),
                username: Some("ann".into()),
                password_hash: Some("$argon2id$v=19$x".into()),
                subject: Some("s-1".into()),
            },
            CommandBody::UpdateUser {
                id: Id::new(7).unwrap(),
                email: Some(Email::parse("ann@example.com").unwrap()),
                username: None,
                password_hash: Some("$argon2id$v=19$x".into()),
                subject: Some("s-1".into()),
            },
            CommandBody::ImportUsers { rows },
        ] {
            let c = Command::new(CommandId("c".into()), Actor::Admin, body);
            let bytes = c.encode_sealed(&live, &mut nonces()).unwrap();
            let text = String::from_utf8(bytes.clone()).unwrap();
            assert!(!text.contains("@example.com") && !text.contains("argon2id"), "{text}");
            assert!(!Command::sealed_subjects(&bytes).is_empty());
            assert_eq!(Command::decode_opened(&bytes, &live).unwrap(), c);
            assert!(matches!(Command::decode_opened(&bytes, &erased), Err(OpenError::Erased(_))));
        }
    }

    #[test]
    fn free_form_json_is_never_taken_for_personal_data() {
        let mut details = serde_json::Map::new();
        details.insert("subject".into(), "s-1".into());
        details.insert("email".into(), "someone@example.com".into());
        details.insert("sealed".into(), serde_json::json!({"subject": "s-1", "nonce": "x", "ct": "y"}));
        let e = ev(EventBody::EventRecorded {
            event: HistoryEvent {
                id: Id::new(2).unwrap(),
                url_id: Id::new(3).unwrap(),
                user_id: None,
                event_type: "clicked".into(),
                timestamp: Ts(1),
                details,
            },
        });
        let bytes = e.encode_sealed(&|_| None, &mut nonces()).unwrap();
        assert!(Event::sealed_subjects(&bytes).is_empty());
        assert_eq!(Event::decode_opened(&bytes, &|_| None).unwrap(), e, "opened without any key, untouched");
        // Users from before sealing (no subject) pass through in the clear.
        let old = ev(EventBody::UserCreated { user: user().with_subject(None), imported: false });
        assert_eq!(Event::decode_opened(&old.encode_sealed(&|_| None, &mut nonces()).unwrap(), &|_| None).unwrap(), old);
    }
}
