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
    // No cache keeps no links, and still keeps visit counts.
    scenarios::cache::visit_counts_are_seeded_once_and_exact(open_cache("none").unwrap()).await;
}

#[test]
fn unknown_schemes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(open_log("carrier-pigeon://x", dir.path()).is_err());
    assert!(open_store("nope://x", dir.path()).is_err());
    assert!(open_cache("nope://x").is_err());
}

/// A claim names the store generation that issued it: after a switch, a batch claimed
/// in the old generation is fenced, and a claim in the new one fences the writer that
/// built it (a replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generation_switch_fences_claims_of_the_old_one() {
    use kurz_storage::store::generations::{embedded_file, Generations};
    use kurz_storage::store::{ApplyError, Mutation, Position};
    use kurz_storage::{ReadStore, StoreBatch};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let opener = move |n: u64| {
        let store: std::sync::Arc<dyn ReadStore> =
            std::sync::Arc::new(kurz_storage::store::embedded::RedbStore::open(&embedded_file(&root, n))?);
        Ok(store)
    };
    let gens = Generations::with_opener(Box::new(opener), 0).unwrap();
    let id = kurz_schemas::Id::new(5).unwrap();
    let batch = |from, to, epoch| StoreBatch {
        positions: vec![Position { projection: "p".into(), topic: "t".into(), partition: 0, from, to }],
        mutations: vec![Mutation::AddClicks { link_id: id, n: 1 }],
        epoch,
        ..Default::default()
    };
    let live = gens.claim("t", 0).await.unwrap();
    gens.apply(batch(0, 1, live)).await.unwrap();
    // A replay builds generation 1 under a claim of its own, then the switch.
    let next = gens.store(1).unwrap();
    let replay = next.claim("t", 0).await.unwrap();
    next.apply(batch(0, 1, replay)).await.unwrap();
    gens.switch_to(1).unwrap();
    assert!(matches!(gens.apply(batch(1, 2, live)).await, Err(ApplyError::Fenced { .. })), "an old generation's claim");
    let live = gens.claim("t", 0).await.unwrap();
    assert!(matches!(next.apply(batch(1, 2, replay)).await, Err(ApplyError::Fenced { .. })), "the replay is overtaken");
    gens.apply(batch(1, 2, live)).await.unwrap();
    assert_eq!((gens.click_count(id).await.unwrap(), gens.position("p", "t", 0).await.unwrap()), (2, 2));
}
