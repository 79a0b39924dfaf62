//! Every stored fixture of every encoding version must still decode. A new version adds
//! a folder; old folders are never edited, so a change that breaks an old record fails
//! here.

use kurz_schemas::event::Answer;
use kurz_schemas::{Actor, Click, Command, CommandBody, Event, EventBody};
use std::path::{Path, PathBuf};

fn fixtures(kind: &str) -> Vec<(u16, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(kind);
    let mut out = Vec::new();
    for v in std::fs::read_dir(&dir).unwrap() {
        let v = v.unwrap().path();
        let version: u16 = v.file_name().unwrap().to_str().unwrap().trim_start_matches('v').parse().unwrap();
        for f in std::fs::read_dir(&v).unwrap() {
            out.push((version, f.unwrap().path()));
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no {kind} fixtures");
    out
}

#[test]
fn every_event_fixture_decodes_and_reencodes_losslessly() {
    let all = fixtures("events");
    assert!(all.len() >= 11);
    let mut kinds = std::collections::HashSet::new();
    for (version, path) in all {
        let bytes = std::fs::read(&path).unwrap();
        let ev = Event::decode(&bytes).unwrap_or_else(|e| panic!("{} (v{version}): {e}", path.display()));
        kinds.insert(std::mem::discriminant(&ev.body));
        // Re-encoding with the current version and decoding again keeps every field.
        assert_eq!(Event::decode(&ev.encode()).unwrap(), ev, "{}", path.display());
    }
    assert_eq!(kinds.len(), 8, "a fixture for every event type");
}

#[test]
fn event_fixture_fields_land_where_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/v1");
    let ev = Event::decode(&std::fs::read(dir.join("link_created.json")).unwrap()).unwrap();
    match ev.body {
        EventBody::LinkCreated { link, imported } => {
            assert!(imported);
            assert_eq!(link.short_code, "u0MO8vv");
            assert_eq!(link.user_id.map(|u| u.get()), Some(42));
        }
        other => panic!("{other:?}"),
    }
    let ev = Event::decode(&std::fs::read(dir.join("decided_count.json")).unwrap()).unwrap();
    // Written before fingerprints: it has none.
    assert!(matches!(ev.body, EventBody::Decided { status: 201, answer: Answer::Count { count: 3, .. }, fingerprint: None }));
    assert_eq!(ev.command_id.as_str(), "3f0c2a9e-8d1b-4a57-9b7e-5e8d2c1f0a11");
    // Users written before sessions could end accept every session.
    match Event::decode(&std::fs::read(dir.join("user_updated.json")).unwrap()).unwrap().body {
        EventBody::UserUpdated { user } => assert!(user.sessions_from.is_none() && user.accepts_session(kurz_schemas::Ts(0), "x")),
        other => panic!("{other:?}"),
    }
    match Event::decode(&std::fs::read(dir.join("user_updated_sessions.json")).unwrap()).unwrap().body {
        EventBody::UserUpdated { user } => {
            assert!(!user.accepts_session(kurz_schemas::Ts(1764646999999), "x"), "issued before sessions_from");
            assert!(!user.accepts_session(kurz_schemas::Ts(1764647000001), "AAECAwQFBgcICQoLDA0ODw"), "revoked");
            assert!(user.accepts_session(kurz_schemas::Ts(1764647000001), "other"));
        }
        other => panic!("{other:?}"),
    }
    let ev = Event::decode(&std::fs::read(dir.join("decided_keyed.json")).unwrap()).unwrap();
    match ev.body {
        EventBody::Decided { status: 201, fingerprint: Some(f), .. } => assert_eq!(f, "0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_versions_and_garbage_are_errors_not_panics() {
    assert!(matches!(Event::decode(br#"{"v":99,"type":"x"}"#), Err(kurz_schemas::DecodeError::UnknownVersion(99))));
    for bad in [&b""[..], b"null", b"{}", b"{\"v\":1}", b"\xff\xfe", br#"{"v":1,"id":0,"command_id":"c","at":0,"type":"decided"}"#] {
        assert!(Event::decode(bad).is_err());
        assert!(Click::decode(bad).is_err());
        assert!(Command::decode(bad).is_err());
    }
}

#[test]
fn click_and_command_fixtures_decode() {
    for (_, path) in fixtures("clicks") {
        let c = Click::decode(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(Click::decode(&c.encode()).unwrap(), c);
        // `encode` writes what serde writes for the flattened envelope, byte for byte.
        let envelope = kurz_schemas::click::ClickEnvelope { v: Click::VERSION, click: c.clone() };
        assert_eq!(String::from_utf8(c.encode()).unwrap(), serde_json::to_string(&envelope).unwrap(), "{}", path.display());
    }
    for (_, path) in fixtures("commands") {
        let c = Command::decode(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        match (&c.actor, &c.body) {
            (Actor::User(u), CommandBody::CreateLink { code, custom, .. }) => {
                assert_eq!(u.get(), 42);
                assert_eq!(code.as_str(), "my-alias");
                assert!(custom);
                assert_eq!(c.key(), "link:my-alias");
            }
            (Actor::Admin, CommandBody::ImportUsers { rows }) => {
                assert_eq!(rows[0].email.as_str(), "a@b.io");
                assert_eq!(c.key(), kurz_schemas::USERS_KEY);
                assert_eq!(c.fingerprint, None, "written before fingerprints");
            }
            (Actor::User(u), CommandBody::CreateApiKey { id, key }) => {
                assert_eq!((u.get(), id.get()), (42, 42));
                assert_eq!((key.name.as_str(), key.scope), ("deploy bot", kurz_schemas::KeyScope::Write));
                assert_eq!(key.to_json().get("hash"), None, "a key's JSON never shows its hash");
            }
            (Actor::User(u), CommandBody::RevokeSession { id, session, until }) => {
                assert_eq!((u.get(), id.get(), until.0), (42, 42, 1767239000000));
                assert_eq!(session, "AAECAwQFBgcICQoLDA0ODw");
                assert_eq!(c.key(), kurz_schemas::USERS_KEY);
            }
            (Actor::User(u), CommandBody::UpdateUser { id, .. }) => {
                assert_eq!((u.get(), id.get()), (42, 42));
                assert_eq!(c.fingerprint.as_deref(), Some("0f1e2d3c4b5a69788796a5b4c3d2e1f0"));
            }
            other => panic!("unexpected fixture {other:?}"),
        }
    }
}

#[test]
fn invalid_values_inside_records_are_rejected_at_decode() {
    // An e-mail or URL that does not validate cannot enter through the log either.
    let bad_url = br#"{"v":1,"id":"x","issued_at":0,"actor":{"kind":"anonymous"},"body":{"type":"create_link","code":"abc","custom":false,"original_url":"ftp://x","title":null,"user_id":null,"existing_ok":false}}"#;
    assert!(Command::decode(bad_url).is_err());
    let too_big_id = br#"{"v":1,"link_id":9007199254740993,"code":"abc","at":0}"#;
    assert!(Click::decode(too_big_id).is_err());
}

#[test]
fn control_fixtures_decode_and_name_the_serving_generation() {
    use kurz_schemas::ControlEvent;
    let mut serving = Vec::new();
    for (_, path) in fixtures("control") {
        let c = ControlEvent::decode(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(ControlEvent::decode(&c.encode()).unwrap(), c);
        serving.push(c.serving());
    }
    assert_eq!(serving, vec![Some(3), None], "generation-switched.json, then replay-started.json");
    assert!(ControlEvent::decode(br#"{"v":9,"kind":"generation_switched","generation":1,"previous":0,"at":0}"#).is_err());
    assert!(ControlEvent::decode(br#"{"v":1,"kind":"shrug"}"#).is_err());
}
