//! Explicit ids of bulk loads are owned: two rows bringing one id load once, even when
//! their short codes route them to different deciding partitions, and a later load
//! cannot bring the id back under another code.

mod support;

use kurz_storage::log::partition_for;
use kurz_testkit::http::{client, json_of};
use serde_json::Value;
use support::Server;

/// A code that routes to command partition `p` of the server's 4.
fn code_on(p: u32, tag: &str) -> String {
    (0..).map(|i| format!("{tag}{i}")).find(|c| partition_for(&format!("link:{c}"), 4) == p).unwrap()
}

async fn bulk(c: &reqwest::Client, s: &Server, path: &str, csv: String) -> Value {
    json_of(c.post(s.url(path)).header("content-type", "text/csv").body(csv)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rows_with_one_id_on_different_partitions_load_once() {
    let s = Server::open();
    let c = client();
    let (a, b) = (code_on(0, "ida"), code_on(1, "idb"));
    let csv = format!("id,short_code,original_url\n777001,{a},https://ids.example/a\n777001,{b},https://ids.example/b\n");
    let r = bulk(&c, &s, "/urls/bulk", csv).await;
    assert_eq!((r["count"].as_u64(), r["skipped"].as_u64()), (Some(1), Some(1)), "{r}");
    assert!(r["problems"][0].as_str().unwrap().contains("url id 777001 already exists"), "{r}");
    let link = json_of(c.get(s.url("/urls/777001"))).await;
    let winner = link["short_code"].as_str().unwrap().to_string();
    assert!(winner == a || winner == b, "{link}");
    let loser = if winner == a { &b } else { &a };
    assert_eq!(c.get(s.url(&format!("/{winner}"))).send().await.unwrap().status(), 302);
    assert_eq!(c.get(s.url(&format!("/{loser}"))).send().await.unwrap().status(), 404, "the second row made no link");

    // A later load cannot bring the id back under a code of a third partition.
    let third = code_on(2, "idc");
    let r = bulk(&c, &s, "/urls/bulk", format!("id,short_code,original_url\n777001,{third},https://ids.example/c\n")).await;
    assert_eq!(r["count"].as_u64(), Some(0), "{r}");
    assert_eq!(c.get(s.url(&format!("/{third}"))).send().await.unwrap().status(), 404);
    assert_eq!(json_of(c.get(s.url("/urls/777001"))).await["short_code"], winner.as_str());

    // History rows: one id on two links of different partitions.
    // (History rows name their link by an imported id: explicit ids are below 2^40.)
    let ids = [777101u64, 777102];
    let csv = format!(
        "id,short_code,original_url\n{},{},https://ids.example/e\n{},{},https://ids.example/e\n",
        ids[0],
        code_on(0, "eva"),
        ids[1],
        code_on(3, "evb")
    );
    assert_eq!(bulk(&c, &s, "/urls/bulk", csv).await["count"].as_u64(), Some(2));
    let csv = format!("id,url_id,event_type\n888001,{},view\n888001,{},view\n", ids[0], ids[1]);
    let r = bulk(&c, &s, "/events/bulk", csv).await;
    assert_eq!((r["count"].as_u64(), r["skipped"].as_u64()), (Some(1), Some(1)), "{r}");
    assert!(r["problems"][0].as_str().unwrap().contains("event id 888001 already exists"), "{r}");
    let mut found = 0;
    for id in &ids {
        let evs = json_of(c.get(s.url(&format!("/events?url_id={id}&limit=100")))).await;
        found += evs.as_array().unwrap().iter().filter(|e| e["id"] == 888001).count();
    }
    assert_eq!(found, 1, "one history row with the id");
}
