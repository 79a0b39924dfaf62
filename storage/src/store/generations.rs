//! Read-store generations: a replay builds the read models into a new, empty
//! generation of the store while the current one keeps serving, then every process
//! switches to it when the log's control topic says so.
//!
//! A generation is a whole store: the embedded store's generation `n` is the redb file
//! `store.g<n>.redb` (`store.redb` for 0), Scylla's is the keyspace `<keyspace>_g<n>`
//! (`<keyspace>` for 0). [`Generations`] is the store every role reads and writes: it
//! hands each call to the serving generation and switches atomically (one pointer
//! swap) when it reads a [`ControlEvent::GenerationSwitched`] from `kurz.control.v1`.
//! A batch the projector built against the old generation's positions is refused by
//! the new one's position guard, so the projector reloads its positions there and goes
//! on: nothing is applied twice or skipped.

use super::{ApplyError, Attempt, EventQuery, LinkQuery, ParkedRecord, ReadStore, StoreBatch, StoredOutcome, VersionedLink, EPOCH_BITS};
use crate::{EventLog, StorageError};
use async_trait::async_trait;
use kurz_schemas::{topics, ControlEvent, HistoryEvent, Id, Link, User};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// The store URL of generation `n` of the store named by `url`.
pub fn generation_url(url: &str, n: u64) -> String {
    if n == 0 {
        return url.to_string();
    }
    match url.split_once("://") {
        Some(("scylla", rest)) => {
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, format!("?{q}")),
                None => (rest, String::new()),
            };
            let (hosts, ks) = path.split_once('/').unwrap_or((path, ""));
            let ks = match ks.trim_end_matches('/') {
                "" => "kurz",
                k => k,
            };
            format!("scylla://{hosts}/{ks}_g{n}{query}")
        }
        _ => url.to_string(),
    }
}

/// The embedded store file of generation `n` in `dir`.
pub fn embedded_file(dir: &Path, n: u64) -> PathBuf {
    if n == 0 {
        dir.join("store.redb")
    } else {
        dir.join(format!("store.g{n}.redb"))
    }
}

/// The generation the control topic says serves: the last switch's, or 0.
pub async fn serving_generation(log: &dyn EventLog) -> Result<u64, StorageError> {
    Ok(read_control(log).await?.iter().rev().find_map(ControlEvent::serving).unwrap_or(0))
}

/// Every record of the control topic, in order (it holds a few per replay).
pub async fn read_control(log: &dyn EventLog) -> Result<Vec<ControlEvent>, StorageError> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let recs = log.read(topics::CONTROL, 0, from, 1024).await?;
        let Some(last) = recs.last() else { return Ok(out) };
        from = last.offset + 1;
        for r in &recs {
            match ControlEvent::decode(&r.payload) {
                Ok(c) => out.push(c),
                Err(e) => tracing::error!(event = "undecodable_control_record", offset = r.offset, error = %e),
            }
        }
    }
}

/// Appends one control record.
pub async fn append_control(log: &dyn EventLog, event: &ControlEvent) -> Result<u64, StorageError> {
    let rec =
        crate::NewRecord::new("control", event.encode()).header(kurz_schemas::headers::SCHEMA_VERSION, ControlEvent::VERSION.to_string());
    let offsets = log.append(topics::CONTROL, 0, vec![rec]).await?;
    offsets.first().copied().ok_or_else(|| StorageError::Engine("control append returned no offset".into()))
}

type Opener = dyn Fn(u64) -> Result<Arc<dyn ReadStore>, StorageError> + Send + Sync;

/// The serving generation of the read store, switched by the control topic.
pub struct Generations {
    opener: Box<Opener>,
    /// Generations this process opened (an embedded store file opens once per process).
    open: Mutex<HashMap<u64, Arc<dyn ReadStore>>>,
    serving: RwLock<(u64, Arc<dyn ReadStore>)>,
    switched: watch::Sender<u64>,
}

