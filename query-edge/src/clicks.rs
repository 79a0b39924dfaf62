//! Click capture. A redirect hands its click to a bounded in-memory queue and returns;
//! a flusher task appends queued clicks to the clicks topic in batches. When the queue
//! is full the click is dropped and counted, never waited on.

use crate::metrics;
use kurz_schemas::{topics, Click};
use kurz_storage::log::append_keyed;
use kurz_storage::{EventLog, NewRecord};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const QUEUE: usize = 65_536;
const BATCH: usize = 2048;

#[derive(Clone)]
pub struct ClickSink {
    tx: mpsc::Sender<Click>,
}

impl ClickSink {
    pub fn record(&self, click: Click) {
        if self.tx.try_send(click).is_err() {
            metrics::get().clicks.with_label_values(&["dropped"]).inc();
        }
    }
}

pub struct ClickFlusher {
    rx: mpsc::Receiver<Click>,
    log: Arc<dyn EventLog>,
}

pub fn channel(log: Arc<dyn EventLog>) -> (ClickSink, ClickFlusher) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (ClickSink { tx }, ClickFlusher { rx, log })
}

impl ClickFlusher {
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

    async fn flush(&self, buf: &mut Vec<Click>) {
        if buf.is_empty() {
            return;
        }
        let records: Vec<NewRecord> = buf
            .drain(..)
            .map(|c| NewRecord::new(c.code.clone(), c.encode()).header("schema-version", Click::VERSION.to_string()))
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
