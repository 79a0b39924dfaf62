use super::batch::{encode_batch, HEADER};
use super::*;
use kurz_schemas::Ts;
use std::io::Write;

fn recs(n: usize, tag: u8) -> Vec<NewRecord> {
    (0..n).map(|i| NewRecord::new(format!("k{i}"), vec![tag; i + 1]).header("h", vec![tag])).collect()
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_on_open_and_appends_continue_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    {
        let log = RedbLog::open(&path).unwrap();
        log.ensure_topic("t", 1).await.unwrap();
        log.append("t", 0, recs(3, 1)).await.unwrap();
        log.append("t", 0, recs(2, 2)).await.unwrap();
    }
    let file = partition_path(&path.with_extension("data"), "t", 0);
    let good = std::fs::metadata(&file).unwrap().len();
    // A crash mid-write: half a batch at the end, never acknowledged.
    let mut torn = Vec::new();
    encode_batch(&mut torn, Ts(1), 5, &recs(4, 3));
    std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(&torn[..torn.len() / 2]).unwrap();
    let log = RedbLog::open(&path).unwrap();
    assert_eq!(std::fs::metadata(&file).unwrap().len(), good, "the torn batch is gone");
    assert_eq!(log.end_offset("t", 0).await.unwrap(), 5);
    assert_eq!(log.append("t", 0, recs(1, 4)).await.unwrap(), vec![5]);
    let all = log.read("t", 0, 0, 100).await.unwrap();
    assert_eq!(all.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..6).collect::<Vec<_>>());
    assert_eq!(all[5].payload, vec![4]);
}

#[tokio::test]
async fn a_deferred_sync_topic_answers_at_once_and_shows_records_after_its_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    {
        let log = RedbLog::open(&path).unwrap();
        log.ensure_topic("lazy", 2).await.unwrap();
        log.ensure_topic("eager", 1).await.unwrap();
        log.defer_sync("lazy", Duration::from_secs(3600));
        // Offsets are handed out at once and stay dense; nothing is visible yet.
        assert_eq!(log.append("lazy", 1, recs(3, 1)).await.unwrap(), vec![0, 1, 2]);
        assert_eq!(log.append("lazy", 1, recs(2, 2)).await.unwrap(), vec![3, 4]);
        assert_eq!(log.end_offset("lazy", 1).await.unwrap(), 0, "unsynced records are not visible");
        assert!(log.read("lazy", 1, 0, 10).await.unwrap().is_empty());
        // Another topic in the same group commit is synced and visible as before.
        assert_eq!(log.append("eager", 0, recs(1, 9)).await.unwrap(), vec![0]);
        assert_eq!(log.end_offset("eager", 0).await.unwrap(), 1);
        // A short interval: the syncer publishes them.
        log.defer_sync("lazy", Duration::from_millis(20));
        assert_eq!(log.wait_for("lazy", 1, 4, Duration::from_secs(10)).await.unwrap(), 5);
        let all = log.read("lazy", 1, 0, 10).await.unwrap();
        assert_eq!(all.iter().map(|r| r.payload.len()).collect::<Vec<_>>(), vec![1, 2, 3, 1, 2]);
        // Written, not yet synced, when the process goes away (as after kill -9: the
        // page cache keeps the bytes)...
        log.defer_sync("lazy", Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(300)); // the syncer takes the long interval
        assert_eq!(log.append("lazy", 0, recs(2, 5)).await.unwrap(), vec![0, 1]);
        assert_eq!(log.end_offset("lazy", 0).await.unwrap(), 0);
    }
    // ... the records are there when the log opens again, and appends continue after them.
    let log = RedbLog::open(&path).unwrap();
    assert_eq!(log.end_offset("lazy", 0).await.unwrap(), 2);
    assert_eq!(log.end_offset("lazy", 1).await.unwrap(), 5);
    assert_eq!(log.append("lazy", 1, recs(1, 6)).await.unwrap(), vec![5]);
    assert_eq!(log.read("lazy", 1, 5, 10).await.unwrap()[0].payload, vec![6]);
    // Going back to a sync per append shows what was written meanwhile at once.
    log.defer_sync("lazy", Duration::from_secs(3600));
    assert_eq!(log.append("lazy", 0, recs(1, 7)).await.unwrap(), vec![2]);
    assert_eq!(log.end_offset("lazy", 0).await.unwrap(), 2);
    log.defer_sync("lazy", Duration::ZERO);
    assert_eq!(log.end_offset("lazy", 0).await.unwrap(), 3);
}

#[tokio::test]
async fn a_corrupt_batch_near_the_end_is_cut_off_with_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let first_len;
    {
        let log = RedbLog::open(&path).unwrap();
        log.ensure_topic("t", 1).await.unwrap();
        log.append("t", 0, recs(3, 1)).await.unwrap();
        first_len = std::fs::metadata(partition_path(&path.with_extension("data"), "t", 0)).unwrap().len();
        log.append("t", 0, recs(3, 2)).await.unwrap();
    }
    let file = partition_path(&path.with_extension("data"), "t", 0);
    let mut bytes = std::fs::read(&file).unwrap();
    let flip = first_len as usize + HEADER + 20;
    bytes[flip] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let log = RedbLog::open(&path).unwrap();
    assert_eq!(log.end_offset("t", 0).await.unwrap(), 3, "the second batch fails its checksum");
    assert_eq!(log.read("t", 0, 0, 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn reads_across_many_batches_use_the_sparse_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = RedbLog::open(&dir.path().join("log.redb")).unwrap();
    log.ensure_topic("t", 1).await.unwrap();
    // About 1 KiB per record: the index gets an entry every ~64 batches.
    let big = |i: u64| NewRecord::new("k", vec![(i % 251) as u8; 1000]);
    for chunk in 0..40u64 {
        log.append("t", 0, (0..100).map(|i| big(chunk * 100 + i)).collect()).await.unwrap();
    }
    let parts = log.partition("t", 0).unwrap();
    assert!(parts[0].visible.read().unwrap().index.len() > 10);
    for from in [0u64, 1, 99, 100, 1234, 3999] {
        let got = log.read("t", 0, from, 7).await.unwrap();
        let want: Vec<u64> = (from..4000.min(from + 7)).collect();
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), want);
        assert!(got.iter().all(|r| r.payload == vec![(r.offset % 251) as u8; 1000]));
    }
    assert_eq!(log.read("t", 0, 0, 10_000).await.unwrap().len(), 4000);
}

