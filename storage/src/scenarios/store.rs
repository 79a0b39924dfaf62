//! The read-store scenario suite. `run` takes a fresh, empty store.

use crate::store::{
    ApplyError, Attempt, EventQuery, LinkQuery, Mutation, ParkedRecord, Position, ReadStore, StoreBatch, StoredOutcome, VersionedLink,
};
use kurz_schemas::event::Answer;
use kurz_schemas::{HistoryEvent, Id, Link, Ts, User};
use std::sync::Arc;
use std::time::Duration;

fn id(n: u64) -> Id {
    Id::new(n).unwrap()
}

pub fn user(n: u64, email: &str) -> User {
    User::new(id(n), email.into(), Some(format!("u{n}")), Ts(1000), None)
}

pub fn link(n: u64, code: &str, owner: Option<u64>, url: &str, active: bool) -> Link {
    Link {
        domain: None,
        id: id(n),
        short_code: code.into(),
        original_url: url.into(),
        title: Some(format!("t{n}")),
        is_active: active,
        user_id: owner.map(id),
        created_at: Ts(2000),
        updated_at: Ts(2000),
        options: Default::default(),
    }
}

fn hist(n: u64, url: u64, user: Option<u64>, ty: &str) -> HistoryEvent {
    HistoryEvent {
        id: id(n),
        url_id: id(url),
        user_id: user.map(id),
        event_type: ty.into(),
        timestamp: Ts(3000),
        details: Default::default(),
    }
}

/// A batch for projection `p`, partition 0, moving `from` → `to`.
fn batch(from: u64, to: u64, mutations: Vec<Mutation>) -> StoreBatch {
    StoreBatch {
        positions: vec![Position { projection: "p".into(), topic: "t".into(), partition: 0, from, to }],
        mutations,
        ..Default::default()
    }
}

pub async fn run(store: Arc<dyn ReadStore>) {
    let s = &*store;
    positions_guard_every_batch(s).await;
    users_by_id_email_and_page(s).await;
    links_by_code_owner_and_filters(s).await;
    older_link_versions_never_win(s).await;
    crawlable_links_are_listed_by_code(s).await;
    links_on_a_domain_are_found_by_host_and_code(s).await;
    the_domain_registry_keeps_the_last_entry_per_host(s).await;
    history_filters_by_index(s).await;
    clicks_add_exactly_once_with_their_position(s).await;
    click_aggregates_are_exact_and_ranged(s).await;
    parked_records_release_once(s).await;
    attempts_are_kept_per_partition(s).await;
    a_stale_claim_lands_nothing(s).await;
    claims_race_to_distinct_epochs(store.clone()).await;
    outcomes_wake_waiters(store.clone()).await;
}

