//! The decision function, without I/O.

use super::decide::handle;
use super::state::PartitionState;
use kurz_schemas::event::Answer;
use kurz_schemas::{Actor, Command, CommandBody, CommandId, Email, Event, EventBody, Id, LinkRow, ShortCode, TargetUrl, Ts};

fn cmd(id: &str, body: CommandBody) -> Command {
    Command::new(CommandId(id.into()), Actor::Anonymous, body)
}

fn create_link(code: &str, owner: Option<Id>) -> CommandBody {
    CommandBody::CreateLink {
        code: ShortCode::parse(code).unwrap(),
        custom: true,
        original_url: TargetUrl::parse("https://example.com/a").unwrap(),
        title: None,
        user_id: owner,
        existing_ok: false,
        options: Default::default(),
        domain: None,
    }
}

fn decided(evs: &[Event]) -> (u16, Answer) {
    match &evs.last().unwrap().body {
        EventBody::Decided { status, answer, .. } => (*status, answer.clone()),
        other => panic!("last event must be Decided, got {other:?}"),
    }
}

fn now() -> Ts {
    Ts(1_800_000_000_000)
}

#[test]
fn an_alias_is_decided_once() {
    let mut s = PartitionState::new(1);
    let first = handle(&mut s, &cmd("a", create_link("my-alias", None)), now());
    assert_eq!(decided(&first).0, 201);
    assert!(matches!(first[0].body, EventBody::LinkCreated { .. }));
    let second = handle(&mut s, &cmd("b", create_link("my-alias", None)), now());
    assert_eq!(second.len(), 1, "a rejection has no effect events");
    assert_eq!(decided(&second).0, 409);
    assert!(s.is_decided(&CommandId("a".into())) && s.is_decided(&CommandId("b".into())));
}

#[test]
fn deleted_codes_are_never_handed_out_again() {
    let mut s = PartitionState::new(0);
    let created = handle(&mut s, &cmd("a", create_link("gone1", None)), now());
    let link = match &decided(&created).1 {
        Answer::Link { link } => link.clone(),
        other => panic!("{other:?}"),
    };
    let del = CommandBody::DeleteLink { code: ShortCode::parse("gone1").unwrap(), id: link.id, owner: None, domain: None };
    assert_eq!(decided(&handle(&mut s, &cmd("b", del.clone()), now())).0, 200);
    assert_eq!(decided(&handle(&mut s, &cmd("c", del), now())).0, 404, "already deleted");
    assert_eq!(decided(&handle(&mut s, &cmd("d", create_link("gone1", None)), now())).0, 409);
}

#[test]
fn ownership_and_activity_are_checked_against_state() {
    let mut s = PartitionState::new(0);
    let owner = Id::new(7).unwrap();
    let link = match decided(&handle(&mut s, &cmd("a", create_link("owned", Some(owner))), now())).1 {
        Answer::Link { link } => link,
        other => panic!("{other:?}"),
    };
    let code = ShortCode::parse("owned").unwrap();
    let upd = |owner: Option<Id>, active: Option<bool>| CommandBody::UpdateLink {
        code: code.clone(),
        id: link.id,
        title: None,
        original_url: None,
        is_active: active,
        owner,
        options: Default::default(),
        domain: None,
    };
    assert_eq!(decided(&handle(&mut s, &cmd("b", upd(Some(Id::new(8).unwrap()), Some(false))), now())).0, 403);
    assert_eq!(decided(&handle(&mut s, &cmd("c", upd(Some(owner), Some(false))), now())).0, 200);
    let rec = CommandBody::RecordEvent {
        code: code.clone(),
        url_id: link.id,
        user_id: None,
        event_type: "view".into(),
        details: Default::default(),
        owner: None,
        domain: None,
    };
    let (status, answer) = decided(&handle(&mut s, &cmd("d", rec), now()));
    assert_eq!(status, 400);
    assert!(matches!(answer, Answer::Rejected { message } if message.contains("inactive")));
    let wrong_id = CommandBody::DeleteLink { code, id: Id::new(999).unwrap(), owner: None, domain: None };
    assert_eq!(decided(&handle(&mut s, &cmd("e", wrong_id), now())).0, 404, "id and code must name the same link");
}

