//! A decider fails closed: an event of its partition that this build cannot decode (a
//! newer version, a damaged record) stops that partition, which then decides nothing,
//! instead of restoring a state without it. Other partitions go on.

use kurz_command_api::decider::{restore, Deciders};
use kurz_schemas::{topics, Event, EventBody};
use kurz_storage::log::{EventLog, NewRecord};
use std::sync::Arc;
mod support;
use support::{create, metric, partition_of, submit, PARTITIONS};

fn blocked(p: u32) -> i64 {
    metric("kurz_decider_blocked", p) as i64
}
use std::time::{Duration, Instant};

fn decisions(evs: &[Event], id: &str) -> Vec<u16> {
    evs.iter()
        .filter(|e| e.command_id.as_str() == id)
        .filter_map(|e| match e.body {
            EventBody::Decided { status, .. } => Some(status),
            _ => None,
        })
        .collect()
}

async fn events(log: &dyn EventLog, p: u32) -> Vec<Event> {
    log.read(topics::EVENTS, p, 0, 100_000).await.unwrap().iter().filter_map(|r| Event::decode(&r.payload).ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_this_build_cannot_read_stops_its_partition_and_only_that_one() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(kurz_storage::log::embedded::RedbLog::open(&dir.path().join("log.redb")).unwrap());
    kurz_storage::log::ensure_topics(&*log, PARTITIONS, 1).await.unwrap();
    let keys = kurz_storage::vault::Keyring::embedded(dir.path()).unwrap();

    // A newer build's event, first in the partition that `taken` routes to: it might
    // well be the link that makes `taken` a conflict.
    let taken = create("after-upgrade", "fail-closed");
    let p = partition_of(&taken);
    let newer = br#"{"v":99,"id":1,"command_id":"x","at":1,"type":"link_created","link":{"short_code":"fail-closed"}}"#.to_vec();
    log.append(topics::EVENTS, p, vec![NewRecord::new(taken.key(), newer)]).await.unwrap();
    match restore(&*log, &keys, p).await {
        Err(kurz_command_api::Error::Unreadable { partition, offset: 0, reason }) => {
            assert_eq!(partition, p);
            assert!(reason.contains("99"), "{reason}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a partition with an unreadable event restored"),
    }

    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(Deciders::new(log.clone(), keys.clone()).run_until_stopped(stop.clone()));
    submit(&*log, &taken).await;
    // Another partition decides as usual.
    let elsewhere = (0..).map(|i| create("elsewhere", &format!("other-{i}"))).find(|c| partition_of(c) != p).unwrap();
    let q = partition_of(&elsewhere);
    submit(&*log, &elsewhere).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while decisions(&events(&*log, q).await, "elsewhere").is_empty() || blocked(p) != 1 {
        assert!(Instant::now() < deadline, "partition {q} decided nothing, or {p} was never reported blocked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(decisions(&events(&*log, q).await, "elsewhere"), vec![201]);
    // The blocked partition never got past its restore: the command waits undecided.
    assert!(decisions(&events(&*log, p).await, "after-upgrade").is_empty(), "decided against a state without the unreadable event");
    assert_eq!(log.committed(kurz_command_api::decider::GROUP, topics::COMMANDS, p).await.unwrap().unwrap_or(0), 0);
    assert_eq!(blocked(q), 0);
    stop.cancel();
    run.await.unwrap().unwrap();
}
