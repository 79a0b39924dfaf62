//! The write path: guard positions, write mutations as absolute rows, write positions
//! last. Why this is safe without a transaction is in the module doc of [`super`].

use super::fence::Stamps;
use super::{engine, key, owner_key, signed, unsigned, ScyllaStore, ALL};
use crate::store::{is_listed_crawlable, ApplyError, Mutation, ParkedId, StoreBatch};
use crate::StorageError;
use futures::{StreamExt, TryStreamExt};
use kurz_schemas::{HistoryEvent, Id, Link, User};
use std::collections::HashMap;
use std::ops::ControlFlow;

/// Lanes of one batch written at once (and users' old rows read at once).
const LANES_IN_FLIGHT: usize = 32;

/// How a batch's click counts tell rows of an unsettled attempt (one whose positions
/// never moved: its writer died, paused or was fenced after its rows) from settled ones,
/// from the row alone.
///
/// Each count row says which offsets of its source it counts: `clicks` is the count of
/// every offset below `through` (the end of the batch that wrote it), `base` the count
/// below `batch_from` (its start). Every row a writer wrote is exact for those two
/// offsets, settled or not: the same log gives the same counts. A batch that starts at
/// `from` (where the position stands: it checked) adds its clicks to
/// - `clicks` if `from >= through`: the row counts nothing at or above `from`. Any
///   click of the link between `through` and `from` was counted by a settled batch,
///   whose row a later one can only replace with a row that starts at or above that
///   batch's end;
/// - `base` if `batch_from <= from < through`: the row comes from an attempt that went
///   past the position and never settled, and none of the link's clicks lie between
///   its start and `from` (a settled batch that counted one would have replaced it);
/// - `clicks` if `from < batch_from`: only a row of a writer that checked the position
///   after this batch did, so this batch is stale, and the newer row wins over its
///   write by timestamp whatever it writes.
///
/// The rule needs no memory of earlier batches, so a run that ends (fenced, failed,
/// restarted) between finding an unsettled row and replacing it loses nothing. A
/// re-driven parked record counts under a source of its own and spans one offset: a
/// re-run after a crash recomputes the same sum, records of other offsets add to it.
/// Rows written before `through` existed count as if it were `batch_from + 1` (the rule
/// those rows were written under).
struct Tally {
    source: String,
    from: i64,
    through: i64,
}

/// A count row as read: `(clicks, base, batch_from, through)`.
type CountRow = (i64, i64, i64, Option<i64>);

impl Tally {
    /// The count a batch adds to, given the row it found ([`Tally`]).
    fn base(tally: Option<&Tally>, row: Option<CountRow>) -> i64 {
        match (row, tally) {
            (None, _) => 0,
            (Some((_, base, from, through)), Some(t)) if from <= t.from && t.from < through.unwrap_or(from + 1) => base,
            (Some((clicks, ..)), _) => clicks,
        }
    }
}

pub(super) fn log_partition(partition: u32) -> Result<i32, StorageError> {
    i32::try_from(partition).map_err(|_| StorageError::Engine(format!("log partition {partition} does not fit a CQL int")))
}

/// The primary key of a parked record's row.
fn parked_key(id: &ParkedId) -> Result<(i32, &str, i32, &str, i64), StorageError> {
    Ok((ALL, id.topic.as_str(), log_partition(id.partition)?, id.key.as_str(), signed(id.offset, "offset")?))
}

impl ScyllaStore {
    pub(super) async fn apply_batch(&self, batch: &StoreBatch) -> Result<(), ApplyError> {
        // 1. The batch's writer must hold its partitions' latest claim (its rows then
        //    carry timestamps of its lease) ...
        let at = self.check_claims(&batch.positions, batch.epoch).await?;
        let tally = Self::tally(batch)?;
        let applied = self.apply_stamped(batch, &at, tally.as_ref()).await;
        self.spent(&batch.positions, batch.epoch, &at);
        applied
    }

    /// The batch's [`Tally`], if it counts under a source of its own.
    fn tally(batch: &StoreBatch) -> Result<Option<Tally>, StorageError> {
        let from = batch.positions.iter().map(|p| p.from).min();
        let to = batch.positions.iter().map(|p| p.to).min();
        Ok(match (batch.positions.first(), from, to, batch.release.first()) {
            (Some(p), Some(from), Some(to), _) => Some(Tally {
                source: format!("{}/{}", p.topic, p.partition),
                from: signed(from, "offset")?,
                through: signed(to, "offset")?,
            }),
            // A re-driven parked record counts under a source of its own, keyed by its
            // offset, so re-running it after a crash recomputes the same sum.
            (None, _, _, Some(r)) => {
                let from = signed(r.offset, "offset")?;
                Some(Tally { source: format!("parked:{}/{}", r.topic, r.partition), from, through: from.saturating_add(1) })
            }
            _ => None,
        })
    }

