//! The click and event topics are a public interface. An outside consumer, written only
//! against the published JSON Schemas (`schemas/json/`) with a plain Kafka client (not
//! kurz's code), reads the real records a running kurz wrote: every record is valid
//! against its version's schema, and carries what capture promises (user-agent class,
//! bot and HEAD flags, UTM parameters, a visitor hash, a country, never the address).

mod support;
use kurz_testkit::http::{client, json_of};
use support::*;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn published(name: &str) -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/json").join(name);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Every record of `topic` from the beginning, as JSON, until `want` are read.
fn read_topic(port: u16, topic: &str, want: usize) -> Vec<(Value, HashMap<String, String>)> {
    use rdkafka::message::Headers;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{port}"))
        .set("group.id", format!("outside-analytics-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < want {
        assert!(Instant::now() < deadline, "read {} of {want} records of {topic}", out.len());
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let body: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())).collect())
                .unwrap_or_default();
            out.push((body, headers));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_consumer_reads_real_clicks_and_events_by_the_published_schemas() {
    let broker = kurz_testkit::Tansu::memory();
    let srv = Server::start(Opts {
        extra_env: vec![
            ("KURZ_LOG_URL".into(), format!("{}?session_timeout_ms=6000", broker.url())),
            ("KURZ_COUNTRY_HEADER".into(), "cf-ipcountry".into()),
        ],
        ..Opts::default()
    });
    let http = client();
    let link: Value =
        json_of(http.post(srv.url("/urls")).json(&json!({"original_url": "https://example.com/landing", "short_code": "consumer-test"})))
            .await;
    let follow = |ua: Option<&'static str>, head: bool| {
        let mut rb = if head {
            http.head(srv.url("/consumer-test?utm_source=newsletter&utm_campaign=spring"))
        } else {
            http.get(srv.url("/consumer-test?utm_source=newsletter&utm_campaign=spring"))
        };
        rb = rb.header("referer", "https://news.example.org/today?id=1").header("cf-ipcountry", "nl");
        if let Some(ua) = ua {
            rb = rb.header("user-agent", ua);
        }
        rb.send()
    };
    for (ua, head) in [(Some(CHROME), false), (Some(GOOGLEBOT), false), (Some(CHROME), true)] {
        assert_eq!(follow(ua, head).await.unwrap().status(), 302);
    }

    let clicks = published("click.v2.schema.json");
    let records = read_topic(broker.port, "kurz.clicks.v1", 3);
    for (r, headers) in &records {
        let errors: Vec<String> = clicks.iter_errors(r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{r}: {errors:?}");
        assert_eq!(headers.get("schema-version").map(String::as_str), Some("2"));
        assert_eq!(r["link_id"], link["id"]);
        assert_eq!((r["referrer_host"].as_str(), r["country"].as_str()), (Some("news.example.org"), Some("NL")));
        assert_eq!((r["utm"]["source"].as_str(), r["utm"]["campaign"].as_str()), (Some("newsletter"), Some("spring")));
        assert_eq!(r["visitor"].as_str().map(str::len), Some(32), "{r}");
        assert!(!r.to_string().contains("127.0.0.1"), "the address never reaches the topic: {r}");
        assert!(r.get("user_agent").is_none(), "v2 carries the class, not the header: {r}");
    }
    let flags: Vec<(bool, bool, String)> = records
        .iter()
        .map(|(r, _)| {
            (
                r["bot"].as_bool().unwrap_or(false),
                r["head"].as_bool().unwrap_or(false),
                r["agent"]["browser"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(flags.contains(&(false, false, "Chrome".into())), "{flags:?}");
    assert!(flags.iter().any(|(bot, head, _)| *bot && !*head), "{flags:?}");
    assert!(flags.contains(&(false, true, "Chrome".into())), "{flags:?}");
    // The same browser from the same address on the same day is one visitor.
    let chrome: Vec<&Value> = records.iter().filter(|(r, _)| r["agent"]["browser"] == "Chrome").map(|(r, _)| &r["visitor"]).collect();
    assert_eq!(chrome[0], chrome[1]);

    // Bots and HEAD requests are recorded, not counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats: Value = json_of(http.get(srv.url("/consumer-test+"))).await;
        let events: Value =
            http.get(srv.url(&format!("/events?url_id={}&event_type=click", link["id"]))).send().await.unwrap().json().await.unwrap();
        if stats["click_count"] == 1 && events.as_array().map(Vec::len) == Some(1) {
            assert_eq!((events[0]["details"]["browser"].as_str(), events[0]["details"]["country"].as_str()), (Some("Chrome"), Some("NL")));
            break;
        }
        assert!(Instant::now() < deadline, "click count {} and click events {events} never settled at 1", stats["click_count"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The runnable consumer prints the same records as JSON lines.
    let tail = std::process::Command::new(env!("CARGO_BIN_EXE_kurz"))
        .args(["tail", "clicks", "--from-beginning", "--exit"])
        .env("KURZ_LOG_URL", broker.url())
        .env("KURZ_DATA_DIR", srv.data.path())
        .output()
        .unwrap();
    assert!(tail.status.success(), "kurz tail: {}", String::from_utf8_lossy(&tail.stderr));
    let lines: Vec<Value> = String::from_utf8(tail.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| clicks.is_valid(l)));

    // An orphan visit is a version 3 record of the same topic, valid by its own schema:
    // the code asked for, never the rest of the path nor the query.
    let orphan = http.get(srv.url("/no-such-code/secret-token?key=hunter2")).header("user-agent", CHROME).send().await.unwrap();
    assert_eq!(orphan.status(), 404);
    let orphans = published("click.v3.schema.json");
    let all = read_topic(broker.port, "kurz.clicks.v1", 4);
    let (r, headers) = all.iter().find(|(r, _)| r["v"] == 3).unwrap_or_else(|| panic!("no v3 record in {all:?}"));
    let errors: Vec<String> = orphans.iter_errors(r).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{r}: {errors:?}");
    assert_eq!(headers.get("schema-version").map(String::as_str), Some("3"));
    assert_eq!((r["orphan"].as_str(), r["code"].as_str(), r.get("link_id")), (Some("not_found"), Some("no-such-code"), None), "{r}");
    assert!(!r.to_string().contains("secret-token") && !r.to_string().contains("hunter2"), "{r}");
    assert!(!clicks.is_valid(r), "a v2 consumer's schema refuses it: it has no link");

    // The events topic, by its own published schema: the current version, 2.
    let events = published("event.v2.schema.json");
    for (r, headers) in read_topic(broker.port, "kurz.events.v1", 2) {
        let errors: Vec<String> = events.iter_errors(&r).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{r}: {errors:?}");
        assert_eq!(headers.get("schema-version").map(String::as_str), Some("2"));
        assert_eq!(r["v"], 2, "{r}");
    }
}
