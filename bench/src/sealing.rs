//! What sealing users' personal data costs (issue #17): the codecs of a user event,
//! sealed against plain (the baseline, same run, same events), the untouched fast path of
//! link events, and the decider's start-up read of every user with its keys loaded
//! from a fresh embedded vault.

use kurz_schemas::{CommandId, Event, EventBody, Id, Link, Ts, User};
use kurz_storage::vault::Keyring;
use serde_json::{json, Value};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Users (one `user_created` event each).
    #[arg(long, default_value_t = 20_000)]
    pub users: usize,
    /// Rounds of each measure; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Events per second of `f` over `n` events, median of `rounds`.
fn rate(rounds: usize, n: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f();
                n as f64 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn event(i: usize, body: EventBody) -> Event {
    Event { id: Id::new(1_000_000 + i as u64).unwrap(), command_id: CommandId(format!("c-{i}")), at: Ts(1_764_646_000_000), body }
}

pub async fn run(a: Args) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::embedded(dir.path()).unwrap();
    let t = Instant::now();
    let subjects = keys.mint_many(a.users).await.unwrap();
    let mint_per_s = a.users as f64 / t.elapsed().as_secs_f64();
    let users: Vec<Event> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let u = User::new(
                Id::new(i as u64 + 1).unwrap(),
                format!("user{i}@example.com"),
                Some(format!("user{i}")),
                Ts(1_764_646_000_000),
                Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into()),
            )
            .with_subject(Some(s.clone()));
            event(i, EventBody::UserCreated { user: u, imported: false })
        })
        .collect();
    let links: Vec<Event> = (0..a.users)
        .map(|i| {
            let link = Link {
                domain: None,
                id: Id::new(i as u64 + 1).unwrap(),
                short_code: format!("c{i:06}"),
                original_url: format!("https://example.com/{i}"),
                title: None,
                is_active: true,
                user_id: Id::new(1 + i as u64 % 100).ok(),
                created_at: Ts(1),
                updated_at: Ts(1),
                options: Default::default(),
            };
            event(i, EventBody::LinkCreated { link, imported: false })
        })
        .collect();
    let lookup = |s: &str| keys.key(s);
    let n = a.users;

    let encode_plain = rate(a.rounds, n, || {
        for e in &users {
            std::hint::black_box(e.encode());
        }
    });
    let encode_sealed = rate(a.rounds, n, || {
        for e in &users {
            std::hint::black_box(e.encode_sealed(&lookup, &mut Keyring::nonce).unwrap());
        }
    });
    let plain: Vec<Vec<u8>> = users.iter().map(Event::encode).collect();
    let sealed: Vec<Vec<u8>> = users.iter().map(|e| e.encode_sealed(&lookup, &mut Keyring::nonce).unwrap()).collect();
    let decode_plain = rate(a.rounds, n, || {
        for b in &plain {
            std::hint::black_box(Event::decode(b).unwrap());
        }
    });
    let decode_opened = rate(a.rounds, n, || {
        for b in &sealed {
            std::hint::black_box(Event::decode_opened(b, &lookup).unwrap());
        }
    });
    let link_plain = rate(a.rounds, n, || {
        for e in &links {
            std::hint::black_box(e.encode());
        }
    });
    let link_sealed = rate(a.rounds, n, || {
        for e in &links {
            std::hint::black_box(e.encode_sealed(&lookup, &mut Keyring::nonce).unwrap());
        }
    });
    let link_bytes: Vec<Vec<u8>> = links.iter().map(Event::encode).collect();
    let link_decode = rate(a.rounds, n, || {
        for b in &link_bytes {
            std::hint::black_box(Event::decode(b).unwrap());
        }
    });
    let link_opened = rate(a.rounds, n, || {
        for b in &link_bytes {
            std::hint::black_box(Event::decode_opened(b, &lookup).unwrap());
        }
    });
    // A decider's start: every user read back, its key loaded from the vault first
    // (a fresh keyring: nothing cached), against decoding the same users unsealed.
    let mut restore = Vec::new();
    for _ in 0..a.rounds {
        let fresh = Keyring::new(keys.vault().clone());
        let t = Instant::now();
        for chunk in sealed.chunks(4096) {
            let wanted: Vec<String> = chunk.iter().flat_map(|b| Event::sealed_subjects(b)).collect();
            fresh.load_all(&wanted).await.unwrap();
            for b in chunk {
                std::hint::black_box(Event::decode_opened(b, &|s| fresh.key(s)).unwrap());
            }
        }
        restore.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let restore = median(restore);
    let bytes = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() as f64 / v.len() as f64;
    json!({
        "users": n,
        "rounds": a.rounds,
        "vault": "embedded",
        "mint_keys_per_s": mint_per_s,
        "user_event": {
            "bytes_plain": bytes(&plain),
            "bytes_sealed": bytes(&sealed),
            "encode_plain_per_s": encode_plain,
            "encode_sealed_per_s": encode_sealed,
            "encode_ratio": encode_sealed / encode_plain,
            "decode_plain_per_s": decode_plain,
            "decode_opened_per_s": decode_opened,
            "decode_ratio": decode_opened / decode_plain,
            "restore_with_vault_per_s": restore,
            "restore_ratio": restore / decode_plain,
        },
        "link_event": {
            "encode_plain_per_s": link_plain,
            "encode_sealed_per_s": link_sealed,
            "encode_ratio": link_sealed / link_plain,
            "decode_plain_per_s": link_decode,
            "decode_opened_per_s": link_opened,
            "decode_ratio": link_opened / link_decode,
        },
    })
}