    async fn apply_stamped(&self, batch: &StoreBatch, at: &Stamps, tally: Option<&Tally>) -> Result<(), ApplyError> {
        // ... and every position must be where the batch starts, taken by its claim
        // (from then on no stale writer moves it), or nothing is written.
        for p in &batch.positions {
            self.take_position(p, batch.epoch).await?;
        }
        let topic = batch.positions.first().map_or("", |p| p.topic.as_str());
        self.held(super::Hold::BeforeRows, topic).await;
        // ... and every parked record it releases must still be parked.
        for id in &batch.release {
            let row: Option<(String,)> = self.one(&self.st.parked_one, parked_key(id)?).await?;
            if row.is_none() {
                return Err(ApplyError::NotParked(id.clone()));
            }
        }
        // 2. The mutations: lanes that touch disjoint rows run concurrently, each in
        //    batch order; clicks summed per link and written once.
        let mut clicks: Vec<(Id, u64)> = Vec::new();
        let mut counts: HashMap<(Id, &str), u64> = HashMap::new();
        let mut visitors = Vec::new();
        for m in &batch.mutations {
            match m {
                Mutation::AddClicks { link_id, n } => match clicks.iter_mut().find(|(l, _)| l == link_id) {
                    Some((_, total)) => *total += n,
                    None => clicks.push((*link_id, *n)),
                },
                Mutation::AddCount { link_id, name, n } => *counts.entry((*link_id, name.as_str())).or_default() += n,
                Mutation::AddVisitor { link_id, day, visitor } => visitors.push((*link_id, *day, visitor.as_str())),
                _ => {}
            }
        }
        let lanes: Vec<_> = self.lanes(&batch.mutations).await?.into_iter().map(|lane| self.apply_lane(lane, at)).collect();
        futures::stream::iter(lanes).buffer_unordered(LANES_IN_FLIGHT).try_collect::<()>().await?;
        // Outcomes only once the state they answer for is written: a waiting writer
        // answers when it sees its outcome, and its next read must see the state.
        let outcomes: Vec<_> = batch
            .mutations
            .iter()
            .filter(|m| matches!(m, Mutation::PutOutcome { .. } | Mutation::Park(_) | Mutation::Attempt { .. }))
            .map(|m| self.apply_mutation(m, at))
            .collect();
        futures::stream::iter(outcomes).buffer_unordered(LANES_IN_FLIGHT).try_collect::<()>().await?;
        for (link_id, n) in clicks {
            self.add_clicks(link_id, n, tally, at).await?;
        }
        let adds: Vec<_> = counts.into_iter().map(|((link_id, name), n)| self.add_count(link_id, name, n, tally, at)).collect();
        futures::stream::iter(adds).buffer_unordered(LANES_IN_FLIGHT).try_collect::<()>().await?;
        let puts: Vec<_> = visitors
            .into_iter()
            .map(|(link_id, day, visitor)| self.write(&self.st.put_visitor, at, (key(link_id), day, visitor)))
            .collect();
        futures::stream::iter(puts).buffer_unordered(LANES_IN_FLIGHT).try_collect::<()>().await?;
        self.held(super::Hold::BeforePositions, topic).await;
        // 3. The released parked records and the positions, last.
        for id in &batch.release {
            // Released and parked again in this batch (a counted attempt): keep it.
            if !batch.mutations.iter().any(|m| matches!(m, Mutation::Park(r) if r.id() == *id)) {
                self.exec(&self.st.delete_parked, parked_key(id)?).await?;
            }
        }
        for p in &batch.positions {
            self.move_position(p, batch.epoch).await?;
        }
        Ok(())
    }