impl Generations {
    /// Opens the generation the control topic names, and follows the topic from then on
    /// (the follower ends when the last handle is dropped).
    pub async fn open(url: &str, data_dir: &Path, log: Arc<dyn EventLog>) -> Result<Arc<Generations>, StorageError> {
        let (url, dir) = (url.to_string(), data_dir.to_path_buf());
        let opener = move |n: u64| crate::open_store_generation(&url, &dir, n);
        let gens = Generations::with_opener(Box::new(opener), serving_generation(&*log).await?)?;
        // Ends as soon as the generations are dropped (their `switched` sender with
        // them), so the log is not held open after the process let it go.
        let (weak, mut closed) = (Arc::downgrade(&gens), gens.subscribe());
        tokio::spawn(async move {
            tokio::select! {
                _ = follow(weak, log) => {}
                _ = async { while closed.changed().await.is_ok() {} } => {}
            }
        });
        Ok(gens)
    }

    /// Generations over any opener, serving `n` (tests, and [`Generations::open`]).
    pub fn with_opener(opener: Box<Opener>, n: u64) -> Result<Arc<Generations>, StorageError> {
        let store = opener(n)?;
        let open = Mutex::new(HashMap::from([(n, store.clone())]));
        Ok(Arc::new(Generations { opener, open, serving: RwLock::new((n, store)), switched: watch::Sender::new(n) }))
    }

    /// The generation that serves now.
    pub fn serving(&self) -> u64 {
        self.serving.read().expect("generation lock poisoned").0
    }

    fn current(&self) -> Arc<dyn ReadStore> {
        self.serving.read().expect("generation lock poisoned").1.clone()
    }

    /// Generation `n`'s store, opened once per process.
    pub fn store(&self, n: u64) -> Result<Arc<dyn ReadStore>, StorageError> {
        let mut open = self.open.lock().expect("generation map poisoned");
        if let Some(s) = open.get(&n) {
            return Ok(s.clone());
        }
        let s = (self.opener)(n)?;
        open.insert(n, s.clone());
        Ok(s)
    }

    /// Serves generation `n` from now on (a no-op if it already does).
    pub fn switch_to(&self, n: u64) -> Result<(), StorageError> {
        if self.serving() == n {
            return Ok(());
        }
        let store = self.store(n)?;
        let previous = {
            let mut s = self.serving.write().expect("generation lock poisoned");
            std::mem::replace(&mut *s, (n, store)).0
        };
        self.switched.send_replace(n);
        tracing::info!(event = "generation_switched", generation = n, previous);
        Ok(())
    }

    /// Closes generations other than the serving one and `keep` (their files stay).
    pub fn close_others(&self, keep: u64) {
        let serving = self.serving();
        self.open.lock().expect("generation map poisoned").retain(|n, _| *n == serving || *n == keep);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.switched.subscribe()
    }
}

