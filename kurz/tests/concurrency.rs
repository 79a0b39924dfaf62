//! Uniqueness and idempotency under concurrent requests.

mod support;
use futures::future::join_all;
use kurz_testkit::http::client;
use serde_json::{json, Value};
use support::*;

async fn statuses(resps: Vec<reqwest::Response>) -> Vec<(u16, Value)> {
    let mut out = Vec::new();
    for r in resps {
        let s = r.status().as_u16();
        out.push((s, r.json::<Value>().await.unwrap()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_racing_creates_for_one_alias_have_exactly_one_winner() {
    let s = Server::open();
    let c = client();
    let reqs = (0..100)
        .map(|i| c.post(s.url("/urls")).json(&json!({"original_url": format!("https://race.io/{i}"), "short_code": "raced"})).send());
    let resps: Vec<_> = join_all(reqs).await.into_iter().map(Result::unwrap).collect();
    let results = statuses(resps).await;
    let winners: Vec<&Value> = results.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b).collect();
    let losers = results.iter().filter(|(s, b)| *s == 409 && b["error"].as_str().unwrap().contains("exists")).count();
    assert_eq!((winners.len(), losers), (1, 99), "{results:?}");
    let winner = winners[0];
    // The read side agrees with the decision: one link with the alias, pointing at the winner's URL.
    let all: Vec<Value> = c.get(s.url("/urls?limit=500")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all.iter().filter(|l| l["short_code"] == "raced").count(), 1);
    let r = c.get(s.url("/raced")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"].to_str().unwrap(), winner["original_url"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_registrations_of_one_email_have_exactly_one_winner() {
    let s = Server::open();
    let c = client();
    let reqs = (0..50).map(|i| c.post(s.url("/users")).json(&json!({"email": "Same@Example.com", "username": format!("u{i}")})).send());
    let results = statuses(join_all(reqs).await.into_iter().map(Result::unwrap).collect()).await;
    assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|(s, _)| *s == 409).count(), 49);
    let users: Vec<Value> = c.get(s.url("/users?per_page=100")).send().await.unwrap().json().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["email"], "same@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_command_id_takes_effect_once() {
    let s = Server::open();
    let c = client();
    // Concurrent retries with one key: one link, every answer names it.
    let reqs = (0..20)
        .map(|_| c.post(s.url("/urls")).header("Idempotency-Key", "create-1").json(&json!({"original_url": "https://once.io"})).send());
    let results = statuses(join_all(reqs).await.into_iter().map(Result::unwrap).collect()).await;
    let ids: std::collections::HashSet<u64> = results
        .iter()
        .map(|(st, b)| {
            assert_eq!(*st, 201, "{b}");
            b["id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    // A later retry answers the same.
    let again: Value = c
        .post(s.url("/urls"))
        .header("Idempotency-Key", "create-1")
        .json(&json!({"original_url": "https://once.io"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"].as_u64(), ids.iter().next().copied());
    let links: Vec<Value> = c.get(s.url("/urls")).send().await.unwrap().json().await.unwrap();
    assert_eq!(links.len(), 1);
    // Another key is another command.
    let other = c
        .post(s.url("/urls"))
        .header("Idempotency-Key", "create-2")
        .json(&json!({"original_url": "https://once.io"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
    // A retried delete answers what the first one did, even though the link is gone now.
    let id = again["id"].as_u64().unwrap();
    let d1 = c.delete(s.url(&format!("/urls/{id}"))).header("Idempotency-Key", "del").send().await.unwrap();
    assert_eq!(d1.status(), 200);
    let d2 = c.delete(s.url(&format!("/urls/{id}"))).header("Idempotency-Key", "del").send().await.unwrap();
    assert_eq!(d2.status(), 404, "the link is gone, so the retry cannot even be routed");
    // Idempotent bulk: the same load twice under one key counts the rows once.
    let csv = "email,username\nb1@x.io,b1\nb2@x.io,b2\n";
    for _ in 0..2 {
        let r: Value = c
            .post(s.url("/users/bulk"))
            .header("content-type", "text/csv")
            .header("Idempotency-Key", "bulk-1")
            .body(csv)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["count"], 2);
    }
    let users: Vec<Value> = c.get(s.url("/users")).send().await.unwrap().json().await.unwrap();
    assert_eq!(users.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_shortens_of_one_url_converge_on_one_link() {
    let s = Server::open();
    let c = client();
    let reqs = (0..30).map(|_| c.post(s.url("/shorten")).json(&json!({"url": "https://same.io/page"})).send());
    let results = statuses(join_all(reqs).await.into_iter().map(Result::unwrap).collect()).await;
    let codes: std::collections::HashSet<String> = results
        .iter()
        .map(|(st, b)| {
            assert!(*st == 201 || *st == 200, "{st} {b}");
            b["short_code"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(codes.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|(s, _)| *s == 201).count(), 1);
}
