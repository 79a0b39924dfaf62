//! A bare group member, for tests and diagnosis of group behaviour: joins `<group>` for
//! `<topic>` on a `kafka://` log and prints the partitions it owns, one line per change
//! (`owned 0,1,2`). Run several, `kill -9` one, and watch the others take over.
//!
//! `kurz-group-member <log-url> <group> <topic> <partitions>`

use kurz_storage::log::membership::run_owned;
use std::io::Write;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, group, topic, partitions] = args.as_slice() else {
        eprintln!("usage: kurz-group-member <log-url> <group> <topic> <partitions>");
        std::process::exit(2);
    };
    let partitions: u32 = partitions.parse().unwrap_or_else(|_| {
        eprintln!("partitions must be a number");
        std::process::exit(2)
    });
    let fail = |what: &str, e: kurz_storage::StorageError| -> ! {
        eprintln!("{what}: {e}");
        std::process::exit(1)
    };
    let log = kurz_storage::open_log(url, std::path::Path::new(".")).unwrap_or_else(|e| fail("open log", e));
    log.ensure_topic(topic, partitions).await.unwrap_or_else(|e| fail("create topic", e));
    let m = log.join(group, topic).await.unwrap_or_else(|e| fail("join", e));
    let mut w = m.watch();
    tokio::spawn(async move {
        loop {
            let a = w.borrow_and_update().clone();
            let list: Vec<String> = a.partitions.iter().map(|p| p.to_string()).collect();
            {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "owned {}", list.join(","));
                let _ = out.flush();
            }
            if w.changed().await.is_err() {
                break;
            }
        }
    });
    run_owned(m, CancellationToken::new(), Duration::from_secs(5), |_p, stop| async move { stop.cancelled().await }).await;
}
