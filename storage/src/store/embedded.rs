//! The embedded read store, on redb: one file, one table per read model plus
//! secondary-index tables, all written in one transaction per batch together with the
//! projection positions. Commits fsync (`Durability::Immediate`).

use super::{ApplyError, Attempt, EventQuery, LinkQuery, Mutation, ParkedRecord, ReadStore, StoreBatch, StoredOutcome, VersionedLink};
use crate::StorageError;
use async_trait::async_trait;
use kurz_schemas::{HistoryEvent, Id, Link, Ts, User};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const POSITIONS: TableDefinition<&str, u64> = TableDefinition::new("positions");
const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const USERS_BY_EMAIL: TableDefinition<&str, u64> = TableDefinition::new("users_by_email");
const LINKS: TableDefinition<u64, &[u8]> = TableDefinition::new("links");
const LINKS_BY_CODE: TableDefinition<&str, u64> = TableDefinition::new("links_by_code");
const LINKS_BY_OWNER: TableDefinition<(u64, u64), ()> = TableDefinition::new("links_by_owner");
const LINKS_BY_OWNER_URL: TableDefinition<(u64, &str, u64), ()> = TableDefinition::new("links_by_owner_url");
/// Codes of the links `robots.txt` lists ([`super::is_listed_crawlable`]), with their ids.
const LINKS_CRAWLABLE: TableDefinition<&str, u64> = TableDefinition::new("links_crawlable");
/// The domain registry: host (or `default`) to its entry's JSON.
const DOMAINS: TableDefinition<&str, &[u8]> = TableDefinition::new("domains");
const HISTORY: TableDefinition<u64, &[u8]> = TableDefinition::new("history");
const HISTORY_BY_URL: TableDefinition<(u64, u64), ()> = TableDefinition::new("history_by_url");
const HISTORY_BY_USER: TableDefinition<(u64, u64), ()> = TableDefinition::new("history_by_user");
const HISTORY_BY_TYPE: TableDefinition<(&str, u64), ()> = TableDefinition::new("history_by_type");
const CLICKS: TableDefinition<u64, u64> = TableDefinition::new("clicks");
const CLICK_COUNTS: TableDefinition<(u64, &str), u64> = TableDefinition::new("click_counts");
const CLICK_VISITORS: TableDefinition<(u64, i64, &str), ()> = TableDefinition::new("click_visitors");
const OUTCOMES: TableDefinition<&str, &[u8]> = TableDefinition::new("outcomes");
const OUTCOMES_BY_TIME: TableDefinition<(i64, &str), ()> = TableDefinition::new("outcomes_by_time");
/// Parked records by (topic, partition, key, offset), JSON bodies.
const PARKED: TableDefinition<(&str, u32, &str, u64), &[u8]> = TableDefinition::new("parked");
/// The projector's delivery count per "topic/partition": (offset, attempt).
const ATTEMPTS: TableDefinition<&str, (u64, u32)> = TableDefinition::new("attempts");
/// The latest claim of each log partition (`topic/partition`): [`ReadStore::claim`].
const CLAIMS: TableDefinition<&str, u64> = TableDefinition::new("claims");

/// Outcomes are kept this long for idempotent retries, then pruned.
pub const OUTCOME_RETENTION_MS: i64 = 24 * 3600 * 1000;

pub struct RedbStore {
    db: Arc<Database>,
    /// Bumped after every committed batch; outcome waiters watch it.
    generation: watch::Sender<u64>,
}

fn owner_key(owner: Option<Id>) -> u64 {
    owner.map(Id::get).unwrap_or(0)
}

fn claim_key(topic: &str, partition: u32) -> String {
    format!("{topic}/{partition}")
}

fn position_key(projection: &str, topic: &str, partition: u32) -> String {
    format!("{projection}\u{0}{topic}\u{0}{partition}")
}