/// A writer that claimed a partition, was overtaken by a later claim (it paused past its
/// lease, the watchdog drove its partition, a replay was overtaken), and then wakes,
/// lands nothing: no row, no position. The later claim writes on; positions never go
/// back.
async fn a_stale_claim_lands_nothing(s: &dyn ReadStore) {
    let on = |partition: u32, from: u64, to: u64, epoch: u64, m: Vec<Mutation>| StoreBatch {
        positions: vec![
            Position { projection: "fa".into(), topic: "ft".into(), partition, from, to },
            Position { projection: "fb".into(), topic: "ft".into(), partition, from, to },
        ],
        mutations: m,
        epoch,
        ..Default::default()
    };
    let clicks = |n| vec![Mutation::AddClicks { link_id: id(70), n }];
    let old = s.claim("ft", 3).await.unwrap();
    s.apply(on(3, 0, 4, old, clicks(4))).await.unwrap();
    let new = s.claim("ft", 3).await.unwrap();
    assert!(new > old, "claims grow: {old} then {new}");
    // The old writer wakes with its next batch (and with a copy of its last one).
    for stale in [on(3, 4, 9, old, clicks(5)), on(3, 0, 4, old, clicks(4))] {
        match s.apply(stale).await {
            Err(ApplyError::Fenced { topic, partition: 3, claimed, epoch }) => {
                assert_eq!((topic.as_str(), claimed, epoch), ("ft", new, old))
            }
            other => panic!("a stale writer's batch was not fenced: {other:?}"),
        }
    }
    assert_eq!(s.click_count(id(70)).await.unwrap(), 4, "nothing of a fenced batch lands");
    assert_eq!((s.position("fa", "ft", 3).await.unwrap(), s.position("fb", "ft", 3).await.unwrap()), (4, 4));
    // An unclaimed writer is stale too once a claim exists.
    assert!(matches!(s.apply(on(3, 4, 9, 0, clicks(5))).await, Err(ApplyError::Fenced { .. })));
    // The new owner goes on from where the positions stand.
    s.apply(on(3, 4, 9, new, clicks(5))).await.unwrap();
    assert_eq!(s.click_count(id(70)).await.unwrap(), 9);
    assert_eq!(s.position("fa", "ft", 3).await.unwrap(), 9);
    // Claims are per partition: another partition's first claim is unaffected.
    let other = s.claim("ft", 4).await.unwrap();
    s.apply(on(4, 0, 1, other, clicks(1))).await.unwrap();
    assert_ne!(other, new, "a fresh partition's first claim");
    assert!(
        matches!(s.apply(on(3, 9, 10, other, clicks(1))).await, Err(ApplyError::Fenced { .. })),
        "a claim holds for its own partition only"
    );
    assert_eq!(s.click_count(id(70)).await.unwrap(), 10);
}

/// Writers claiming one partition at once each get an epoch of their own.
async fn claims_race_to_distinct_epochs(store: Arc<dyn ReadStore>) {
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let s = store.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..10 {
                    got.push(s.claim("race", 0).await.unwrap());
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=40).collect::<Vec<u64>>(), "every claim got a distinct epoch, none skipped");
}

async fn positions_guard_every_batch(s: &dyn ReadStore) {
    assert_eq!(s.position("p", "t", 0).await.unwrap(), 0);
    s.apply(batch(0, 5, vec![])).await.unwrap();
    assert_eq!(s.position("p", "t", 0).await.unwrap(), 5);
    // A redelivered batch (same start) is refused and changes nothing.
    let again = s.apply(batch(0, 5, vec![Mutation::PutUser(user(99, "dup@x.io"))])).await;
    assert!(matches!(again, Err(ApplyError::PositionMismatch { stored: 5, expected: 0, .. })), "{again:?}");
    assert_eq!(s.user(id(99)).await.unwrap(), None, "refused batch wrote nothing");
    assert_eq!(s.position("p", "t", 0).await.unwrap(), 5);
    assert_eq!(s.position("other", "t", 0).await.unwrap(), 0, "positions are per projection");
}

