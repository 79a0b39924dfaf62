//! A decider partition's state: everything it needs to decide the next command, and
//! nothing it cannot rebuild from its own partition of the events topic.

use kurz_schemas::{CommandId, Domain, Event, EventBody, Id, IdGen, IdKind, Link, Ts, User};
use std::collections::{HashMap, HashSet};

/// How long a decided command id is remembered for deduplication.
pub const DEDUP_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct LinkState {
    pub link: Link,
    /// Deleted links keep their code: a code is never handed out twice, so an old
    /// printed short link can never start pointing somewhere new.
    pub deleted: bool,
}

#[derive(Debug)]
pub struct PartitionState {
    pub partition: u32,
    pub ids: IdGen,
    pub users: HashMap<Id, User>,
    pub emails: HashMap<String, Id>,
    /// Ids of users that were ever created here, deleted ones included.
    pub user_ids: HashSet<Id>,
    /// Links by lookup key ([`Link::lookup_key`]: the code, or `domain/code`).
    pub links: HashMap<String, LinkState>,
    pub link_ids: HashSet<Id>,
    pub history_ids: HashSet<Id>,
    /// Explicit ids this partition owns and has granted ([`kurz_schemas::id_key`]).
    pub reserved: HashSet<(IdKind, Id)>,
    /// Decided command ids and when they were decided.
    pub decided: HashMap<CommandId, Ts>,
    /// The domain registry, by host (only in the partition of `DOMAINS_KEY`).
    pub domains: std::collections::BTreeMap<String, Domain>,
    last_prune: Ts,
}

impl PartitionState {
    pub fn new(partition: u32) -> PartitionState {
        PartitionState {
            partition,
            ids: IdGen::new(partition),
            users: HashMap::new(),
            emails: HashMap::new(),
            user_ids: HashSet::new(),
            links: HashMap::new(),
            link_ids: HashSet::new(),
            history_ids: HashSet::new(),
            reserved: HashSet::new(),
            decided: HashMap::new(),
            domains: Default::default(),
            last_prune: Ts(0),
        }
    }

    pub fn is_decided(&self, id: &CommandId) -> bool {
        self.decided.contains_key(id)
    }

    /// Folds one event into the state. Used both to restore from the log and after
    /// deciding, so the two can never disagree.
    pub fn evolve(&mut self, ev: &Event) {
        self.ids.observe(ev.id);
        match &ev.body {
            EventBody::UserCreated { user, .. } | EventBody::UserUpdated { user } => {
                if let Some(old) = self.users.get(&user.id) {
                    if old.email != user.email {
                        self.emails.remove(&old.email);
                    }
                }
                self.ids.observe(user.id);
                self.user_ids.insert(user.id);
                // An erased user (deleted, read after its key was destroyed) has no e-mail.
                if !user.email.is_empty() {
                    self.emails.insert(user.email.clone(), user.id);
                }
                self.users.insert(user.id, user.clone());
            }
            EventBody::UserDeleted { user } => {
                if let Some(old) = self.users.remove(&user.id) {
                    self.emails.remove(&old.email);
                }
            }
            EventBody::LinkCreated { link, .. } | EventBody::LinkUpdated { link } => {
                self.ids.observe(link.id);
                self.link_ids.insert(link.id);
                self.links.insert(link.lookup_key().into_owned(), LinkState { link: link.clone(), deleted: false });
            }
            EventBody::LinkDeleted { link } => {
                self.links.insert(link.lookup_key().into_owned(), LinkState { link: link.clone(), deleted: true });
            }
            EventBody::DomainRegistered { domain } => {
                self.domains.insert(domain.host.clone(), domain.clone());
            }
            EventBody::DomainDeleted { domain } => {
                self.domains.remove(&domain.host);
            }
            EventBody::EventRecorded { event } => {
                self.ids.observe(event.id);
                self.history_ids.insert(event.id);
            }
            EventBody::IdsReserved { kind, ids } => {
                self.reserved.extend(ids.iter().map(|id| (*kind, *id)));
            }
            EventBody::Decided { .. } => {
                self.decided.insert(ev.command_id.clone(), ev.at);
                if ev.at.0 - self.last_prune.0 > 60_000 {
                    let cutoff = ev.at.0 - DEDUP_WINDOW_MS;
                    self.decided.retain(|_, at| at.0 >= cutoff);
                    self.last_prune = ev.at;
                }
            }
        }
    }

    /// The live link found by `key` (its code, or `domain/code`).
    pub fn live_link(&self, key: &str) -> Option<&Link> {
        self.links.get(key).filter(|l| !l.deleted).map(|l| &l.link)
    }
}