impl RedbStore {
    pub fn open(path: &Path) -> Result<RedbStore, StorageError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = Database::create(path)?;
        let w = db.begin_write()?;
        w.open_table(POSITIONS)?;
        w.open_table(USERS)?;
        w.open_table(USERS_BY_EMAIL)?;
        w.open_table(LINKS)?;
        w.open_table(LINKS_BY_CODE)?;
        w.open_table(LINKS_BY_OWNER)?;
        w.open_table(LINKS_BY_OWNER_URL)?;
        w.open_table(LINKS_CRAWLABLE)?;
        w.open_table(DOMAINS)?;
        w.open_table(HISTORY)?;
        w.open_table(HISTORY_BY_URL)?;
        w.open_table(HISTORY_BY_USER)?;
        w.open_table(HISTORY_BY_TYPE)?;
        w.open_table(CLICKS)?;
        w.open_table(CLICK_COUNTS)?;
        w.open_table(CLICK_VISITORS)?;
        w.open_table(OUTCOMES)?;
        w.open_table(OUTCOMES_BY_TIME)?;
        w.open_table(PARKED)?;
        w.open_table(ATTEMPTS)?;
        w.open_table(CLAIMS)?;
        w.commit()?;
        Ok(RedbStore { db: Arc::new(db), generation: watch::Sender::new(0) })
    }
}

fn apply_batch(db: &Database, batch: &StoreBatch) -> Result<(), ApplyError> {
    let mut w = db.begin_write().map_err(StorageError::from)?;
    w.set_durability(Durability::Immediate).map_err(StorageError::from)?;
    {
        // Written only under the partition's latest claim, checked in the same
        // transaction as the positions: a stale writer lands nothing.
        let claims = w.open_table(CLAIMS).map_err(StorageError::from)?;
        for p in &batch.positions {
            let claimed =
                claims.get(claim_key(&p.topic, p.partition).as_str()).map_err(StorageError::from)?.map(|v| v.value()).unwrap_or(0);
            if claimed != batch.epoch {
                return Err(ApplyError::Fenced { topic: p.topic.clone(), partition: p.partition, claimed, epoch: batch.epoch });
            }
        }
    }
    {
        let mut pos = w.open_table(POSITIONS).map_err(StorageError::from)?;
        for p in &batch.positions {
            let key = position_key(&p.projection, &p.topic, p.partition);
            let stored = pos.get(key.as_str()).map_err(StorageError::from)?.map(|v| v.value()).unwrap_or(0);
            p.check(stored)?;
            pos.insert(key.as_str(), p.to).map_err(StorageError::from)?;
        }
    }
    if !batch.release.is_empty() {
        let mut parked = w.open_table(PARKED).map_err(StorageError::from)?;
        for id in &batch.release {
            let k = (id.topic.as_str(), id.partition, id.key.as_str(), id.offset);
            if parked.remove(k).map_err(StorageError::from)?.is_none() {
                return Err(ApplyError::NotParked(id.clone()));
            }
        }
    }
    // Rows that no other mutation reads (history, click counts, aggregates, visitors)
    // are written after the rest, each table opened once per batch; click counts and
    // aggregates are summed per key first, so a batch of clicks touches each row once.
    let mut history: Vec<&HistoryEvent> = Vec::new();
    let mut clicks: BTreeMap<u64, u64> = BTreeMap::new();
    let mut counts: BTreeMap<(u64, &str), u64> = BTreeMap::new();
    let mut visitors: Vec<(u64, i64, &str)> = Vec::new();
    for m in &batch.mutations {
        match m {
            Mutation::PutHistory(e) => history.push(e),
            Mutation::AddClicks { link_id, n } => *clicks.entry(link_id.get()).or_default() += n,
            Mutation::AddCount { link_id, name, n } => *counts.entry((link_id.get(), name.as_str())).or_default() += n,
            Mutation::AddVisitor { link_id, day, visitor } => visitors.push((link_id.get(), *day, visitor.as_str())),
            other => apply_mutation(&w, other)?,
        }
    }
    write_click_rows(&w, &history, &clicks, &counts, &visitors)?;
    prune_outcomes(&w)?;
    w.commit().map_err(StorageError::from)?;
    Ok(())
}

