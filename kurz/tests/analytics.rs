//! Click analytics over HTTP: `GET /urls/{id}/stats` from real redirects, through the
//! real binary. Visitors are told apart by address (a trusted `x-real-ip` header, as
//! behind the compose file's nginx) and user agent.

mod support;
use kurz_testkit::http::{client, json_of};
use support::*;

use serde_json::{json, Value};
use std::time::{Duration, Instant};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const BOT: &str = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";

fn top(body: &Value, key: &str) -> Vec<(String, u64)> {
    body[key].as_array().unwrap().iter().map(|v| (v["value"].as_str().unwrap().to_string(), v["clicks"].as_u64().unwrap())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_visitors_series_and_breakdowns_and_leave_bots_out() {
    let srv = Server::start(Opts {
        extra_env: vec![("KURZ_CLIENT_IP_HEADER".into(), "x-real-ip".into()), ("KURZ_COUNTRY_HEADER".into(), "cf-ipcountry".into())],
        ..Opts::default()
    });
    let http = client();
    let link: Value = json_of(http.post(srv.url("/urls")).json(&json!({"original_url": "https://example.com/a"}))).await;
    let code = link["short_code"].as_str().unwrap().to_string();
    // (address, agent, referer, country, query, HEAD?)
    let visits = [
        ("198.51.100.1", FIREFOX, Some("https://news.example/x"), "DE", "?utm_source=mail", false),
        ("198.51.100.1", FIREFOX, Some("https://news.example/y"), "DE", "", false), // same visitor again
        ("198.51.100.2", IPHONE, Some("https://social.example/"), "FR", "?utm_source=mail", false),
        ("198.51.100.3", IPHONE, None, "FR", "", false),
        ("198.51.100.4", BOT, None, "US", "", false),    // a bot: recorded, not counted
        ("198.51.100.5", FIREFOX, None, "US", "", true), // HEAD: recorded, not counted
    ];
    for (ip, ua, referer, country, query, head) in visits {
        let url = srv.url(&format!("/{code}{query}"));
        let mut rb = if head { http.head(url) } else { http.get(url) };
        rb = rb.header("x-real-ip", ip).header("user-agent", ua).header("cf-ipcountry", country);
        if let Some(r) = referer {
            rb = rb.header("referer", r);
        }
        assert_eq!(rb.send().await.unwrap().status(), 302);
    }

    let stats_url = srv.url(&format!("/urls/{}/stats", link["id"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let day = loop {
        let body: Value = json_of(http.get(&stats_url)).await;
        if body["total_clicks"] == 4 {
            break body;
        }
        assert!(Instant::now() < deadline, "stats never reached 4 clicks: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(day["bucket"], "day");
    assert!(day["unique_visitors"] == 3 || day["unique_visitors"] == 4, "three visitors (four if midnight fell between): {day}");
    let series = day["series"].as_array().unwrap();
    assert_eq!(series.len(), 31, "30 days back from now touch 31 UTC days");
    // (Summed, not read off the last bucket: the clicks may straddle UTC midnight.)
    assert_eq!(series.iter().map(|b| b["clicks"].as_u64().unwrap()).sum::<u64>(), 4);
    assert!((3..=4).contains(&series.iter().map(|b| b["unique_visitors"].as_u64().unwrap()).sum::<u64>()));
    assert_eq!(top(&day, "referrers"), vec![("news.example".into(), 2), ("direct".into(), 1), ("social.example".into(), 1)]);
    assert_eq!(top(&day, "browsers"), vec![("Firefox".into(), 2), ("Safari".into(), 2)]);
    assert_eq!(top(&day, "devices"), vec![("desktop".into(), 2), ("mobile".into(), 2)]);
    assert_eq!(top(&day, "os"), vec![("Linux".into(), 2), ("iOS".into(), 2)]);
    assert_eq!(top(&day, "countries"), vec![("DE".into(), 2), ("FR".into(), 2)]);
    assert_eq!(top(&day, "utm_sources"), vec![("mail".into(), 2)]);

    // The same clicks by hour, over the last two hours.
    let now = chrono_now_ms();
    let hourly: Value = json_of(http.get(format!("{stats_url}?bucket=hour&from={}&to={}", now - 2 * 3_600_000, now + 1))).await;
    assert_eq!(hourly["total_clicks"], 4, "{hourly}");
    assert!(hourly["series"].as_array().unwrap().iter().all(|b| b.get("unique_visitors").is_none()));
    assert_eq!(hourly["series"].as_array().unwrap().iter().map(|b| b["clicks"].as_u64().unwrap()).sum::<u64>(), 4);
    // A range before the clicks holds none.
    let before: Value = json_of(http.get(format!("{stats_url}?from=2020-01-01T00:00:00Z&to=2020-01-08T00:00:00Z"))).await;
    assert_eq!((before["total_clicks"].as_u64(), before["series"].as_array().map(Vec::len)), (Some(0), Some(7)));

    // `/{code}+` agrees: bots and HEAD requests are not counted.
    let plus: Value = http.get(srv.url(&format!("/{code}+"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(plus["click_count"], 4);

    // Bad input is a clear 400; an unknown link a 404.
    for (q, needle) in [
        ("?bucket=week", "bucket"),
        ("?from=yesterday", "from"),
        ("?from=2020-01-02T00:00:00Z&to=2020-01-01T00:00:00Z", "before"),
        ("?bucket=hour&from=0", "buckets"),
    ] {
        let r = http.get(format!("{stats_url}{q}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let msg = r.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{q}: {msg}");
    }
    assert_eq!(http.get(srv.url("/urls/987654321/stats")).send().await.unwrap().status(), 404);

    // `kurz tail`: the embedded log is the running process's; once it has stopped,
    // tail prints every click (bots and HEAD requests included, flagged).
    let tail = |data: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kurz"))
            .args(["tail", "clicks", "--from-beginning", "--exit"])
            .env("KURZ_DATA_DIR", data)
            .output()
            .unwrap()
    };
    let busy = tail(srv.data.path());
    assert!(!busy.status.success() && String::from_utf8_lossy(&busy.stderr).contains("stopped"), "{busy:?}");
    let mut srv = srv;
    assert!(srv.terminate().success());
    let done = tail(srv.data.path());
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let lines: Vec<Value> = String::from_utf8(done.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6, "every redirect, counted or not");
    assert_eq!(lines.iter().filter(|l| l["bot"] == true).count(), 1);
    assert_eq!(lines.iter().filter(|l| l["head"] == true).count(), 1);

    // `kurz verify-log` on the stopped process's log: clean; then with a link's creation
    // appended a second time (a record without a claim, as a writer before claims would
    // leave it), it names the alias and exits 1.
    let verify = |data: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kurz"))
            .args(["verify-log", "--json"])
            .env("KURZ_DATA_DIR", data)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    };
    let (code, clean) = verify(srv.data.path());
    assert_eq!(code, Some(0), "{clean}");
    assert!(clean["events"].as_u64().unwrap() >= 2, "{clean}");
    assert_eq!(clean["aliases_granted_twice"]["count"], 0);
    {
        use kurz_storage::log::{EventLog, NewRecord};
        let log = kurz_storage::log::embedded::RedbLog::open(&srv.data.path().join("log.redb")).unwrap();
        let mut again = None;
        for p in 0..log.partitions("kurz.events.v1").await.unwrap() {
            for r in log.read("kurz.events.v1", p, 0, 1000).await.unwrap() {
                if again.is_none() && String::from_utf8_lossy(&r.payload).contains("\"type\":\"link_created\"") {
                    again = Some((p, NewRecord::new(r.key.clone(), r.payload.clone())));
                }
            }
        }
        let (p, rec) = again.expect("a link_created event");
        log.append("kurz.events.v1", p, vec![rec]).await.unwrap();
    }
    let (code, dirty) = verify(srv.data.path());
    assert_eq!(code, Some(1), "{dirty}");
    assert_eq!(dirty["aliases_granted_twice"]["count"], 1, "{dirty}");
    assert_eq!(dirty["commands_decided_twice"]["count"], 0, "{dirty}");
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
