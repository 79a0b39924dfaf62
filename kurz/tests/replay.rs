//! `kurz replay`: rebuilds the read models into a new store generation while the
//! serving one keeps serving, switches, verifies against the serving one, and resumes
//! after a `kill -9` with the same result as an uninterrupted replay.

mod support;

use kurz_schemas::{topics, Agent, Click, ControlEvent, Device, Id, Ts, Utm};
use kurz_testkit::http::client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use support::{seed_dir, Opts, Server, ADMIN_TOKEN};

fn kurz(args: &[&str], data: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kurz"));
    c.args(args)
        .env("KURZ_DATA_DIR", data)
        .env("KURZ_AUTH", "token")
        .env("KURZ_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("KURZ_PARTITIONS", "4")
        .env("KURZ_CLICK_PARTITIONS", "2")
        .env("KURZ_LOG", "warn");
    c
}

fn report(out: std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "kurz replay failed ({:?}): {}\n{stdout}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// What the API serves for a sample of the seed, plus a link's analytics.
async fn snapshot(s: &Server, code: &str, link_id: u64) -> Vec<(String, u16, Value)> {
    let c = client();
    let mut paths: Vec<String> = (1..=400).step_by(7).map(|u| format!("/users/{u}")).collect();
    for id in (1..=2000).step_by(13) {
        paths.push(format!("/urls/{id}"));
        paths.push(format!("/events?url_id={id}&limit=500"));
    }
    paths.push(format!("/{code}+"));
    paths.push(format!("/urls/{link_id}/stats?bucket=day"));
    paths.push("/events?event_type=click&limit=500".into());
    let mut out = Vec::new();
    for p in paths {
        let r = c.get(s.url(&p)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        let (status, mut body) = (r.status().as_u16(), r.json::<Value>().await.unwrap());
        // The stats window defaults to the last 30 days from now: only the data counts.
        if let Some(o) = body.as_object_mut().filter(|_| p.contains("/stats")) {
            o.remove("from");
            o.remove("to");
        }
        out.push((p, status, body));
    }
    out
}

/// `/{code}+`'s `click_count` once it reaches `want`, or the last one seen after 20 s.
async fn click_count_reaching(s: &Server, code: &str, want: u64) -> u64 {
    let c = client();
    let mut counted = 0;
    for _ in 0..400 {
        let v: Value = c.get(s.url(&format!("/{code}+"))).send().await.unwrap().json().await.unwrap();
        counted = v["click_count"].as_u64().unwrap();
        if counted == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    counted
}

#[track_caller]
fn assert_same(now: &[(String, u16, Value)], before: &[(String, u16, Value)]) {
    assert_eq!(now.len(), before.len());
    let differ: Vec<_> = now.iter().zip(before).filter(|(a, b)| a != b).collect();
    assert!(differ.is_empty(), "{} of {} reads differ, e.g. {:#?}", differ.len(), now.len(), differ.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_switches_generations_while_serving_and_verify_finds_no_difference() {
    let mut s = Server::start(Opts { auth: "token", ..Opts::default() });
    s.terminate();
    assert!(kurz(&["import", seed_dir().to_str().unwrap()], s.data.path()).output().unwrap().status.success());
    s.restart();
    let c = client();

    // Clicks with varied agents, referrers and a bot, so every aggregate has rows.
    let link: Value = c.get(s.url("/urls/5")).send().await.unwrap().json().await.unwrap();
    let code = link["short_code"].as_str().unwrap().to_string();
    assert_eq!(link["is_active"], true, "{link}");
    let agents = ["Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Googlebot/2.1", "curl/8.0"];
    for i in 0..30 {
        let r = c
            .get(s.url(&format!("/{code}?utm_source=s{}", i % 3)))
            .header("user-agent", agents[i % 3])
            .header("referer", format!("https://r{}.example/x", i % 4))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
    }
    assert_eq!(click_count_reaching(&s, &code, 10).await, 10, "browser clicks counted, bots not");
    let before = snapshot(&s, &code, 5).await;
    // A link with every option: both replays bring it back as it was, and it answers as
    // its options say.
    let options = json!({
        "original_url": "https://opts.example/p", "valid_until": "2999-01-01T00:00:00Z", "redirect_type": 308,
        "forward_path": true, "forward_query": false, "crawlable": true,
        "rules": [{"conditions": [{"type": "language", "value": "de"}], "target": "https://opts.example/de"}],
    });
    let r = c.post(s.url("/urls")).bearer_auth(ADMIN_TOKEN).json(&options).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let with_options: Value = r.json().await.unwrap();
    // HEAD: the answer a GET gets, with a click recorded but not counted, so no history
    // row is added to what the snapshots compare (however soon after it they are taken).
    let answers = |c: reqwest::Client, url: String| async move {
        let r = c.head(url).header("accept-language", "de-DE").send().await.unwrap();
        (r.status().as_u16(), r.headers().get("location").map(|l| l.to_str().unwrap().to_string()))
    };
    // An orphan visit: counted apart from every link, and counted again by each replay.
    assert_eq!(c.get(s.url("/no-such-replay-code")).send().await.unwrap().status(), 404);
    let orphans = |c: reqwest::Client, url: String| async move {
        let v: Value = c.get(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
        v["by_kind"]["not_found"].as_u64().unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while orphans(c.clone(), s.url("/visits/orphan")).await != 1 {
        assert!(std::time::Instant::now() < deadline, "the orphan visit was not counted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let opts_url = s.url(&format!("/{}/x?q=1", with_options["short_code"].as_str().unwrap()));
    // A domain with a fallback, and a link on it: the registry and the link's lookup by
    // host and code come back too.
    let domain = json!({"host": "replay.example", "not_found_redirect": "https://opts.example/missing"});
    let r = c.post(s.url("/domains")).bearer_auth(ADMIN_TOKEN).json(&domain).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let registered: Value = r.json().await.unwrap();
    let on_domain = json!({"original_url": "https://opts.example/on-domain", "short_code": "replay-dom", "domain": "replay.example"});
    let r = c.post(s.url("/urls")).bearer_auth(ADMIN_TOKEN).json(&on_domain).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let on_domain: Value = r.json().await.unwrap();
    let on_host = |c: reqwest::Client, url: String| async move {
        let r = c.head(url).header("host", "replay.example").send().await.unwrap();
        (r.status().as_u16(), r.headers().get("location").map(|l| l.to_str().unwrap().to_string()))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while on_host(c.clone(), s.url("/replay-dom")).await.0 != 302 {
        assert!(std::time::Instant::now() < deadline, "the domain's link did not answer on its host");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Replay 1 with writes going on: every create is answered and read back at once,
    // before, during and after the switch.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, base) = (stop.clone(), s.base.clone());
        tokio::spawn(async move {
            let c = client();
            let mut done = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) || done.len() < 20 {
                i += 1;
                let r = c
                    .post(format!("{base}/urls"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({"original_url": format!("https://during.example/{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "create {i} during the replay");
                let v: Value = r.json().await.unwrap();
                // HEAD: a redirect that records no counted click, so the history stays put.
                let got = c.head(format!("{base}/{}", v["short_code"].as_str().unwrap())).send().await.unwrap();
                assert_eq!(got.status(), 302, "create {i} read back at once");
                done.push(v);
            }
            done
        })
    };
    let first = report(kurz(&["replay", "--all", "--url", &s.base, "--json"], s.data.path()).output().unwrap());
    stop.store(true, Ordering::Relaxed);
    let created = writer.await.unwrap();
    assert_eq!(
        (first["generation"].as_u64(), first["previous"].as_u64(), first["resumed"].as_bool()),
        (Some(1), Some(0), Some(false)),
        "{first}"
    );
    assert!(first["records"].as_u64().unwrap() > 5000, "{first}");
    for v in &created {
        let got: Value = c.get(s.url(&format!("/urls/{}", v["id"]))).send().await.unwrap().json().await.unwrap();
        assert_eq!(got["short_code"], v["short_code"], "a link created during the replay is in the new generation");
    }
    assert!(s.data.path().join("store.g1.redb").exists());

    // Replay 2 right after, verified against generation 1: no difference, and the API
    // answers what it answered before either replay.
    let second = report(kurz(&["replay", "--all", "--verify", "--url", &s.base, "--json"], s.data.path()).output().unwrap());
    assert_eq!(second["generation"].as_u64(), Some(2), "{second}");
    assert_eq!(second["differences"], json!([]), "{second}");
    assert_same(&snapshot(&s, &code, 5).await, &before);
    let replayed: Value = c.get(s.url(&format!("/urls/{}", with_options["id"]))).send().await.unwrap().json().await.unwrap();
    assert_eq!(replayed, with_options, "a link's options survive replay");
    assert_eq!(answers(c.clone(), opts_url).await, (308, Some("https://opts.example/de/x".to_string())));
    assert_eq!(orphans(c.clone(), s.url("/visits/orphan")).await, 1, "orphan visits survive replay, once");
    let robots = c.get(s.url("/robots.txt")).send().await.unwrap().text().await.unwrap();
    assert!(robots.contains(&format!("Allow: /{}\n", with_options["short_code"].as_str().unwrap())), "{robots}");
    let read: Value = c.get(s.url("/domains/replay.example")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!(read, registered, "the domain registry survives replay");
    let replayed: Value = c.get(s.url(&format!("/urls/{}", on_domain["id"]))).send().await.unwrap().json().await.unwrap();
    assert_eq!(replayed, on_domain, "a domain's link survives replay");
    assert_eq!(on_host(c.clone(), s.url("/replay-dom")).await, (302, Some("https://opts.example/on-domain".to_string())));
    assert_eq!(on_host(c.clone(), s.url("/no-such-replay-code")).await, (302, Some("https://opts.example/missing".to_string())));
    assert_eq!(c.head(s.url("/replay-dom")).send().await.unwrap().status(), 404, "on no other host");

    // The serving generation survives a restart (the control topic names it).
    s.restart();
    assert_same(&snapshot(&s, &code, 5).await, &before);

    // Bad input: an unknown projection, a missing token.
    let bad = kurz(&["replay", "nosuch", "--url", &s.base], s.data.path()).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no projection 'nosuch'"), "{}", String::from_utf8_lossy(&bad.stderr));
    let r = c.post(s.url("/admin/replay")).json(&json!({"projections": ["all"]})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r =
        c.post(s.url("/admin/replay")).bearer_auth(ADMIN_TOKEN).header("content-type", "application/json").body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    // A form post (text/plain) cannot start a replay: 415 before the body is read.
    let r = c
        .post(s.url("/admin/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"projections": ["all"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

/// Appends `n` synthetic clicks on seed links, straight to the stopped kurz's log.
async fn append_clicks(data: &std::path::Path, n: usize) {
    let log = kurz_storage::open_log("embedded", data).unwrap();
    let mut left = n;
    while left > 0 {
        let batch: Vec<_> = (0..left.min(5000))
            .map(|i| {
                let id = 1 + (i as u64 * 7919) % 2000;
                let c = Click {
                    link_id: Id::new(id).unwrap(),
                    code: format!("seed{id}"),
                    at: Ts(1_790_000_000_000 + (i as i64) * 1000),
                    referrer_host: Some(format!("r{}.example", i % 5)),
                    user_agent: None,
                    owner_id: None,
                    agent: Some(Agent { browser: "Firefox".into(), os: "Linux".into(), device: Device::Desktop }),
                    bot: false,
                    head: false,
                    utm: Utm::default(),
                    visitor: Some(format!("{:032x}", i % 997)),
                    country: Some("DE".into()),
                };
                kurz_storage::NewRecord::new(c.code.clone(), c.encode())
            })
            .collect();
        left -= batch.len();
        kurz_storage::log::append_keyed(&*log, topics::CLICKS, batch).await.unwrap();
    }
}

async fn control(data: &std::path::Path) -> Vec<ControlEvent> {
    let log = kurz_storage::open_log("embedded", data).unwrap();
    kurz_storage::store::generations::read_control(&*log).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_replay_resumes_and_equals_an_uninterrupted_replay() {
    let data = tempfile::tempdir().unwrap();
    assert!(kurz(&["import", seed_dir().to_str().unwrap()], data.path()).output().unwrap().status.success());
    // Enough records that the replay is still in its first half when the progress line
    // (one a second off a terminal) first shows work done: 120,000 were replayed in under
    // 2.4 s on a fast CI machine, before a second line came.
    append_clicks(data.path(), 600_000).await;

    // kill -9 once the replay has applied some of the log, not all.
    let mut child = kurz(&["replay", "--all"], data.path()).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut killed_at = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        // "[###---] 12% 15000/125000 records, …"
        let counts = line.split_whitespace().find(|w| w.contains('/') && w.chars().all(|c| c.is_ascii_digit() || c == '/'));
        if let Some((done, total)) = counts.and_then(|w| w.split_once('/')) {
            let (done, total): (u64, u64) = (done.parse().unwrap(), total.parse().unwrap());
            if done > 0 && done * 2 < total {
                child.kill().unwrap(); // SIGKILL
                killed_at = Some((done, total));
                break;
            }
        }
    }
    let _ = child.wait();
    let (done, total) = killed_at.expect("the replay finished before it could be killed mid-way (make the log bigger)");
    let c = control(data.path()).await;
    assert!(matches!(c.last(), Some(ControlEvent::ReplayStarted { generation: 1, .. })), "killed before its switch: {c:?}");

    // Running it again resumes generation 1 where its last batch landed.
    let resumed = report(kurz(&["replay", "--all", "--json"], data.path()).output().unwrap());
    assert_eq!((resumed["generation"].as_u64(), resumed["resumed"].as_bool()), (Some(1), Some(true)), "{resumed}");
    let rest = resumed["records"].as_u64().unwrap();
    assert!(rest < total && rest + done >= total, "resumed, not restarted: {rest} records after {done} of {total}");

    // An uninterrupted replay (generation 2) equals it, record for record.
    let fresh = report(kurz(&["replay", "--all", "--verify", "--json"], data.path()).output().unwrap());
    assert_eq!((fresh["generation"].as_u64(), fresh["resumed"].as_bool()), (Some(2), Some(false)), "{fresh}");
    assert_eq!(fresh["records"].as_u64(), Some(total), "{fresh}");
    assert_eq!(fresh["differences"], json!([]), "{fresh}");
}

/// The same replay with the log on Kafka (tansu): the new generation is built from the
/// broker's partitions, verified, switched to, and serves what the old one served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_a_kafka_log_verifies_and_switches() {
    let tansu = kurz_testkit::Tansu::memory();
    let s = Server::start(Opts {
        auth: "token",
        extra_env: vec![("KURZ_LOG_URL".into(), format!("{}?session_timeout_ms=6000", tansu.url()))],
        ..Opts::default()
    });
    let c = client();
    let mut codes = Vec::new();
    for i in 0..40 {
        let r = c
            .post(s.url("/urls"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"original_url": format!("https://kafka.example/{i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        codes.push((v["short_code"].as_str().unwrap().to_string(), v["id"].as_u64().unwrap()));
    }
    let browser = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
    for (i, (code, _)) in codes.iter().enumerate().take(10) {
        for _ in 0..=i {
            let r = c.get(s.url(&format!("/{code}"))).header("user-agent", browser).send().await.unwrap();
            assert_eq!(r.status(), 302);
        }
    }
    // Wait until the last link's clicks are counted (10 of them).
    let (last, last_id) = codes[9].clone();
    assert_eq!(click_count_reaching(&s, &last, 10).await, 10);
    let reads = |codes: Vec<(String, u64)>| {
        let (c, s) = (c.clone(), &s);
        async move {
            let mut out = Vec::new();
            for (code, id) in codes {
                for p in [format!("/urls/{id}"), format!("/{code}+"), format!("/events?url_id={id}&limit=500")] {
                    let r = c.get(s.url(&p)).send().await.unwrap();
                    out.push((p, r.status().as_u16(), r.json::<Value>().await.unwrap()));
                }
            }
            out
        }
    };
    let before = reads(codes.clone()).await;

    let rep = report(kurz(&["replay", "--all", "--verify", "--url", &s.base, "--json"], s.data.path()).output().unwrap());
    assert_eq!((rep["generation"].as_u64(), rep["previous"].as_u64()), (Some(1), Some(0)), "{rep}");
    assert_eq!(rep["differences"], json!([]), "{rep}");
    // 40 creates (a LinkCreated and an outcome each) and 55 clicks, at least.
    assert!(rep["records"].as_u64().unwrap() >= 40 + 55, "{rep}");
    assert!(s.data.path().join("store.g1.redb").exists());
    assert_same(&reads(codes.clone()).await, &before);
    let stats: Value = c.get(s.url(&format!("/urls/{last_id}/stats?bucket=day"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["total_clicks"], 10, "{stats}");
}

/// `kurz serve` stopped by SIGTERM right after serving redirects: the clicks it flushed
/// on the way out are projected before it stops, so an offline replay with `--verify`
/// right after finds the store equal to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_right_after_a_sigterm_finds_no_difference() {
    let mut s = Server::start(Opts { auth: "token", ..Opts::default() });
    let c = client();
    let r =
        c.post(s.url("/urls")).bearer_auth(ADMIN_TOKEN).json(&json!({"original_url": "https://sigterm.example/"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let code = r.json::<Value>().await.unwrap()["short_code"].as_str().unwrap().to_string();
    for _ in 0..25 {
        assert_eq!(c.get(s.url(&format!("/{code}"))).send().await.unwrap().status(), 302);
    }
    assert!(s.terminate().success());
    let rep = report(kurz(&["replay", "--all", "--verify", "--json"], s.data.path()).output().unwrap());
    assert_eq!(rep["differences"], json!([]), "{rep}");
    assert!(rep["records"].as_u64().unwrap() >= 27, "the clicks are in the log: {rep}");
}