fn write_click_rows(
    w: &WriteTransaction,
    history: &[&HistoryEvent],
    clicks: &BTreeMap<u64, u64>,
    counts: &BTreeMap<(u64, &str), u64>,
    visitors: &[(u64, i64, &str)],
) -> Result<(), StorageError> {
    if !history.is_empty() {
        let (mut all, mut by_url, mut by_user, mut by_type) =
            (w.open_table(HISTORY)?, w.open_table(HISTORY_BY_URL)?, w.open_table(HISTORY_BY_USER)?, w.open_table(HISTORY_BY_TYPE)?);
        for e in history {
            all.insert(e.id.get(), serde_json::to_vec(e)?.as_slice())?;
            by_url.insert((e.url_id.get(), e.id.get()), ())?;
            if let Some(u) = e.user_id {
                by_user.insert((u.get(), e.id.get()), ())?;
            }
            by_type.insert((e.event_type.as_str(), e.id.get()), ())?;
        }
    }
    if !clicks.is_empty() {
        let mut t = w.open_table(CLICKS)?;
        for (&link, &n) in clicks {
            let cur = t.get(link)?.map(|v| v.value()).unwrap_or(0);
            t.insert(link, cur + n)?;
        }
    }
    if !counts.is_empty() {
        let mut t = w.open_table(CLICK_COUNTS)?;
        for (&key, &n) in counts {
            let cur = t.get(key)?.map(|v| v.value()).unwrap_or(0);
            t.insert(key, cur + n)?;
        }
    }
    if !visitors.is_empty() {
        let mut t = w.open_table(CLICK_VISITORS)?;
        for &key in visitors {
            t.insert(key, ())?;
        }
    }
    Ok(())
}

fn apply_mutation(w: &WriteTransaction, m: &Mutation) -> Result<(), StorageError> {
    match m {
        Mutation::PutUser(u) => {
            let mut users = w.open_table(USERS)?;
            let mut by_email = w.open_table(USERS_BY_EMAIL)?;
            let old = users.get(u.id.get())?.map(|v| serde_json::from_slice::<User>(v.value())).transpose()?;
            if let Some(old) = old {
                if old.email != u.email {
                    by_email.remove(old.email.as_str())?;
                }
            }
            users.insert(u.id.get(), serde_json::to_vec(u)?.as_slice())?;
            by_email.insert(u.email.as_str(), u.id.get())?;
        }
        Mutation::DeleteUser(u) => {
            let mut users = w.open_table(USERS)?;
            let mut by_email = w.open_table(USERS_BY_EMAIL)?;
            // The stored row names the e-mail: a deletion read after its user's key
            // was destroyed carries none.
            let stored = users.remove(u.id.get())?.map(|v| serde_json::from_slice::<User>(v.value())).transpose()?;
            for email in stored.map(|s| s.email).into_iter().chain([u.email.clone()]).filter(|e| !e.is_empty()) {
                let owner_of_email = by_email.get(email.as_str())?.map(|v| v.value());
                if owner_of_email == Some(u.id.get()) {
                    by_email.remove(email.as_str())?;
                }
            }
        }
        Mutation::PutLink(vl) => {
            let mut links = w.open_table(LINKS)?;
            let old = links.get(vl.link.id.get())?.map(|v| serde_json::from_slice::<VersionedLink>(v.value())).transpose()?;
            if let Some(old) = &old {
                if old.version > vl.version {
                    return Ok(()); // an older state never overwrites a newer one
                }
                unindex_link(w, &old.link)?;
            }
            links.insert(vl.link.id.get(), serde_json::to_vec(vl)?.as_slice())?;
            index_link(w, &vl.link)?;
        }
        Mutation::DeleteLink(vl) => {
            let mut links = w.open_table(LINKS)?;
            let old = links.remove(vl.link.id.get())?.map(|v| serde_json::from_slice::<VersionedLink>(v.value())).transpose()?;
            if let Some(old) = old {
                unindex_link(w, &old.link)?;
            }
        }
        // Batches write these through `write_click_rows`; one at a time, the same way.
        Mutation::PutHistory(e) => write_click_rows(w, &[e], &BTreeMap::new(), &BTreeMap::new(), &[])?,
        Mutation::AddClicks { link_id, n } => write_click_rows(w, &[], &BTreeMap::from([(link_id.get(), *n)]), &BTreeMap::new(), &[])?,
        Mutation::AddCount { link_id, name, n } => {
            write_click_rows(w, &[], &BTreeMap::new(), &BTreeMap::from([((link_id.get(), name.as_str()), *n)]), &[])?
        }
        Mutation::AddVisitor { link_id, day, visitor } => {
            write_click_rows(w, &[], &BTreeMap::new(), &BTreeMap::new(), &[(link_id.get(), *day, visitor.as_str())])?
        }
        Mutation::PutDomain(d) => {
            w.open_table(DOMAINS)?.insert(d.host.as_str(), serde_json::to_vec(d)?.as_slice())?;
        }
        Mutation::DeleteDomain(d) => {
            w.open_table(DOMAINS)?.remove(d.host.as_str())?;
        }
        Mutation::Park(r) => {
            w.open_table(PARKED)?.insert((r.topic.as_str(), r.partition, r.key.as_str(), r.offset), serde_json::to_vec(r)?.as_slice())?;
        }
        Mutation::Attempt { topic, partition, attempt } => {
            w.open_table(ATTEMPTS)?.insert(format!("{topic}/{partition}").as_str(), (attempt.offset, attempt.attempt))?;
        }
        Mutation::PutOutcome { command_id, outcome } => {
            let mut t = w.open_table(OUTCOMES)?;
            if t.get(command_id.as_str())?.is_none() {
                t.insert(command_id.as_str(), serde_json::to_vec(outcome)?.as_slice())?;
                w.open_table(OUTCOMES_BY_TIME)?.insert((outcome.at.0, command_id.as_str()), ())?;
            }
        }
    }
    Ok(())
}