#[test]
fn emails_are_unique_and_a_user_may_keep_their_own() {
    let mut s = PartitionState::new(0);
    let mk = |e: &str| CommandBody::CreateUser { email: Email::parse(e).unwrap(), username: None, password_hash: None, subject: None };
    let a = match decided(&handle(&mut s, &cmd("1", mk("a@x.io")), now())).1 {
        Answer::User { user } => user,
        other => panic!("{other:?}"),
    };
    handle(&mut s, &cmd("2", mk("b@x.io")), now());
    assert_eq!(decided(&handle(&mut s, &cmd("3", mk("A@X.io")), now())).0, 409, "case-insensitive");
    let upd = |e: &str| CommandBody::UpdateUser {
        id: a.id,
        email: Some(Email::parse(e).unwrap()),
        username: None,
        password_hash: None,
        subject: None,
    };
    assert_eq!(decided(&handle(&mut s, &cmd("4", upd("b@x.io")), now())).0, 409);
    assert_eq!(decided(&handle(&mut s, &cmd("5", upd("a@x.io")), now())).0, 200);
    assert_eq!(decided(&handle(&mut s, &cmd("6", upd("c@x.io")), now())).0, 200);
    assert_eq!(decided(&handle(&mut s, &cmd("7", mk("a@x.io")), now())).0, 201, "the old email is free again");
}

#[test]
fn imports_skip_duplicates_and_report_them() {
    let mut s = PartitionState::new(0);
    handle(&mut s, &cmd("a", create_link("taken", None)), now());
    let row = |id: u64, code: &str| LinkRow {
        id: Some(Id::new(id).unwrap()),
        code: ShortCode::parse_lenient(code).unwrap(),
        original_url: TargetUrl::parse("https://x.io").unwrap(),
        title: None,
        is_active: false,
        user_id: None,
        created_at: Some(Ts(5)),
        updated_at: None,
        options: Default::default(),
        domain: None,
    };
    let rows = vec![row(1, "one"), row(2, "taken"), row(1, "dupid"), row(3, "one"), row(4, "four")];
    let evs = handle(&mut s, &cmd("b", CommandBody::ImportLinks { key: "link:one".into(), rows: rows.clone() }), now());
    match decided(&evs) {
        (201, Answer::Count { count, skipped }) => {
            assert_eq!(count, 2);
            assert_eq!(skipped.len(), 3, "{skipped:?}");
        }
        other => panic!("{other:?}"),
    }
    let created: Vec<_> =
        evs.iter().filter_map(|e| e.link()).map(|l| (l.id.get(), l.short_code.clone(), l.is_active, l.created_at)).collect();
    assert_eq!(created, vec![(1, "one".into(), false, Ts(5)), (4, "four".into(), false, Ts(5))]);
    // Importing the same rows again loads nothing.
    let again = handle(&mut s, &cmd("c", CommandBody::ImportLinks { key: "link:one".into(), rows }), now());
    assert!(matches!(decided(&again), (201, Answer::Count { count: 0, .. })));
}

#[test]
fn a_restored_state_decides_exactly_like_the_live_one() {
    let mut live = PartitionState::new(5);
    let mut log = Vec::new();
    let bodies = vec![
        create_link("first", None),
        create_link("second", None),
        CommandBody::CreateUser { email: Email::parse("z@x.io").unwrap(), username: None, password_hash: None, subject: None },
        create_link("first", None),
    ];
    for (i, b) in bodies.into_iter().enumerate() {
        log.extend(handle(&mut live, &cmd(&format!("c{i}"), b), now()));
    }
    let mut restored = PartitionState::new(5);
    for ev in &log {
        restored.evolve(&Event::decode(&ev.encode()).unwrap());
    }
    for id in ["c0", "c1", "c2", "c3"] {
        assert!(restored.is_decided(&CommandId(id.into())));
    }
    // The next decision, and the ids it mints, are the same on both.
    let next = cmd("c9", create_link("third", None));
    let a = handle(&mut live, &next, now());
    let b = handle(&mut restored, &next, now());
    assert_eq!(a, b);
    // The clock going back does not make a restored generator repeat ids.
    let earlier = handle(&mut restored, &cmd("c10", create_link("fourth", None)), Ts(now().0 - 60_000));
    assert!(earlier[0].id > b.last().unwrap().id);
}