pub fn markdown(v: &Value) -> String {
    let f = |x: &Value| x.as_f64().unwrap();
    let u = &v["user_event"];
    let l = &v["link_event"];
    let mut md = String::from("# Sealing users' personal data: codec cost\n\n");
    md += &format!(
        "{} `user_created` events, each user's e-mail, name and password hash sealed under its own key (ChaCha20-Poly1305, `schemas/src/personal.rs`), against the same events encoded in the clear (baseline, same run); {} link events through the same calls. Median of {} rounds.\n\n",
        v["users"], v["users"], v["rounds"]
    );
    md += "| measure | events/s | × baseline |\n|---|---|---|\n";
    md += &format!("| user event: encode, plain (baseline) | {:.0} | 1.00 |\n", f(&u["encode_plain_per_s"]));
    md += &format!("| user event: encode, sealed | {:.0} | {:.2} |\n", f(&u["encode_sealed_per_s"]), f(&u["encode_ratio"]));
    md += &format!("| user event: decode, plain (baseline) | {:.0} | 1.00 |\n", f(&u["decode_plain_per_s"]));
    md += &format!("| user event: decode and open, key cached | {:.0} | {:.2} |\n", f(&u["decode_opened_per_s"]), f(&u["decode_ratio"]));
    md += &format!(
        "| user event: decider start (load keys from the embedded vault, decode, open) | {:.0} | {:.2} |\n",
        f(&u["restore_with_vault_per_s"]),
        f(&u["restore_ratio"])
    );
    md += &format!("| link event: encode (baseline) | {:.0} | 1.00 |\n", f(&l["encode_plain_per_s"]));
    md += &format!("| link event: `encode_sealed` | {:.0} | {:.2} |\n", f(&l["encode_sealed_per_s"]), f(&l["encode_ratio"]));
    md += &format!("| link event: decode (baseline) | {:.0} | 1.00 |\n", f(&l["decode_plain_per_s"]));
    md += &format!("| link event: `decode_opened` | {:.0} | {:.2} |\n", f(&l["decode_opened_per_s"]), f(&l["decode_ratio"]));
    md += &format!(
        "\nA sealed user event is {:.0} bytes against {:.0} in the clear. Keys minted (embedded vault, 256 per write): {:.0}/s.\n\n",
        f(&u["bytes_sealed"]),
        f(&u["bytes_plain"]),
        f(&v["mint_keys_per_s"])
    );
    md += "Link and click records carry no personal data and skip the sealing walk: a byte scan for `\"sealed\"`, then the plain codec. Only user records pay for it, and users are a small share of the log.\n\nReproduce: `cargo run --release -p kurz-bench -- sealing`\n";
    md
}