fn index_link(w: &WriteTransaction, l: &Link) -> Result<(), StorageError> {
    let key = l.lookup_key();
    w.open_table(LINKS_BY_CODE)?.insert(key.as_ref(), l.id.get())?;
    w.open_table(LINKS_BY_OWNER)?.insert((owner_key(l.user_id), l.id.get()), ())?;
    w.open_table(LINKS_BY_OWNER_URL)?.insert((owner_key(l.user_id), l.original_url.as_str(), l.id.get()), ())?;
    if super::is_listed_crawlable(l) {
        w.open_table(LINKS_CRAWLABLE)?.insert(key.as_ref(), l.id.get())?;
    }
    Ok(())
}

fn unindex_link(w: &WriteTransaction, l: &Link) -> Result<(), StorageError> {
    let key = l.lookup_key();
    let mut by_code = w.open_table(LINKS_BY_CODE)?;
    let current = by_code.get(key.as_ref())?.map(|v| v.value());
    if current == Some(l.id.get()) {
        by_code.remove(key.as_ref())?;
    }
    w.open_table(LINKS_BY_OWNER)?.remove((owner_key(l.user_id), l.id.get()))?;
    w.open_table(LINKS_BY_OWNER_URL)?.remove((owner_key(l.user_id), l.original_url.as_str(), l.id.get()))?;
    let mut crawlable = w.open_table(LINKS_CRAWLABLE)?;
    if crawlable.get(key.as_ref())?.map(|v| v.value()) == Some(l.id.get()) {
        crawlable.remove(key.as_ref())?;
    }
    Ok(())
}

fn prune_outcomes(w: &WriteTransaction) -> Result<(), StorageError> {
    let cutoff = Ts::now().0 - OUTCOME_RETENTION_MS;
    let mut by_time = w.open_table(OUTCOMES_BY_TIME)?;
    let mut outcomes = w.open_table(OUTCOMES)?;
    let old: Vec<(i64, String)> = by_time
        .range((i64::MIN, "")..(cutoff, ""))?
        .take(256)
        .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_string())))
        .collect::<Result<_, _>>()?;
    for (t, id) in old {
        by_time.remove((t, id.as_str()))?;
        outcomes.remove(id.as_str())?;
    }
    Ok(())
}

impl RedbStore {
    fn get_json<T: serde::de::DeserializeOwned>(&self, def: TableDefinition<u64, &[u8]>, id: u64) -> Result<Option<T>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(def)?;
        let v = t.get(id)?;
        Ok(v.map(|v| serde_json::from_slice(v.value())).transpose()?)
    }
}

