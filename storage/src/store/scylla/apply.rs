//! The write path: guard positions, write mutations as absolute rows, write positions
//! last. Why this is safe without a transaction is in the module doc of [`super`].

use super::{engine, key, owner_key, signed, unsigned, ScyllaStore, ALL};
use crate::store::{ApplyError, Mutation, ParkedId, StoreBatch};
use crate::StorageError;
use futures::{StreamExt, TryStreamExt};
use kurz_schemas::{HistoryEvent, Id, Link, User};
use std::collections::HashMap;
use std::ops::ControlFlow;

/// Lanes of one batch written at once (and users' old rows read at once).
const LANES_IN_FLIGHT: usize = 32;

/// Where a batch's clicks come from and which batch it is: `(source, batch_from)`.
/// `batch_from` is the lowest `from` of the batch's positions; it only repeats when a
/// batch whose positions were never written is re-applied.
type ClickSource = (String, i64);

pub(super) fn log_partition(partition: u32) -> Result<i32, StorageError> {
    i32::try_from(partition).map_err(|_| StorageError::Engine(format!("log partition {partition} does not fit a CQL int")))
}

/// The primary key of a parked record's row.
fn parked_key(id: &ParkedId) -> Result<(i32, &str, i32, &str, i64), StorageError> {
    Ok((ALL, id.topic.as_str(), log_partition(id.partition)?, id.key.as_str(), signed(id.offset, "offset")?))
}

