//! Replay rate, embedded log to embedded store: `kurz replay --all`'s own code
//! (`kurz_projector::replay::rebuild`) over the seed history plus a volume of clicks, against the
//! rate at which the same log is only read and decoded (the baseline, same run).

use crate::clicks::{generate, Rng};
use kurz_schemas::{topics, Click, Event};
use kurz_storage::{EventLog, NewRecord};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Clicks appended after the seed history.
    #[arg(long, default_value_t = 1_000_000)]
    pub clicks: u64,
    /// Links the clicks spread over.
    #[arg(long, default_value_t = 2_000)]
    pub links: u64,
}

const GOAL: f64 = 1_000_000.0;

#[derive(clap::Parser)]
struct Wrap {
    #[command(flatten)]
    c: kurz::Config,
}

/// Reads and decodes every record of the events and clicks topics.
async fn read_all(log: &dyn EventLog) -> u64 {
    let mut n = 0;
    for topic in [topics::EVENTS, topics::CLICKS] {
        for p in 0..log.partitions(topic).await.unwrap() {
            let mut from = 0;
            loop {
                let recs = log.read(topic, p, from, 8192).await.unwrap();
                let Some(last) = recs.last() else { break };
                from = last.offset + 1;
                for r in &recs {
                    let ok = if topic == topics::CLICKS {
                        kurz_schemas::ClickRecord::decode(&r.payload).is_ok()
                    } else {
                        Event::decode(&r.payload).is_ok()
                    };
                    assert!(ok, "undecodable record {topic}/{p}/{}", r.offset);
                }
                n += recs.len() as u64;
            }
        }
    }
    n
}

async fn open_when_free(dir: &std::path::Path) -> Arc<dyn EventLog> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match kurz_storage::open_log("embedded", dir) {
            Ok(log) => return log,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            Err(e) => panic!("the log stayed locked: {e}"),
        }
    }
}

pub async fn run(a: Args) -> Value {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let cfg = || Wrap::parse_from(["kurz", "--data-dir", &data, "--auth", "open", "--log", "warn"]).c;
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kurz/tests/fixtures/seed-data");
    kurz::cli::import::run(seed, None, None, 5000, cfg()).await.expect("seed import");
    {
        // The import's process let go of the log a moment ago; its tasks may still be
        // finishing on the runtime.
        let log = open_when_free(dir.path()).await;
        let mut rng = Rng(7);
        let mut left = a.clicks;
        while left > 0 {
            let batch: Vec<NewRecord> = (0..left.min(50_000))
                .map(|_| {
                    let c = generate(&mut rng, a.links);
                    NewRecord::new(c.code.clone(), c.encode()).header(kurz_schemas::headers::SCHEMA_VERSION, Click::VERSION.to_string())
                })
                .collect();
            left -= batch.len() as u64;
            kurz_storage::log::append_keyed(&*log, topics::CLICKS, batch).await.unwrap();
        }
    }
    let ports = kurz::Ports::open(&cfg().storage).await.unwrap();
    let t = Instant::now();
    let records = read_all(&*ports.log).await;
    let read_rate = records as f64 / t.elapsed().as_secs_f64();
    eprintln!("read + decode: {records} records, {read_rate:.0}/s");

    let req = kurz_projector::replay::ReplayRequest { projections: vec!["all".into()], verify: false };
    let report = kurz_projector::replay::rebuild(&ports.replay_sources(), &req, Arc::default(), Arc::default()).await.unwrap();
    eprintln!("replay: {} records in {:.2} s, {:.0}/s", report.records, report.seconds, report.records_per_s);
    assert_eq!(report.records, records, "the replay applied every record once");
    json!({
        "records": records,
        "clicks": a.clicks,
        "links": a.links,
        "read_decode_per_s": read_rate,
        "replay_per_s": report.records_per_s,
        "replay_seconds": report.seconds,
        "ratio_to_read_decode": report.records_per_s / read_rate,
        "goal_per_s": GOAL,
        "goal_met": report.records_per_s >= GOAL,
    })
}

pub fn markdown(v: &Value) -> String {
    format!(
        "# Replay rate: embedded log to embedded store\n\n\
         `kurz replay --all`'s code (`kurz_projector::replay::rebuild`) rebuilds a new store generation from \
         the seed history (`kurz import`) plus {clicks} generated clicks over {links} links: \
         {records} records. Baseline, same run: reading and decoding the same log without \
         applying it.\n\n\
         | | records/s | × read+decode |\n|---|---|---|\n\
         | read + decode (baseline) | {read:.0} | 1.00 |\n\
         | replay (apply to a new generation) | {replay:.0} | {ratio:.3} |\n\n\
         Goal 1,000,000 records/s: **{met}**.\n\n\
         Where the time goes: reading and decoding is {inv:.0}× faster than the replay, so the \
         time is in the store. Each click makes about ten aggregate additions, summed per \
         row within a step (`Additive` in `projector/src/batch.rs`), and one `/events` row \
         with three index entries, applied as read-modify-writes in one redb transaction per \
         step of up to 65,536 records of a partition. The profile is in \
         `bench/results/replay-profile.md`: page allocation and zeroing for redb's \
         copy-on-write pages and the growing heap, page copies, B-tree lookups.\n\n\
         Reproduce: `cargo run --release -p kurz-bench -- replay`\n",
        clicks = v["clicks"],
        links = v["links"],
        records = v["records"],
        read = v["read_decode_per_s"].as_f64().unwrap_or(0.0),
        replay = v["replay_per_s"].as_f64().unwrap_or(0.0),
        ratio = v["ratio_to_read_decode"].as_f64().unwrap_or(0.0),
        inv = 1.0 / v["ratio_to_read_decode"].as_f64().unwrap_or(1.0).max(1e-9),
        met = if v["goal_met"].as_bool() == Some(true) { "met" } else { "not met" },
    )
}
