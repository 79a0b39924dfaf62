//! The event-log scenario suite. `run` takes a fresh, empty log.

use crate::log::claims::{claim, Claimed};
use crate::log::{append_keyed, partition_for, EventLog, NewRecord};
use crate::StorageError;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(log: Arc<dyn EventLog>) {
    topics_keep_their_partition_count(&*log).await;
    appends_read_back_in_order_with_headers(&*log).await;
    reads_start_and_stop_anywhere_across_appends(&*log).await;
    keys_stay_on_one_partition_in_order(&*log).await;
    wait_for_wakes_on_append_and_times_out(log.clone()).await;
    consumer_positions_are_per_group(&*log).await;
    concurrent_appends_get_dense_unique_offsets(log.clone()).await;
    unknown_topics_and_partitions_are_errors(&*log).await;
    conditional_appends_land_only_at_the_expected_end(&*log).await;
    claimed_reads_keep_only_whole_appends_at_their_claims(log.clone()).await;
}

/// `open` must reopen the same storage each time it is called. Checks that what was
/// acknowledged survives a reopen.
pub async fn run_durability<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn EventLog>>,
{
    {
        let log = open().await;
        log.ensure_topic("durable", 2).await.unwrap();
        log.append("durable", 1, vec![NewRecord::new("k", b"one".to_vec()), NewRecord::new("k", b"two".to_vec())]).await.unwrap();
        log.commit("g", "durable", 1, 1).await.unwrap();
    }
    let log = open().await;
    assert_eq!(log.ensure_topic("durable", 8).await.unwrap(), 2, "partition count survives reopen");
    assert_eq!(log.end_offset("durable", 1).await.unwrap(), 2);
    let recs = log.read("durable", 1, 0, 10).await.unwrap();
    assert_eq!(recs.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), vec![b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(log.committed("g", "durable", 1).await.unwrap(), Some(1));
    let next = log.append("durable", 1, vec![NewRecord::new("k", b"three".to_vec())]).await.unwrap();
    assert_eq!(next, vec![2], "offsets continue after reopen");
}

async fn topics_keep_their_partition_count(log: &dyn EventLog) {
    assert_eq!(log.ensure_topic("t.parts", 3).await.unwrap(), 3);
    assert_eq!(log.ensure_topic("t.parts", 5).await.unwrap(), 3);
    assert_eq!(log.partitions("t.parts").await.unwrap(), 3);
}

async fn appends_read_back_in_order_with_headers(log: &dyn EventLog) {
    log.ensure_topic("t.read", 2).await.unwrap();
    let recs: Vec<NewRecord> = (0..10u8).map(|i| NewRecord::new(format!("k{i}"), vec![i; i as usize]).header("h", vec![i])).collect();
    let offs = log.append("t.read", 1, recs.clone()).await.unwrap();
    assert_eq!(offs, (0..10).collect::<Vec<u64>>());
    assert_eq!(log.end_offset("t.read", 1).await.unwrap(), 10);
    assert_eq!(log.end_offset("t.read", 0).await.unwrap(), 0);
    let got = log.read("t.read", 1, 0, 100).await.unwrap();
    assert_eq!(got.len(), 10);
    for (g, r) in got.iter().zip(&recs) {
        assert_eq!((&g.key, &g.payload, &g.headers), (&r.key, &r.payload, &r.headers));
        assert_eq!(g.partition, 1);
        assert!(g.timestamp.0 > 0);
    }
    let mid = log.read("t.read", 1, 4, 3).await.unwrap();
    assert_eq!(mid.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![4, 5, 6]);
    assert!(log.read("t.read", 1, 10, 5).await.unwrap().is_empty());
    assert!(log.read("t.read", 0, 0, 5).await.unwrap().is_empty());
    assert_eq!(got[3].header("h"), Some(&[3u8][..]));
}

/// Appends of different sizes (a backend may store each as one batch): a read from any
/// offset, with any limit, returns exactly the records at those offsets.
async fn reads_start_and_stop_anywhere_across_appends(log: &dyn EventLog) {
    log.ensure_topic("t.spans", 1).await.unwrap();
    let mut all = Vec::new();
    for size in [1usize, 5, 2, 9, 1, 4] {
        let recs: Vec<NewRecord> = (0..size).map(|i| NewRecord::new("k", ((all.len() + i) as u32).to_le_bytes().to_vec())).collect();
        let offs = log.append("t.spans", 0, recs.clone()).await.unwrap();
        assert_eq!(offs, (all.len() as u64..(all.len() + size) as u64).collect::<Vec<_>>());
        all.extend(recs);
    }
    let n = all.len() as u64;
    for from in 0..=n {
        for max in [1usize, 2, 3, 7, 100] {
            let got = log.read("t.spans", 0, from, max).await.unwrap();
            let want: Vec<u64> = (from..n.min(from + max as u64)).collect();
            assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), want, "read from {from} max {max}");
            for r in &got {
                assert_eq!(r.payload, (r.offset as u32).to_le_bytes().to_vec(), "payload at {}", r.offset);
            }
        }
    }
}

