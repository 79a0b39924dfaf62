//! Poison records, parking, durable delivery counts and the dead-letter topic, on the
//! embedded log and store (real files, real transactions).

use kurz_projector::projections::{history, links, outcomes, users};
use kurz_projector::watchdog::{parked, Settings, Watchdog};
use kurz_projector::{Input, Projection, Projector};
use kurz_schemas::headers::{COMMAND_ID, DLQ_ATTEMPTS, DLQ_OFFSET, DLQ_REASON};
use kurz_schemas::{topics, CommandId, Event, EventBody, Id, Link, Ts};
use kurz_storage::store::{Attempt, EventQuery, LinkQuery, Mutation, StoreBatch};
use kurz_storage::{open_log, open_store, EventLog, NewRecord, ReadStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A keyring over a vault of its own (kept for the test's life).
fn keys() -> std::sync::Arc<kurz_storage::vault::Keyring> {
    let dir = tempfile::tempdir().unwrap().keep();
    kurz_storage::vault::Keyring::embedded(&dir).unwrap()
}

fn id(n: u64) -> Id {
    Id::new(n).unwrap()
}

fn link(n: u64, code: &str, title: &str) -> Link {
    Link {
        domain: None,
        id: id(n),
        short_code: code.into(),
        original_url: format!("https://x.io/{n}"),
        title: Some(title.into()),
        is_active: true,
        user_id: None,
        created_at: Ts(2),
        updated_at: Ts(2),
        options: Default::default(),
    }
}

/// The links projection, except that it panics on the creation of the link coded `bad`
/// while `broken` (a bug that a deploy fixes).
struct Flaky {
    broken: Arc<AtomicBool>,
}

impl Projection for Flaky {
    fn name(&self) -> &'static str {
        links::Links.name()
    }
    fn topic(&self) -> &'static str {
        topics::EVENTS
    }
    fn apply(&self, input: Input<'_>, out: &mut Vec<Mutation>) {
        if let Input::Event { event, .. } = input {
            if let EventBody::LinkCreated { link, .. } = &event.body {
                if link.short_code == "bad" && self.broken.load(Ordering::SeqCst) {
                    panic!("cannot project link {}", link.id);
                }
            }
        }
        links::Links.apply(input, out)
    }
}

fn projections(broken: &Arc<AtomicBool>) -> Vec<Box<dyn Projection>> {
    vec![Box::new(users::Users), Box::new(Flaky { broken: broken.clone() }), Box::new(history::History), Box::new(outcomes::Outcomes)]
}

/// Appends link events to partition 0 of a one-partition events topic:
/// good1, bad (created), good2, bad (updated), good3.
async fn fill(log: &dyn EventLog) -> u64 {
    kurz_storage::log::ensure_topics(log, 1, 1).await.unwrap();
    let steps: Vec<(&str, EventBody)> = vec![
        ("link:good1", EventBody::LinkCreated { link: link(1, "good1", "g1"), imported: false }),
        ("link:bad", EventBody::LinkCreated { link: link(2, "bad", "first"), imported: false }),
        ("link:good2", EventBody::LinkCreated { link: link(3, "good2", "g2"), imported: false }),
        ("link:bad", EventBody::LinkUpdated { link: link(2, "bad", "second") }),
        ("link:good3", EventBody::LinkCreated { link: link(4, "good3", "g3"), imported: false }),
    ];
    for (n, (key, body)) in steps.into_iter().enumerate() {
        let ev = Event { id: id(100 + n as u64), command_id: CommandId(format!("c{n}")), at: Ts(10 + n as i64), body };
        log.append(topics::EVENTS, 0, vec![NewRecord::new(key, ev.encode())]).await.unwrap();
    }
    log.end_offset(topics::EVENTS, 0).await.unwrap()
}

async fn titles(store: &dyn ReadStore) -> Vec<(String, String)> {
    let links = store.links(&LinkQuery { limit: 100, ..Default::default() }).await.unwrap();
    links.into_iter().map(|l| (l.short_code, l.title.unwrap_or_default())).collect()
}

