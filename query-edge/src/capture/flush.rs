//! The flusher: enriches queued clicks and appends them to the clicks topic in batches,
//! keyed by short code (one link's clicks stay in order on one partition).

use super::enrich::Enricher;
use super::RawClick;
use crate::metrics;
use kurz_schemas::{topics, Click};
use kurz_storage::log::append_keyed;
use kurz_storage::{EventLog, NewRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BATCH: usize = 2048;

pub struct ClickFlusher {
    rx: mpsc::Receiver<RawClick>,
    log: Arc<dyn EventLog>,
    enricher: Enricher,
}

impl ClickFlusher {
    pub(super) fn new(rx: mpsc::Receiver<RawClick>, log: Arc<dyn EventLog>, enricher: Enricher) -> ClickFlusher {
        ClickFlusher { rx, log, enricher }
    }

    /// Appends clicks until `stop` fires, then flushes what is queued and returns.
    pub async fn run_until_stopped(mut self, stop: CancellationToken) {
        let mut buf = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                n = self.rx.recv_many(&mut buf, BATCH) => {
                    if n == 0 { return; }
                }
                _ = stop.cancelled() => {
                    self.rx.close();
                    while self.rx.recv_many(&mut buf, BATCH).await > 0 {
                        self.flush(&mut buf).await;
                    }
                    return;
                }
            }
            self.flush(&mut buf).await;
        }
    }

    async fn flush(&self, buf: &mut Vec<RawClick>) {
        if buf.is_empty() {
            return;
        }
        let records: Vec<NewRecord> = buf
            .drain(..)
            .map(|raw| {
                let c = self.enricher.click(raw);
                NewRecord::new(c.code.clone(), c.encode()).header("schema-version", Click::VERSION.to_string())
            })
            .collect();
        let n = records.len() as u64;
        let mut delay = Duration::from_millis(20);
        for attempt in 0..5 {
            match append_keyed(&*self.log, topics::CLICKS, records.clone()).await {
                Ok(_) => {
                    metrics::get().clicks.with_label_values(&["appended"]).inc_by(n);
                    return;
                }
                Err(e) => {
                    tracing::warn!(event = "click_append_failed", attempt, error = %e);
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        metrics::get().clicks.with_label_values(&["failed"]).inc_by(n);
    }
}