impl ScyllaStore {
    pub(super) async fn apply_batch(&self, batch: &StoreBatch) -> Result<(), ApplyError> {
        // 1. The batch's writer must hold its partitions' latest claim, and every
        //    position must be where the batch starts, or nothing is written.
        self.check_claims(&batch.positions, batch.epoch).await?;
        // Whether each position already has a fenced row: step 3 moves it by that.
        let mut fenced = Vec::with_capacity(batch.positions.len());
        for p in &batch.positions {
            let (stored, has_row) = self.position_row(&p.projection, &p.topic, p.partition).await?;
            p.check(stored)?;
            fenced.push(has_row);
        }
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
        let lanes: Vec<_> = self.lanes(&batch.mutations).await?.into_iter().map(|lane| self.apply_lane(lane)).collect();
        futures::stream::iter(lanes).buffer_unordered(LANES_IN_FLIGHT).try_collect::<()>().await?;
        // Outcomes only once the state they answer for is written: a waiting writer
        // answers when it sees its outcome, and its next read must see the state.
        let outcomes: Vec<_> = batch
            .mutations
            .iter()
            .filter(|m| matches!(m, Mutation::PutOutcome { .. } | Mutation::Park(_) | Mutation::Attempt { .. }))
            .map(|m| self.apply_mutation(m))
            .collect();
        futures::stream::iter(outcomes).buffer_unordered(LANES_IN_FLIGHT).try_collect::<()>().await?;
        // A re-driven parked record counts under a source of its own, keyed by its
        // offset, so re-running it after a crash recomputes the same sum.
        let source = match (batch.positions.first(), batch.positions.iter().map(|p| p.from).min(), batch.release.first()) {
            (Some(p), Some(from), _) => Some((format!("{}/{}", p.topic, p.partition), signed(from, "offset")?)),
            (None, _, Some(r)) => Some((format!("parked:{}/{}", r.topic, r.partition), signed(r.offset, "offset")?)),
            _ => None,
        };
        for (link_id, n) in clicks {
            self.add_clicks(link_id, n, source.as_ref()).await?;
        }
        let adds: Vec<_> = counts.into_iter().map(|((link_id, name), n)| self.add_count(link_id, name, n, source.as_ref())).collect();
        futures::stream::iter(adds).buffer_unordered(LANES_IN_FLIGHT).try_collect::<()>().await?;
        let puts: Vec<_> =
            visitors.into_iter().map(|(link_id, day, visitor)| self.exec(&self.st.put_visitor, (key(link_id), day, visitor))).collect();
        futures::stream::iter(puts).buffer_unordered(LANES_IN_FLIGHT).try_collect::<()>().await?;
        // 3. The released parked records and the positions, last.
        for id in &batch.release {
            // Released and parked again in this batch (a counted attempt): keep it.
            if !batch.mutations.iter().any(|m| matches!(m, Mutation::Park(r) if r.id() == *id)) {
                self.exec(&self.st.delete_parked, parked_key(id)?).await?;
            }
        }
        for (p, has_row) in batch.positions.iter().zip(fenced) {
            self.move_position(p, batch.epoch, has_row).await?;
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

    async fn apply_lane(&self, lane: Vec<&Mutation>) -> Result<(), StorageError> {
        for m in lane {
            self.apply_mutation(m).await?;
        }
        Ok(())
    }

    async fn apply_mutation(&self, m: &Mutation) -> Result<(), StorageError> {
        let st = &self.st;
        match m {
            Mutation::PutUser(u) => {
                let id = key(u.id);
                let body = serde_json::to_string(u)?;
                let old: Option<(String, String)> = self.one(&st.user, (id,)).await?;
                if let Some((old_email, _)) = old {
                    if old_email != u.email {
                        self.exec(&st.delete_user_by_email, (old_email.as_str(),)).await?;
                    }
                }
                tokio::try_join!(
                    self.exec(&st.put_user_by_email, (u.email.as_str(), id)),
                    self.exec(&st.put_users_all, (ALL, id, body.as_str())),
                )?;
                self.exec(&st.put_user, (id, u.email.as_str(), body.as_str())).await?;
            }
            Mutation::DeleteUser(u) => self.delete_user(u).await?,
            Mutation::PutLink(vl) => {
                let old = self.stored_link(vl.link.id).await?;
                if let Some((version, old)) = &old {
                    if *version > vl.version {
                        return Ok(()); // an older state never overwrites a newer one
                    }
                    self.unindex_link(old, Some(&vl.link)).await?;
                }
                let (id, version) = (key(vl.link.id), signed(vl.version, "link version")?);
                let body = serde_json::to_string(&vl.link)?;
                let l = &vl.link;
                tokio::try_join!(
                    self.exec(&st.put_link_by_code, (l.short_code.as_str(), id, version, body.as_str())),
                    self.exec(&st.put_link_by_owner, (owner_key(l.user_id), id, body.as_str())),
                    self.exec(&st.put_link_by_owner_url, (owner_key(l.user_id), l.original_url.as_str(), id, body.as_str())),
                    self.exec(&st.put_links_all, (ALL, id, body.as_str())),
                )?;
                // The source row last: until it is written a re-run still sees the old
                // version and redoes the index changes above.
                self.exec(&st.put_link, (id, version, body.as_str())).await?;
            }
            Mutation::DeleteLink(vl) => {
                if let Some((_, old)) = self.stored_link(vl.link.id).await? {
                    self.unindex_link(&old, None).await?;
                    self.exec(&st.delete_links_all, (ALL, key(old.id))).await?;
                }
                self.exec(&st.delete_link, (key(vl.link.id),)).await?;
            }
            Mutation::PutHistory(e) => self.put_history(e).await?,
            Mutation::AddClicks { link_id, n } => self.add_clicks(*link_id, *n, None).await?,
            Mutation::AddCount { link_id, name, n } => self.add_count(*link_id, name, *n, None).await?,
            Mutation::AddVisitor { link_id, day, visitor } => self.exec(&st.put_visitor, (key(*link_id), *day, visitor.as_str())).await?,
            Mutation::Park(r) => {
                let id = r.id();
                let (bucket, topic, partition, rkey, offset) = parked_key(&id)?;
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
                    self.exec(&st.put_outcome, (command_id.as_str(), serde_json::to_string(outcome)?.as_str())).await?;
                }
            }
        }
        Ok(())
    }

    async fn delete_user(&self, u: &User) -> Result<(), StorageError> {
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
                self.exec(&st.delete_user_by_email, (email,)).await?;
            }
        }
        self.exec(&st.delete_users_all, (ALL, id)).await?;
        self.exec(&st.delete_user, (id,)).await
    }

    async fn stored_link(&self, id: Id) -> Result<Option<(u64, Link)>, StorageError> {
        let row: Option<(i64, String)> = self.one(&self.st.link, (key(id),)).await?;
        row.map(|(v, body)| Ok((unsigned(v, "link version")?, serde_json::from_str(&body)?))).transpose()
    }

    /// Removes the index rows of `old` that `new` (if any) will not overwrite. Rows the
    /// new state rewrites are left alone, so a delete and an insert never race for one
    /// row.
    async fn unindex_link(&self, old: &Link, new: Option<&Link>) -> Result<(), StorageError> {
        let st = &self.st;
        let id = key(old.id);
        if new.is_none_or(|n| n.short_code != old.short_code) {
            let holder: Option<(i64, i64, String)> = self.one(&st.link_by_code, (old.short_code.as_str(),)).await?;
            if holder.is_some_and(|(holder, _, _)| holder == id) {
                self.exec(&st.delete_link_by_code, (old.short_code.as_str(),)).await?;
            }
        }
        if new.is_none_or(|n| n.user_id != old.user_id) {
            self.exec(&st.delete_link_by_owner, (owner_key(old.user_id), id)).await?;
        }
        if new.is_none_or(|n| n.user_id != old.user_id || n.original_url != old.original_url) {
            self.exec(&st.delete_link_by_owner_url, (owner_key(old.user_id), old.original_url.as_str(), id)).await?;
        }
        Ok(())
    }

    async fn put_history(&self, e: &HistoryEvent) -> Result<(), StorageError> {
        let st = &self.st;
        let id = key(e.id);
        let body = serde_json::to_string(e)?;
        let body = body.as_str();
        let by_user = async {
            match e.user_id {
                Some(u) => self.exec(&st.put_history_by_user, (key(u), id, body)).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(
            self.exec(&st.put_history, (id, body)),
            self.exec(&st.put_history_by_link, (key(e.url_id), id, body)),
            by_user,
            self.exec(&st.put_history_by_type, (e.event_type.as_str(), id, body)),
            self.exec(&st.put_history_all, (ALL, id, body)),
        )?;
        Ok(())
    }

    /// Adds `n` to the click count of `link_id`: read, add, write an absolute value. A
    /// re-run of the same batch (same source and `batch_from`) adds to the count from
    /// before that batch, not to the one it already moved.
    async fn add_clicks(&self, link_id: Id, n: u64, batch: Option<&ClickSource>) -> Result<(), StorageError> {
        let (source, batch_from) = match batch {
            Some((s, f)) => (s.as_str(), *f),
            None => ("", -1), // unguarded batch: nothing to recognise a re-run by
        };
        let row = self.click_rows(link_id).await?.into_iter().find(|r| r.0 == source);
        let base = match row {
            Some((_, _, base, from)) if batch.is_some() && from == batch_from => base,
            Some((_, clicks, _, _)) => clicks,
            None => 0,
        };
        let total = base.checked_add(signed(n, "click count")?).ok_or_else(|| engine("click count overflows a CQL bigint"))?;
        self.exec(&self.st.put_clicks, (key(link_id), source, total, base, batch_from)).await
    }

    /// Adds `n` to aggregate `name` of `link_id`, with [`Self::add_clicks`]'s guard.
    async fn add_count(&self, link_id: Id, name: &str, n: u64, batch: Option<&ClickSource>) -> Result<(), StorageError> {
        let (source, batch_from) = match batch {
            Some((s, f)) => (s.as_str(), *f),
            None => ("", -1),
        };
        let mut row = None;
        self.each(&self.st.aggregate, (key(link_id), name), |r: (String, i64, i64, i64)| {
            if r.0 == source {
                row = Some(r);
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        let base = match row {
            Some((_, _, base, from)) if batch.is_some() && from == batch_from => base,
            Some((_, clicks, _, _)) => clicks,
            None => 0,
        };
        let total = base.checked_add(signed(n, "click count")?).ok_or_else(|| engine("click count overflows a CQL bigint"))?;
        self.exec(&self.st.put_aggregate, (key(link_id), name, source, total, base, batch_from)).await
    }

    /// `(source, clicks, base, batch_from)` of every click-count row of `link_id`.
    pub(super) async fn click_rows(&self, link_id: Id) -> Result<Vec<(String, i64, i64, i64)>, StorageError> {
        let mut rows = Vec::new();
        self.each(&self.st.clicks, (key(link_id),), |r: (String, i64, i64, i64)| {
            rows.push(r);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(rows)
    }
}
