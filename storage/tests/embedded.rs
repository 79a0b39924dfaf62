//! Every port's scenario suite against the embedded backends.

use kurz_storage::{open_cache, open_log, open_store, scenarios};
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::log::run(open_log("embedded", dir.path()).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    scenarios::log::run_durability(|| {
        let p = path.clone();
        async move {
            // redb holds a file lock: wait for the previous handle's writer to let go.
            for _ in 0..100 {
                if let Ok(l) = open_log("embedded", &p) {
                    return l;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            open_log("embedded", &p).unwrap()
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::store::run(open_store("embedded", dir.path()).unwrap()).await;
}

#[tokio::test]
async fn vault_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    scenarios::vault::run(kurz_storage::open_vault("embedded", dir.path()).await.unwrap()).await;
    // Keys and erasures survive a reopen.
    let v = kurz_storage::open_vault("embedded", dir.path()).await.unwrap();
    let erased = v.get("7f3c1d2e-0000-4000-8000-000000000001").await.unwrap();
    assert_eq!(erased, kurz_storage::vault::KeyState::Erased { at: 1_700_000_000_123 });
    assert!(matches!(v.get("7f3c1d2e-0000-4000-8000-000000000002").await.unwrap(), kurz_storage::vault::KeyState::Live(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_scenarios() {
    scenarios::cache::run(open_cache("memory").unwrap()).await;
}

#[test]
fn unknown_schemes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(open_log("carrier-pigeon://x", dir.path()).is_err());
    assert!(open_store("nope://x", dir.path()).is_err());
    assert!(open_cache("nope://x").is_err());
}
