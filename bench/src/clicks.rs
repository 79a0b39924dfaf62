//! Click aggregates under redelivery and crashes: are the counts exact?
//!
//! One million clicks (a fixed pseudo-random mix of links, hours, browsers, countries,
//! visitors, bots and HEAD requests) are appended to an embedded log; the real projector
//! then builds the aggregates into an embedded store while
//! - every tenth batch it applies is delivered to the store a second time (as a consumer
//!   that crashed before acknowledging would redeliver it), and
//! - it is killed (its task aborted mid-batch) three times, at a quarter, half and three
//!   quarters of the way, and started again from the stored positions.
//!
//! Then every link's total, hourly series, daily unique visitors and daily breakdowns
//! are compared with what the generator knows. The baseline, in the same run, is reading
//! and decoding the same clicks from the log without projecting them.

use async_trait::async_trait;
use kurz_schemas::analytics::{self, Dimension};
use kurz_schemas::{topics, Agent, Click, Device, Id, Ts};
use kurz_storage::log::{append_keyed, EventLog, NewRecord};
use kurz_storage::store::{ApplyError, EventQuery, LinkQuery, ReadStore, StoreBatch, StoredOutcome, VersionedLink};
use kurz_storage::StorageError;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// Clicks to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub clicks: u64,
    /// Links they spread over.
    #[arg(long, default_value_t = 10_000)]
    pub links: u64,
    /// One batch in this many is delivered twice.
    #[arg(long, default_value_t = 10)]
    pub redeliver_every: u64,
    /// Partitions of the clicks topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
}

/// A small deterministic generator (SplitMix64), so every run checks the same clicks.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const START_MS: i64 = 1_795_000_000_000;
const BROWSERS: [(&str, &str, Device); 4] = [
    ("Chrome", "Windows", Device::Desktop),
    ("Safari", "iOS", Device::Mobile),
    ("Firefox", "Linux", Device::Desktop),
    ("Chrome", "Android", Device::Mobile),
];
const COUNTRIES: [&str; 5] = ["DE", "US", "FR", "JP", "BR"];
const REFERRERS: [Option<&str>; 3] = [None, Some("news.example"), Some("social.example")];

pub(crate) fn generate(rng: &mut Rng, links: u64) -> Click {
    let link = 1 + rng.below(links);
    let at = START_MS + rng.below(3 * analytics::DAY_MS as u64) as i64;
    let (browser, os, device) = BROWSERS[rng.below(4) as usize];
    let roll = rng.below(100);
    let bot = roll < 5;
    Click {
        referrer_host: REFERRERS[rng.below(3) as usize].map(str::to_string),
        owner_id: None,
        agent: Some(if bot {
            Agent { browser: "Googlebot".into(), os: "other".into(), device: Device::Bot }
        } else {
            Agent { browser: browser.into(), os: os.into(), device }
        }),
        bot,
        head: (5..8).contains(&roll),
        visitor: Some(format!("{:032x}", rng.below(50_000))),
        country: Some(COUNTRIES[rng.below(5) as usize].into()),
        ..Click::new(Id::new(link).unwrap(), format!("c{link}"), Ts(at))
    }
}

/// What the aggregates must come to: every name of every link, and visitor sets.
#[derive(Default)]
struct Truth {
    totals: HashMap<u64, u64>,
    counts: HashMap<(u64, String), u64>,
    visitors: HashMap<(u64, i64), HashSet<String>>,
}

impl Truth {
    fn add(&mut self, c: &Click) {
        if !c.counted() {
            return;
        }
        let link = c.link_id.get();
        *self.totals.entry(link).or_default() += 1;
        let day = c.at.0.div_euclid(analytics::DAY_MS);
        let mut add = |name: String| *self.counts.entry((link, name)).or_default() += 1;
        add(analytics::hour(c.at.0.div_euclid(analytics::HOUR_MS) * analytics::HOUR_MS));
        let a = c.agent.as_ref().unwrap();
        add(analytics::dim(day, Dimension::Referrer, c.referrer_host.as_deref().unwrap_or("direct")));
        add(analytics::dim(day, Dimension::Browser, &a.browser));
        add(analytics::dim(day, Dimension::Os, &a.os));
        add(analytics::dim(day, Dimension::Device, a.device.as_str()));
        add(analytics::dim(day, Dimension::Country, c.country.as_deref().unwrap()));
        self.visitors.entry((link, day)).or_default().insert(c.visitor.clone().unwrap());
    }
}