async fn keys_stay_on_one_partition_in_order(log: &dyn EventLog) {
    log.ensure_topic("t.keyed", 4).await.unwrap();
    let recs: Vec<NewRecord> = (0..40u32).map(|i| NewRecord::new(format!("key-{}", i % 5), i.to_le_bytes().to_vec())).collect();
    let placed = append_keyed(log, "t.keyed", recs).await.unwrap();
    for (i, (p, _)) in placed.iter().enumerate() {
        assert_eq!(*p, partition_for(&format!("key-{}", i % 5), 4));
    }
    for k in 0..5u32 {
        let key = format!("key-{k}");
        let p = partition_for(&key, 4);
        let all = log.read("t.keyed", p, 0, 1000).await.unwrap();
        let seq: Vec<u32> = all.iter().filter(|r| r.key == key).map(|r| u32::from_le_bytes(r.payload[..4].try_into().unwrap())).collect();
        let expected: Vec<u32> = (0..40).filter(|i| i % 5 == k).collect();
        assert_eq!(seq, expected, "order within a key");
    }
}

async fn wait_for_wakes_on_append_and_times_out(log: Arc<dyn EventLog>) {
    log.ensure_topic("t.wait", 1).await.unwrap();
    let end = log.wait_for("t.wait", 0, 0, Duration::from_millis(50)).await.unwrap();
    assert_eq!(end, 0, "times out with nothing to read");
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_for("t.wait", 0, 0, Duration::from_secs(30)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    log.append("t.wait", 0, vec![NewRecord::new("k", b"x".to_vec())]).await.unwrap();
    assert_eq!(waiter.await.unwrap(), 1);
}

async fn consumer_positions_are_per_group(log: &dyn EventLog) {
    log.ensure_topic("t.pos", 2).await.unwrap();
    assert_eq!(log.committed("a", "t.pos", 0).await.unwrap(), None);
    log.commit("a", "t.pos", 0, 7).await.unwrap();
    log.commit("b", "t.pos", 0, 3).await.unwrap();
    log.commit("a", "t.pos", 0, 9).await.unwrap();
    assert_eq!(log.committed("a", "t.pos", 0).await.unwrap(), Some(9));
    assert_eq!(log.committed("b", "t.pos", 0).await.unwrap(), Some(3));
    assert_eq!(log.committed("a", "t.pos", 1).await.unwrap(), None);
}

async fn concurrent_appends_get_dense_unique_offsets(log: Arc<dyn EventLog>) {
    log.ensure_topic("t.conc", 1).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut offs = Vec::new();
                for i in 0..10 {
                    let recs = (0..5).map(|j| NewRecord::new("k", format!("{t}-{i}-{j}").into_bytes())).collect();
                    let o = log.append("t.conc", 0, recs).await.unwrap();
                    assert!(o.windows(2).all(|w| w[1] == w[0] + 1), "one append is contiguous");
                    offs.extend(o);
                }
                offs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    assert_eq!(all, (0..1000).collect::<Vec<u64>>());
    assert_eq!(log.read("t.conc", 0, 0, 2000).await.unwrap().len(), 1000);
}

async fn unknown_topics_and_partitions_are_errors(log: &dyn EventLog) {
    assert!(log.append("t.none", 0, vec![NewRecord::new("k", vec![])]).await.is_err());
    log.ensure_topic("t.small", 1).await.unwrap();
    assert!(log.append("t.small", 5, vec![NewRecord::new("k", vec![])]).await.is_err());
    assert!(log.read("t.small", 5, 0, 1).await.is_err());
}

async fn conditional_appends_land_only_at_the_expected_end(log: &dyn EventLog) {
    log.ensure_topic("t.cond", 1).await.unwrap();
    let rec = |b: u8| NewRecord::new("k", vec![b]);
    assert_eq!(log.append_at("t.cond", 0, 0, vec![rec(1), rec(2)]).await.unwrap(), vec![0, 1]);
    let stale = log.append_at("t.cond", 0, 1, vec![rec(3)]).await;
    assert!(matches!(stale, Err(StorageError::Moved { expected: 1, found: 2, .. })), "{stale:?}");
    assert_eq!(log.end_offset("t.cond", 0).await.unwrap(), 2, "a refused append writes nothing");
    assert_eq!(log.append_at("t.cond", 0, 2, vec![rec(4)]).await.unwrap(), vec![2]);
    log.wait_for("t.cond", 0, 2, Duration::from_secs(10)).await.unwrap();
    let got: Vec<u8> = log.read("t.cond", 0, 0, 10).await.unwrap().iter().map(|r| r.payload[0]).collect();
    assert_eq!(got, vec![1, 2, 4]);
}

/// Two writers claimed the same offsets; the one that landed second, and an append cut
/// short by the next one, are not read through [`Claimed`]; an append still open at
/// the end is held until it completes.
async fn claimed_reads_keep_only_whole_appends_at_their_claims(log: Arc<dyn EventLog>) {
    log.ensure_topic("t.claims", 1).await.unwrap();
    let recs = |tag: u8, n: u8| (0..n).map(|i| NewRecord::new("k", vec![tag, i])).collect::<Vec<_>>();
    log.append("t.claims", 0, claim(0, recs(1, 2))).await.unwrap();
    log.append("t.claims", 0, claim(0, recs(2, 2))).await.unwrap(); // late: lands at 2..4
    log.append("t.claims", 0, recs(3, 1)).await.unwrap(); // unclaimed: read as it is
    let cut = claim(5, recs(4, 3));
    log.append("t.claims", 0, cut[..1].to_vec()).await.unwrap(); // one of three landed
    log.append("t.claims", 0, claim(6, recs(5, 1))).await.unwrap(); // the next append overtakes it
    let open = claim(7, recs(6, 2));
    log.append("t.claims", 0, open[..1].to_vec()).await.unwrap();
    log.wait_for("t.claims", 0, 7, Duration::from_secs(10)).await.unwrap();
    let claimed = Claimed::new(log.clone(), "t.claims");
    let tags = |rs: Vec<crate::log::Record>| rs.iter().map(|r| (r.payload[0], r.payload[1])).collect::<Vec<_>>();
    assert_eq!(tags(claimed.read("t.claims", 0, 0, 100).await.unwrap()), vec![(1, 0), (1, 1), (3, 0), (5, 0)]);
    // Any start and limit keeps the same records.
    assert_eq!(tags(claimed.read("t.claims", 0, 2, 1).await.unwrap()), vec![(3, 0)]);
    // Readers' positions only ever stop between appends; one that starts inside an
    // append cannot judge it and skips the rest of it.
    assert_eq!(tags(claimed.read("t.claims", 0, 1, 1).await.unwrap()), vec![(3, 0)]);
    assert_eq!(tags(claimed.read("t.claims", 0, 0, 1).await.unwrap()), vec![(1, 0), (1, 1)], "an append is read whole");
    // The open append is held: nothing to read at 7, and waiting there finds nothing.
    assert!(claimed.read("t.claims", 0, 7, 100).await.unwrap().is_empty());
    claimed.wait_for("t.claims", 0, 7, Duration::from_millis(200)).await.unwrap();
    assert!(claimed.read("t.claims", 0, 7, 100).await.unwrap().is_empty());
    log.append("t.claims", 0, open[1..].to_vec()).await.unwrap();
    claimed.wait_for("t.claims", 0, 7, Duration::from_secs(10)).await.unwrap();
    assert_eq!(tags(claimed.read("t.claims", 0, 7, 100).await.unwrap()), vec![(6, 0), (6, 1)]);
    // Other topics pass through.
    log.ensure_topic("t.unclaimed", 1).await.unwrap();
    log.append("t.unclaimed", 0, claim(5, recs(7, 1))).await.unwrap();
    log.wait_for("t.unclaimed", 0, 0, Duration::from_secs(10)).await.unwrap();
    assert_eq!(claimed.read("t.unclaimed", 0, 0, 10).await.unwrap().len(), 1);
}