/// Every request the routes accept, at the edge of every limit, makes a command and
/// events that decode: a request can never make a record the projector cannot read.
#[test]
fn requests_at_every_limit_make_records_that_decode() {
    use kurz_schemas::limits::{details, MAX_DETAILS_BYTES, MAX_DETAILS_DEPTH, MAX_EVENT_TYPE_BYTES, MAX_TITLE_CHARS};
    use kurz_schemas::values::MAX_URL_LEN;
    use serde_json::{json, Map, Value};

    // The deepest and the largest `details` the limits let through.
    let mut v = json!("leaf");
    for _ in 0..MAX_DETAILS_DEPTH {
        v = json!({ "k": v });
    }
    let deep: Map<String, Value> = v.as_object().cloned().unwrap();
    assert_eq!(kurz_schemas::limits::depth(&v), MAX_DETAILS_DEPTH);
    details(&deep).unwrap();
    let big: Map<String, Value> = Map::from_iter([("x".to_string(), json!("\u{1F600}".repeat((MAX_DETAILS_BYTES - 16) / 4)))]);
    details(&big).unwrap();

    let title = "\u{00e9}".repeat(MAX_TITLE_CHARS);
    let long_url = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
    let url = TargetUrl::parse(&long_url).unwrap();
    let mut s = PartitionState::new(2);
    let created = handle(
        &mut s,
        &cmd(
            "c",
            CommandBody::CreateLink {
                code: ShortCode::parse(&"z".repeat(32)).unwrap(),
                custom: true,
                original_url: url.clone(),
                title: Some(title.clone()),
                user_id: None,
                existing_ok: false,
                options: Default::default(),
                domain: None,
            },
        ),
        now(),
    );
    let link = match &decided(&created).1 {
        Answer::Link { link } => link.clone(),
        other => panic!("{other:?}"),
    };
    let mut commands = vec![];
    for (i, d) in [deep, big].into_iter().enumerate() {
        commands.push(cmd(
            &format!("e{i}"),
            CommandBody::RecordEvent {
                code: ShortCode::parse(&"z".repeat(32)).unwrap(),
                url_id: link.id,
                user_id: None,
                event_type: "t".repeat(MAX_EVENT_TYPE_BYTES),
                details: d,
                owner: None,
                domain: None,
            },
        ));
    }
    let mut events = created;
    for c in &commands {
        let round = Command::decode(&c.encode()).expect("the command decodes");
        assert_eq!(round.encode(), c.encode());
        let evs = handle(&mut s, c, now());
        assert_eq!(decided(&evs).0, 201, "{evs:?}");
        events.extend(evs);
    }
    for ev in &events {
        let bytes = ev.encode();
        let back = Event::decode(&bytes).unwrap_or_else(|e| panic!("{e}: an event the projector could not read"));
        assert_eq!(back.encode(), bytes);
    }
}

#[test]
fn a_password_change_ends_older_sessions_and_a_logout_one() {
    let mut s = PartitionState::new(0);
    let mk =
        CommandBody::CreateUser { email: Email::parse("s@x.io").unwrap(), username: None, password_hash: Some("h1".into()), subject: None };
    let user = match decided(&handle(&mut s, &cmd("1", mk), Ts(1_000))).1 {
        Answer::User { user } => user,
        other => panic!("{other:?}"),
    };
    assert!(user.accepts_session(Ts(500), "n1"), "no session has ended yet");

    let revoke = |n: &str, until: i64| CommandBody::RevokeSession { id: user.id, session: n.into(), until: Ts(until) };
    let after = match decided(&handle(&mut s, &cmd("2", revoke("n1", 9_000)), Ts(2_000))).1 {
        Answer::User { user } => user,
        other => panic!("{other:?}"),
    };
    assert!(!after.accepts_session(Ts(1_500), "n1"), "the logged-out session");
    assert!(after.accepts_session(Ts(1_500), "n2"), "another session of the user");
    // Expired revocations are dropped; the list never passes its bound.
    let mut last = after;
    for i in 0..(kurz_schemas::User::MAX_REVOKED_SESSIONS as i64 + 5) {
        last = match decided(&handle(&mut s, &cmd(&format!("r{i}"), revoke(&format!("m{i}"), 100_000)), Ts(10_000 + i))).1 {
            Answer::User { user } => user,
            other => panic!("{other:?}"),
        };
        assert!(last.revoked_sessions.len() <= kurz_schemas::User::MAX_REVOKED_SESSIONS);
        assert!(!last.revoked_sessions.iter().any(|r| r.id == "n1"), "n1 expired at 9000");
    }
    assert!(last.sessions_from.is_some(), "past the bound, a logout ends every session");
    assert!(!last.accepts_session(Ts(9_999), "anything"));

    let change = CommandBody::UpdateUser { id: user.id, email: None, username: None, password_hash: Some("h2".into()), subject: None };
    let changed = match decided(&handle(&mut s, &cmd("3", change), Ts(50_000))).1 {
        Answer::User { user } => user,
        other => panic!("{other:?}"),
    };
    assert_eq!(changed.password_hash, None, "answers carry no hash");
    assert_eq!(s.users[&user.id].password_hash.as_deref(), Some("h2"), "the state has the new one");
    assert!(!changed.accepts_session(Ts(49_999), "old"), "issued before the change");
    assert!(changed.accepts_session(Ts(50_000), "new"), "issued at or after it");
    let gone = CommandBody::RevokeSession { id: Id::new(999).unwrap(), session: "x".into(), until: Ts(1) };
    assert_eq!(decided(&handle(&mut s, &cmd("4", gone), Ts(50_001))).0, 404);
}