async fn users_by_id_email_and_page(s: &dyn ReadStore) {
    let mut m: Vec<Mutation> = (1..=25).map(|n| Mutation::PutUser(user(n, &format!("u{n}@x.io")))).collect();
    let mut changed = user(3, "new3@x.io");
    changed.username = Some("renamed".into());
    m.push(Mutation::PutUser(changed.clone()));
    m.push(Mutation::DeleteUser(user(4, "u4@x.io")));
    s.apply(batch(5, 6, m)).await.unwrap();
    assert_eq!(s.user(id(3)).await.unwrap(), Some(changed));
    assert_eq!(s.user_by_email("u3@x.io").await.unwrap(), None, "old email released");
    assert_eq!(s.user_by_email("new3@x.io").await.unwrap().unwrap().id, id(3));
    assert_eq!(s.user(id(4)).await.unwrap(), None);
    assert_eq!(s.user_by_email("u4@x.io").await.unwrap(), None);
    let p1: Vec<u64> = s.users(1, 10).await.unwrap().iter().map(|u| u.id.get()).collect();
    assert_eq!(p1, vec![1, 2, 3, 5, 6, 7, 8, 9, 10, 11]);
    let p3: Vec<u64> = s.users(3, 10).await.unwrap().iter().map(|u| u.id.get()).collect();
    assert_eq!(p3, vec![22, 23, 24, 25]);
    assert!(s.users(9, 10).await.unwrap().is_empty());

    // An email handed from one user to another inside one batch (user 5 moves away
    // from it, user 30 takes it, then user 6 gives its own up and user 5 takes that):
    // the email index follows batch order.
    let m = vec![
        Mutation::PutUser(user(5, "moved5@x.io")),
        Mutation::PutUser(user(30, "u5@x.io")),
        Mutation::PutUser(user(6, "moved6@x.io")),
        Mutation::PutUser(user(5, "u6@x.io")),
    ];
    let positions = vec![Position { projection: "emails".into(), topic: "t".into(), partition: 0, from: 0, to: 1 }];
    s.apply(StoreBatch { positions, mutations: m, ..Default::default() }).await.unwrap();
    assert_eq!(s.user_by_email("u5@x.io").await.unwrap().map(|u| u.id), Some(id(30)));
    assert_eq!(s.user_by_email("u6@x.io").await.unwrap().map(|u| u.id), Some(id(5)));
    assert_eq!(s.user_by_email("moved6@x.io").await.unwrap().map(|u| u.id), Some(id(6)));
    assert_eq!(s.user_by_email("moved5@x.io").await.unwrap(), None, "5 moved on within the batch");

    // A deletion read after its user's key was destroyed carries no e-mail: the
    // stored row's e-mail is released all the same.
    let mut erased = user(7, "");
    erased.erased = true;
    let positions = vec![Position { projection: "erasure".into(), topic: "t".into(), partition: 0, from: 0, to: 1 }];
    s.apply(StoreBatch { positions, mutations: vec![Mutation::DeleteUser(erased)], ..Default::default() }).await.unwrap();
    assert_eq!(s.user(id(7)).await.unwrap(), None);
    assert_eq!(s.user_by_email("u7@x.io").await.unwrap(), None, "the e-mail index row went with the user");
}

