//! The interleavings a paused or partitioned decider meets, reached with log wrappers
//! on the embedded log:
//! - another writer appends between the decider's check of the end and its append
//!   (an owner that stalled after its check, on a log without conditional appends);
//! - only part of a multi-record append lands (a produce request that failed in part);
//! - a command decided long ago (past the dedup window) is read again because the
//!   stored position went back (a stale owner's commit).
//!
//! Each asserts on what every reader keeps (the claims rule): one decision per command,
//! one link per alias.

use async_trait::async_trait;
use kurz_command_api::decider::check::{Checker, Report};
use kurz_command_api::decider::{decide, restore, Deciders, COMMAND_OFFSET, GROUP};
use kurz_schemas::{headers, topics, Command, Event, EventBody, Ts};
use kurz_storage::log::claims::{claim, Claimed};
use kurz_storage::log::{EventLog, Membership, NewRecord, Record};
use kurz_storage::vault::Keyring;
use kurz_storage::StorageError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
mod support;
use support::{create, metric, partition_of, submit, PARTITIONS};

/// What the wrapper does to the next events append.
enum Trap {
    None,
    /// Another writer decides this command and appends between the check and the append.
    Foreign(Box<Command>),
    /// Only the first record lands; the append then fails.
    Cut,
}

/// The embedded log, made to append like Kafka (check the end, then append: not
/// atomic), with a trap for the next events append.
struct Wrapped {
    inner: Arc<dyn EventLog>,
    keys: Arc<Keyring>,
    trap: Mutex<Trap>,
}

#[async_trait]
impl EventLog for Wrapped {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, StorageError> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        self.inner.partitions(topic).await
    }
    async fn append(&self, topic: &str, p: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        self.trapped(topic, p, records).await
    }
    async fn append_at(&self, topic: &str, p: u32, expected_end: u64, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        let end = self.inner.end_offset(topic, p).await?;
        if end != expected_end {
            return Err(StorageError::Moved { topic: topic.into(), partition: p, expected: expected_end, found: end });
        }
        self.trapped(topic, p, records).await
    }
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        self.inner.read(topic, partition, from, max).await
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.inner.end_offset(topic, partition).await
    }
    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError> {
        self.inner.wait_for(topic, partition, offset, timeout).await
    }
    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), StorageError> {
        self.inner.commit(group, topic, partition, next_offset).await
    }
    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, StorageError> {
        self.inner.committed(group, topic, partition).await
    }
    async fn join(&self, group: &str, topic: &str) -> Result<Membership, StorageError> {
        self.inner.join(group, topic).await
    }
}

