//! `SIGSTOP` of the only projector, in a split deployment over tansu and the CQL node:
//! the watchdog reports its partitions as stalled and applies them itself, so a write
//! made meanwhile is answered and served; once the projector continues, it finds the
//! work done and goes on without applying anything twice.

use kurz_testkit::deploy::{Kurz, Opts, Role, Split};
use kurz_testkit::http::Api;

const KURZ: Kurz = Kurz { bin: env!("CARGO_BIN_EXE_kurz"), partition_for: kurz_storage::log::partition_for };

async fn metric(api: &Api, line_prefix: &str) -> f64 {
    let text = api.get("/metrics").await.text;
    text.lines().filter(|l| l.starts_with(line_prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_the_projector_is_reported_and_its_work_redriven_by_the_watchdog() {
    let s = Split::start(
        KURZ,
        Opts {
            command_apis: 1,
            projectors: 1,
            query_edges: 1,
            watchdogs: 1,
            extra_env: vec![
                ("KURZ_WATCHDOG_STALL_MS".into(), "2000".into()),
                // Generous: the write below waits on the watchdog, not on a clock.
                ("KURZ_OUTCOME_TIMEOUT_MS".into(), "60000".into()),
            ],
            ..Opts::default()
        },
    )
    .await;
    let front = s.api();
    let dog = s.proc(Role::Watchdog, 0).api();
    let edge = s.proc(Role::QueryEdge, 0).api();
    let stalls_before = metric(&dog, "kurz_watchdog_stalls_total{topic=\"kurz.events.v1\"}").await;
    let drives_before = metric(&dog, "kurz_watchdog_redriven_total{kind=\"partition\"}").await;

    s.signal(Role::Projector, 0, "STOP");
    let r = front
        .post_as(s.token(), "/urls", serde_json::json!({ "original_url": "https://stall.test/one", "short_code": "stalled-one" }))
        .await;
    assert_eq!(r.status, 201, "the write waiting on the stopped projector was answered: {}\n{}", r.text, s.report());
    let hit = edge.get("/stalled-one").await;
    assert_eq!(hit.status, 302, "served while the projector is still stopped");

    // The watchdog said so, and did it.
    assert!(metric(&dog, "kurz_watchdog_stalls_total{topic=\"kurz.events.v1\"}").await > stalls_before, "{}", s.report());
    assert!(metric(&dog, "kurz_watchdog_redriven_total{kind=\"partition\"}").await > drives_before);
    let reports = s.proc(Role::Watchdog, 0).grep("\"partition_stalled\"");
    assert!(reports.iter().any(|l| l.contains("kurz.events.v1")), "no stall report in the watchdog's log");

    // The projector continues: its next work is refused by the moved positions and it
    // reloads them; later writes flow through it as before.
    s.signal(Role::Projector, 0, "CONT");
    let r = front
        .post_as(s.token(), "/urls", serde_json::json!({ "original_url": "https://stall.test/two", "short_code": "stalled-two" }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(edge.get("/stalled-two").await.status, 302);
    let mut s = s;
    assert!(s.unexpected_exits().is_empty(), "{:?}", s.unexpected_exits());
}
