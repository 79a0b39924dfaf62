//! A click append that fails *after* writing (a timeout once the broker has the
//! records): the edge spools the clicks and appends them again once the log answers,
//! so the log holds each click twice; the projector counts each once. Real parts: the
//! edge's flusher and spool, the embedded log under a wrapper that writes and then
//! errors, the projector and the embedded store.

use async_trait::async_trait;
use kurz_schemas::{topics, Id, Link, Ts};
use kurz_storage::log::{EventLog, Membership, NewRecord, Record};
use kurz_storage::StorageError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Clicks appends: the first `ambiguous` of them write and then answer an error.
struct WritesThenFails {
    inner: Arc<dyn EventLog>,
    ambiguous: AtomicUsize,
}

#[async_trait]
impl EventLog for WritesThenFails {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<u32, StorageError> {
        self.inner.ensure_topic(topic, partitions).await
    }
    async fn partitions(&self, topic: &str) -> Result<u32, StorageError> {
        self.inner.partitions(topic).await
    }
    async fn append(&self, topic: &str, p: u32, records: Vec<NewRecord>) -> Result<Vec<u64>, StorageError> {
        let offsets = self.inner.append(topic, p, records).await?;
        if topic == topics::CLICKS && self.ambiguous.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(StorageError::Engine("Message timed out (the broker had written it)".into()));
        }
        Ok(offsets)
    }
    async fn read(&self, topic: &str, partition: u32, from: u64, max: usize) -> Result<Vec<Record>, StorageError> {
        self.inner.read(topic, partition, from, max).await
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64, StorageError> {
        self.inner.end_offset(topic, partition).await
    }
    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64, StorageError> {
        self.inner.wait_for(topic, partition, offset, timeout).await
    }
    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<(), StorageError> {
        self.inner.commit(group, topic, partition, next_offset).await
    }
    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>, StorageError> {
        self.inner.committed(group, topic, partition).await
    }
    async fn join(&self, group: &str, topic: &str) -> Result<Membership, StorageError> {
        self.inner.join(group, topic).await
    }
}

fn copies_dropped() -> f64 {
    prometheus::gather()
        .iter()
        .filter(|f| f.name() == "kurz_projector_click_copies_dropped_total")
        .flat_map(|f| f.get_metric().to_vec())
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_append_that_fails_after_writing_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let raw: Arc<dyn EventLog> = Arc::new(kurz_storage::log::embedded::RedbLog::open(&dir.path().join("log.redb")).unwrap());
    kurz_storage::log::ensure_topics(&*raw, 2, 2).await.unwrap();
    let store = kurz_storage::open_store("embedded", dir.path()).unwrap();
    let keys = kurz_storage::vault::Keyring::new(kurz_storage::open_vault("embedded", dir.path()).await.unwrap());
    let log: Arc<dyn EventLog> = Arc::new(WritesThenFails { inner: raw.clone(), ambiguous: AtomicUsize::new(1) });

    let settings = kurz_query_edge::capture::CaptureSettings {
        secret: vec![7; 32],
        spool_dir: Some(dir.path().join("click-spool")),
        ..Default::default()
    };
    let (sink, flusher) = kurz_query_edge::capture::channel(log, &settings).unwrap();
    let stop = CancellationToken::new();
    let flushing = tokio::spawn(flusher.run_until_stopped(stop.clone()));
    let projector = kurz_projector::Projector::new(raw.clone(), store.clone(), None, keys);
    let projecting = tokio::spawn(projector.clone().run_until_stopped(stop.clone()));

    let link_id = Id::new(4242).unwrap();
    let link = Arc::new(Link {
        domain: None,
        id: link_id,
        short_code: "copied".into(),
        original_url: "https://example.com/".into(),
        title: None,
        is_active: true,
        user_id: None,
        created_at: Ts(0),
        updated_at: Ts(0),
        options: Default::default(),
    });
    const CLICKS: usize = 5;
    let before = copies_dropped();
    for _ in 0..CLICKS {
        sink.record(kurz_query_edge::capture::RawClick {
            visited: kurz_query_edge::capture::Visited::Link(link.clone()),
            at: Ts::now(),
            head: false,
            referer: None,
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0".into()),
            addr: None,
            query: None,
            country: None,
        });
    }

    // The first append wrote and failed; the spool's copies follow within a probe.
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_log = loop {
        let mut n = 0;
        for p in 0..2 {
            n += raw.read(topics::CLICKS, p, 0, 1000).await.unwrap().len();
        }
        if n >= 2 * CLICKS {
            break n;
        }
        assert!(Instant::now() < deadline, "the spooled copies never reached the log ({n} records)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(in_log, 2 * CLICKS, "each click is in the log twice");
    assert!(projector.wait_caught_up(Duration::from_secs(30)).await.unwrap());
    assert_eq!(store.click_count(link_id).await.unwrap(), CLICKS as u64, "each click counted once");
    assert_eq!(copies_dropped() - before, CLICKS as f64);

    // A replay of the clicks counts the same: the rule reads only the log.
    let rebuilt = kurz_storage::open_store_generation("embedded", dir.path(), 1).unwrap();
    let names: Vec<String> = vec!["clicks".into()];
    let replay = kurz_projector::replay::Replay::new(raw.clone(), rebuilt.clone(), projector.keys().clone(), &names).unwrap();
    replay.catch_up(&Arc::new(kurz_projector::replay::Progress::default())).await.unwrap();
    assert_eq!(rebuilt.click_count(link_id).await.unwrap(), CLICKS as u64);

    stop.cancel();
    flushing.await.unwrap();
    projecting.await.unwrap().unwrap();
}
