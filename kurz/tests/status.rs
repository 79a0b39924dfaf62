//! `kurz status` against a running `kurz serve`.

mod support;
use kurz_testkit::http::client;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_summarises_a_running_process() {
    let s = Server::open();
    let c = client();
    let l: serde_json::Value =
        c.post(s.url("/urls")).json(&json!({"original_url": "https://status.io"})).send().await.unwrap().json().await.unwrap();
    let code = l["short_code"].as_str().unwrap().to_string();
    let base = s.base.clone();
    // Traffic during the status interval, so rates are non-zero.
    let load = tokio::spawn(async move {
        let c = client();
        for _ in 0..200 {
            let _ = c.get(format!("{base}/{code}")).send().await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    });
    let out = tokio::task::spawn_blocking({
        let base = s.base.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_kurz")).args(["status", "--url", &base, "--interval", "0.5"]).output().unwrap()
        }
    })
    .await
    .unwrap();
    load.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    for section in ["rates (per second)", "lag per partition", "kurz.events.v1", "kurz.clicks.v1", "parked records", "top errors"] {
        assert!(text.contains(section), "missing {section:?} in:\n{text}");
    }
    let redirects: f64 =
        text.lines().find(|l| l.trim_start().starts_with("redirects")).and_then(|l| l.split_whitespace().last()).unwrap().parse().unwrap();
    assert!(redirects > 0.0, "{text}");
    // An unreachable process is a clear error, not a panic.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_kurz")).args(["status", "--url", "http://127.0.0.1:1"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("kurz status:"));
}