    /// Splits a batch's mutations (clicks and outcomes aside) into lanes whose rows are
    /// disjoint, each lane in batch order. A link and a history event are rows of
    /// their own (codes are never reused); users also share the email index, so users
    /// whose old or new emails meet share a lane (old emails are read first, at once).
    async fn lanes<'a>(&self, muts: &'a [Mutation]) -> Result<Vec<Vec<&'a Mutation>>, StorageError> {
        let mut user_ids: Vec<Id> = muts
            .iter()
            .filter_map(|m| match m {
                Mutation::PutUser(u) | Mutation::DeleteUser(u) => Some(u.id),
                _ => None,
            })
            .collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let reads: Vec<_> = user_ids.into_iter().map(|id| self.stored_email(id)).collect();
        let olds: HashMap<Id, Option<String>> = futures::stream::iter(reads).buffer_unordered(LANES_IN_FLIGHT).try_collect().await?;

        let mut lanes: Vec<Vec<&Mutation>> = Vec::new();
        let mut lane_of: HashMap<String, usize> = HashMap::new();
        for m in muts {
            let keys: Vec<String> = match m {
                Mutation::PutUser(u) | Mutation::DeleteUser(u) => {
                    let mut k = vec![format!("user:{}", u.id), format!("email:{}", u.email)];
                    if let Some(Some(old)) = olds.get(&u.id) {
                        k.push(format!("email:{old}"));
                    }
                    k
                }
                Mutation::PutLink(vl) | Mutation::DeleteLink(vl) => vec![format!("link:{}", vl.link.id)],
                Mutation::PutHistory(e) => vec![format!("history:{}", e.id)],
                Mutation::PutDomain(d) | Mutation::DeleteDomain(d) => vec![format!("domain:{}", d.host)],
                Mutation::PutOutcome { .. }
                | Mutation::AddClicks { .. }
                | Mutation::AddCount { .. }
                | Mutation::AddVisitor { .. }
                | Mutation::Park(_)
                | Mutation::Attempt { .. } => continue,
            };
            let mut met: Vec<usize> = keys.iter().filter_map(|k| lane_of.get(k).copied()).collect();
            met.sort_unstable();
            met.dedup();
            let lane = match met.first() {
                Some(&l) => l,
                None => {
                    lanes.push(Vec::new());
                    lanes.len() - 1
                }
            };
            // Lanes this mutation joins are merged: their members touch disjoint rows,
            // so their relative order does not matter; this one goes after all of them.
            for &other in met.iter().skip(1) {
                let moved = std::mem::take(&mut lanes[other]);
                lanes[lane].extend(moved);
                lane_of.values_mut().filter(|v| **v == other).for_each(|v| *v = lane);
            }
            lanes[lane].push(m);
            for k in keys {
                lane_of.insert(k, lane);
            }
        }
        lanes.retain(|l| !l.is_empty());
        Ok(lanes)
    }

    async fn stored_email(&self, id: Id) -> Result<(Id, Option<String>), StorageError> {
        let row: Option<(String, String)> = self.one(&self.st.user, (key(id),)).await?;
        Ok((id, row.map(|(email, _)| email)))
    }

    async fn apply_lane(&self, lane: Vec<&Mutation>, at: &Stamps) -> Result<(), StorageError> {
        for m in lane {
            self.apply_mutation(m, at).await?;
        }
        Ok(())
    }

    async fn apply_mutation(&self, m: &Mutation, at: &Stamps) -> Result<(), StorageError> {
        let st = &self.st;
        match m {
            Mutation::PutUser(u) => {
                let id = key(u.id);
                let body = serde_json::to_string(u)?;
                let old: Option<(String, String)> = self.one(&st.user, (id,)).await?;
                if let Some((old_email, _)) = old {
                    if old_email != u.email {
                        self.write(&st.delete_user_by_email, at, (old_email.as_str(),)).await?;
                    }
                }
                tokio::try_join!(
                    self.write(&st.put_user_by_email, at, (u.email.as_str(), id)),
                    self.write(&st.put_users_all, at, (ALL, id, body.as_str())),
                )?;
                self.write(&st.put_user, at, (id, u.email.as_str(), body.as_str())).await?;
            }
            Mutation::DeleteUser(u) => self.delete_user(u, at).await?,
            Mutation::PutLink(vl) => {
                let old = self.stored_link(vl.link.id).await?;
                if let Some((version, old)) = &old {
                    if *version > vl.version {
                        return Ok(()); // an older state never overwrites a newer one
                    }
                    self.unindex_link(old, Some(&vl.link), at).await?;
                }
                let (id, version) = (key(vl.link.id), signed(vl.version, "link version")?);
                let body = serde_json::to_string(&vl.link)?;
                let l = &vl.link;
                let lookup = l.lookup_key();
                tokio::try_join!(
                    self.write(&st.put_link_by_code, at, (lookup.as_ref(), id, version, body.as_str())),
                    self.write(&st.put_link_by_owner, at, (owner_key(l.user_id), id, body.as_str())),
                    self.write(&st.put_link_by_owner_url, at, (owner_key(l.user_id), l.original_url.as_str(), id, body.as_str())),
                    self.write(&st.put_links_all, at, (ALL, id, body.as_str())),
                    async {
                        match is_listed_crawlable(l) {
                            true => self.write(&st.put_link_crawlable, at, (ALL, lookup.as_ref(), id)).await,
                            false => Ok(()),
                        }
                    },
                )?;
                // The source row last: until it is written a re-run still sees the old
                // version and redoes the index changes above.
                self.write(&st.put_link, at, (id, version, body.as_str())).await?;
            }
            Mutation::DeleteLink(vl) => {
                if let Some((_, old)) = self.stored_link(vl.link.id).await? {
                    self.unindex_link(&old, None, at).await?;
                    self.write(&st.delete_links_all, at, (ALL, key(old.id))).await?;
                }
                self.write(&st.delete_link, at, (key(vl.link.id),)).await?;
            }
            Mutation::PutHistory(e) => self.put_history(e, at).await?,
            Mutation::PutDomain(d) => self.write(&st.put_domain, at, (ALL, d.host.as_str(), serde_json::to_string(d)?.as_str())).await?,
            Mutation::DeleteDomain(d) => self.write(&st.delete_domain, at, (ALL, d.host.as_str())).await?,
            Mutation::AddClicks { link_id, n } => self.add_clicks(*link_id, *n, None, at).await?,
            Mutation::AddCount { link_id, name, n } => self.add_count(*link_id, name, *n, None, at).await?,
            Mutation::AddVisitor { link_id, day, visitor } => {
                self.write(&st.put_visitor, at, (key(*link_id), *day, visitor.as_str())).await?
            }
            Mutation::Park(r) => {
                let id = r.id();
                let (bucket, topic, partition, rkey, offset) = parked_key(&id)?;
                // Parked records and attempt marks are hints shared with the watchdog's
                // unclaimed re-drives: the driver's clock orders them, not the lease (a
                // lease ahead of the clock would outlive the re-drive's delete).
                self.exec(&st.put_parked, (bucket, topic, partition, rkey, offset, serde_json::to_string(r)?.as_str())).await?;
            }
            Mutation::Attempt { topic, partition, attempt } => {
                let values = (topic.as_str(), log_partition(*partition)?, signed(attempt.offset, "offset")?, attempt.attempt as i32);
                self.exec(&st.put_attempt, values).await?;
            }
            Mutation::PutOutcome { command_id, outcome } => {
                // The first outcome of a command id is kept.
                let stored: Option<(String,)> = self.one(&st.outcome, (command_id.as_str(),)).await?;
                if stored.is_none() {
                    self.write(&st.put_outcome, at, (command_id.as_str(), serde_json::to_string(outcome)?.as_str())).await?;
                }
            }
        }
        Ok(())
    }

    async fn delete_user(&self, u: &User, at: &Stamps) -> Result<(), StorageError> {
        let st = &self.st;
        let id = key(u.id);
        // The stored row names the e-mail: a deletion read after its user's key was
        // destroyed carries none.
        let (_, stored) = self.stored_email(u.id).await?;
        let mut emails: Vec<&str> = stored.as_deref().into_iter().chain([u.email.as_str()]).filter(|e| !e.is_empty()).collect();
        emails.dedup();
        for email in emails {
            let owner_of_email: Option<(i64,)> = self.one(&st.user_by_email, (email,)).await?;
            if owner_of_email == Some((id,)) {
                self.write(&st.delete_user_by_email, at, (email,)).await?;
            }
        }
        self.write(&st.delete_users_all, at, (ALL, id)).await?;
        self.write(&st.delete_user, at, (id,)).await
    }

    async fn stored_link(&self, id: Id) -> Result<Option<(u64, Link)>, StorageError> {
        let row: Option<(i64, String)> = self.one(&self.st.link, (key(id),)).await?;
        row.map(|(v, body)| Ok((unsigned(v, "link version")?, serde_json::from_str(&body)?))).transpose()
    }

    /// Removes the index rows of `old` that `new` (if any) will not overwrite. Rows the
    /// new state rewrites are left alone, so a delete and an insert never race for one
    /// row.
    async fn unindex_link(&self, old: &Link, new: Option<&Link>, at: &Stamps) -> Result<(), StorageError> {
        let st = &self.st;
        let id = key(old.id);
        let lookup = old.lookup_key();
        if new.is_none_or(|n| n.lookup_key() != lookup) {
            let holder: Option<(i64, i64, String)> = self.one(&st.link_by_code, (lookup.as_ref(),)).await?;
            if holder.is_some_and(|(holder, _, _)| holder == id) {
                self.write(&st.delete_link_by_code, at, (lookup.as_ref(),)).await?;
            }
        }
        if new.is_none_or(|n| n.user_id != old.user_id) {
            self.write(&st.delete_link_by_owner, at, (owner_key(old.user_id), id)).await?;
        }
        if new.is_none_or(|n| n.user_id != old.user_id || n.original_url != old.original_url) {
            self.write(&st.delete_link_by_owner_url, at, (owner_key(old.user_id), old.original_url.as_str(), id)).await?;
        }
        // Keyed by id too: exact, with no read of who holds the code.
        if is_listed_crawlable(old) && new.is_none_or(|n| !is_listed_crawlable(n) || n.lookup_key() != lookup) {
            self.write(&st.delete_link_crawlable, at, (ALL, lookup.as_ref(), id)).await?;
        }
        Ok(())
    }

    async fn put_history(&self, e: &HistoryEvent, at: &Stamps) -> Result<(), StorageError> {
        let st = &self.st;
        let id = key(e.id);
        let body = serde_json::to_string(e)?;
        let body = body.as_str();
        let by_user = async {
            match e.user_id {
                Some(u) => self.write(&st.put_history_by_user, at, (key(u), id, body)).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(
            self.write(&st.put_history, at, (id, body)),
            self.write(&st.put_history_by_link, at, (key(e.url_id), id, body)),
            by_user,
            self.write(&st.put_history_by_type, at, (e.event_type.as_str(), id, body)),
            self.write(&st.put_history_all, at, (ALL, id, body)),
        )?;
        Ok(())
    }

    /// Adds `n` to the click count of `link_id`: read, add, write an absolute value,
    /// from the row's `base` where an unsettled attempt wrote it ([`Tally`]).
    async fn add_clicks(&self, link_id: Id, n: u64, tally: Option<&Tally>, at: &Stamps) -> Result<(), StorageError> {
        let source = tally.map_or("", |t| t.source.as_str());
        let row = self.click_rows(link_id).await?.into_iter().find(|r| r.0 == source).map(|(_, c, b, f, t)| (c, b, f, t));
        let (base, total, from, through) = Self::tallied(tally, row, n)?;
        self.write(&self.st.put_clicks, at, (key(link_id), source, total, base, from, through)).await
    }

    /// Adds `n` to aggregate `name` of `link_id`, as [`Self::add_clicks`] does.
    async fn add_count(&self, link_id: Id, name: &str, n: u64, tally: Option<&Tally>, at: &Stamps) -> Result<(), StorageError> {
        let source = tally.map_or("", |t| t.source.as_str());
        let mut row = None;
        self.each(&self.st.aggregate, (key(link_id), name), |r: (String, i64, i64, i64, Option<i64>)| {
            if r.0 == source {
                row = Some((r.1, r.2, r.3, r.4));
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        let (base, total, from, through) = Self::tallied(tally, row, n)?;
        self.write(&self.st.put_aggregate, at, (key(link_id), name, source, total, base, from, through)).await
    }

    /// The row a batch writes: `(base, clicks, batch_from, through)` after adding `n`.
    fn tallied(tally: Option<&Tally>, row: Option<CountRow>, n: u64) -> Result<(i64, i64, i64, i64), StorageError> {
        let base = Tally::base(tally, row);
        let total = base.checked_add(signed(n, "click count")?).ok_or_else(|| engine("click count overflows a CQL bigint"))?;
        let (from, through) = tally.map_or((-1, -1), |t| (t.from, t.through));
        Ok((base, total, from, through))
    }

    /// `(source, clicks, base, batch_from, through)` of every click-count row of
    /// `link_id`.
    pub(super) async fn click_rows(&self, link_id: Id) -> Result<Vec<(String, i64, i64, i64, Option<i64>)>, StorageError> {
        let mut rows = Vec::new();
        self.each(&self.st.clicks, (key(link_id),), |r: (String, i64, i64, i64, Option<i64>)| {
            rows.push(r);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(rows)
    }
}