/// The store as a redelivering consumer sees it: every `every`-th successful batch is
/// applied a second time, which the store must refuse.
struct Redelivering {
    inner: Arc<dyn ReadStore>,
    every: u64,
    applied: AtomicU64,
    redelivered: AtomicU64,
    refused: AtomicU64,
    accepted_twice: AtomicU64,
}

#[async_trait]
impl ReadStore for Redelivering {
    async fn position(&self, projection: &str, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.inner.position(projection, topic, partition).await
    }
    async fn claim(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.inner.claim(topic, partition).await
    }
    async fn apply(&self, batch: StoreBatch) -> Result<(), ApplyError> {
        let again = batch.clone();
        self.inner.apply(batch).await?;
        let n = self.applied.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(self.every) {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
            match self.inner.apply(again).await {
                Err(ApplyError::PositionMismatch { .. }) => self.refused.fetch_add(1, Ordering::Relaxed),
                Ok(()) => self.accepted_twice.fetch_add(1, Ordering::Relaxed),
                Err(e) => return Err(e),
            };
        }
        Ok(())
    }
    async fn user(&self, id: Id) -> Result<Option<kurz_schemas::User>, StorageError> {
        self.inner.user(id).await
    }
    async fn user_by_email(&self, email: &str) -> Result<Option<kurz_schemas::User>, StorageError> {
        self.inner.user_by_email(email).await
    }
    async fn users(&self, page: usize, per_page: usize) -> Result<Vec<kurz_schemas::User>, StorageError> {
        self.inner.users(page, per_page).await
    }
    async fn link(&self, id: Id) -> Result<Option<VersionedLink>, StorageError> {
        self.inner.link(id).await
    }
    async fn link_by_code(&self, code: &str) -> Result<Option<VersionedLink>, StorageError> {
        self.inner.link_by_code(code).await
    }
    async fn active_link_for(&self, owner: Option<Id>, url: &str) -> Result<Option<kurz_schemas::Link>, StorageError> {
        self.inner.active_link_for(owner, url).await
    }
    async fn links(&self, q: &LinkQuery) -> Result<Vec<kurz_schemas::Link>, StorageError> {
        self.inner.links(q).await
    }
    async fn crawlable_codes(&self, limit: usize) -> Result<Vec<String>, StorageError> {
        self.inner.crawlable_codes(limit).await
    }
    async fn domains(&self) -> Result<Vec<kurz_schemas::Domain>, StorageError> {
        self.inner.domains().await
    }
    async fn domain(&self, host: &str) -> Result<Option<kurz_schemas::Domain>, StorageError> {
        self.inner.domain(host).await
    }
    async fn history_event(&self, id: Id) -> Result<Option<kurz_schemas::HistoryEvent>, StorageError> {
        self.inner.history_event(id).await
    }
    async fn history(&self, q: &EventQuery) -> Result<Vec<kurz_schemas::HistoryEvent>, StorageError> {
        self.inner.history(q).await
    }
    async fn click_count(&self, link_id: Id) -> Result<u64, StorageError> {
        self.inner.click_count(link_id).await
    }
    async fn click_counts(&self, link_id: Id, from: &str, to: &str) -> Result<Vec<(String, u64)>, StorageError> {
        self.inner.click_counts(link_id, from, to).await
    }
    async fn visitors_per_day(&self, link_id: Id, from_day: i64, to_day: i64) -> Result<Vec<(i64, u64)>, StorageError> {
        self.inner.visitors_per_day(link_id, from_day, to_day).await
    }
    async fn outcome(&self, command_id: &str) -> Result<Option<StoredOutcome>, StorageError> {
        self.inner.outcome(command_id).await
    }
    async fn wait_outcome(&self, command_id: &str, timeout: Duration) -> Result<Option<StoredOutcome>, StorageError> {
        self.inner.wait_outcome(command_id, timeout).await
    }
    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }
    async fn parked(&self) -> Result<Vec<kurz_storage::store::ParkedRecord>, StorageError> {
        self.inner.parked().await
    }
    async fn attempt(&self, topic: &str, partition: u32) -> Result<Option<kurz_storage::store::Attempt>, StorageError> {
        self.inner.attempt(topic, partition).await
    }
}

