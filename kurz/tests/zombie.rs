//! Zombies: a command-api frozen (`SIGSTOP`) past its group session while clients race
//! for aliases, then woken (`SIGCONT`) with its pending work, in a split deployment on
//! tansu and the CQL node; and the same with the command-api cut off the network
//! instead (it runs in a network namespace whose link is taken down, every packet
//! dropped, then brought up again). Its partitions move to the other command-api meanwhile;
//! whatever the frozen one appends on waking was decided on a state that is no longer
//! the log's, and must count for nothing.
//!
//! Per round: 100 clients race for aliases, two clients per alias, each on another
//! command-api, each client creating `PER_CLIENT` aliases one after another so that the
//! deciders are busy when one command-api is frozen mid-race, for longer than the
//! session timeout.
//! Checked, per round and in total, and printed: aliases granted twice (two 201s, or
//! two kept `link_created`), ids minted twice, commands decided twice (the log checker,
//! `kurz verify-log`), and acknowledged creates missing (not served with their target).
//! `KURZ_ZOMBIE_ROUNDS` sets the rounds (default 8).
//!
//! Third scenario: a projector stopped (`SIGSTOP`) in a clicks batch on the CQL store,
//! between its rows and its positions (even rounds) or after its checks and before its
//! rows (odd rounds), while redirects are served, past its group session, then woken:
//! the other projector re-applies the batch and goes on, and the woken one's late rows
//! and position must land nothing. Every served redirect is counted exactly once, and
//! no position ever goes backwards.

use kurz_testkit::deploy::{Kurz, Opts, Role, Split};
use kurz_testkit::http::Api;
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const KURZ: Kurz = Kurz { bin: env!("CARGO_BIN_EXE_kurz"), partition_for: kurz_storage::log::partition_for };

const CLIENTS: usize = 100;
/// Aliases raced for at once: two clients each.
const ALIASES: usize = 50;
/// Aliases each client creates in a round, one after another.
const PER_CLIENT: usize = 8;
/// Longer than the split deployment's 6 s session timeout: the group moves the frozen
/// member's partitions to the other command-api.
const FROZEN: Duration = Duration::from_secs(10);