#[test]
fn a_batch_whose_offsets_pass_u64_max_is_corrupt_not_a_panic() {
    let rec = NewRecord::new("k".to_string(), b"v".to_vec());
    let batch = fuzzing::encode_batch(u64::MAX, &[rec.clone(), rec]);
    let body = &batch[batch::HEADER..];
    assert!(matches!(fuzzing::decode_batch_body(body), Err(StorageError::Corrupt(_))));
    // The fuzzer's input, kept in fuzz/regressions/log_recovery: no panic either.
    let dir = tempfile::tempdir().unwrap();
    let _ = fuzzing::recover_and_read(dir.path(), &batch);
}

/// Many writers race with the same expected end: exactly one lands, in one group commit
/// or across several, and the rest write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_appends_racing_for_one_end_let_exactly_one_land() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(RedbLog::open(&dir.path().join("log.redb")).unwrap());
    log.ensure_topic("t", 1).await.unwrap();
    for round in 0..20u64 {
        let end = log.end_offset("t", 0).await.unwrap();
        let racers: Vec<_> = (0..8u8)
            .map(|w| {
                let log = log.clone();
                tokio::spawn(async move { log.append_at("t", 0, end, recs(3, w)).await })
            })
            .collect();
        let mut won = 0;
        for r in racers {
            match r.await.unwrap() {
                Ok(offs) => {
                    assert_eq!(offs, vec![end, end + 1, end + 2]);
                    won += 1;
                }
                Err(StorageError::Moved { found, .. }) => assert_eq!(found, end + 3, "round {round}"),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
        assert_eq!(log.end_offset("t", 0).await.unwrap(), end + 3);
    }
}

/// After a failed fsync the kernel may have dropped the pages it could not write, and a
/// later fsync would report success without them: the partition stops instead of
/// retrying, publishes nothing of the failed group, and recovers on reopen.
#[tokio::test]
async fn a_failed_fsync_stops_its_partition_until_a_reopen_recovers_it() {
    use super::partition::failpoint::fail_next_sync;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let file = partition_path(&path.with_extension("data"), "t", 0);
    {
        let log = RedbLog::open(&path).unwrap();
        log.ensure_topic("t", 2).await.unwrap();
        assert_eq!(log.append("t", 0, recs(2, 1)).await.unwrap(), vec![0, 1]);
        fail_next_sync(&file);
        assert!(log.append("t", 0, recs(1, 2)).await.is_err());
        assert_eq!(log.end_offset("t", 0).await.unwrap(), 2, "nothing of the failed group is published");
        let again = log.append("t", 0, recs(1, 3)).await.unwrap_err().to_string();
        assert!(again.contains("stopped after a failed fsync"), "no retry after a failed fsync: {again}");
        assert!(log.append_at("t", 0, 2, recs(1, 3)).await.is_err());
        assert_eq!(log.append("t", 1, recs(1, 4)).await.unwrap(), vec![0], "other partitions go on");
    }
    let log = RedbLog::open(&path).unwrap();
    assert_eq!(log.end_offset("t", 0).await.unwrap(), 2);
    assert_eq!(log.append("t", 0, recs(1, 5)).await.unwrap(), vec![2], "recovered on reopen");
}

#[tokio::test]
async fn a_failed_deferred_sync_publishes_nothing_and_stops_its_partition() {
    use super::partition::failpoint::fail_next_sync;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    let log = RedbLog::open(&path).unwrap();
    log.ensure_topic("c", 1).await.unwrap();
    log.defer_sync("c", Duration::from_millis(10));
    fail_next_sync(&partition_path(&path.with_extension("data"), "c", 0));
    assert_eq!(log.append("c", 0, recs(3, 1)).await.unwrap(), vec![0, 1, 2], "written, answered before its sync");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let err = loop {
        match log.append("c", 0, recs(1, 2)).await {
            Err(e) => break e.to_string(),
            Ok(_) => assert!(std::time::Instant::now() < deadline, "the failed sync never stopped the partition"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(err.contains("stopped after a failed fsync"), "{err}");
    assert_eq!(log.end_offset("c", 0).await.unwrap(), 0, "the unsynced batches were never shown");
}

/// Recovery syncs what it found before publishing it (a batch written by a process
/// killed before its fsync is in the page cache only): a failing sync fails the open.
#[tokio::test]
async fn recovery_syncs_the_records_it_finds_before_anyone_reads_them() {
    use super::partition::failpoint::fail_next_sync;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    {
        let log = RedbLog::open(&path).unwrap();
        log.ensure_topic("t", 1).await.unwrap();
        log.append("t", 0, recs(2, 1)).await.unwrap();
    }
    fail_next_sync(&partition_path(&path.with_extension("data"), "t", 0));
    assert!(RedbLog::open(&path).is_err(), "the open synced the recovered file");
    let log = RedbLog::open(&path).unwrap();
    assert_eq!(log.end_offset("t", 0).await.unwrap(), 2);
}
