//! `kill -9` of one process of each role mid-stream: no acknowledged create is lost,
//! none is made twice.

use super::{expect, Miss, KURZ};
use futures::StreamExt;
use kurz_testkit::deploy::{Opts, Role, Split};
use kurz_testkit::http::{Api, Resp};
use reqwest::Method;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Creates for the kill test: raise with `KURZ_SCALE_CREATES` (the target is 20000).
const DEFAULT_CREATES: usize = 2_000;
/// Links per user, so that one `GET /urls?user_id=…&limit=500` lists all of a user's.
const PER_USER: usize = 400;
/// Concurrent clients.
const CLIENTS: usize = 16;
/// How long one create may keep being retried (with its key) before it counts as unanswered.
const CREATE_PATIENCE: Duration = Duration::from_secs(180);

fn creates_wanted() -> usize {
    std::env::var("KURZ_SCALE_CREATES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CREATES)
}

#[derive(Debug, Clone)]
struct Acked {
    n: usize,
    key: String,
    url: String,
    user: u64,
    id: u64,
    code: String,
    backend: String,
    attempts: u32,
    /// The retryable answers this create got before its 201 (`504 from command-api#1/g1`).
    retry_answers: Vec<String>,
    latency: Duration,
    /// The 201 this create got, as the front answered it.
    answer: Resp,
}

#[derive(Default)]
struct Tally {
    acked: Vec<Acked>,
    /// Creates answered 4xx (none expected), with the answer.
    rejected: Vec<(usize, String, Resp)>,
    /// Creates never answered 2xx within the patience, with the last answer.
    unanswered: Vec<(usize, String, String)>,
    /// Retryable answers seen (5xx: 503/504 from kurz, 502 from the front), by status and backend.
    retried: BTreeMap<String, u32>,
    /// Read-your-writes misses: the GET right after a 201.
    ryw_misses: Vec<Miss>,
    reads: usize,
    /// Links redirected once each, and whether that redirect was served (a click).
    clicked: Vec<(u64, bool)>,
}

async fn create_with_retries(api: &Api, n: usize, user: u64, run: &str) -> Result<Acked, (String, Option<Resp>, String)> {
    let key = format!("scale-{run}-{n}");
    let url = format!("https://scale.split.test/{run}/{n}");
    let began = Instant::now();
    let mut attempts = 0;
    let mut last = String::new();
    let mut retry_answers = Vec::new();
    while began.elapsed() < CREATE_PATIENCE {
        attempts += 1;
        let body = json!({"original_url": url, "user_id": user});
        match api.try_call(Method::POST, "/urls", Some(&body), None, &[("Idempotency-Key", &key)]).await {
            Ok(answer) => {
                let (status, backend) = (answer.status, answer.backend());
                if status == 201 {
                    let b = &answer.body;
                    assert_eq!(
                        (b["original_url"].as_str(), b["user_id"].as_u64()),
                        (Some(url.as_str()), Some(user)),
                        "create {key}: {answer:?}"
                    );
                    let code = b["short_code"].as_str().unwrap().to_string();
                    return Ok(Acked {
                        n,
                        key,
                        url,
                        user,
                        id: answer.id(),
                        code,
                        backend,
                        attempts,
                        retry_answers,
                        latency: began.elapsed(),
                        answer,
                    });
                }
                if status < 500 {
                    return Err((key, Some(answer), String::new()));
                }
                retry_answers.push(format!("{status} from {}", backend.split(' ').next().unwrap_or_default()));
                last = format!("{status} from {backend}: {}", answer.text);
            }
            Err(e) => last = format!("front transport error: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err((key, None, format!("no 2xx after {attempts} attempts in {:?}; last: {last}", began.elapsed())))
}

/// Prints progress every 5 s, and fails the test when no create has finished for
/// `STALL` (a hung deployment would otherwise hang the test).
struct Watch {
    total: usize,
    started: Instant,
    last: usize,
    last_change: Instant,
    last_print: Instant,
}

const STALL: Duration = Duration::from_secs(60);

impl Watch {
    fn new(total: usize) -> Watch {
        let now = Instant::now();
        Watch { total, started: now, last: 0, last_change: now, last_print: now }
    }

    fn check(&mut self, done: usize, s: &Split) {
        let now = Instant::now();
        if done != self.last {
            self.last = done;
            self.last_change = now;
        }
        if now - self.last_print >= Duration::from_secs(5) {
            self.last_print = now;
            eprintln!("[scale] {:>6.1}s: {done}/{} creates finished; {}", (now - self.started).as_secs_f64(), self.total, s.front_stats());
        }
        if now - self.last_change > STALL {
            panic!(
                "no create finished for {STALL:?} ({done}/{} done): the deployment is stuck. Partition ownership by the logs:\n{}",
                self.total,
                s.ownership_report()
            );
        }
    }
}

/// A stream of creates (`KURZ_SCALE_CREATES`, default 2000) from 16 clients, each with
/// its own `Idempotency-Key` and URL, retried with that key on 5xx; mid-stream, `kill -9`
/// of one command-api, later one projector, later one query-edge (each started again a
/// while later). By default the victim is the process that has owned its role's
/// partitions longest (tansu's group leader); `KURZ_SCALE_VICTIM=follower` kills the
/// other one. Then: every 201 is served by id with its code and target, no URL exists
/// twice (per-user lists and `created` history), reads right after a 201 saw it, and no
/// partition was owned by two processes at once. A deployment in which no create
/// finishes for a minute fails at once, with the partition ownership the logs show.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_each_role_loses_no_acknowledged_create() {
    let total = creates_wanted();
    // A load test from one address: the per-address write limit (50/s per process) is
    // not what it measures, so it is raised here.
    let extra_env = vec![("KURZ_RATE_WRITES".to_string(), "100000:100000".to_string())];
    let mut s = Split::start(KURZ, Opts { extra_env, ..Opts::default() }).await;
    let api = Arc::new(s.api());
    let run = format!("r{}", std::process::id());

    // Users, so that each one's links fit one list page.
    let mut users = Vec::new();
    for u in 0..total.div_ceil(PER_USER) {
        let (body, key) = (json!({"email": format!("scale{u}@split.test")}), format!("user-{run}-{u}"));
        let a = api.call(Method::POST, "/users", Some(&body), None, &[("Idempotency-Key", &key)]).await;
        expect("POST /users", &a, 201);
        users.push(a.id());
    }
    let users = Arc::new(users);

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (api, next, done, tally, users, run) = (api.clone(), next.clone(), done.clone(), tally.clone(), users.clone(), run.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let user = users[n / PER_USER];
                match create_with_retries(&api, n, user, &run).await {
                    Ok(a) => {
                        // Read-your-writes under failures: the GET right after the 201.
                        let r = api.get(&format!("/urls/{}", a.id)).await;
                        let seen = r.status == 200 && r.body["short_code"] == a.code.as_str() && r.body["original_url"] == a.url.as_str();
                        let redirect = if n % 8 == 0 { Some(api.get(&format!("/{}", a.code)).await) } else { None };
                        let mut t = tally.lock().unwrap();
                        t.reads += 1;
                        if a.attempts > 1 {
                            *t.retried.entry("creates needing >1 attempt".into()).or_default() += 1;
                        }
                        for r in &a.retry_answers {
                            *t.retried.entry(r.clone()).or_default() += 1;
                        }
                        if !seen {
                            t.ryw_misses.push(Miss {
                                what: format!("create {} (id {}) then GET /urls/{{id}}", a.key, a.id),
                                write: a.answer.clone(),
                                read: r,
                            });
                        }
                        if let Some(r) = redirect {
                            t.reads += 1;
                            t.clicked.push((a.id, r.status == 302));
                            if r.status != 302 || r.location().as_deref() != Some(a.url.as_str()) {
                                t.ryw_misses.push(Miss {
                                    what: format!("create {} (code {}) then redirect", a.key, a.code),
                                    write: a.answer.clone(),
                                    read: r,
                                });
                            }
                        }
                        t.acked.push(a);
                    }
                    Err((key, Some(answer), _)) => tally.lock().unwrap().rejected.push((n, key, answer)),
                    Err((key, None, why)) => tally.lock().unwrap().unanswered.push((n, key, why)),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // The chaos, by progress: kill -9 one process of each role mid-stream, and start it
    // again a while later, as an orchestrator would.
    // Which process of a role dies: by default the one that has owned its partitions
    // longest (the consumer group's first member, which tansu keeps as the group's
    // leader), the harder case; `KURZ_SCALE_VICTIM=follower` kills the other one.
    enum Act {
        Kill(Role),
        Restart(Role),
    }
    let plan = [
        (0.12, Act::Kill(Role::CommandApi)),
        (0.30, Act::Restart(Role::CommandApi)),
        (0.40, Act::Kill(Role::Projector)),
        (0.58, Act::Restart(Role::Projector)),
        (0.66, Act::Kill(Role::QueryEdge)),
        (0.84, Act::Restart(Role::QueryEdge)),
    ];
    let follower = std::env::var("KURZ_SCALE_VICTIM").as_deref() == Ok("follower");
    let mut flowing: Vec<(&str, usize, bool)> = Vec::new();
    let mut victims: HashMap<Role, usize> = HashMap::new();
    let mut timeline = Vec::new();
    let mut watch = Watch::new(total);
    for (at, act) in plan {
        let threshold = (total as f64 * at) as usize;
        while done.load(Ordering::Relaxed) < threshold && !clients.iter().all(|c| c.is_finished()) {
            watch.check(done.load(Ordering::Relaxed), &s);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let d = done.load(Ordering::Relaxed);
        let when = started.elapsed();
        match act {
            Act::Kill(role) => {
                // A kill after the stream ended tests nothing: it must land while
                // writes still flow (checked below, by writes acknowledged after it).
                flowing.push((role.command(), d, clients.iter().all(|c| c.is_finished())));
                let topic = match role {
                    Role::CommandApi => Some("kurz.commands.v1"),
                    Role::Projector => Some("kurz.events.v1"),
                    Role::QueryEdge | Role::Watchdog => None,
                };
                let longest = topic.and_then(|t| s.longest_owner(role, t)).unwrap_or(0);
                let i = if follower { 1 - longest } else { longest };
                victims.insert(role, i);
                let before = s.ownership_report();
                s.kill9(role, i);
                timeline.push(format!(
                    "{:>6.1}s after {d} creates: kill -9 {}#{i} ({}); ownership before:\n{before}",
                    when.as_secs_f64(),
                    role.command(),
                    if topic.is_none() {
                        "no partitions"
                    } else if follower {
                        "not the longest owner"
                    } else {
                        "the longest owner of its partitions"
                    }
                ));
            }
            Act::Restart(role) => {
                let i = victims[&role];
                s.restart(role, i).await;
                timeline.push(format!(
                    "{:>6.1}s after {d} creates: restarted {}#{i} (ready after {:.1}s)",
                    when.as_secs_f64(),
                    role.command(),
                    (started.elapsed() - when).as_secs_f64()
                ));
            }
        }
    }
    while !clients.iter().all(|c| c.is_finished()) {
        watch.check(done.load(Ordering::Relaxed), &s);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in clients {
        c.await.unwrap();
    }
    let stream_time = started.elapsed();
    let t = std::mem::take(&mut *tally.lock().unwrap());
    let exits = s.unexpected_exits();

    let mut lat: Vec<Duration> = t.acked.iter().map(|a| a.latency).collect();
    lat.sort();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or_default();
    eprintln!(
        "[scale] {} creates wanted, {} acknowledged, {} rejected, {} unanswered in {:.1}s ({:.0}/s) from {CLIENTS} clients; \
         latency p50 {:?} p99 {:?} max {:?}; {} reads right after writes; retries {:?}\n[scale] timeline:\n  {}\n[scale] {}\n[scale] ownership now:\n{}",
        total,
        t.acked.len(),
        t.rejected.len(),
        t.unanswered.len(),
        stream_time.as_secs_f64(),
        t.acked.len() as f64 / stream_time.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or_default(),
        t.reads,
        t.retried,
        timeline.join("\n  "),
        s.front_stats(),
        s.ownership_report()
    );

    // Every acknowledged create is served, with its code and target. Read-your-writes
    // says at once; allow the read model time anyway, to tell "late" from "lost".
    let check = |a: Acked| {
        let api = api.clone();
        async move {
            let r = api.get(&format!("/urls/{}", a.id)).await;
            let ok = r.status == 200
                && r.body["short_code"] == a.code.as_str()
                && r.body["original_url"] == a.url.as_str()
                && r.body["user_id"] == a.user;
            (a, ok, r)
        }
    };
    let mut pending: Vec<Acked> = t.acked.clone();
    let mut late: Vec<String> = Vec::new();
    let catch_up = Instant::now();
    let mut last_answers: HashMap<u64, Resp> = HashMap::new();
    loop {
        let results: Vec<(Acked, bool, Resp)> = futures::stream::iter(pending.drain(..).map(check)).buffer_unordered(16).collect().await;
        for (a, ok, r) in results {
            if !ok {
                last_answers.insert(a.id, r);
                pending.push(a);
            }
        }
        if pending.is_empty() || catch_up.elapsed() > Duration::from_secs(60) {
            break;
        }
        if late.is_empty() {
            late = pending.iter().map(|a| format!("{} id {}", a.key, a.id)).collect();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lost: Vec<String> = pending
        .iter()
        .map(|a| {
            format!(
                "#{} {} id {} code {} acked by {} after {} attempts: now {:?}",
                a.n,
                a.key,
                a.id,
                a.code,
                a.backend,
                a.attempts,
                last_answers.get(&a.id)
            )
        })
        .collect();

    // No link twice: per user, one list page holds every link; each target URL (unique
    // per create) appears once, and exactly the acknowledged ids are there. The created
    // events of the history agree.
    let by_user: HashMap<u64, Vec<&Acked>> = t.acked.iter().fold(HashMap::new(), |mut m, a| {
        m.entry(a.user).or_default().push(a);
        m
    });
    let mut duplicates: Vec<String> = Vec::new();
    let mut unexpected: Vec<String> = Vec::new();
    let mut absent_from_list: Vec<String> = Vec::new();
    let mut history_problems: Vec<String> = Vec::new();
    let mut listed_total = 0;
    for &u in users.iter() {
        let list = api.get(&format!("/urls?user_id={u}&limit=500")).await;
        expect("GET /urls?user_id", &list, 200);
        let links = list.body.as_array().unwrap();
        listed_total += links.len();
        let acked: HashMap<u64, &&Acked> = by_user.get(&u).map(|v| v.iter().map(|a| (a.id, a)).collect()).unwrap_or_default();
        let mut by_url: HashMap<&str, Vec<u64>> = HashMap::new();
        let mut ids = HashSet::new();
        for l in links {
            let id = l["id"].as_u64().unwrap();
            if !ids.insert(id) {
                duplicates.push(format!("user {u}: id {id} listed twice"));
            }
            by_url.entry(l["original_url"].as_str().unwrap()).or_default().push(id);
            if !acked.contains_key(&id) {
                unexpected.push(format!("user {u}: link {l} was never acknowledged"));
            }
        }
        for (url, ids) in &by_url {
            if ids.len() > 1 {
                duplicates.push(format!("user {u}: {url} created {} times: ids {ids:?}", ids.len()));
            }
        }
        for (id, a) in &acked {
            if !ids.contains(id) {
                absent_from_list.push(format!("user {u}: {} id {id} not in GET /urls?user_id={u}", a.key));
            }
        }
        let hist = api.get(&format!("/events?user_id={u}&event_type=created&limit=500")).await;
        expect("GET /events?user_id&event_type=created", &hist, 200);
        let mut created: HashMap<u64, u32> = HashMap::new();
        for e in hist.body.as_array().unwrap() {
            *created.entry(e["url_id"].as_u64().unwrap()).or_default() += 1;
        }
        for (id, n) in &created {
            if *n != 1 {
                history_problems.push(format!("user {u}: url {id} has {n} created events"));
            }
        }
        if created.len() != links.len() {
            history_problems.push(format!("user {u}: {} links listed but {} urls with created events", links.len(), created.len()));
        }
    }
    let missing_in_check = t.acked.len() - pending.len();
    eprintln!(
        "[scale] check: {} of {} acknowledged links served ({} needed the catch-up poll), {} listed over {} users",
        missing_in_check,
        t.acked.len(),
        late.len(),
        listed_total,
        users.len()
    );

    let mut failures: Vec<String> = Vec::new();
    let mut add = |what: &str, v: Vec<String>| {
        if !v.is_empty() {
            let n = v.len();
            let mut shown: Vec<String> = v.into_iter().take(20).collect();
            if n > 20 {
                shown.push(format!("… and {} more", n - 20));
            }
            failures.push(format!("{what} ({n}):\n    {}", shown.join("\n    ")));
        }
    };
    add("processes that died on their own", exits);
    add("partitions owned by two processes at once (by their logs)", s.ownership_overlaps());
    add(
        "creates rejected with 4xx",
        t.rejected.iter().map(|(n, k, a)| format!("#{n} {k}: {} from {}: {}", a.status, a.backend(), a.text)).collect(),
    );
    add("creates never answered 2xx", t.unanswered.iter().map(|(n, k, why)| format!("#{n} {k}: {why}")).collect());
    add("acknowledged creates lost (not served after 60 s)", lost);
    add(
        "read-your-writes misses (the read right after a 201)",
        t.ryw_misses
            .iter()
            .map(|m| {
                format!("{}: written by {}, read by {}: {} {}", m.what, m.write.backend(), m.read.backend(), m.read.status, m.read.text)
            })
            .collect(),
    );
    add("links listed twice or created twice", duplicates);
    add("links listed that no create acknowledged", unexpected);
    add("acknowledged links absent from their user's list", absent_from_list);
    add("history problems", history_problems);
    // The log itself, read as every reader reads it: no alias granted twice, no id
    // minted twice, no command decided twice (`kurz verify-log`).
    let log = kurz_storage::open_log(&s.tansu.url(), std::path::Path::new("/nonexistent")).unwrap();
    let report = kurz::cli::verify_log::run(&*log, false).await.unwrap();
    eprintln!("[scale] verify-log: {}", report.render());
    add("the events topic has problems", if report.problems() > 0 { vec![report.render()] } else { Vec::new() });
    // One link_created per create command: no command's link was created twice.
    let per_command = &report.links_created_per_command;
    add(
        "commands that created other than one link",
        per_command
            .iter()
            .filter(|(links, _)| **links != 1)
            .map(|(links, commands)| format!("{commands} commands created {links} links each"))
            .collect(),
    );
    add(
        "acknowledged creates without their link_created",
        if per_command.get(&1).copied().unwrap_or(0) < t.acked.len() as u64 {
            vec![format!("{:?} for {} acknowledged", per_command, t.acked.len())]
        } else {
            Vec::new()
        },
    );
    // Clicks: each served redirect counted at most once, through the kills. A click
    // still in a killed edge's buffer may be lost; none may count twice.
    let store =
        kurz_storage::open_store(&format!("scylla://{}/kurz?consistency=one", s.cql), std::path::Path::new("/nonexistent")).unwrap();
    let served: u64 = t.clicked.iter().filter(|(_, ok)| *ok).count() as u64;
    let (mut counted, mut settled_at, mut over) = (0u64, Instant::now(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && settled_at.elapsed() < Duration::from_secs(3) && counted < served {
        let mut now_counted = 0;
        over.clear();
        for (id, ok) in &t.clicked {
            let n = store.click_count(kurz_schemas::Id::new(*id).unwrap()).await.unwrap();
            now_counted += n;
            if n > u64::from(*ok) {
                over.push(format!("link {id}: {n} clicks counted, {} served", u64::from(*ok)));
            }
        }
        if now_counted != counted {
            (counted, settled_at) = (now_counted, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "[scale] clicks: {served} redirects served, {counted} counted ({} lost, none may count twice)",
        served.saturating_sub(counted)
    );
    add("links with more clicks counted than redirects served", over);
    let drains: Vec<String> =
        s.procs.iter().flat_map(|p| p.grep("partition_drain_timeout").into_iter().chain(p.grep("revoke_drain_timeout"))).collect();
    eprintln!("[scale] drain timeouts: {}: {drains:?}", drains.len());
    // A drain that times out means a partition task was stopped mid-write: the fences
    // make that safe, but a handoff must not need them.
    add("revoke or partition drains that timed out", drains);
    let acked_total = t.acked.len() + t.rejected.len() + t.unanswered.len();
    add(
        "kills that landed after the writes had stopped",
        flowing
            .iter()
            .filter(|(_, at, finished)| *finished || *at >= acked_total)
            .map(|(role, at, _)| format!("{role} killed after {at} of {acked_total} creates had finished"))
            .collect(),
    );
    add(
        "too few creates acknowledged",
        if t.acked.len() < 2_000.min(total) { vec![format!("only {} of {total}", t.acked.len())] } else { Vec::new() },
    );
    assert!(failures.is_empty(), "{} kinds of failure:\n  {}", failures.len(), failures.join("\n  "));
}