fn rounds() -> usize {
    std::env::var("KURZ_ZOMBIE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(8)
}

#[derive(Debug, Clone)]
struct Ack {
    client: usize,
    code: String,
    url: String,
    id: u64,
}

/// One client's create: `Ok(Some(ack))` on 201, `Ok(None)` on 409 (the alias went to
/// the other client), `Err` on anything else after retries. Retries carry the same
/// idempotency key, so a retried create is the same command.
async fn create(api: &Api, client: usize, code: &str, round: usize) -> Result<Option<Ack>, String> {
    let url = format!("https://zombie.test/{round}/{client}");
    let key = format!("zombie-{round}-{client}");
    let began = Instant::now();
    let mut last = String::new();
    while began.elapsed() < Duration::from_secs(120) {
        let body = json!({"original_url": url, "short_code": code});
        let r = api.try_call(Method::POST, "/urls", Some(&body), None, &[("Idempotency-Key", &key)]).await;
        match r {
            Ok(r) => {
                let (status, body) = (r.status, r.body);
                match status {
                    201 => {
                        assert_eq!(body["short_code"], code, "{body}");
                        assert_eq!(body["original_url"], url.as_str(), "{body}");
                        return Ok(Some(Ack { client, code: code.into(), url, id: body["id"].as_u64().unwrap() }));
                    }
                    409 => return Ok(None),
                    s if s >= 500 => last = format!("{s}: {body}"),
                    s => return Err(format!("client {client} for '{code}': {s} {body}")),
                }
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("client {client} for '{code}': no answer in 120 s; last: {last}"))
}

#[derive(Default, Debug)]
struct Tally {
    granted_twice: Vec<String>,
    ids_twice: Vec<String>,
    missing: Vec<String>,
    errors: Vec<String>,
    acked: usize,
}

/// How the round's victim is taken out for [`FROZEN`], and brought back.
#[derive(Clone, Copy, PartialEq)]
enum Impair {
    /// `SIGSTOP`, then `SIGCONT`: the process stalls at any instruction.
    Freeze,
    /// Its network namespace's link down, then up: it runs on, cut off.
    Cut,
}

impl Impair {
    fn name(self) -> &'static str {
        match self {
            Impair::Freeze => "SIGSTOP",
            Impair::Cut => "network cut",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_api_frozen_past_its_session_lands_nothing_when_it_wakes() {
    zombies(Impair::Freeze).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_api_cut_off_past_its_session_lands_nothing_when_it_returns() {
    zombies(Impair::Cut).await;
}

async fn zombies(impair: Impair) {
    let s = Split::start(
        KURZ,
        Opts {
            command_apis: 2,
            projectors: 1,
            query_edges: 1,
            extra_env: vec![("KURZ_OUTCOME_TIMEOUT_MS".into(), "60000".into())],
            // Appends may wait longer than the freeze, so a frozen decider's queued append
            // can still be sent when it wakes: the late append the claims must neutralize.
            // A long linger keeps each append queued in the producer for a while, so the
            // freeze often lands between a decider's check and its append's send.
            kafka_params: "drain_ms=20000&timeout_ms=15000&linger.ms=100",
            // The cut scenario takes command-api#1 out in every round.
            isolated: (impair == Impair::Cut).then_some((Role::CommandApi, 1)),
            ..Opts::default()
        },
    )
    .await;
    let apis = [s.proc(Role::CommandApi, 0).api(), s.proc(Role::CommandApi, 1).api()];
    let edge = s.proc(Role::QueryEdge, 0).api();
    let mut total = Tally::default();
    let mut per_round = Vec::new();
    for round in 0..rounds() {
        let frozen = if impair == Impair::Cut { 1 } else { round % 2 };
        let mut clients = Vec::new();
        for client in 0..CLIENTS {
            // Two clients per alias, on different command-apis.
            let api = apis[(client + client / ALIASES) % 2].clone();
            clients.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for k in 0..PER_CLIENT {
                    let code = format!("z{round}-{}-{k}", client % ALIASES);
                    out.push(create(&api, client * PER_CLIENT + k, &code, round).await);
                }
                out
            }));
        }
        // Freeze mid-race: some of its commands decided, some not yet.
        tokio::time::sleep(Duration::from_millis(100 + (round as u64 * 37) % 200)).await;
        match impair {
            Impair::Freeze => s.signal(Role::CommandApi, frozen, "STOP"),
            Impair::Cut => s.cut(true),
        }
        tokio::time::sleep(FROZEN).await;
        match impair {
            Impair::Freeze => s.signal(Role::CommandApi, frozen, "CONT"),
            Impair::Cut => s.cut(false),
        }

        let mut round_tally = Tally::default();
        let mut by_code: HashMap<String, Vec<Ack>> = HashMap::new();
        for h in clients {
            for r in h.await.unwrap() {
                match r {
                    Ok(Some(a)) => by_code.entry(a.code.clone()).or_default().push(a),
                    Ok(None) => {}
                    Err(e) => round_tally.errors.push(e),
                }
            }
        }
        for a in 0..ALIASES * PER_CLIENT {
            let code = format!("z{round}-{}-{}", a / PER_CLIENT, a % PER_CLIENT);
            if !by_code.contains_key(&code) && round_tally.errors.is_empty() {
                round_tally.missing.push(format!("'{code}': both clients were refused, neither got the alias"));
            }
        }
        let mut by_id: HashMap<u64, Vec<String>> = HashMap::new();
        for (code, acks) in &by_code {
            if acks.len() > 1 {
                round_tally.granted_twice.push(format!("'{code}' to clients {:?}", acks.iter().map(|a| a.client).collect::<Vec<_>>()));
            }
            for a in acks {
                by_id.entry(a.id).or_default().push(code.clone());
            }
        }
        for (id, codes) in &by_id {
            if codes.len() > 1 {
                round_tally.ids_twice.push(format!("id {id} for {codes:?}"));
            }
        }
        // Every acknowledged create is served: its id with its code and target, and
        // its code redirecting to its target.
        for a in by_code.values().flatten() {
            round_tally.acked += 1;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let meta = edge.get(&format!("/urls/{}", a.id)).await;
                let ok_meta =
                    meta.status == 200 && meta.body["short_code"] == a.code.as_str() && meta.body["original_url"] == a.url.as_str();
                let to = edge.get(&format!("/{}", a.code)).await.location().unwrap_or_default();
                if ok_meta && to == a.url {
                    break;
                }
                if Instant::now() > deadline {
                    round_tally
                        .missing
                        .push(format!("'{}' id {} (client {}): metadata ok {ok_meta}, redirect to '{to}'", a.code, a.id, a.client));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        eprintln!(
            "[zombie] {} round {round}: command-api#{frozen} out; {} acknowledged, aliases granted twice {}, ids minted twice {}, acknowledged missing {}, errors {}",
            impair.name(),
            round_tally.acked,
            round_tally.granted_twice.len(),
            round_tally.ids_twice.len(),
            round_tally.missing.len(),
            round_tally.errors.len()
        );
        per_round.push(format!(
            "{round}: {:?}",
            (&round_tally.granted_twice, &round_tally.ids_twice, &round_tally.missing, &round_tally.errors)
        ));
        total.acked += round_tally.acked;
        total.granted_twice.extend(round_tally.granted_twice);
        total.ids_twice.extend(round_tally.ids_twice);
        total.missing.extend(round_tally.missing);
        total.errors.extend(round_tally.errors);
    }

    // The events topic as every reader keeps it, and as it lies (what the zombies left).
    let log = kurz_storage::open_log(&s.tansu.url(), std::path::Path::new("/nonexistent")).unwrap();
    let kept = kurz::cli::verify_log::run(&*log, false).await.unwrap();
    let raw = kurz::cli::verify_log::run(&*log, true).await.unwrap();
    let fenced = s.grep("moved under its decider").len() + s.grep("decider_ignored_records").len();
    eprintln!(
        "[zombie] {}, {} rounds: commands decided twice {}, aliases granted twice {} (answers: {}), ids minted twice {} (answers: {}), acknowledged writes missing {}; \
         {} creates acknowledged; in the raw log (stale appends included): {} commands decided twice, {} aliases granted twice; fence reports in the logs: {fenced}",
        impair.name(),
        rounds(),
        kept.commands_decided_twice.count,
        kept.aliases_granted_twice.count,
        total.granted_twice.len(),
        kept.ids_minted_twice.count,
        total.ids_twice.len(),
        total.missing.len(),
        total.acked,
        raw.commands_decided_twice.count,
        raw.aliases_granted_twice.count,
    );
    assert_eq!(kept.problems(), 0, "the events topic:\n{}", kept.render());
    assert!(total.granted_twice.is_empty() && total.ids_twice.is_empty() && total.missing.is_empty(), "{}", per_round.join("\n"));
    assert!(total.errors.is_empty(), "creates without an answer: {:?}\n{}", total.errors, s.report());
    assert!(total.acked >= ALIASES * PER_CLIENT * rounds() / 2, "too few creates acknowledged: {}", total.acked);
    let mut s = s;
    assert!(s.unexpected_exits().is_empty(), "{:?}", s.unexpected_exits());
}

/// Links the projector scenario clicks on.
const LINKS: usize = 12;
/// Rounds of the projector scenario (`KURZ_ZOMBIE_PROJECTOR_ROUNDS`, default 4).
fn projector_rounds() -> usize {
    std::env::var("KURZ_ZOMBIE_PROJECTOR_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4)
}

/// Whether process `pid` is stopped (state `T` in `/proc/<pid>/stat`).
fn stopped(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) S …`: the state follows the last `)`.
    stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_paused_between_its_rows_and_its_positions_counts_every_click_once() {
    let pauses = tempfile::tempdir().unwrap();
    let s = Split::start(
        KURZ,
        Opts {
            command_apis: 1,
            projectors: 2,
            query_edges: 1,
            extra_env: vec![("KURZ_FAULT_PAUSE_DIR".into(), pauses.path().display().to_string())],
            ..Opts::default()
        },
    )
    .await;
    let api = s.proc(Role::CommandApi, 0).api();
    let edge = s.proc(Role::QueryEdge, 0).api();
    let mut links = Vec::new();
    for i in 0..LINKS {
        let code = format!("pz{i}");
        let url = format!("https://paused.test/{i}");
        let r = api.post("/urls", json!({"original_url": url, "short_code": code})).await;
        assert_eq!(r.status, 201);
        let id = r.id();
        links.push((code, kurz_schemas::Id::new(id).unwrap()));
    }
    // Redirects served (302) per link: each is one click the store must count, the
    // first one (which shows the link is served) included.
    let served: std::sync::Arc<Vec<std::sync::atomic::AtomicU64>> = std::sync::Arc::new((0..LINKS).map(|_| Default::default()).collect());
    for (i, (code, _)) in links.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(60);
        while edge.get(&format!("/{code}")).await.status != 302 {
            assert!(Instant::now() < deadline, "'{code}' never served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        served[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    // Positions as the store has them, sampled all along: none may go backwards.
    let store =
        kurz_storage::open_store(&format!("scylla://{}/kurz?consistency=one", s.cql), std::path::Path::new("/nonexistent")).unwrap();
    let log = kurz_storage::open_log(&s.tansu.url(), std::path::Path::new("/nonexistent")).unwrap();
    let clicks = kurz_schemas::topics::CLICKS;
    let parts = log.partitions(clicks).await.unwrap();
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = tokio::spawn({
        let (store, stop) = (store.clone(), sampling.clone());
        async move {
            let mut last = vec![0u64; parts as usize];
            let (mut samples, mut backwards) = (0u64, Vec::new());
            while !stop.is_cancelled() {
                for p in 0..parts {
                    if let Ok(at) = store.position("clicks", clicks, p).await {
                        if at < last[p as usize] {
                            backwards.push(format!("{clicks}/{p}: {} -> {at}", last[p as usize]));
                        }
                        last[p as usize] = last[p as usize].max(at);
                        samples += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (samples, backwards)
        }
    });

    let mut triggered = 0;
    for round in 0..projector_rounds() {
        let point = if round % 2 == 0 { "positions" } else { "rows" };
        // A projector that owns a clicks partition now (after a zombie returns, the
        // group may leave it none for a while): each in turn where the group allows.
        let deadline = Instant::now() + Duration::from_secs(30);
        let victim = loop {
            let owners: Vec<usize> = s
                .ownership()
                .get(clicks)
                .map(|m| m.values().flatten().filter_map(|n| n.strip_prefix("projector#")?.split('/').next()?.parse().ok()).collect())
                .unwrap_or_default();
            let preferred = (round / 2) % 2;
            match owners.iter().find(|o| **o == preferred).or(owners.first()) {
                Some(v) => break *v,
                None => assert!(Instant::now() < deadline, "no projector owns a clicks partition\n{}", s.ownership_report()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let pid = s.proc(Role::Projector, victim).pid().expect("the projector runs");
        let traffic = tokio_util::sync::CancellationToken::new();
        let clients: Vec<_> = (0..8)
            .map(|k| {
                let (edge, links, served, stop) = (edge.clone(), links.clone(), served.clone(), traffic.clone());
                tokio::spawn(async move {
                    let mut i = k;
                    while !stop.is_cancelled() {
                        let (code, _) = &links[i % LINKS];
                        if let Ok(r) = edge.try_call(Method::GET, &format!("/{code}"), None, None, &[]).await {
                            if r.status == 302 {
                                served[i % LINKS].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The victim stops itself in its next clicks batch.
        std::fs::write(pauses.path().join(format!("{pid}.{clicks}.{point}")), b"").unwrap();
        // Generous: the scenario runs beside the other two on a 2-core machine, and a
        // projector woken from an earlier round may still be catching up.
        let deadline = Instant::now() + Duration::from_secs(150);
        while !stopped(pid) {
            assert!(Instant::now() < deadline, "projector#{victim} never reached a clicks batch's {point}\n{}", s.report());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        triggered += 1;
        // Past its session: the other projector takes its partitions and re-applies.
        tokio::time::sleep(FROZEN).await;
        s.signal(Role::Projector, victim, "CONT");
        tokio::time::sleep(Duration::from_secs(2)).await;
        traffic.cancel();
        for h in clients {
            h.await.unwrap();
        }
        eprintln!("[zombie] projector round {round}: projector#{victim} stopped before a batch's {point} and woken");
    }

    // Every served redirect counted, each once.
    let want: Vec<u64> = served.iter().map(|n| n.load(std::sync::atomic::Ordering::Relaxed)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let counted = loop {
        let mut got = Vec::new();
        for (_, id) in &links {
            got.push(store.click_count(*id).await.unwrap());
        }
        let over: Vec<_> = got.iter().zip(&want).enumerate().filter(|(_, (g, w))| g > w).collect();
        assert!(over.is_empty(), "links counted more clicks than were served (link, (counted, served)): {over:?}");
        if got == want || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    sampling.cancel();
    let (samples, backwards) = sampler.await.unwrap();
    let fenced = s.grep("projector_fenced").len();
    let (served_total, counted_total) = (want.iter().sum::<u64>(), counted.iter().sum::<u64>());
    eprintln!(
        "[zombie] projector paused in a batch (before its positions, before its rows), {} rounds ({triggered} pauses): clicks served {served_total}, counted {counted_total}, \
         links off {}, position samples {samples}, positions gone backwards {}; fenced batches in the logs: {fenced}",
        projector_rounds(),
        counted.iter().zip(&want).filter(|(g, w)| g != w).count(),
        backwards.len(),
    );
    let mut progress = Vec::new();
    for p in 0..parts {
        let at = store.position("clicks", clicks, p).await.unwrap();
        let end = log.end_offset(clicks, p).await.unwrap();
        progress.push(format!("{clicks}/{p}: position {at} of {end}"));
    }
    assert_eq!(counted, want, "click counts per link (counted vs served); {progress:?}\n{}", s.ownership_report());
    assert!(backwards.is_empty(), "{backwards:?}");
    assert_eq!(s.grep("fault_pause").len(), triggered, "every pause is the injected one");
    assert!(fenced > 0, "no woken projector's batch was fenced: the pauses reached nothing\n{}", s.report());
    let mut s = s;
    assert!(s.unexpected_exits().is_empty(), "{:?}", s.unexpected_exits());
}