/// Clicks the store has projected so far: the sum of the clicks projection's positions.
async fn projected(store: &dyn ReadStore, partitions: u32) -> u64 {
    let mut n = 0;
    for p in 0..partitions {
        n += store.position("clicks", topics::CLICKS, p).await.unwrap();
    }
    n
}

pub async fn run(a: Args) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(kurz_storage::log::embedded::RedbLog::open(&dir.path().join("log.redb")).unwrap());
    kurz_storage::log::ensure_topics(&*log, 4, a.partitions).await.unwrap();
    let store: Arc<dyn ReadStore> = Arc::new(kurz_storage::store::embedded::RedbStore::open(&dir.path().join("store.redb")).unwrap());

    // The clicks, into the log, and what they must add up to.
    let mut rng = Rng(0x6b75_727a);
    let mut truth = Truth::default();
    let t = Instant::now();
    let mut left = a.clicks;
    while left > 0 {
        let n = left.min(20_000);
        let mut recs = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let c = generate(&mut rng, a.links);
            truth.add(&c);
            recs.push(NewRecord::new(c.code.clone(), c.encode()));
        }
        append_keyed(&*log, topics::CLICKS, recs).await.unwrap();
        left -= n;
    }
    let append_s = t.elapsed().as_secs_f64();
    let counted: u64 = truth.totals.values().sum();
    eprintln!("[clicks] {} clicks appended in {append_s:.1}s ({counted} count; the rest are bots and HEAD requests)", a.clicks);

    // Baseline: read and decode every click, no projection.
    let t = Instant::now();
    let mut decoded = 0u64;
    for p in 0..a.partitions {
        let mut from = 0;
        loop {
            let recs = log.read(topics::CLICKS, p, from, 4096).await.unwrap();
            let Some(last) = recs.last() else { break };
            from = last.offset + 1;
            for r in &recs {
                Click::decode(&r.payload).unwrap();
                decoded += 1;
            }
        }
    }
    let baseline_s = t.elapsed().as_secs_f64();
    assert_eq!(decoded, a.clicks);

    // The projector, redelivering and killed three times.
    let wrapped = Arc::new(Redelivering {
        inner: store.clone(),
        every: a.redeliver_every.max(1),
        applied: AtomicU64::new(0),
        redelivered: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        accepted_twice: AtomicU64::new(0),
    });
    let keys = kurz_storage::vault::Keyring::new(kurz_storage::open_vault("embedded", dir.path()).await.unwrap());
    let t = Instant::now();
    let mut crashes = Vec::new();
    for stage in 1..=4u64 {
        let stop = tokio_util::sync::CancellationToken::new();
        let projector = kurz_projector::Projector::new(log.clone(), wrapped.clone(), None, keys.clone());
        let task = tokio::spawn(projector.run_until_stopped(stop.clone()));
        let target = if stage < 4 { a.clicks * stage / 4 } else { a.clicks };
        loop {
            let done = projected(&*store, a.partitions).await;
            if done >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if stage < 4 {
            // kill -9, as far as a task can be: no drain, whatever batch is in flight.
            task.abort();
            let _ = task.await;
            let at = projected(&*store, a.partitions).await;
            crashes.push(at);
            eprintln!("[clicks] projector killed at {at} clicks projected");
        } else {
            stop.cancel();
            let _ = task.await;
        }
    }
    let project_s = t.elapsed().as_secs_f64();

    // Exactness, link by link.
    let mut wrong: Vec<String> = Vec::new();
    let mut checked_names = 0u64;
    let mut by_link: HashMap<u64, Vec<(&String, u64)>> = HashMap::new();
    for ((link, name), n) in &truth.counts {
        by_link.entry(*link).or_default().push((name, *n));
    }
    for link in 1..=a.links {
        let id = Id::new(link).unwrap();
        let want_total = truth.totals.get(&link).copied().unwrap_or(0);
        let got_total = store.click_count(id).await.unwrap();
        if got_total != want_total {
            wrong.push(format!("link {link}: total {got_total}, want {want_total}"));
        }
        let got: HashMap<String, u64> = store.click_counts(id, "d:", "h;").await.unwrap().into_iter().collect();
        let want = by_link.remove(&link).unwrap_or_default();
        if got.len() != want.len() {
            wrong.push(format!("link {link}: {} aggregates, want {}", got.len(), want.len()));
        }
        for (name, n) in want {
            checked_names += 1;
            if got.get(name.as_str()) != Some(&n) {
                wrong.push(format!("link {link} {name}: {:?}, want {n}", got.get(name.as_str())));
            }
        }
        for (day, n) in store.visitors_per_day(id, 0, i64::MAX).await.unwrap() {
            let want = truth.visitors.get(&(link, day)).map(HashSet::len).unwrap_or(0) as u64;
            if n != want {
                wrong.push(format!("link {link} day {day}: {n} visitors, want {want}"));
            }
        }
    }
    let visitor_days = truth.visitors.len();
    eprintln!("[clicks] checked {} links, {checked_names} aggregates, {visitor_days} visitor-days: {} wrong", a.links, wrong.len());

    json!({
        "clicks": a.clicks,
        "counted": counted,
        "links": a.links,
        "partitions": a.partitions,
        "redeliver_every": a.redeliver_every,
        "append_seconds": append_s,
        "baseline_read_decode_per_s": a.clicks as f64 / baseline_s,
        "projected_per_s": a.clicks as f64 / project_s,
        "projection_vs_baseline": baseline_s / project_s,
        "batches_applied": wrapped.applied.load(Ordering::Relaxed),
        "batches_redelivered": wrapped.redelivered.load(Ordering::Relaxed),
        "redelivered_refused": wrapped.refused.load(Ordering::Relaxed),
        "redelivered_accepted": wrapped.accepted_twice.load(Ordering::Relaxed),
        "crashes_at_projected": crashes,
        "aggregates_checked": checked_names,
        "visitor_days_checked": visitor_days,
        "wrong": wrong.len(),
        "wrong_examples": wrong.iter().take(20).collect::<Vec<_>>(),
    })
}

