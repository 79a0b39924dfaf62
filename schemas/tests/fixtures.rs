//! Every stored fixture of every encoding version must still decode. A new version adds
//! a folder; old folders are never edited, so a change that breaks an old record fails
//! here.

use kurz_schemas::event::Answer;
use kurz_schemas::{Actor, Click, ClickRecord, Command, CommandBody, Event, EventBody};
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
    assert_eq!(kinds.len(), 11, "a fixture for every event type");
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
    let mut orphans = 0;
    for (version, path) in fixtures("clicks") {
        let bytes = std::fs::read(&path).unwrap();
        let record = ClickRecord::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(ClickRecord::decode(&record.encode()).unwrap(), record, "{}", path.display());
        let c = match record {
            ClickRecord::Link(c) => c,
            ClickRecord::Orphan(o) => {
                assert_eq!(version, 3, "{}", path.display());
                assert!(Click::decode(&bytes).is_err(), "an orphan is no link click");
                orphans += 1;
                let _ = o;
                continue;
            }
        };
        assert_eq!(Click::decode(&bytes).unwrap(), c);
        assert_eq!(Click::decode(&c.encode()).unwrap(), c);
        // `encode` writes what serde writes for the flattened envelope, byte for byte.
        let envelope = kurz_schemas::click::ClickEnvelope { v: Click::VERSION, click: c.clone() };
        assert_eq!(String::from_utf8(c.encode()).unwrap(), serde_json::to_string(&envelope).unwrap(), "{}", path.display());
    }
    assert!(orphans >= 2, "orphan fixtures");
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

/// The v2 fixtures are sealed under this key (a test key: never one kurz made).
const FIXTURE_KEY: [u8; 32] = [0x4b; 32];

fn fixture_keys(subject: &str) -> Option<kurz_schemas::personal::SubjectKey> {
    (subject == "7b0c1f1e-2a3d-4c5b-8e9f-0a1b2c3d4e5f").then_some(kurz_schemas::personal::SubjectKey::Live(FIXTURE_KEY))
}

/// Version 2: a user's personal fields are sealed. The stored records (written by
/// `encode_sealed` with the key above; `KURZ_BLESS=1` rewrites them) open with their
/// key to the same users, read as erased without it, and show nothing personal.
#[test]
fn sealed_v2_fixtures_open_with_their_key_and_read_as_erased_once_it_is_gone() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/v2");
    let subject = "7b0c1f1e-2a3d-4c5b-8e9f-0a1b2c3d4e5f";
    let user = kurz_schemas::User::new(
        kurz_schemas::Id::new(42).unwrap(),
        "ann@example.com".into(),
        Some("ann".into()),
        kurz_schemas::Ts(1764646000000),
        Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into()),
    )
    .with_subject(Some(subject.into()));
    let ev = |body| Event {
        id: kurz_schemas::Id::new(373750848491777).unwrap(),
        command_id: kurz_schemas::CommandId("c-1".into()),
        at: kurz_schemas::Ts(1764646000000),
        body,
    };
    let cases = [
        ("user_created_sealed.json", ev(EventBody::UserCreated { user: user.clone(), imported: false })),
        (
            "decided_user_sealed.json",
            ev(EventBody::Decided { status: 201, answer: Answer::User { user: user.answer() }, fingerprint: None }),
        ),
    ];
    for (file, want) in cases {
        let path = dir.join(file);
        if std::env::var("KURZ_BLESS").is_ok() {
            let mut n = 0u8;
            let bytes = want.encode_sealed(&fixture_keys, &mut || {
                n += 1;
                [n; 12]
            });
            std::fs::write(&path, bytes.unwrap()).unwrap();
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"v\":2") && !text.contains("ann@") && !text.contains("argon2id") && !text.contains("\"ann\""), "{text}");
        assert_eq!(Event::sealed_subjects(&bytes), vec![subject.to_string()]);
        assert_eq!(Event::decode_opened(&bytes, &fixture_keys).unwrap(), want, "{file}");
        let gone = Event::decode_opened(&bytes, &|_| Some(kurz_schemas::personal::SubjectKey::Erased)).unwrap();
        assert!(gone.users().iter().all(|u| u.erased && u.email.is_empty() && u.id.get() == 42), "{file}");
    }
}

#[test]
fn v4_fixtures_carry_the_registry_and_a_link_found_by_host_and_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events/v4");
    let read = |f: &str| Event::decode(&std::fs::read(dir.join(f)).unwrap()).unwrap();
    match read("domain_registered.json").body {
        EventBody::DomainRegistered { domain } => {
            assert_eq!((domain.host.as_str(), domain.not_found_redirect.as_deref()), ("go.example", Some("https://example.org/missing")));
            assert!(domain.base_url_redirect.is_none() && domain.expired_redirect.is_none());
        }
        other => panic!("{other:?}"),
    }
    let ev = read("link_created_on_domain.json");
    let link = ev.link().unwrap();
    assert_eq!((link.domain.as_deref(), link.lookup_key().as_ref()), (Some("go.example"), "go.example/promo"));
    // A v1 link has no domain: found by its code alone, as before.
    let v1 = Event::decode(&std::fs::read(dir.join("../v1/link_created.json")).unwrap()).unwrap();
    assert_eq!((v1.link().unwrap().domain.as_deref(), v1.link().unwrap().lookup_key().as_ref()), (None, "u0MO8vv"));
}

#[test]
fn each_event_is_written_at_the_lowest_version_that_holds_it() {
    // A reader one version behind must keep reading everything but the new kinds.
    for (version, path) in fixtures("events") {
        let ev = Event::decode(&std::fs::read(&path).unwrap()).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&ev.encode()).unwrap();
        let v3 = matches!(ev.body, EventBody::IdsReserved { .. } | EventBody::Decided { answer: Answer::Reserved { .. }, .. });
        let v4 = matches!(
            ev.body,
            EventBody::DomainRegistered { .. } | EventBody::DomainDeleted { .. } | EventBody::Decided { answer: Answer::Domain { .. }, .. }
        ) || ev.link().is_some_and(|l| l.domain.is_some());
        assert_eq!(
            written["v"],
            if v4 {
                4
            } else if v3 {
                3
            } else {
                2
            },
            "{}",
            path.display()
        );
        assert!(version <= ev.version(), "{} is stored as v{version}", path.display());
    }
}