#[test]
fn api_keys_are_bounded_unique_and_revocable() {
    use kurz_schemas::{ApiKey, KeyScope, User};
    let mut s = PartitionState::new(0);
    let mk = CommandBody::CreateUser { email: Email::parse("k@x.io").unwrap(), username: None, password_hash: None, subject: None };
    let user = match decided(&handle(&mut s, &cmd("u", mk), Ts(1))).1 {
        Answer::User { user } => user,
        other => panic!("{other:?}"),
    };
    let key = |n: usize| ApiKey {
        id: format!("{n:016x}"),
        name: format!("k{n}"),
        scope: KeyScope::Read,
        hash: "h".into(),
        created_at: Ts(0),
        last_used_at: None,
    };
    let create = |n: usize| CommandBody::CreateApiKey { id: user.id, key: key(n) };
    let made = decided(&handle(&mut s, &cmd("c0", create(0)), Ts(5)));
    assert_eq!(made.0, 201);
    match made.1 {
        Answer::User { user } => assert_eq!(user.api_keys[0].created_at, Ts(5), "the decider sets the creation time"),
        other => panic!("{other:?}"),
    }
    assert_eq!(decided(&handle(&mut s, &cmd("c0b", create(0)), Ts(6))).0, 409, "same key id");
    for n in 1..User::MAX_API_KEYS {
        assert_eq!(decided(&handle(&mut s, &cmd(&format!("c{n}"), create(n)), Ts(7))).0, 201);
    }
    assert_eq!(decided(&handle(&mut s, &cmd("over", create(99)), Ts(8))).0, 409, "at most MAX_API_KEYS");
    let touch = CommandBody::TouchApiKey { id: user.id, key_id: key(3).id, at: Ts(100) };
    assert_eq!(decided(&handle(&mut s, &cmd("t", touch.clone()), Ts(100))).0, 200);
    assert_eq!(handle(&mut s, &cmd("t2", touch), Ts(101)).len(), 1, "an older or equal use changes nothing");
    let revoke = CommandBody::RevokeApiKey { id: user.id, key_id: key(3).id };
    assert_eq!(decided(&handle(&mut s, &cmd("r", revoke.clone()), Ts(9))).0, 200);
    assert_eq!(decided(&handle(&mut s, &cmd("r2", revoke), Ts(9))).0, 404);
    assert_eq!(decided(&handle(&mut s, &cmd("c99", create(99)), Ts(10))).0, 201, "room again");
}

#[test]
fn answers_carry_no_credentials_and_import_problems_no_emails() {
    let mut s = PartitionState::new(0);
    let mk = CommandBody::CreateUser {
        email: Email::parse("c@x.io").unwrap(),
        username: None,
        password_hash: Some("$argon2id$x".into()),
        subject: None,
    };
    let evs = handle(&mut s, &cmd("1", mk), Ts(1));
    let user = match decided(&evs).1 {
        Answer::User { user } => user,
        other => panic!("{other:?}"),
    };
    assert_eq!(user.password_hash, None, "the answer has no hash");
    match &evs[0].body {
        EventBody::UserCreated { user, .. } => assert!(user.password_hash.is_some(), "the state keeps it"),
        other => panic!("{other:?}"),
    }
    let key = kurz_schemas::ApiKey {
        id: "0123456789abcdef".into(),
        name: "k".into(),
        scope: kurz_schemas::KeyScope::Read,
        hash: "secret-hash".into(),
        created_at: Ts(0),
        last_used_at: None,
    };
    let made = handle(&mut s, &cmd("2", CommandBody::CreateApiKey { id: user.id, key }), Ts(2));
    match decided(&made).1 {
        Answer::User { user } => assert_eq!((user.api_keys.len(), user.api_keys[0].hash.as_str()), (1, "")),
        other => panic!("{other:?}"),
    }
    let rows =
        vec![kurz_schemas::UserRow { id: None, email: Email::parse("c@x.io").unwrap(), username: None, created_at: None, subject: None }];
    let text = format!("{:?}", decided(&handle(&mut s, &cmd("3", CommandBody::ImportUsers { rows }), Ts(3))).1);
    assert!(text.contains("row 1") && !text.contains("c@x.io"), "{text}");
}