impl Wrapped {
    async fn trapped(&self, topic: &str, p: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        let trap = if topic == topics::EVENTS { std::mem::replace(&mut *self.trap.lock().unwrap(), Trap::None) } else { Trap::None };
        match trap {
            Trap::None => self.inner.append(topic, p, records).await,
            Trap::Foreign(cmd) => {
                // The check passed; now the other owner decides and lands first.
                let mut other = restore(&*self.inner, &self.keys, p).await.unwrap();
                let evs = decide::handle(&mut other, &cmd, Ts::now());
                let recs =
                    evs.iter().map(|e| NewRecord::new(cmd.key(), e.encode()).header(headers::COMMAND_ID, e.command_id.as_str())).collect();
                let at = self.inner.end_offset(topic, p).await?;
                self.inner.append(topic, p, claim(at, recs)).await?;
                self.inner.append(topic, p, records).await
            }
            Trap::Cut => {
                self.inner.append(topic, p, records[..1].to_vec()).await?;
                Err(StorageError::Engine("delivery timed out".into()))
            }
        }
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    raw: Arc<dyn EventLog>,
    log: Arc<Wrapped>,
    keys: Arc<Keyring>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let raw: Arc<dyn EventLog> = Arc::new(kurz_storage::log::embedded::RedbLog::open(&dir.path().join("log.redb")).unwrap());
    kurz_storage::log::ensure_topics(&*raw, PARTITIONS, 2).await.unwrap();
    let keys = Keyring::new(kurz_storage::open_vault("embedded", dir.path()).await.unwrap());
    let log = Arc::new(Wrapped { inner: raw.clone(), keys: keys.clone(), trap: Mutex::new(Trap::None) });
    Setup { _dir: dir, raw, log, keys }
}

fn start(s: &Setup) -> (CancellationToken, tokio::task::JoinHandle<Result<(), kurz_command_api::Error>>) {
    let stop = CancellationToken::new();
    let log: Arc<dyn EventLog> = s.log.clone();
    (stop.clone(), tokio::spawn(Deciders::new(log, s.keys.clone()).run_until_stopped(stop)))
}

/// Partition `p`'s events as every reader keeps them.
async fn kept(raw: &Arc<dyn EventLog>, p: u32) -> Vec<Event> {
    let view = Claimed::events(raw.clone());
    view.read(topics::EVENTS, p, 0, 100_000).await.unwrap().iter().map(|r| Event::decode(&r.payload).unwrap()).collect()
}

/// The log checker's report on every partition, kept records or all of them.
async fn checked(raw: &Arc<dyn EventLog>, all: bool) -> Report {
    let view = if all { raw.clone() } else { Claimed::events(raw.clone()) };
    let mut c = Checker::new();
    for p in 0..PARTITIONS {
        for r in view.read(topics::EVENTS, p, 0, 100_000).await.unwrap() {
            c.add(&format!("{p}/{}", r.offset), &r.payload);
        }
    }
    c.report()
}

fn decisions(evs: &[Event], id: &str) -> Vec<u16> {
    evs.iter()
        .filter(|e| e.command_id.as_str() == id)
        .filter_map(|e| match e.body {
            EventBody::Decided { status, .. } => Some(status),
            _ => None,
        })
        .collect()
}

fn links_for(evs: &[Event], code: &str) -> usize {
    evs.iter().filter(|e| matches!(&e.body, EventBody::LinkCreated { link, .. } if link.short_code == code)).count()
}

/// Waits until command `id` has a kept decision; returns all of them.
async fn decided(raw: &Arc<dyn EventLog>, p: u32, id: &str) -> Vec<u16> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = decisions(&kept(raw, p).await, id);
        if !d.is_empty() {
            return d;
        }
        assert!(Instant::now() < deadline, "no decision for {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A code whose create lands on partition `p`.
fn code_on(p: u32, tag: &str) -> String {
    (0..).map(|i| format!("{tag}-{i}")).find(|c| partition_of(&create("x", c)) == p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_lands_between_the_check_and_the_append_wins_and_the_late_append_counts_for_nothing() {
    let s = setup().await;
    let (stop, run) = start(&s);
    let warm = create("warm", "interleave-warm");
    let p = partition_of(&warm);
    submit(&*s.raw, &warm).await;
    assert_eq!(decided(&s.raw, p, "warm").await, vec![201]);

    // The next append of partition p is overtaken by another owner creating the same
    // alias that this decider is about to create.
    let code = code_on(p, "interleave");
    *s.log.trap.lock().unwrap() = Trap::Foreign(Box::new(create("foreign", &code)));
    let before = metric("kurz_decider_fenced_total", p);
    submit(&*s.raw, &create("mine", &code)).await;

    assert_eq!(decided(&s.raw, p, "mine").await, vec![409], "decided again against the other owner's create");
    let evs = kept(&s.raw, p).await;
    assert_eq!(decisions(&evs, "foreign"), vec![201]);
    assert_eq!(links_for(&evs, &code), 1, "one link for the alias");
    assert!(metric("kurz_decider_fenced_total", p) > before, "the decider saw its append land out of place");
    // The late append is in the log, just not kept: the interleaving did happen.
    let raw: Vec<Event> =
        s.raw.read(topics::EVENTS, p, 0, 100_000).await.unwrap().iter().map(|r| Event::decode(&r.payload).unwrap()).collect();
    assert_eq!(links_for(&raw, &code), 2, "the stale create landed after the other owner's");
    assert_eq!(decisions(&raw, "mine"), vec![201, 409]);
    // The checker sees the stale append in the raw log, and nothing in what is kept.
    let all = checked(&s.raw, true).await;
    assert_eq!((all.aliases_granted_twice.count, all.commands_decided_twice.count), (1, 1), "{all:?}");
    assert_eq!(checked(&s.raw, false).await.problems(), 0);
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_lands_in_part_is_never_half_read_and_its_command_is_decided_once() {
    let s = setup().await;
    let (stop, run) = start(&s);
    let warm = create("warm", "cut-warm");
    let p = partition_of(&warm);
    submit(&*s.raw, &warm).await;
    assert_eq!(decided(&s.raw, p, "warm").await, vec![201]);

    let code = code_on(p, "cut");
    *s.log.trap.lock().unwrap() = Trap::Cut;
    submit(&*s.raw, &create("cut", &code)).await;
    assert_eq!(decided(&s.raw, p, "cut").await, vec![201], "the create is decided as if the cut append never happened");
    let evs = kept(&s.raw, p).await;
    assert_eq!(links_for(&evs, &code), 1);
    let raw: Vec<Event> =
        s.raw.read(topics::EVENTS, p, 0, 100_000).await.unwrap().iter().map(|r| Event::decode(&r.payload).unwrap()).collect();
    assert_eq!(links_for(&raw, &code), 2, "the cut append's first record is in the log");

    // A later command on the same partition still decides against the kept history.
    submit(&*s.raw, &create("again", &code)).await;
    assert_eq!(decided(&s.raw, p, "again").await, vec![409]);
    assert_eq!(checked(&s.raw, false).await.problems(), 0);
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_decided_before_the_dedup_window_is_not_decided_again_when_the_position_goes_back() {
    let s = setup().await;
    // Two commands on one partition: the first decided two days ago, the second now.
    let code = code_on(0, "old");
    let (old, new) = (create("old", &code), create("new", &code_on(0, "new")));
    let p = partition_of(&old);
    let long_ago = Ts(Ts::now().0 - 48 * 3600 * 1000);
    let mut state = restore(&*s.raw, &s.keys, p).await.unwrap();
    for (cmd, at) in [(&old, long_ago), (&new, Ts::now())] {
        submit(&*s.raw, cmd).await;
        let offset = s.raw.end_offset(topics::COMMANDS, p).await.unwrap() - 1;
        let evs = decide::handle(&mut state, cmd, at);
        let recs = evs
            .iter()
            .map(|e| {
                NewRecord::new(cmd.key(), e.encode())
                    .header(headers::COMMAND_ID, e.command_id.as_str())
                    .header(COMMAND_OFFSET, offset.to_string())
            })
            .collect();
        let end = s.raw.end_offset(topics::EVENTS, p).await.unwrap();
        s.raw.append(topics::EVENTS, p, claim(end, recs)).await.unwrap();
    }
    // The stored position is behind both (a stale owner's commit moved it back).
    s.raw.commit(GROUP, topics::COMMANDS, p, 0).await.unwrap();

    let (stop, run) = start(&s);
    let probe = create("probe", &code_on(p, "probe"));
    submit(&*s.raw, &probe).await;
    assert_eq!(decided(&s.raw, p, "probe").await, vec![201]);
    let evs = kept(&s.raw, p).await;
    assert_eq!(decisions(&evs, "old"), vec![201], "the old command was not decided a second time");
    assert_eq!(decisions(&evs, "new"), vec![201]);
    assert_eq!(checked(&s.raw, false).await.problems(), 0);
    stop.cancel();
    run.await.unwrap().unwrap();
}