async fn follow(gens: Weak<Generations>, log: Arc<dyn EventLog>) {
    let mut next = match log.end_offset(topics::CONTROL, 0).await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(event = "control_follow_failed", error = %e, "this process will not follow generation switches");
            return;
        }
    };
    loop {
        let end = match log.wait_for(topics::CONTROL, 0, next, Duration::from_secs(1)).await {
            Ok(end) => end,
            Err(e) => {
                tracing::warn!(event = "control_follow_retry", error = %e);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(g) = gens.upgrade() else { return };
        if end > next {
            match log.read(topics::CONTROL, 0, next, 1024).await {
                Ok(recs) => {
                    for r in &recs {
                        next = r.offset + 1;
                        if let Some(n) = ControlEvent::decode(&r.payload).ok().and_then(|c| c.serving()) {
                            if let Err(e) = g.switch_to(n) {
                                tracing::error!(event = "generation_switch_failed", generation = n, error = %e);
                                next = r.offset; // try this record again
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(event = "control_follow_retry", error = %e),
            }
        }
    }
}

#[async_trait]
impl ReadStore for Generations {
    async fn parked(&self) -> Result<Vec<ParkedRecord>, StorageError> {
        self.current().parked().await
    }
    async fn attempt(&self, topic: &str, partition: u32) -> Result<Option<Attempt>, StorageError> {
        self.current().attempt(topic, partition).await
    }
    async fn position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.current().position(projection, topic, partition).await
    }
    /// A claim in the serving generation, with the generation in its high bits: a
    /// batch claimed under another generation is refused after a switch, so the
    /// projector claims the new generation (which fences the replay that built it).
    async fn claim(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        let (n, store) = self.serving.read().expect("generation lock poisoned").clone();
        let epoch = store.claim(topic, partition).await?;
        if epoch >> EPOCH_BITS != 0 || n >> (64 - EPOCH_BITS) != 0 {
            return Err(StorageError::Engine(format!("claim {epoch} of generation {n} does not fit an epoch")));
        }
        Ok(n << EPOCH_BITS | epoch)
    }
    async fn apply(&self, mut batch: StoreBatch) -> Result<(), ApplyError> {
        let (n, store) = self.serving.read().expect("generation lock poisoned").clone();
        if batch.epoch >> EPOCH_BITS != n {
            if let Some(p) = batch.positions.first() {
                return Err(ApplyError::Fenced {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    claimed: n << EPOCH_BITS,
                    epoch: batch.epoch,
                });
            }
        }
        batch.epoch &= (1 << EPOCH_BITS) - 1;
        store.apply(batch).await
    }
    async fn user(&self, id: Id) -> Result<Option<User>, StorageError> {
        self.current().user(id).await
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, StorageError> {
        self.current().user_by_email(email).await
    }
    async fn users(&self, page: usize, per_page: usize) -> Result<Vec<User>, StorageError> {
        self.current().users(page, per_page).await
    }
    async fn link(&self, id: Id) -> Result<Option<VersionedLink>, StorageError> {
        self.current().link(id).await
    }
    async fn link_by_code(&self, code: &str) -> Result<Option<VersionedLink>, StorageError> {
        self.current().link_by_code(code).await
    }
    async fn active_link_for(&self, owner: Option<Id>, url: &str) -> Result<Option<Link>, StorageError> {
        self.current().active_link_for(owner, url).await
    }
    async fn links(&self, q: &LinkQuery) -> Result<Vec<Link>, StorageError> {
        self.current().links(q).await
    }
    async fn domains(&self) -> Result<Vec<kurz_schemas::Domain>, StorageError> {
        self.current().domains().await
    }
    async fn domain(&self, host: &str) -> Result<Option<kurz_schemas::Domain>, StorageError> {
        self.current().domain(host).await
    }
    async fn crawlable_codes(&self, limit: usize) -> Result<Vec<String>, StorageError> {
        self.current().crawlable_codes(limit).await
    }
    async fn history_event(&self, id: Id) -> Result<Option<HistoryEvent>, StorageError> {
        self.current().history_event(id).await
    }
    async fn history(&self, q: &EventQuery) -> Result<Vec<HistoryEvent>, StorageError> {
        self.current().history(q).await
    }
    async fn click_count(&self, link_id: Id) -> Result<u64, StorageError> {
        self.current().click_count(link_id).await
    }
    async fn click_counts(&self, link_id: Id, from: &str, to: &str) -> Result<Vec<(String, u64)>, StorageError> {
        self.current().click_counts(link_id, from, to).await
    }
    async fn visitors_per_day(&self, link_id: Id, from_day: i64, to_day: i64) -> Result<Vec<(i64, u64)>, StorageError> {
        self.current().visitors_per_day(link_id, from_day, to_day).await
    }
    async fn outcome(&self, command_id: &str) -> Result<Option<StoredOutcome>, StorageError> {
        self.current().outcome(command_id).await
    }
    /// Waits on the serving generation; if a switch happens meanwhile, on the new one.
    async fn wait_outcome(&self, command_id: &str, timeout: Duration) -> Result<Option<StoredOutcome>, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut switched = self.subscribe();
        switched.borrow_and_update();
        loop {
            let store = self.current();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::select! {
                r = store.wait_outcome(command_id, left) => return r,
                _ = switched.changed() => {
                    if let Some(o) = self.current().outcome(command_id).await? {
                        return Ok(Some(o));
                    }
                }
            }
        }
    }
    async fn ping(&self) -> Result<(), StorageError> {
        self.current().ping().await
    }
}