#[async_trait]
impl ReadStore for RedbStore {
    async fn parked(&self) -> Result<Vec<ParkedRecord>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(PARKED)?;
        t.iter()?.map(|e| Ok(serde_json::from_slice(e?.1.value())?)).collect()
    }

    async fn attempt(&self, topic: &str, partition: u32) -> Result<Option<Attempt>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(ATTEMPTS)?;
        Ok(t.get(format!("{topic}/{partition}").as_str())?.map(|v| {
            let (offset, attempt) = v.value();
            Attempt { offset, attempt }
        }))
    }

    async fn position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(POSITIONS)?;
        Ok(t.get(position_key(projection, topic, partition).as_str())?.map(|v| v.value()).unwrap_or(0))
    }

    async fn claim(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let (db, key) = (self.db.clone(), claim_key(topic, partition));
        let claim = move || -> Result<u64, StorageError> {
            let mut w = db.begin_write()?;
            w.set_durability(Durability::Immediate)?;
            let epoch = {
                let mut t = w.open_table(CLAIMS)?;
                let epoch = t.get(key.as_str())?.map(|v| v.value()).unwrap_or(0) + 1;
                t.insert(key.as_str(), epoch)?;
                epoch
            };
            w.commit()?;
            Ok(epoch)
        };
        tokio::task::spawn_blocking(claim).await.map_err(StorageError::engine)?
    }

    async fn apply(&self, batch: StoreBatch) -> Result<(), ApplyError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || apply_batch(&db, &batch)).await.map_err(|e| ApplyError::Storage(StorageError::engine(e)))??;
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    async fn user(&self, id: Id) -> Result<Option<User>, StorageError> {
        self.get_json(USERS, id.get())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StorageError> {
        let id = {
            let r = self.db.begin_read()?;
            let t = r.open_table(USERS_BY_EMAIL)?;
            let v = t.get(email)?.map(|v| v.value());
            v
        };
        match id {
            Some(id) => self.get_json(USERS, id),
            None => Ok(None),
        }
    }

    async fn users(&self, page: usize, per_page: usize) -> Result<Vec<User>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(USERS)?;
        let skip = page.saturating_sub(1).saturating_mul(per_page);
        t.iter()?.skip(skip).take(per_page).map(|e| Ok(serde_json::from_slice(e?.1.value())?)).collect()
    }

    async fn link(&self, id: Id) -> Result<Option<VersionedLink>, StorageError> {
        self.get_json(LINKS, id.get())
    }

    async fn link_by_code(&self, code: &str) -> Result<Option<VersionedLink>, StorageError> {
        let r = self.db.begin_read()?;
        let id = r.open_table(LINKS_BY_CODE)?.get(code)?.map(|v| v.value());
        let Some(id) = id else { return Ok(None) };
        let t = r.open_table(LINKS)?;
        let v = t.get(id)?;
        Ok(v.map(|v| serde_json::from_slice(v.value())).transpose()?)
    }

    async fn active_link_for(&self, owner: Option<Id>, url: &str) -> Result<Option<Link>, StorageError> {
        let r = self.db.begin_read()?;
        let idx = r.open_table(LINKS_BY_OWNER_URL)?;
        let links = r.open_table(LINKS)?;
        let o = owner_key(owner);
        for e in idx.range((o, url, 0u64)..=(o, url, u64::MAX))? {
            let id = e?.0.value().2;
            if let Some(v) = links.get(id)? {
                let vl: VersionedLink = serde_json::from_slice(v.value())?;
                if vl.link.is_active {
                    return Ok(Some(vl.link));
                }
            }
        }
        Ok(None)
    }

    async fn crawlable_codes(&self, limit: usize) -> Result<Vec<String>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(LINKS_CRAWLABLE)?;
        t.iter()?.take(limit).map(|e| Ok(e?.0.value().to_string())).collect()
    }

    async fn domains(&self) -> Result<Vec<kurz_schemas::Domain>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(DOMAINS)?;
        t.iter()?.map(|e| Ok(serde_json::from_slice(e?.1.value())?)).collect()
    }

    async fn domain(&self, host: &str) -> Result<Option<kurz_schemas::Domain>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(DOMAINS)?;
        let v = t.get(host)?;
        Ok(v.map(|v| serde_json::from_slice(v.value())).transpose()?)
    }

    async fn links(&self, q: &LinkQuery) -> Result<Vec<Link>, StorageError> {
        let r = self.db.begin_read()?;
        let links = r.open_table(LINKS)?;
        let keep = |l: &Link| q.is_active.is_none_or(|a| l.is_active == a);
        let mut out = Vec::new();
        match q.user_id {
            Some(u) => {
                let idx = r.open_table(LINKS_BY_OWNER)?;
                for e in idx.range((u.get(), 0u64)..=(u.get(), u64::MAX))? {
                    if out.len() >= q.limit {
                        break;
                    }
                    let id = e?.0.value().1;
                    if let Some(v) = links.get(id)? {
                        let vl: VersionedLink = serde_json::from_slice(v.value())?;
                        if keep(&vl.link) {
                            out.push(vl.link);
                        }
                    }
                }
            }
            None => {
                for e in links.iter()? {
                    if out.len() >= q.limit {
                        break;
                    }
                    let vl: VersionedLink = serde_json::from_slice(e?.1.value())?;
                    if keep(&vl.link) {
                        out.push(vl.link);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn history_event(&self, id: Id) -> Result<Option<HistoryEvent>, StorageError> {
        self.get_json(HISTORY, id.get())
    }

    async fn history(&self, q: &EventQuery) -> Result<Vec<HistoryEvent>, StorageError> {
        let r = self.db.begin_read()?;
        let rows = r.open_table(HISTORY)?;
        let keep = |e: &HistoryEvent| {
            q.url_id.is_none_or(|u| e.url_id == u)
                && q.user_id.is_none_or(|u| e.user_id == Some(u))
                && q.event_type.as_deref().is_none_or(|t| e.event_type == t)
        };
        let mut out = Vec::new();
        let push = |v: &[u8], out: &mut Vec<HistoryEvent>| -> Result<(), StorageError> {
            let e: HistoryEvent = serde_json::from_slice(v)?;
            if keep(&e) {
                out.push(e);
            }
            Ok(())
        };
        // Pick the narrowest index the query allows; filter the rest.
        let ids: Box<dyn Iterator<Item = Result<u64, StorageError>>> = if let Some(u) = q.url_id {
            let t = r.open_table(HISTORY_BY_URL)?;
            Box::new(t.range((u.get(), 0u64)..=(u.get(), u64::MAX))?.map(|e| Ok(e?.0.value().1)))
        } else if let Some(u) = q.user_id {
            let t = r.open_table(HISTORY_BY_USER)?;
            Box::new(t.range((u.get(), 0u64)..=(u.get(), u64::MAX))?.map(|e| Ok(e?.0.value().1)))
        } else if let Some(ty) = q.event_type.as_deref() {
            let t = r.open_table(HISTORY_BY_TYPE)?;
            Box::new(t.range((ty, 0u64)..=(ty, u64::MAX))?.map(|e| Ok(e?.0.value().1)))
        } else {
            for e in rows.iter()? {
                if out.len() >= q.limit {
                    break;
                }
                push(e?.1.value(), &mut out)?;
            }
            return Ok(out);
        };
        for id in ids {
            if out.len() >= q.limit {
                break;
            }
            if let Some(v) = rows.get(id?)? {
                push(v.value(), &mut out)?;
            }
        }
        Ok(out)
    }

    async fn click_counts(&self, link_id: Id, from: &str, to: &str) -> Result<Vec<(String, u64)>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(CLICK_COUNTS)?;
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for row in t.range((link_id.get(), from)..(link_id.get(), to))? {
            let (k, v) = row?;
            out.push((k.value().1.to_string(), v.value()));
        }
        Ok(out)
    }

    async fn visitors_per_day(&self, link_id: Id, from_day: i64, to_day: i64) -> Result<Vec<(i64, u64)>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(CLICK_VISITORS)?;
        let mut out: Vec<(i64, u64)> = Vec::new();
        if from_day >= to_day {
            return Ok(out);
        }
        for row in t.range((link_id.get(), from_day, "")..(link_id.get(), to_day, ""))? {
            let (k, _) = row?;
            let day = k.value().1;
            match out.last_mut() {
                Some((d, n)) if *d == day => *n += 1,
                _ => out.push((day, 1)),
            }
        }
        Ok(out)
    }

    async fn click_count(&self, link_id: Id) -> Result<u64, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(CLICKS)?;
        let v = t.get(link_id.get())?.map(|v| v.value()).unwrap_or(0);
        Ok(v)
    }

    async fn outcome(&self, command_id: &str) -> Result<Option<StoredOutcome>, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(OUTCOMES)?;
        let v = t.get(command_id)?;
        Ok(v.map(|v| serde_json::from_slice(v.value())).transpose()?)
    }

    async fn wait_outcome(&self, command_id: &str, timeout: Duration) -> Result<Option<StoredOutcome>, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut gen = self.generation.subscribe();
        loop {
            gen.borrow_and_update();
            if let Some(o) = self.outcome(command_id).await? {
                return Ok(Some(o));
            }
            if tokio::time::timeout_at(deadline, gen.changed()).await.is_err() {
                return Ok(None);
            }
        }
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.db.begin_read()?;
        Ok(())
    }
}
