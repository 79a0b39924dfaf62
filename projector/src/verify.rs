//! Compares two read stores through the read port, as the API reads them: every user,
//! every link with its version, click count, aggregates and daily visitors, the whole
//! `/events` history, the stored outcome of every command the log holds, and each
//! projection's positions. Used by `kurz replay --verify` (rebuilt against live).

use crate::projections;
use crate::Error;
use kurz_schemas::{topics, Event};
use kurz_storage::store::{EventQuery, LinkQuery};
use kurz_storage::{EventLog, ReadStore};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// One difference: what, and its value in each store (`None`: missing there).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Difference {
    pub what: String,
    pub live: Option<String>,
    pub rebuilt: Option<String>,
}

fn diff<K: Ord + Debug, V: PartialEq + Debug>(kind: &str, live: BTreeMap<K, V>, rebuilt: BTreeMap<K, V>, out: &mut Vec<Difference>) {
    let show = |v: Option<&V>| v.map(|v| format!("{v:?}"));
    let keys: std::collections::BTreeSet<&K> = live.keys().chain(rebuilt.keys()).collect();
    for k in keys {
        let (a, b) = (live.get(k), rebuilt.get(k));
        if a != b {
            out.push(Difference { what: format!("{kind} {k:?}"), live: show(a), rebuilt: show(b) });
        }
    }
}

/// Every difference between `live` and `rebuilt`.
pub async fn compare(log: &dyn EventLog, live: &dyn ReadStore, rebuilt: &dyn ReadStore) -> Result<Vec<Difference>, Error> {
    let mut out = Vec::new();

    // Positions.
    let mut pos = (BTreeMap::new(), BTreeMap::new());
    for pr in projections::all() {
        for p in 0..log.partitions(pr.topic()).await? {
            let k = (pr.name(), pr.topic(), p);
            pos.0.insert(k, live.position(pr.name(), pr.topic(), p).await?);
            pos.1.insert(k, rebuilt.position(pr.name(), pr.topic(), p).await?);
        }
    }
    diff("position", pos.0, pos.1, &mut out);

    // Users, page by page.
    let mut users = (BTreeMap::new(), BTreeMap::new());
    for (store, into) in [(live, &mut users.0), (rebuilt, &mut users.1)] {
        for page in 1.. {
            let got = store.users(page, 1000).await?;
            let n = got.len();
            into.extend(got.into_iter().map(|u| (u.id.get(), u)));
            if n < 1000 {
                break;
            }
        }
    }
    diff("user", users.0, users.1, &mut out);

    // Links with their version, and each link's analytics.
    let all = LinkQuery { user_id: None, is_active: None, limit: usize::MAX };
    let ids: std::collections::BTreeSet<u64> =
        live.links(&all).await?.iter().chain(rebuilt.links(&all).await?.iter()).map(|l| l.id.get()).collect();
    let (mut links, mut clicks) = ((BTreeMap::new(), BTreeMap::new()), (BTreeMap::new(), BTreeMap::new()));
    for id in ids {
        let id = kurz_schemas::Id::new(id).map_err(|e| Error::Replay(e.to_string()))?;
        for (store, l, c) in [(live, &mut links.0, &mut clicks.0), (rebuilt, &mut links.1, &mut clicks.1)] {
            if let Some(v) = store.link(id).await? {
                l.insert(id.get(), v);
            }
            let analytics = (
                store.click_count(id).await?,
                store.click_counts(id, "", "~").await?,
                store.visitors_per_day(id, i64::MIN, i64::MAX).await?,
            );
            c.insert(id.get(), analytics);
        }
    }
    diff("link", links.0, links.1, &mut out);
    diff("link analytics (count, aggregates, visitors)", clicks.0, clicks.1, &mut out);

    // The domain registry.
    let registry = |v: Vec<kurz_schemas::Domain>| v.into_iter().map(|d| (d.host.clone(), d)).collect::<BTreeMap<_, _>>();
    diff("domain", registry(live.domains().await?), registry(rebuilt.domains().await?), &mut out);

    // The whole history.
    let everything = EventQuery { limit: usize::MAX, ..EventQuery::default() };
    let history = |v: Vec<kurz_schemas::HistoryEvent>| v.into_iter().map(|e| (e.id.get(), e)).collect::<BTreeMap<_, _>>();
    diff("event", history(live.history(&everything).await?), history(rebuilt.history(&everything).await?), &mut out);

    // The outcome of every command the events topic holds.
    let mut outcomes = (BTreeMap::new(), BTreeMap::new());
    for p in 0..log.partitions(topics::EVENTS).await? {
        let mut from = 0;
        loop {
            // What every reader keeps: a stale writer's append decided nothing.
            let read = kurz_storage::log::claims::read_settled(log, topics::EVENTS, p, from, 8192).await?;
            if read.records.is_empty() && read.next == from {
                break;
            }
            from = read.next;
            let ids: std::collections::BTreeSet<String> =
                read.records.iter().filter_map(|r| Event::decode(&r.payload).ok()).map(|e| e.command_id.0).collect();
            for id in ids {
                outcomes.0.insert(id.clone(), live.outcome(&id).await?);
                outcomes.1.insert(id.clone(), rebuilt.outcome(&id).await?);
            }
        }
    }
    diff("outcome", outcomes.0, outcomes.1, &mut out);
    Ok(out)
}