fn settings() -> Settings {
    Settings { backoff: Duration::from_millis(1), stall_after: Duration::from_secs(3600), ..Default::default() }
}

async fn run_to_end(p: &Projector) {
    let stop = CancellationToken::new();
    let task = tokio::spawn(p.clone().run_until_stopped(stop.clone()));
    assert!(p.wait_caught_up(Duration::from_secs(30)).await.unwrap());
    stop.cancel();
    task.await.unwrap().unwrap();
}

async fn dead_letters(log: &dyn EventLog) -> Vec<kurz_storage::Record> {
    log.read(topics::DEAD_LETTERS, 0, 0, 100).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_parks_only_its_key_and_its_key_is_redriven_in_order_once_the_cause_clears() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log("embedded", dir.path()).unwrap();
    let store = open_store("embedded", &dir.path().join("store")).unwrap();
    fill(&*log).await;
    let broken = Arc::new(AtomicBool::new(true));
    let p = Projector::with_projections(log.clone(), store.clone(), None, keys(), projections(&broken));
    run_to_end(&p).await;

    // Every other key flowed; `bad` is held, its update waiting behind its create.
    let t = titles(&*store).await;
    assert_eq!(t, vec![("good1".into(), "g1".into()), ("good2".into(), "g2".into()), ("good3".into(), "g3".into())]);
    let held = store.parked().await.unwrap();
    assert_eq!(
        held.iter().map(|r| (r.key.as_str(), r.offset, r.attempts)).collect::<Vec<_>>(),
        vec![("link:bad", 1, 1), ("link:bad", 3, 0)]
    );
    assert!(held[0].reason.contains("cannot project link 2"), "{}", held[0].reason);
    assert_eq!(held[0].projections, vec!["users", "links", "history", "outcomes"]);
    // History of the held key is held too (the whole record waits, for every projection).
    assert!(store.history(&EventQuery { url_id: Some(id(2)), limit: 10, ..Default::default() }).await.unwrap().is_empty());

    // Still broken: a pass re-drives the due key, counts the attempt, keeps it parked.
    let mut dog = Watchdog::new(p.clone(), settings());
    let stop = CancellationToken::new();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let pass = dog.pass(&stop).await.unwrap();
    assert_eq!((pass.parked.delivered, pass.parked.failed, pass.parked.dead_lettered), (0, 1, 0));
    let held = store.parked().await.unwrap();
    assert_eq!(held.iter().map(|r| (r.offset, r.attempts)).collect::<Vec<_>>(), vec![(1, 2), (3, 0)]);
    assert!(!titles(&*store).await.iter().any(|(c, _)| c == "bad"));

    // The cause clears (a fixed build): the next due pass delivers both, in order.
    broken.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let pass = dog.pass(&stop).await.unwrap();
    assert_eq!((pass.parked.delivered, pass.parked.failed), (2, 0));
    assert!(store.parked().await.unwrap().is_empty());
    let bad = store.link_by_code("bad").await.unwrap().expect("delivered");
    assert_eq!((bad.link.title.as_deref(), bad.version), (Some("second"), 3), "the update applied after the create");
    assert!(dead_letters(&*log).await.is_empty());

    // Redelivery changes nothing: the main stream is past them, and they are released.
    run_to_end(&p).await;
    let again = dog.pass(&stop).await.unwrap();
    assert_eq!(again.parked, parked::Redriven::default());
    assert_eq!(titles(&*store).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_out_of_attempts_goes_to_the_dead_letter_topic_and_its_key_follows() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log("embedded", dir.path()).unwrap();
    let store = open_store("embedded", &dir.path().join("store")).unwrap();
    fill(&*log).await;
    let broken = Arc::new(AtomicBool::new(true));
    let p = Projector::with_projections(log.clone(), store.clone(), None, keys(), projections(&broken)).max_attempts(3);
    run_to_end(&p).await;
    let mut dog = Watchdog::new(p.clone(), settings());
    let stop = CancellationToken::new();
    let before = kurz_projector::metrics::get().dead_letters.with_label_values(&[topics::EVENTS]).get();
    let mut passes = 0;
    while !store.parked().await.unwrap().is_empty() {
        passes += 1;
        assert!(passes < 50, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(10)).await;
        dog.pass(&stop).await.unwrap();
    }
    // Parked on attempt 1, re-driven on 2 and 3: then dead-lettered, byte for byte.
    let dead = dead_letters(&*log).await;
    assert_eq!(dead.len(), 1);
    let original = log.read(topics::EVENTS, 0, 1, 1).await.unwrap().remove(0);
    assert_eq!((dead[0].key.as_str(), &dead[0].payload), ("link:bad", &original.payload));
    assert_eq!(dead[0].header(DLQ_OFFSET), Some(&b"1"[..]));
    assert_eq!(dead[0].header(DLQ_ATTEMPTS), Some(&b"3"[..]));
    assert!(std::str::from_utf8(dead[0].header(DLQ_REASON).unwrap()).unwrap().contains("panicked"));
    assert_eq!(kurz_projector::metrics::get().dead_letters.with_label_values(&[topics::EVENTS]).get(), before + 1, "the alert metric");
    // The key's waiting update followed it: the link exists in its updated state.
    let bad = store.link_by_code("bad").await.unwrap().expect("the update was delivered after the create was dead-lettered");
    assert_eq!(bad.link.title.as_deref(), Some("second"));
}

/// A store whose write of the link coded `bad` as created (version 1) never finishes: the
/// process "dies" there.
/// A store that never returns from a batch holding the poison record, and says so on
/// its `Notify`: the test drops the projector's future then, and only then, so a
/// "death" never cuts off a write that was going to land (a dropped future does not stop
/// a write already on the blocking pool, which would then race the next owner).
/// With its third field set, it refuses every batch that moves a position instead (a
/// store that is down: an error, not a death).
struct Hangs(Arc<dyn ReadStore>, Option<Arc<tokio::sync::Notify>>, Arc<AtomicBool>);

#[async_trait::async_trait]
impl ReadStore for Hangs {
    async fn position(&self, a: &str, b: &str, c: u32) -> Result<u64, kurz_storage::StorageError> {
        self.0.position(a, b, c).await
    }
    async fn claim(&self, t: &str, p: u32) -> Result<u64, kurz_storage::StorageError> {
        self.0.claim(t, p).await
    }
    async fn apply(&self, batch: StoreBatch) -> Result<(), kurz_storage::store::ApplyError> {
        if self.2.load(Ordering::SeqCst) && !batch.positions.is_empty() {
            return Err(kurz_storage::StorageError::Engine("the store is down".into()).into());
        }
        let poison = |m: &Mutation| matches!(m, Mutation::PutLink(l) if l.link.short_code == "bad" && l.version == 1);
        if let Some(hung) = self.1.as_ref().filter(|_| batch.mutations.iter().any(poison)) {
            hung.notify_one();
            std::future::pending::<()>().await;
        }
        self.0.apply(batch).await
    }
    async fn user(&self, i: Id) -> Result<Option<kurz_schemas::User>, kurz_storage::StorageError> {
        self.0.user(i).await
    }
    async fn user_by_email(&self, e: &str) -> Result<Option<kurz_schemas::User>, kurz_storage::StorageError> {
        self.0.user_by_email(e).await
    }
    async fn users(&self, a: usize, b: usize) -> Result<Vec<kurz_schemas::User>, kurz_storage::StorageError> {
        self.0.users(a, b).await
    }
    async fn link(&self, i: Id) -> Result<Option<kurz_storage::store::VersionedLink>, kurz_storage::StorageError> {
        self.0.link(i).await
    }
    async fn link_by_code(&self, c: &str) -> Result<Option<kurz_storage::store::VersionedLink>, kurz_storage::StorageError> {
        self.0.link_by_code(c).await
    }
    async fn active_link_for(&self, o: Option<Id>, u: &str) -> Result<Option<Link>, kurz_storage::StorageError> {
        self.0.active_link_for(o, u).await
    }
    async fn links(&self, q: &LinkQuery) -> Result<Vec<Link>, kurz_storage::StorageError> {
        self.0.links(q).await
    }
    async fn crawlable_codes(&self, limit: usize) -> Result<Vec<String>, kurz_storage::StorageError> {
        self.0.crawlable_codes(limit).await
    }
    async fn domains(&self) -> Result<Vec<kurz_schemas::Domain>, kurz_storage::StorageError> {
        self.0.domains().await
    }
    async fn domain(&self, host: &str) -> Result<Option<kurz_schemas::Domain>, kurz_storage::StorageError> {
        self.0.domain(host).await
    }
    async fn history_event(&self, i: Id) -> Result<Option<kurz_schemas::HistoryEvent>, kurz_storage::StorageError> {
        self.0.history_event(i).await
    }
    async fn history(&self, q: &EventQuery) -> Result<Vec<kurz_schemas::HistoryEvent>, kurz_storage::StorageError> {
        self.0.history(q).await
    }
    async fn click_count(&self, l: Id) -> Result<u64, kurz_storage::StorageError> {
        self.0.click_count(l).await
    }
    async fn click_counts(&self, l: Id, a: &str, b: &str) -> Result<Vec<(String, u64)>, kurz_storage::StorageError> {
        self.0.click_counts(l, a, b).await
    }
    async fn visitors_per_day(&self, l: Id, a: i64, b: i64) -> Result<Vec<(i64, u64)>, kurz_storage::StorageError> {
        self.0.visitors_per_day(l, a, b).await
    }
    async fn outcome(&self, c: &str) -> Result<Option<kurz_storage::store::StoredOutcome>, kurz_storage::StorageError> {
        self.0.outcome(c).await
    }
    async fn wait_outcome(&self, c: &str, t: Duration) -> Result<Option<kurz_storage::store::StoredOutcome>, kurz_storage::StorageError> {
        self.0.wait_outcome(c, t).await
    }
    async fn ping(&self) -> Result<(), kurz_storage::StorageError> {
        self.0.ping().await
    }
    async fn parked(&self) -> Result<Vec<kurz_storage::store::ParkedRecord>, kurz_storage::StorageError> {
        self.0.parked().await
    }
    async fn attempt(&self, t: &str, p: u32) -> Result<Option<Attempt>, kurz_storage::StorageError> {
        self.0.attempt(t, p).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_dies_on_a_record_counts_an_attempt_and_the_record_ends_in_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log("embedded", dir.path()).unwrap();
    let real = open_store("embedded", &dir.path().join("store")).unwrap();
    let end = fill(&*log).await;
    let never = Arc::new(AtomicBool::new(false));
    let hung = Arc::new(tokio::sync::Notify::new());
    let p = Projector::with_projections(
        log.clone(),
        Arc::new(Hangs(real.clone(), Some(hung.clone()), Arc::new(AtomicBool::new(false)))),
        None,
        keys(),
        projections(&never),
    )
    .max_attempts(3);
    let stop = CancellationToken::new();
    // Each takeover "dies" (its future is dropped mid-batch, nothing of the batch lands).
    let mut deaths = 0;
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            r = p.drive(topics::EVENTS, 0, end, true, &stop) => break r.unwrap(),
            _ = hung.notified() => {
                deaths += 1;
                seen.push(real.attempt(topics::EVENTS, 0).await.unwrap().unwrap());
                assert!(deaths < 10, "never got past the record: {seen:?}");
            }
        }
    }
    // 1st: the whole batch at 0 died. 2nd: one record at a time, died at offset 1.
    // 3rd: attempt 2 at offset 1 died. 4th: attempt 3 = the limit, dead-lettered.
    assert_eq!(seen, vec![Attempt { offset: 0, attempt: 1 }, Attempt { offset: 1, attempt: 1 }, Attempt { offset: 1, attempt: 2 }]);
    let dead = dead_letters(&*log).await;
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].header(DLQ_OFFSET), dead[0].header(DLQ_ATTEMPTS)), (Some(&b"1"[..]), Some(&b"3"[..])));
    // Everything else landed, exactly once; the partition is past the end.
    let t = titles(&*real).await;
    assert_eq!(t.iter().filter(|(c, _)| c.starts_with("good")).count(), 3);
    assert!(t.contains(&("bad".into(), "second".into())), "the record after it applied: {t:?}");
    assert_eq!(real.position("links", topics::EVENTS, 0).await.unwrap(), end);
    assert_eq!(real.attempt(topics::EVENTS, 0).await.unwrap(), Some(Attempt { offset: end, attempt: 1 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_without_an_outcome_past_its_deadline_is_appended_again_until_it_has_one() {
    use kurz_projector::watchdog::commands::{Commands, GROUP, REDRIVE_HEADER};
    use kurz_schemas::event::Answer;
    use kurz_storage::store::StoredOutcome;
    let dir = tempfile::tempdir().unwrap();
    let log = open_log("embedded", dir.path()).unwrap();
    let store = open_store("embedded", &dir.path().join("store")).unwrap();
    kurz_storage::log::ensure_topics(&*log, 2, 1).await.unwrap();
    let command = |id: &str| NewRecord::new("link:x", format!("{{\"id\":\"{id}\"}}").into_bytes()).header(COMMAND_ID, id);
    log.append(topics::COMMANDS, 1, vec![command("answered"), command("lost")]).await.unwrap();
    let outcome = StoredOutcome { status: 201, answer: Answer::Deleted { id: id(1) }, at: Ts::now(), fingerprint: None };
    let answer = |id: &str| StoreBatch {
        mutations: vec![Mutation::PutOutcome { command_id: id.into(), outcome: outcome.clone() }],
        ..Default::default()
    };
    store.apply(answer("answered")).await.unwrap();

    let mut watch = Commands::default();
    // Not yet past the deadline: nothing happens.
    let pass = watch.check(&*log, &*store, Duration::from_secs(3600), Ts::now()).await.unwrap();
    assert_eq!((pass.redriven, pass.without_outcome), (0, 0));
    assert_eq!(log.end_offset(topics::COMMANDS, 1).await.unwrap(), 2);
    // Past it: the one without an outcome is appended again, same id, marked.
    let pass = watch.check(&*log, &*store, Duration::ZERO, Ts::now()).await.unwrap();
    assert_eq!((pass.redriven, pass.without_outcome), (1, 1));
    let again = log.read(topics::COMMANDS, 1, 2, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].header(COMMAND_ID), again[0].header(REDRIVE_HEADER)), (Some(&b"lost"[..]), Some(&b"1"[..])));
    assert_eq!(again[0].payload, br#"{"id":"lost"}"#.to_vec());
    // The scan's place is kept no further than the pending command.
    assert_eq!(log.committed(GROUP, topics::COMMANDS, 1).await.unwrap(), Some(1));
    // Once decided (its outcome stored), it is no longer pending, and nothing more is appended.
    store.apply(answer("lost")).await.unwrap();
    let pass = watch.check(&*log, &*store, Duration::ZERO, Ts::now()).await.unwrap();
    assert_eq!((pass.redriven, pass.without_outcome), (0, 0));
    assert_eq!(log.end_offset(topics::COMMANDS, 1).await.unwrap(), 3, "the re-driven record is not tracked again");
    assert_eq!(log.committed(GROUP, topics::COMMANDS, 1).await.unwrap(), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_never_gets_an_outcome_is_re_driven_a_bounded_number_of_times() {
    use kurz_projector::watchdog::commands::Commands;
    let dir = tempfile::tempdir().unwrap();
    let log = open_log("embedded", dir.path()).unwrap();
    let store = open_store("embedded", &dir.path().join("store")).unwrap();
    kurz_storage::log::ensure_topics(&*log, 1, 1).await.unwrap();
    log.append(topics::COMMANDS, 0, vec![NewRecord::new("k", b"{}".to_vec()).header(COMMAND_ID, "never")]).await.unwrap();
    let mut watch = Commands::default();
    let mut redriven = 0;
    // Checks are spaced 1, 2, 4, … deadlines apart; far-future clocks pass them all.
    for hour in 0..10 {
        let at = Ts(Ts::now().0 + hour * 3_600_000);
        redriven += watch.check(&*log, &*store, Duration::from_millis(1), at).await.unwrap().redriven;
    }
    assert_eq!(redriven, 3, "then it is only reported");
    assert_eq!(log.end_offset(topics::COMMANDS, 0).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_handoff_is_not_counted_as_a_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log("embedded", dir.path()).unwrap();
    let store = open_store("embedded", &dir.path().join("store")).unwrap();
    let end = fill(&*log).await;
    let never = Arc::new(AtomicBool::new(false));
    let p = Projector::with_projections(log.clone(), store.clone(), None, keys(), projections(&never));
    let attempt = || async { store.attempt(topics::EVENTS, 0).await.unwrap() };
    for round in 0..2 {
        let stop = CancellationToken::new();
        let task = tokio::spawn(p.clone().run_until_stopped(stop.clone()));
        assert!(p.wait_caught_up(Duration::from_secs(30)).await.unwrap());
        // Taking the partition over counts one delivery of the batch at `end` (0 + 1
        // after a clean release), never a second one: that would send it one record
        // at a time, as after a death.
        let mut seen = attempt().await;
        for _ in 0..200 {
            if seen.is_some_and(|a| a.offset == end && a.attempt > 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            seen = attempt().await;
        }
        assert_eq!(seen, Some(Attempt { offset: end, attempt: 1 }), "round {round}");
        stop.cancel();
        task.await.unwrap().unwrap();
        assert_eq!(attempt().await, Some(Attempt { offset: end, attempt: 0 }), "released cleanly in round {round}");
    }
}

/// The watchdog drives a stalled partition whose store keeps failing (a broker or store
/// outage, not a record that kills its projector): the failed drives are not deliveries
/// of the batch, so no healthy record is dead-lettered, however many passes it takes.
/// (Before, each drive counted one: the third dead-lettered the first record.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_that_fail_with_an_error_do_not_use_up_a_record_s_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log("embedded", dir.path()).unwrap();
    let real = open_store("embedded", &dir.path().join("store")).unwrap();
    let end = fill(&*log).await;
    let never = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicBool::new(true));
    let store = Arc::new(Hangs(real.clone(), None, down.clone()));
    let p = Projector::with_projections(log.clone(), store, None, keys(), projections(&never)).max_attempts(3);
    let mut wd = Watchdog::new(p, Settings { stall_after: Duration::from_millis(20), ..settings() });
    let stop = CancellationToken::new();
    for _ in 0..8 {
        wd.pass(&stop).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(dead_letters(&*log).await.is_empty(), "a healthy record was dead-lettered");
    let attempt = real.attempt(topics::EVENTS, 0).await.unwrap();
    assert_eq!(attempt, Some(Attempt { offset: 0, attempt: 1 }), "only the first drive counted");
    // The store comes back: the next drive applies everything.
    down.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while real.position("links", topics::EVENTS, 0).await.unwrap() < end {
        assert!(std::time::Instant::now() < deadline, "never driven to the end");
        wd.pass(&stop).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(titles(&*real).await.len(), 4);
    assert!(dead_letters(&*log).await.is_empty());
}
