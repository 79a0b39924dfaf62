//! Crypto-shredding in the deciders, on the embedded log and vault: a deletion destroys
//! its user's key before the deletion is in the log; a key a command brought and no
//! user took is destroyed once the command is decided; a command whose key is gone is
//! answered 410, never decided on; and a restore reads an erased user as erased.

use kurz_command_api::decider::{restore, Deciders};
use kurz_schemas::{headers, topics, Actor, Command, CommandBody, CommandId, Email, Event, EventBody, Id};
use kurz_storage::log::{partition_for, EventLog, NewRecord};
use kurz_storage::vault::{KeyState, Keyring};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 2;

async fn submit(log: &dyn EventLog, keys: &Keyring, cmd: &Command) {
    keys.load_all(&cmd.subjects()).await.unwrap();
    let bytes = cmd.encode_sealed(&|s| keys.key(s), &mut Keyring::nonce).unwrap();
    let rec = NewRecord::new(cmd.key(), bytes).header(headers::COMMAND_ID, cmd.id.as_str());
    log.append(topics::COMMANDS, partition_for(&cmd.key(), PARTITIONS), vec![rec]).await.unwrap();
}

fn users_partition() -> u32 {
    partition_for(kurz_schemas::USERS_KEY, PARTITIONS)
}

/// The events of command `id`, once it is decided.
async fn decided(log: &dyn EventLog, id: &str) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let evs: Vec<Event> = log
            .read(topics::EVENTS, users_partition(), 0, 100_000)
            .await
            .unwrap()
            .iter()
            .map(|r| Event::decode(&r.payload).unwrap())
            .filter(|e| e.command_id.as_str() == id)
            .collect();
        if evs.iter().any(|e| matches!(e.body, EventBody::Decided { .. })) {
            return evs;
        }
        assert!(Instant::now() < deadline, "no decision for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status(evs: &[Event]) -> u16 {
    evs.iter()
        .find_map(|e| match e.body {
            EventBody::Decided { status, .. } => Some(status),
            _ => None,
        })
        .unwrap()
}

fn create(id: &str, email: &str, subject: &str) -> Command {
    Command::new(
        CommandId(id.into()),
        Actor::Anonymous,
        CommandBody::CreateUser {
            email: Email::parse(email).unwrap(),
            username: Some("someone".into()),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
            subject: Some(subject.into()),
        },
    )
}

async fn state_of(keys: &Keyring, s: &str) -> KeyState {
    keys.vault().get(s).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_unused_keys_are_shredded_and_read_back_as_erased() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(kurz_storage::log::embedded::RedbLog::open(&dir.path().join("log.redb")).unwrap());
    kurz_storage::log::ensure_topics(&*log, PARTITIONS, 1).await.unwrap();
    let keys = Keyring::embedded(dir.path()).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(Deciders::new(log.clone(), keys.clone()).run_until_stopped(stop.clone()));

    let (a, b) = (keys.mint().await.unwrap(), keys.mint().await.unwrap());
    submit(&*log, &keys, &create("c1", "ann@x.io", &a)).await;
    let evs = decided(&*log, "c1").await;
    assert_eq!(status(&evs), 201);
    let id: Id = match &evs[0].body {
        EventBody::UserCreated { user, .. } => user.id,
        other => panic!("{other:?}"),
    };
    // The log holds the user sealed: nothing personal in its bytes.
    let raw = log.read(topics::EVENTS, users_partition(), 0, 1000).await.unwrap();
    let text: String = raw.iter().map(|r| String::from_utf8_lossy(&r.payload).into_owned()).collect();
    assert!(!text.contains("ann@x.io") && !text.contains("argon2id") && !text.contains("someone") && text.contains(&a), "{text}");

    // A second sign-up of the same e-mail is refused: the key it brought is destroyed.
    submit(&*log, &keys, &create("c2", "ann@x.io", &b)).await;
    assert_eq!(status(&decided(&*log, "c2").await), 409);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(state_of(&keys, &b).await, KeyState::Erased { .. }) {
        assert!(Instant::now() < deadline, "the refused sign-up's key was not destroyed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(state_of(&keys, &a).await, KeyState::Live(_)), "the user's own key stays");

    // A command whose key is gone before it is decided: 410, nothing created.
    let c = keys.mint().await.unwrap();
    let late = create("c3", "late@x.io", &c);
    keys.load_all(&[c.as_str()]).await.unwrap();
    let bytes = late.encode_sealed(&|s| keys.key(s), &mut Keyring::nonce).unwrap();
    keys.erase(&c, 1).await.unwrap();
    let rec = NewRecord::new(late.key(), bytes).header(headers::COMMAND_ID, "c3");
    log.append(topics::COMMANDS, users_partition(), vec![rec]).await.unwrap();
    let evs = decided(&*log, "c3").await;
    assert_eq!((status(&evs), evs.len()), (410, 1));

    // Deleting the user destroys its key; the deletion and every earlier record of the
    // user then read as erased, and a restore holds no trace of it.
    let del = Command::new(CommandId("c4".into()), Actor::Admin, CommandBody::DeleteUser { id });
    submit(&*log, &keys, &del).await;
    assert_eq!(status(&decided(&*log, "c4").await), 200);
    assert!(matches!(state_of(&keys, &a).await, KeyState::Erased { .. }));
    let fresh = Keyring::new(keys.vault().clone());
    let restored = restore(&*log, &fresh, users_partition()).await.unwrap();
    assert!(!restored.users.contains_key(&id) && restored.emails.is_empty(), "{:?}", restored.emails);
    let raw = log.read(topics::EVENTS, users_partition(), 0, 1000).await.unwrap();
    for r in &raw {
        fresh.load_all(&Event::sealed_subjects(&r.payload)).await.unwrap();
        let ev = Event::decode_opened(&r.payload, &|s| fresh.key(s)).unwrap();
        for u in ev.users() {
            assert!(u.erased && u.email.is_empty() && u.password_hash.is_none(), "{u:?}");
        }
    }
    // The same e-mail can sign up again, with a new key.
    let d = keys.mint().await.unwrap();
    submit(&*log, &keys, &create("c5", "ann@x.io", &d)).await;
    assert_eq!(status(&decided(&*log, "c5").await), 201);

    stop.cancel();
    run.await.unwrap().unwrap();
}