fn on(domain: &str, body: CommandBody) -> CommandBody {
    let d = Some(kurz_schemas::DomainHost::parse(domain).unwrap());
    match body {
        CommandBody::CreateLink { code, custom, original_url, title, user_id, existing_ok, options, .. } => {
            CommandBody::CreateLink { code, custom, original_url, title, user_id, existing_ok, options, domain: d }
        }
        CommandBody::DeleteLink { code, id, owner, .. } => CommandBody::DeleteLink { code, id, owner, domain: d },
        other => other,
    }
}

#[test]
fn a_code_is_decided_once_per_domain_and_routes_by_host_and_code() {
    let mut s = PartitionState::new(0);
    let plain = handle(&mut s, &cmd("a", create_link("promo", None)), now());
    let on_go = handle(&mut s, &cmd("b", on("go.example", create_link("promo", None))), now());
    assert_eq!((decided(&plain).0, decided(&on_go).0), (201, 201), "one code on two domains");
    assert_eq!(decided(&handle(&mut s, &cmd("c", on("go.example", create_link("promo", None))), now())).0, 409);
    let link = match decided(&on_go).1 {
        Answer::Link { link } => link,
        other => panic!("{other:?}"),
    };
    assert_eq!((link.domain.as_deref(), link.lookup_key().as_ref()), (Some("go.example"), "go.example/promo"));
    assert_eq!(on_go[0].version(), 4, "a v3 reader must not take it for the default domain's link");
    assert_eq!(plain[0].version(), 2);
    // The domain's link is not the default domain's: a delete must name its domain.
    let del = CommandBody::DeleteLink { code: ShortCode::parse("promo").unwrap(), id: link.id, owner: None, domain: None };
    assert_eq!(decided(&handle(&mut s, &cmd("d", del.clone()), now())).0, 404);
    assert_eq!(decided(&handle(&mut s, &cmd("e", on("go.example", del)), now())).0, 200);
    assert!(s.live_link("promo").is_some() && s.live_link("go.example/promo").is_none());
    // Their commands route by host and code.
    assert_eq!(on("go.example", create_link("promo", None)).key(), "link:go.example/promo");
    assert_eq!(create_link("promo", None).key(), "link:promo");
}

#[test]
fn the_registry_is_bounded_and_updates_keep_their_creation_time() {
    use kurz_schemas::domain::{DEFAULT, MAX_DOMAINS};
    let put = |host: &str, nf: Option<&str>| CommandBody::PutDomain {
        host: host.into(),
        base_url_redirect: None,
        not_found_redirect: nf.map(|u| TargetUrl::parse(u).unwrap()),
        expired_redirect: None,
    };
    assert_eq!(put("go.example", None).key(), "domains");
    let mut s = PartitionState::new(0);
    let first = handle(&mut s, &cmd("a", put("go.example", None)), now());
    assert_eq!(decided(&first).0, 201);
    let later = Ts(now().0 + 1000);
    let again = handle(&mut s, &cmd("b", put("go.example", Some("https://x.io/404"))), later);
    let (status, answer) = decided(&again);
    let Answer::Domain { domain } = answer else { panic!("{answer:?}") };
    assert_eq!((status, domain.created_at, domain.updated_at), (200, now(), later));
    assert_eq!(domain.not_found_redirect.as_deref(), Some("https://x.io/404"));
    for i in 1..MAX_DOMAINS {
        assert_eq!(decided(&handle(&mut s, &cmd(&format!("p{i}"), put(&format!("d{i}.example"), None)), now())).0, 201);
    }
    let over = handle(&mut s, &cmd("over", put("one-more.example", None)), now());
    assert_eq!(decided(&over).0, 409, "at most {MAX_DOMAINS}");
    assert_eq!(decided(&handle(&mut s, &cmd("default", put(DEFAULT, None)), now())).0, 201, "the default entry is not counted");
    assert_eq!(decided(&handle(&mut s, &cmd("upd", put("d1.example", None)), now())).0, 200, "a full registry still updates");
    assert_eq!(decided(&handle(&mut s, &cmd("del", CommandBody::DeleteDomain { host: "d1.example".into() }), now())).0, 200);
    assert_eq!(decided(&handle(&mut s, &cmd("del2", CommandBody::DeleteDomain { host: "d1.example".into() }), now())).0, 404);
    assert_eq!(decided(&handle(&mut s, &cmd("room", put("one-more.example", None)), now())).0, 201, "a deletion makes room");
}
