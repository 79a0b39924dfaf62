//! Keeps a process-local hot cache in step with the log when no projector runs in the
//! same process: tails the events topic from its end and offers every link state to
//! the cache, exactly as the projector does.

use kurz_schemas::{topics, CachedLink, Event};
use kurz_storage::{EventLog, LinkCache};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub async fn run_until_stopped(log: Arc<dyn EventLog>, cache: Arc<dyn LinkCache>, stop: CancellationToken) -> Result<(), crate::Error> {
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..log.partitions(topics::EVENTS).await? {
        let (log, cache, stop) = (log.clone(), cache.clone(), stop.clone());
        tasks.spawn(async move {
            let mut pos = log.end_offset(topics::EVENTS, p).await.unwrap_or_default();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = log.wait_for(topics::EVENTS, p, pos, Duration::from_secs(1)) => {}
                }
                let Ok(recs) = log.read(topics::EVENTS, p, pos, 1024).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                for r in &recs {
                    pos = r.offset + 1;
                    let Ok(ev) = Event::decode(&r.payload) else { continue };
                    // A failed offer is the cache's to repair; the store stays the truth.
                    if let Some((code, entry)) = CachedLink::of_event(&ev.body, r.offset) {
                        let _ = cache.offer(&code, entry).await;
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