pub fn markdown(v: &Value) -> String {
    format!(
        "# Click aggregates: exact under redelivery and crashes\n\n\
         {clicks} clicks ({counted} counted; bots and HEAD requests are not) over {links} links, {parts} click partitions, \
         embedded log to embedded store, projected by the real projector while every {every}th batch was delivered \
         to the store twice and the projector was killed (task aborted mid-batch) {crashes} times and restarted.\n\n\
         | | |\n|---|---|\n\
         | links, aggregates, visitor-days checked | {links}, {aggs}, {vdays} |\n\
         | **wrong counts** | **{wrong}** |\n\
         | batches applied / redelivered / refused / accepted twice | {applied} / {redelivered} / {refused} / {accepted} |\n\
         | projector killed at (clicks projected) | {crash_at} |\n\
         | projection rate | {rate:.0} clicks/s |\n\
         | baseline: read + decode only | {base:.0} clicks/s |\n\
         | projection / baseline | {ratio:.3}× |\n\n\
         Reproduce: `cargo run --release -p kurz-bench -- clicks`\n",
        clicks = v["clicks"],
        counted = v["counted"],
        links = v["links"],
        parts = v["partitions"],
        every = v["redeliver_every"],
        crashes = v["crashes_at_projected"].as_array().map(Vec::len).unwrap_or(0),
        aggs = v["aggregates_checked"],
        vdays = v["visitor_days_checked"],
        wrong = v["wrong"],
        applied = v["batches_applied"],
        redelivered = v["batches_redelivered"],
        refused = v["redelivered_refused"],
        accepted = v["redelivered_accepted"],
        crash_at = v["crashes_at_projected"],
        rate = v["projected_per_s"].as_f64().unwrap_or(0.0),
        base = v["baseline_read_decode_per_s"].as_f64().unwrap_or(0.0),
        ratio = v["projection_vs_baseline"].as_f64().unwrap_or(0.0),
    )
}
