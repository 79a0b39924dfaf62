//! `kurz import`: the replaced service's seed history, loaded with its ids, flags and
//! timestamps, in process (embedded storage) and through a running deployment; twice
//! gives the same state.

mod support;

use kurz_testkit::http::client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use support::{seed_dir, Opts, Server, ADMIN_TOKEN};

fn kurz_import(args: &[&str], data: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kurz"))
        .arg("import")
        .args(args)
        .env("KURZ_DATA_DIR", data)
        .env("KURZ_AUTH", "token")
        .env("KURZ_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KURZ_PARTITIONS", "4")
        .env("KURZ_CLICK_PARTITIONS", "2")
        .env("KURZ_LOG", "warn")
        .output()
        .expect("run kurz import");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "kurz import failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn seed_rows(file: &str) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(seed_dir().join(file)).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records().map(|rec| headers.iter().zip(rec.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect()).collect()
}

/// Everything the API serves about the seed's users, links and history.
async fn snapshot(s: &Server) -> Vec<(String, u16, Value)> {
    let c = client();
    let mut paths: Vec<String> = seed_rows("users.csv").iter().map(|u| format!("/users/{}", u["id"])).collect();
    for u in seed_rows("urls.csv") {
        paths.push(format!("/urls/{}", u["id"]));
        paths.push(format!("/events?url_id={}&limit=500", u["id"]));
    }
    let mut out = Vec::new();
    for chunk in paths.chunks(64) {
        let got = futures::future::join_all(chunk.iter().map(|p| {
            let c = c.clone();
            let url = s.url(p);
            async move {
                let r = c.get(url).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            }
        }))
        .await;
        out.extend(chunk.iter().cloned().zip(got).map(|(p, (st, v))| (p, st, v)));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_import_in_process_serves_every_link_and_user_and_a_second_import_changes_nothing() {
    let mut s = Server::start(Opts { auth: "token", ..Opts::default() });
    s.terminate();

    let first = kurz_import(&[seed_dir().to_str().unwrap()], s.data.path());
    for line in ["users.csv: 400 rows, 400 imported, 0 already present", "urls.csv: 2000 rows, 2000 imported, 0 already present"] {
        assert!(first.contains(line), "{line} not in:\n{first}");
    }
    assert!(first.contains("events.csv: 3422 rows, 3422 imported"), "{first}");
    // The disagreements the seed is known for are reported, row by row, not fatal.
    assert!(first.contains("  update_before_create: 602\n") && first.contains("  deleted_but_active: 172\n"), "{first}");
    assert_eq!(first.lines().filter(|l| l.starts_with("update_before_create: events.csv row ")).count(), 602);

    s.restart();
    let c = client();
    let urls = seed_rows("urls.csv");
    assert_eq!(urls.len(), 2000);
    let mut active = 0;
    for chunk in urls.chunks(64) {
        let got = futures::future::join_all(chunk.iter().map(|u| {
            let c = c.clone();
            let (redirect, meta) = (s.url(&format!("/{}", u["short_code"])), s.url(&format!("/urls/{}", u["id"])));
            async move {
                // As a tool, not a visitor: the redirect records a click that is not
                // counted, so no click row lands in `/events` while the snapshots are taken.
                let r = c.get(redirect).header("user-agent", "curl/8.5.0").send().await.unwrap();
                let loc = r.headers().get("location").map(|l| l.to_str().unwrap().to_string());
                let m: Value = c.get(meta).send().await.unwrap().json().await.unwrap();
                (r.status().as_u16(), loc, m)
            }
        }))
        .await;
        for (u, (status, loc, meta)) in chunk.iter().zip(got) {
            let is_active = u["is_active"] == "True";
            assert_eq!(meta["is_active"], is_active, "seed flag of url {}", u["id"]);
            assert_eq!(meta["short_code"], u["short_code"].as_str());
            assert_eq!(meta["user_id"].to_string(), u["user_id"], "owner of url {}", u["id"]);
            if is_active {
                active += 1;
                assert_eq!((status, loc.as_deref()), (302, Some(u["original_url"].as_str())), "redirect of {}", u["short_code"]);
            } else {
                assert_eq!(status, 404, "inactive {} does not redirect", u["short_code"]);
            }
        }
    }
    assert_eq!(active, 1623);
    for u in seed_rows("users.csv") {
        let got: Value = c.get(s.url(&format!("/users/{}", u["id"]))).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
        assert_eq!(got["email"], u["email"].as_str(), "user {}", u["id"]);
    }
    // History is served as it was, ids and timestamps included, and not re-applied:
    // the 172 links with a `deleted` row are still active (checked above).
    let h: Value = c.get(s.url("/events/3210")).send().await.unwrap().json().await.unwrap();
    assert_eq!((h["event_type"].as_str(), h["url_id"].as_i64()), (Some("deleted"), Some(465)), "{h}");
    let before = snapshot(&s).await;
    s.terminate();

    let second = kurz_import(&[seed_dir().to_str().unwrap()], s.data.path());
    for line in [
        "users.csv: 400 rows, 0 imported, 400 already present",
        "urls.csv: 2000 rows, 0 imported, 2000 already present",
        "events.csv: 3422 rows, 0 imported, 3422 already present",
    ] {
        assert!(second.contains(line), "{line} not in:\n{second}");
    }
    s.restart();
    let after = snapshot(&s).await;
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "state differs after the second import");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_through_a_running_deployment_needs_the_admin_token() {
    let s = Server::token();
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_kurz"))
        .args(["import", seed_dir().to_str().unwrap(), "--url", &s.base, "--token", "not-the-token"])
        .env("KURZ_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("HTTP 401"), "{}", String::from_utf8_lossy(&refused.stderr));

    let out = kurz_import(&[seed_dir().to_str().unwrap(), "--url", &s.base, "--token", ADMIN_TOKEN, "--json"], dir.path());
    let report: Value = serde_json::from_str(&out).unwrap();
    let imported: Vec<u64> = report["files"].as_array().unwrap().iter().map(|f| f["imported"].as_u64().unwrap()).collect();
    assert_eq!(imported, vec![400, 2000, 3422]);
    assert_eq!(report["inconsistencies"]["deleted_but_active"].as_array().unwrap().len(), 172);
    let r = client().get(s.url("/r10UYL")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "https://relay.cloud/ivory/kernel/1");
    assert!(!dir.path().join("log.redb").exists(), "--url mode opens no storage of its own");
}