async fn links_by_code_owner_and_filters(s: &dyn ReadStore) {
    let put = |l: Link, v: u64| Mutation::PutLink(VersionedLink { link: l, version: v });
    s.apply(batch(
        6,
        7,
        vec![
            put(link(10, "aaa", Some(1), "https://a.io", true), 1),
            put(link(11, "bbb", Some(1), "https://b.io", false), 2),
            put(link(12, "ccc", Some(2), "https://a.io", true), 3),
            put(link(13, "ddd", None, "https://a.io", true), 4),
            put(link(14, "eee", Some(1), "https://a.io", true), 5),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(s.link_by_code("bbb").await.unwrap().unwrap().link.id, id(11));
    assert_eq!(s.link(id(12)).await.unwrap().unwrap().version, 3);
    assert_eq!(s.link_by_code("zzz").await.unwrap(), None);
    let ids = |v: Vec<Link>| v.iter().map(|l| l.id.get()).collect::<Vec<_>>();
    let q = |user_id, is_active, limit| LinkQuery { user_id, is_active, limit };
    assert_eq!(ids(s.links(&q(None, None, 100)).await.unwrap()), vec![10, 11, 12, 13, 14]);
    assert_eq!(ids(s.links(&q(Some(id(1)), None, 100)).await.unwrap()), vec![10, 11, 14]);
    assert_eq!(ids(s.links(&q(Some(id(1)), Some(false), 100)).await.unwrap()), vec![11]);
    assert_eq!(ids(s.links(&q(None, Some(true), 2)).await.unwrap()), vec![10, 12]);
    assert_eq!(s.active_link_for(Some(id(1)), "https://a.io").await.unwrap().unwrap().id, id(10));
    assert_eq!(s.active_link_for(None, "https://a.io").await.unwrap().unwrap().id, id(13));
    assert_eq!(s.active_link_for(Some(id(1)), "https://b.io").await.unwrap(), None, "inactive links are not reused");
    // Delete, and an owner change moves the link between owner indexes.
    s.apply(batch(
        7,
        8,
        vec![
            Mutation::DeleteLink(VersionedLink { link: link(10, "aaa", Some(1), "https://a.io", true), version: 6 }),
            put(link(14, "eee", Some(2), "https://c.io", true), 7),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(s.link(id(10)).await.unwrap(), None);
    assert_eq!(s.link_by_code("aaa").await.unwrap(), None);
    assert_eq!(ids(s.links(&q(Some(id(1)), None, 100)).await.unwrap()), vec![11]);
    assert_eq!(ids(s.links(&q(Some(id(2)), None, 100)).await.unwrap()), vec![12, 14]);
    assert_eq!(s.active_link_for(Some(id(1)), "https://a.io").await.unwrap(), None);
}

async fn older_link_versions_never_win(s: &dyn ReadStore) {
    let put = |l: Link, v: u64| Mutation::PutLink(VersionedLink { link: l, version: v });
    s.apply(batch(
        8,
        9,
        vec![put(link(20, "vvv", None, "https://new.io", true), 50), put(link(20, "vvv", None, "https://old.io", true), 40)],
    ))
    .await
    .unwrap();
    assert_eq!(s.link_by_code("vvv").await.unwrap().unwrap().link.original_url, "https://new.io");
}

/// `robots.txt`'s index: active crawlable links only, in code order, following every
/// change of the link (flag, activity, code, deletion), under `limit`.
async fn crawlable_links_are_listed_by_code(s: &dyn ReadStore) {
    let on = |from: u64, mutations: Vec<Mutation>| StoreBatch {
        positions: vec![Position { projection: "crawl".into(), topic: "t".into(), partition: 0, from, to: from + 1 }],
        mutations,
        ..Default::default()
    };
    let crawlable = |n: u64, code: &str, active: bool, v: u64| {
        let mut l = link(n, code, Some(1), "https://crawl.io", active);
        l.options.crawlable = Some(true);
        Mutation::PutLink(VersionedLink { link: l, version: v })
    };
    let plain =
        |n: u64, code: &str, v: u64| Mutation::PutLink(VersionedLink { link: link(n, code, None, "https://x.io", true), version: v });
    s.apply(on(
        0,
        vec![crawlable(60, "cr-b", true, 1), crawlable(61, "cr-a", true, 2), crawlable(62, "cr-c", false, 3), plain(63, "cr-d", 4)],
    ))
    .await
    .unwrap();
    assert_eq!(s.crawlable_codes(100).await.unwrap(), vec!["cr-a", "cr-b"], "active crawlable links, by code");
    assert_eq!(s.crawlable_codes(1).await.unwrap(), vec!["cr-a"]);
    assert!(s.crawlable_codes(0).await.unwrap().is_empty());
    // Turned on, turned off, deactivated, renamed, deleted.
    s.apply(on(
        1,
        vec![
            crawlable(63, "cr-d", true, 5),
            plain(61, "cr-a", 6),
            crawlable(62, "cr-c", true, 7),
            crawlable(60, "cr-e", true, 8),
            crawlable(62, "cr-c", false, 9),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(s.crawlable_codes(100).await.unwrap(), vec!["cr-d", "cr-e"]);
    s.apply(on(2, vec![Mutation::DeleteLink(VersionedLink { link: link(63, "cr-d", None, "https://x.io", true), version: 10 })]))
        .await
        .unwrap();
    assert_eq!(s.crawlable_codes(100).await.unwrap(), vec!["cr-e"]);
}

/// A code once per domain: a link on `go.example` is found by `go.example/<code>`, the
/// default domain's by the code alone, each following its own changes.
async fn links_on_a_domain_are_found_by_host_and_code(s: &dyn ReadStore) {
    let on = |from: u64, mutations: Vec<Mutation>| StoreBatch {
        positions: vec![Position { projection: "dom-links".into(), topic: "t".into(), partition: 0, from, to: from + 1 }],
        mutations,
        ..Default::default()
    };
    let put = |n: u64, domain: Option<&str>, url: &str, v: u64| {
        let mut l = link(n, "dom-code", None, url, true);
        l.domain = domain.map(str::to_string);
        l.options.crawlable = Some(true);
        Mutation::PutLink(VersionedLink { link: l, version: v })
    };
    s.apply(on(0, vec![put(70, None, "https://plain.io", 1), put(71, Some("go.example"), "https://go.io", 2)])).await.unwrap();
    let url = |key: &'static str| async move { s.link_by_code(key).await.unwrap().map(|v| v.link.original_url) };
    assert_eq!(url("dom-code").await.as_deref(), Some("https://plain.io"));
    assert_eq!(url("go.example/dom-code").await.as_deref(), Some("https://go.io"));
    assert_eq!(url("other.example/dom-code").await, None);
    let listed = s.crawlable_codes(1000).await.unwrap();
    assert!(listed.contains(&"dom-code".to_string()) && listed.contains(&"go.example/dom-code".to_string()), "{listed:?}");
    // The domain's link changes and goes; the default domain's stays.
    s.apply(on(1, vec![put(71, Some("go.example"), "https://go2.io", 3)])).await.unwrap();
    assert_eq!(url("go.example/dom-code").await.as_deref(), Some("https://go2.io"));
    let mut gone = link(71, "dom-code", None, "https://go2.io", true);
    gone.domain = Some("go.example".into());
    s.apply(on(2, vec![Mutation::DeleteLink(VersionedLink { link: gone, version: 4 })])).await.unwrap();
    assert_eq!(url("go.example/dom-code").await, None);
    assert_eq!(url("dom-code").await.as_deref(), Some("https://plain.io"));
    assert!(!s.crawlable_codes(1000).await.unwrap().contains(&"go.example/dom-code".to_string()));
}

/// The registry: one entry per host (and the default), replaced whole, deleted by host.
async fn the_domain_registry_keeps_the_last_entry_per_host(s: &dyn ReadStore) {
    let on = |from: u64, mutations: Vec<Mutation>| StoreBatch {
        positions: vec![Position { projection: "domains".into(), topic: "t".into(), partition: 0, from, to: from + 1 }],
        mutations,
        ..Default::default()
    };
    let entry = |host: &str, not_found: Option<&str>, at: i64| kurz_schemas::Domain {
        host: host.into(),
        base_url_redirect: None,
        not_found_redirect: not_found.map(str::to_string),
        expired_redirect: None,
        created_at: Ts(1),
        updated_at: Ts(at),
    };
    assert!(s.domains().await.unwrap().is_empty());
    assert_eq!(s.domain("go.example").await.unwrap(), None);
    s.apply(on(
        0,
        vec![
            Mutation::PutDomain(entry("go.example", None, 1)),
            Mutation::PutDomain(entry("default", Some("https://d.io"), 1)),
            Mutation::PutDomain(entry("go.example", Some("https://g.io"), 2)),
        ],
    ))
    .await
    .unwrap();
    let mut all = s.domains().await.unwrap();
    all.sort_by(|a, b| a.host.cmp(&b.host));
    assert_eq!(all, vec![entry("default", Some("https://d.io"), 1), entry("go.example", Some("https://g.io"), 2)], "the last put wins");
    s.apply(on(1, vec![Mutation::DeleteDomain(entry("go.example", None, 3))])).await.unwrap();
    assert_eq!(s.domain("go.example").await.unwrap(), None);
    assert_eq!(s.domain("default").await.unwrap(), Some(entry("default", Some("https://d.io"), 1)));
    assert_eq!(s.domains().await.unwrap().len(), 1);
}

async fn history_filters_by_index(s: &dyn ReadStore) {
    let m = vec![
        Mutation::PutHistory(hist(100, 10, Some(1), "created")),
        Mutation::PutHistory(hist(101, 10, None, "click")),
        Mutation::PutHistory(hist(102, 12, Some(2), "click")),
        Mutation::PutHistory(hist(103, 10, Some(1), "updated")),
        Mutation::PutHistory(hist(100, 10, Some(1), "created")), // applied twice: same state
    ];
    s.apply(batch(9, 10, m)).await.unwrap();
    let ids = |v: Vec<HistoryEvent>| v.iter().map(|e| e.id.get()).collect::<Vec<_>>();
    let q = |url_id: Option<u64>, user_id: Option<u64>, ty: Option<&str>, limit| EventQuery {
        url_id: url_id.map(id),
        user_id: user_id.map(id),
        event_type: ty.map(str::to_string),
        limit,
    };
    assert_eq!(ids(s.history(&q(None, None, None, 100)).await.unwrap()), vec![100, 101, 102, 103]);
    assert_eq!(ids(s.history(&q(Some(10), None, None, 100)).await.unwrap()), vec![100, 101, 103]);
    assert_eq!(ids(s.history(&q(Some(10), Some(1), None, 100)).await.unwrap()), vec![100, 103]);
    assert_eq!(ids(s.history(&q(None, Some(2), None, 100)).await.unwrap()), vec![102]);
    assert_eq!(ids(s.history(&q(None, None, Some("click"), 100)).await.unwrap()), vec![101, 102]);
    assert_eq!(ids(s.history(&q(Some(10), None, Some("click"), 100)).await.unwrap()), vec![101]);
    assert_eq!(ids(s.history(&q(None, None, None, 2)).await.unwrap()), vec![100, 101]);
    assert_eq!(s.history_event(id(102)).await.unwrap().unwrap().event_type, "click");
    assert_eq!(s.history_event(id(999)).await.unwrap(), None);
}

async fn clicks_add_exactly_once_with_their_position(s: &dyn ReadStore) {
    s.apply(batch(10, 11, vec![Mutation::AddClicks { link_id: id(12), n: 3 }])).await.unwrap();
    // Redelivery of the same batch is refused, so the count does not move.
    assert!(s.apply(batch(10, 11, vec![Mutation::AddClicks { link_id: id(12), n: 3 }])).await.is_err());
    s.apply(batch(11, 12, vec![Mutation::AddClicks { link_id: id(12), n: 2 }])).await.unwrap();
    assert_eq!(s.click_count(id(12)).await.unwrap(), 5);
    assert_eq!(s.click_count(id(77)).await.unwrap(), 0);
}

async fn click_aggregates_are_exact_and_ranged(s: &dyn ReadStore) {
    // The clicks projection's names; the store only sorts them.
    use kurz_schemas::analytics::{day_start, dim, hour, Dimension, HOUR_MS};
    let at = |p: u64, from: u64, to: u64, m: Vec<Mutation>| StoreBatch {
        positions: vec![Position { projection: "aggregates".into(), topic: "clicks".into(), partition: p as u32, from, to }],
        mutations: m,
        ..Default::default()
    };
    let count = |name: String, n: u64| Mutation::AddCount { link_id: id(40), name, n };
    let visitor = |day: i64, v: &str| Mutation::AddVisitor { link_id: id(40), day, visitor: v.into() };
    let (h1, h2, h3) = (hour(7 * HOUR_MS), hour(8 * HOUR_MS), hour(30 * HOUR_MS));
    let first = vec![
        count(h1.clone(), 2),
        count(h2.clone(), 1),
        count(dim(0, Dimension::Browser, "Firefox"), 3),
        visitor(0, "aa"),
        visitor(0, "bb"),
        visitor(0, "aa"),
    ];
    s.apply(at(0, 0, 3, first.clone())).await.unwrap();
    // Redelivered: refused, nothing moves.
    assert!(s.apply(at(0, 0, 3, first)).await.is_err());
    // Another partition's batch adds to the same names; a later batch of this one too.
    s.apply(at(1, 0, 2, vec![count(h1.clone(), 5), visitor(0, "cc"), visitor(1, "aa")])).await.unwrap();
    s.apply(at(0, 3, 4, vec![count(h3.clone(), 1), count(dim(1, Dimension::Country, "DE"), 1)])).await.unwrap();

    let hours = s.click_counts(id(40), "h:", "h;").await.unwrap();
    assert_eq!(hours, vec![(h1.clone(), 7), (h2.clone(), 1), (h3.clone(), 1)]);
    assert_eq!(s.click_counts(id(40), &h2, &h3).await.unwrap(), vec![(h2, 1)], "a time range is a name range");
    let dims = s.click_counts(id(40), &day_start(0), &day_start(2)).await.unwrap();
    assert_eq!(dims, vec![(dim(0, Dimension::Browser, "Firefox"), 3), (dim(1, Dimension::Country, "DE"), 1)]);
    assert_eq!(s.visitors_per_day(id(40), 0, 5).await.unwrap(), vec![(0, 3), (1, 1)], "a visitor counts once a day");
    assert_eq!(s.visitors_per_day(id(40), 1, 5).await.unwrap(), vec![(1, 1)]);
    assert!(s.click_counts(id(41), "h:", "h;").await.unwrap().is_empty());
    assert!(s.visitors_per_day(id(41), 0, 5).await.unwrap().is_empty());
}

fn parked(topic: &str, partition: u32, key: &str, offset: u64, attempts: u32) -> ParkedRecord {
    ParkedRecord {
        topic: topic.into(),
        partition,
        key: key.into(),
        offset,
        projections: vec!["links".into(), "history".into()],
        attempts,
        reason: format!("attempt {attempts} failed"),
        parked_at: Ts(5000),
        last_attempt_at: Ts(5000 + attempts as i64),
    }
}

async fn parked_records_release_once(s: &dyn ReadStore) {
    assert!(s.parked().await.unwrap().is_empty());
    // Parked with the batch that moves the stream past them.
    let (poison, behind, other) =
        (parked("events", 2, "link:b", 7, 1), parked("events", 2, "link:b", 9, 0), parked("clicks", 0, "a", 3, 1));
    let mut b = batch(0, 10, vec![Mutation::Park(behind.clone()), Mutation::Park(poison.clone()), Mutation::Park(other.clone())]);
    b.positions[0].topic = "events".into();
    s.apply(b).await.unwrap();
    assert_eq!(s.parked().await.unwrap(), vec![other.clone(), poison.clone(), behind.clone()], "ordered by topic, partition, key, offset");
    // A counted delivery attempt releases and parks it again in one step: it stays,
    // with its new body ...
    let again = parked("events", 2, "link:b", 7, 2);
    s.apply(StoreBatch { mutations: vec![Mutation::Park(again.clone())], release: vec![poison.id()], ..Default::default() }).await.unwrap();
    assert_eq!(s.parked().await.unwrap(), vec![other.clone(), again.clone(), behind.clone()]);
    // ... and only while it is parked.
    let stale = StoreBatch {
        mutations: vec![Mutation::Park(again.clone())],
        release: vec![parked("events", 2, "link:b", 8, 0).id()],
        ..Default::default()
    };
    assert!(matches!(s.apply(stale).await, Err(ApplyError::NotParked(_))));
    // Delivering it releases it together with its mutations ...
    let deliver =
        || StoreBatch { mutations: vec![Mutation::AddClicks { link_id: id(90), n: 4 }], release: vec![poison.id()], ..Default::default() };
    s.apply(deliver()).await.unwrap();
    assert_eq!(s.click_count(id(90)).await.unwrap(), 4);
    // ... once: a second delivery of the same record is refused whole.
    match s.apply(deliver()).await {
        Err(ApplyError::NotParked(found)) => assert_eq!(found, poison.id()),
        other => panic!("a released record was delivered twice: {other:?}"),
    }
    assert_eq!(s.click_count(id(90)).await.unwrap(), 4);
    assert_eq!(s.parked().await.unwrap(), vec![other.clone(), behind.clone()]);
    // A batch releasing several records fails whole if one of them is gone.
    let mixed = StoreBatch { release: vec![behind.id(), poison.id()], ..Default::default() };
    assert!(matches!(s.apply(mixed).await, Err(ApplyError::NotParked(_))));
    assert_eq!(s.parked().await.unwrap().len(), 2, "nothing of a refused batch is written");
    s.apply(StoreBatch { release: vec![behind.id(), other.id()], ..Default::default() }).await.unwrap();
    assert!(s.parked().await.unwrap().is_empty());
}

async fn attempts_are_kept_per_partition(s: &dyn ReadStore) {
    assert_eq!(s.attempt("events", 0).await.unwrap(), None);
    let write = |topic: &str, partition: u32, offset: u64, attempt: u32| StoreBatch {
        mutations: vec![Mutation::Attempt { topic: topic.into(), partition, attempt: Attempt { offset, attempt } }],
        ..Default::default()
    };
    s.apply(write("events", 0, 40, 1)).await.unwrap();
    s.apply(write("events", 1, 12, 3)).await.unwrap();
    s.apply(write("events", 0, 40, 2)).await.unwrap();
    assert_eq!(s.attempt("events", 0).await.unwrap(), Some(Attempt { offset: 40, attempt: 2 }));
    assert_eq!(s.attempt("events", 1).await.unwrap(), Some(Attempt { offset: 12, attempt: 3 }));
    assert_eq!(s.attempt("clicks", 0).await.unwrap(), None);
}

async fn outcomes_wake_waiters(store: Arc<dyn ReadStore>) {
    // The request fingerprint is kept with the outcome: an idempotent retry is checked
    // against it.
    let outcome = StoredOutcome { status: 201, answer: Answer::Deleted { id: id(5) }, at: Ts::now(), fingerprint: Some("fp-1".into()) };
    assert_eq!(store.wait_outcome("cmd-1", Duration::from_millis(30)).await.unwrap(), None);
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_outcome("cmd-1", Duration::from_secs(30)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.apply(batch(12, 13, vec![Mutation::PutOutcome { command_id: "cmd-1".into(), outcome: outcome.clone() }])).await.unwrap();
    assert_eq!(waiter.await.unwrap(), Some(outcome.clone()));
    // The first outcome of a command id is kept.
    let other = StoredOutcome { status: 409, fingerprint: Some("fp-2".into()), ..outcome.clone() };
    store.apply(batch(13, 14, vec![Mutation::PutOutcome { command_id: "cmd-1".into(), outcome: other }])).await.unwrap();
    assert_eq!(store.outcome("cmd-1").await.unwrap(), Some(outcome.clone()));

    // Read-your-writes: once an outcome is visible, so is every state change of its
    // batch, however the backend spreads the batch's writes.
    let links: Vec<Mutation> = (500..800)
        .map(|n| {
            Mutation::PutLink(VersionedLink { version: 1, link: link(n, &format!("ryw{n}"), Some(1), &format!("https://r.io/{n}"), true) })
        })
        .collect();
    let watcher = {
        let store = store.clone();
        tokio::spawn(async move {
            let seen = store.wait_outcome("cmd-ryw", Duration::from_secs(30)).await.unwrap();
            let mut missing = Vec::new();
            for n in 500..800 {
                if store.link(id(n)).await.unwrap().is_none() {
                    missing.push(n);
                }
            }
            (seen.is_some(), missing)
        })
    };
    let mut m = links;
    m.push(Mutation::PutOutcome { command_id: "cmd-ryw".into(), outcome });
    store.apply(batch(14, 15, m)).await.unwrap();
    let (seen, missing) = watcher.await.unwrap();
    assert!(seen && missing.is_empty(), "outcome visible before its state: links {missing:?} missing");
    store.ping().await.unwrap();
}
