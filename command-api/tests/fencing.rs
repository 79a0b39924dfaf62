//! A decider whose events partition gets another writer's events (two owners at once)
//! stops, restores from the log, and goes on deciding against the combined history.
//! Runs on the embedded log: the fence is the decider's, not the backend's.

use kurz_command_api::decider::{decide, restore, Deciders};
use kurz_schemas::{headers, topics, Event, EventBody, Ts};
use kurz_storage::log::{EventLog, NewRecord};
use std::sync::Arc;
mod support;
use support::{create, metric, partition_of, submit, PARTITIONS};

fn fenced(p: u32) -> u64 {
    metric("kurz_decider_fenced_total", p) as u64
}
use std::time::{Duration, Instant};

/// `(status, how many decisions)` for command `id` in partition `p`'s events, once
/// there is one.
async fn decision(log: &dyn EventLog, p: u32, id: &str) -> (u16, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let evs: Vec<Event> =
            log.read(topics::EVENTS, p, 0, 100_000).await.unwrap().iter().map(|r| Event::decode(&r.payload).unwrap()).collect();
        let statuses: Vec<u16> = evs
            .iter()
            .filter(|e| e.command_id.as_str() == id)
            .filter_map(|e| match e.body {
                EventBody::Decided { status, .. } => Some(status),
                _ => None,
            })
            .collect();
        if let Some(first) = statuses.first() {
            return (*first, statuses.len());
        }
        assert!(Instant::now() < deadline, "no decision for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decider_that_finds_a_foreign_writer_restores_and_decides_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(kurz_storage::log::embedded::RedbLog::open(&dir.path().join("log.redb")).unwrap());
    kurz_storage::log::ensure_topics(&*log, PARTITIONS, 2).await.unwrap();
    let keys = kurz_storage::vault::Keyring::new(kurz_storage::open_vault("embedded", dir.path()).await.unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(Deciders::new(log.clone(), keys.clone()).run_until_stopped(stop.clone()));

    let first = create("first", "fence-a");
    let p = partition_of(&first);
    submit(&*log, &first).await;
    assert_eq!(decision(&*log, p, "first").await, (201, 1));

    // Another writer (a second owner of partition p) decides a create that this
    // decider has never seen, on the same partition.
    let code = (0..).map(|i| format!("fence-{i}")).find(|c| partition_of(&create("x", c)) == p).unwrap();
    let foreign = create("foreign", &code);
    let mut other = restore(&*log, &keys, p).await.unwrap();
    let evs = decide::handle(&mut other, &foreign, Ts::now());
    let recs = evs.iter().map(|e| NewRecord::new(foreign.key(), e.encode()).header(headers::COMMAND_ID, e.command_id.as_str())).collect();
    log.append(topics::EVENTS, p, recs).await.unwrap();

    // This decider's next batch finds the partition moved under it and restores, so a
    // second create of that code is rejected rather than created twice.
    let before = fenced(p);
    submit(&*log, &create("second", &code)).await;
    assert_eq!(decision(&*log, p, "second").await, (409, 1), "decided against the foreign writer's create");
    assert!(fenced(p) > before, "the fence was counted");
    // The restored state holds the foreign command: its id is now a duplicate.
    submit(&*log, &foreign).await;
    submit(&*log, &create("third", &code)).await;
    assert_eq!(decision(&*log, p, "third").await, (409, 1));
    assert_eq!(decision(&*log, p, "foreign").await, (201, 1), "the foreign command was not decided again");
    stop.cancel();
    run.await.unwrap().unwrap();
}
