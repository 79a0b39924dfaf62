//! Replaying the log from offset zero into a fresh store gives the same read models, and
//! a second projector over the same store (redelivery) changes nothing.

use kurz_projector::Projector;
use kurz_schemas::event::Answer;
use kurz_schemas::{topics, Click, CommandId, Event, EventBody, HistoryEvent, Id, Link, Ts, User};
use kurz_storage::store::{EventQuery, LinkQuery};
use kurz_storage::{open_log, open_store, EventLog, NewRecord, ReadStore};
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

fn history() -> Vec<(u32, Event)> {
    let mut evs = Vec::new();
    let mut n = 1000;
    let mut ev = |p: u32, body: EventBody| {
        n += 1;
        (p, Event { id: id(n), command_id: CommandId(format!("c{n}")), at: Ts(n as i64), body })
    };
    for u in 1..=20u64 {
        let user = User::new(id(u), format!("u{u}@x.io"), None, Ts(1), None);
        evs.push(ev(0, EventBody::UserCreated { user: user.clone(), imported: false }));
        evs.push(ev(0, EventBody::Decided { status: 201, answer: Answer::User { user }, fingerprint: None }));
    }
    for l in 1..=60u64 {
        let p = (l % 3) as u32;
        let mut link = Link {
            domain: None,
            id: id(100 + l),
            short_code: format!("code{l}"),
            original_url: format!("https://x.io/{l}"),
            title: None,
            is_active: true,
            user_id: Some(id(1 + l % 20)),
            created_at: Ts(2),
            updated_at: Ts(2),
            options: Default::default(),
        };
        evs.push(ev(p, EventBody::LinkCreated { link: link.clone(), imported: false }));
        if l % 4 == 0 {
            link.is_active = false;
            link.title = Some("off".into());
            evs.push(ev(p, EventBody::LinkUpdated { link: link.clone() }));
        }
        if l % 7 == 0 {
            evs.push(ev(p, EventBody::LinkDeleted { link: link.clone() }));
        }
        if l % 5 == 0 {
            let h = HistoryEvent {
                id: id(5000 + l),
                url_id: link.id,
                user_id: None,
                event_type: "view".into(),
                timestamp: Ts(3),
                details: Default::default(),
            };
            evs.push(ev(p, EventBody::EventRecorded { event: h }));
        }
    }
    evs
}

async fn fill_log(log: &dyn EventLog) {
    kurz_storage::log::ensure_topics(log, 3, 2).await.unwrap();
    for (p, e) in history() {
        log.append(topics::EVENTS, p, vec![NewRecord::new("k", e.encode())]).await.unwrap();
    }
    for i in 0..300u64 {
        let c = Click::new(id(101 + i % 10), format!("code{}", 1 + i % 10), Ts(i as i64));
        log.append(topics::CLICKS, (i % 2) as u32, vec![NewRecord::new(c.code.clone(), c.encode())]).await.unwrap();
    }
    // A record no projection can read must not stop the others.
    log.append(topics::EVENTS, 1, vec![NewRecord::new("k", b"{not json".to_vec())]).await.unwrap();
}

async fn project(log: Arc<dyn EventLog>, store: Arc<dyn ReadStore>) {
    let p = Projector::new(log, store, None, keys());
    let stop = CancellationToken::new();
    let task = tokio::spawn(p.clone().run_until_stopped(stop.clone()));
    assert!(p.wait_caught_up(Duration::from_secs(30)).await.unwrap());
    stop.cancel();
    task.await.unwrap().unwrap();
}

async fn snapshot(s: &dyn ReadStore) -> String {
    let users = s.users(1, 1000).await.unwrap();
    let links = s.links(&LinkQuery { limit: 1000, ..Default::default() }).await.unwrap();
    let hist = s.history(&EventQuery { limit: 10_000, ..Default::default() }).await.unwrap();
    let mut clicks = Vec::new();
    for l in &links {
        clicks.push(s.click_count(l.id).await.unwrap());
    }
    let mut outcomes = 0;
    for n in 1001..1100 {
        if s.outcome(&format!("c{n}")).await.unwrap().is_some() {
            outcomes += 1;
        }
    }
    serde_json::to_string(&(users, links, hist, clicks, outcomes)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_zero_rebuilds_identical_read_models() {
    let dir = tempfile::tempdir().unwrap();
    // Clicks synced on each append, so they are visible as soon as `fill_log` returns.
    let log = open_log("embedded://?clicks_flush_ms=0", dir.path()).unwrap();
    fill_log(&*log).await;

    let a = open_store("embedded", &dir.path().join("a")).unwrap();
    project(log.clone(), a.clone()).await;
    let first = snapshot(&*a).await;

    // The model holds what the history says.
    assert_eq!(a.users(1, 1000).await.unwrap().len(), 20);
    let links = a.links(&LinkQuery { limit: 1000, ..Default::default() }).await.unwrap();
    assert_eq!(links.len(), 60 - 60 / 7);
    assert_eq!(a.links(&LinkQuery { limit: 1000, is_active: Some(false), ..Default::default() }).await.unwrap().len(), 15 - 2);
    let total_clicks: u64 = {
        let mut t = 0;
        for l in &links {
            t += a.click_count(l.id).await.unwrap();
        }
        t
    };
    assert_eq!(total_clicks, 300 - 30, "clicks on link 7 (deleted) are not listed");

    // Redelivery: a second projector over the same store finds nothing left to apply.
    project(log.clone(), a.clone()).await;
    assert_eq!(snapshot(&*a).await, first);

    // Replay from offset zero into a fresh store: the same state.
    let b = open_store("embedded", &dir.path().join("b")).unwrap();
    project(log, b.clone()).await;
    assert_eq!(snapshot(&*b).await, first);
}
