//! The published JSON Schemas (`schemas/json/`) are generated from the types here, one
//! file per topic and version; this test fails when a type changes and its schema file
//! was not regenerated (`KURZ_BLESS=1 cargo test -p kurz-schemas --test json_schema`).
//! Published versions are never rewritten: a change to an old one fails too.

use kurz_schemas::{ClickEnvelope, ClickV1, EventEnvelope, OrphanEnvelope};
use serde_json::Value;
use std::path::Path;

/// `(file, schema)` for every topic version.
fn generated() -> Vec<(&'static str, Value)> {
    let with_version = |mut s: Value, v: u16, title: &str, about: &str| {
        s["title"] = Value::String(title.into());
        s["description"] = Value::String(about.into());
        s["properties"]["v"] = serde_json::json!({ "description": "Encoding version of this record.", "const": v });
        s
    };
    vec![
        (
            "click.v1.schema.json",
            with_version(
                serde_json::to_value(schemars::schema_for!(ClickV1)).unwrap(),
                1,
                "kurz click, version 1",
                "A redirect served by kurz, as a record of topic kurz.clicks.v1 (key: the short code). Written by kurz before click analytics.",
            ),
        ),
        (
            "click.v2.schema.json",
            with_version(
                serde_json::to_value(schemars::schema_for!(ClickEnvelope)).unwrap(),
                2,
                "kurz click, version 2",
                "A redirect served by kurz, as a record of topic kurz.clicks.v1 (key: the short code). Clicks flagged bot or head do not count in kurz's analytics.",
            ),
        ),
        (
            "click.v3.schema.json",
            with_version(
                serde_json::to_value(schemars::schema_for!(OrphanEnvelope)).unwrap(),
                3,
                "kurz orphan visit, version 3",
                "A request kurz answered without a link, as a record of topic kurz.clicks.v1 (key: the code asked for, or `/`): the root path (`base`), no active link (`not_found`: an unknown or inactive code, or a path that cannot be a code), or a link outside its validity window (`expired`, with its `link_id`). Never the path beyond the code, nor the query. Link clicks are still written as version 2: a consumer of link clicks reads versions 1 and 2 and skips this one. Records flagged bot or head are not counted in kurz's orphan visits.",
            ),
        ),
        (
            "event.v4.schema.json",
            with_version(
                serde_json::to_value(schemars::schema_for!(EventEnvelope)).unwrap(),
                4,
                "kurz event, version 4",
                "A decided change to users, links or history, as a record of topic kurz.events.v1 (key: the aggregate, `link:<code>` or `users`). A user's personal fields (email, username, password_hash, api_keys, revoked_sessions) are absent: they travel in `user.sealed`, ChaCha20-Poly1305 ciphertext under the data key named by `user.subject`, which only kurz's key vault holds. `user.erased` marks a user whose key was destroyed (deleted: its personal data is gone for good). `ids_reserved` records explicit ids of a bulk load granted by the partition that owns them. `domain_registered` and `domain_deleted` change the domain registry (key `domains`), and a link on a domain names it in `link.domain` (its key is then `link:<domain>/<code>`); only those records are written as version 4.",
            ),
        ),
    ]
}

/// Published schemas of versions kurz no longer writes: kept as they were published
/// (never regenerated), still listed in the AsyncAPI document, since the topic holds
/// their records.
const FROZEN: [&str; 3] = ["event.v1.schema.json", "event.v2.schema.json", "event.v3.schema.json"];

#[test]
fn published_schemas_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("json");
    let bless = std::env::var("KURZ_BLESS").is_ok();
    let mut stale = Vec::new();
    for (file, schema) in generated() {
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(file);
        if bless {
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file);
        }
    }
    assert!(stale.is_empty(), "schemas/json/{stale:?} differ from the types: regenerate with KURZ_BLESS=1 if the change is intended");
}

#[test]
fn every_stored_fixture_is_valid_against_its_published_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (kind, prefix) in [("clicks", "click"), ("events", "event")] {
        for v in std::fs::read_dir(root.join("tests/fixtures").join(kind)).unwrap() {
            let v = v.unwrap().path();
            let version = v.file_name().unwrap().to_str().unwrap().to_string();
            let schema: Value =
                serde_json::from_str(&std::fs::read_to_string(root.join(format!("json/{prefix}.{version}.schema.json"))).unwrap()).unwrap();
            let validator = jsonschema::validator_for(&schema).unwrap();
            for f in std::fs::read_dir(&v).unwrap() {
                let f = f.unwrap().path();
                let record: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
                let errors: Vec<String> = validator.iter_errors(&record).map(|e| e.to_string()).collect();
                assert!(errors.is_empty(), "{}: {errors:?}", f.display());
            }
        }
    }
}

#[test]
fn the_published_schemas_reject_what_kurz_never_writes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(root.join("json/click.v2.schema.json")).unwrap()).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let ok = serde_json::json!({"v": 2, "link_id": 5, "code": "abc", "at": 1});
    assert!(v.is_valid(&ok));
    for bad in [
        serde_json::json!({"v": 1, "link_id": 5, "code": "abc", "at": 1}),
        serde_json::json!({"v": 2, "link_id": 0, "code": "abc", "at": 1}),
        serde_json::json!({"v": 2, "link_id": 5, "at": 1}),
        serde_json::json!({"v": 2, "link_id": 5, "code": "abc", "at": 1, "agent": {"browser": "x", "os": "y", "device": "robot"}}),
    ] {
        assert!(!v.is_valid(&bad), "{bad} passed");
    }
}

#[test]
fn the_asyncapi_document_names_every_published_schema_and_only_those() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(root.join("asyncapi.json")).unwrap()).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let addresses: Vec<&str> = doc["channels"].as_object().unwrap().values().map(|c| c["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, vec![kurz_schemas::topics::CLICKS, kurz_schemas::topics::EVENTS]);
    let mut referenced: Vec<String> = doc["components"]["messages"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["payload"]["$ref"].as_str().unwrap().trim_start_matches("json/").to_string())
        .collect();
    referenced.sort();
    let mut published: Vec<String> = generated().into_iter().map(|(f, _)| f.to_string()).chain(FROZEN.map(String::from)).collect();
    published.sort();
    assert_eq!(referenced, published);
    // Every message a channel lists exists.
    for c in doc["channels"].as_object().unwrap().values() {
        for m in c["messages"].as_object().unwrap().values() {
            let name = m["$ref"].as_str().unwrap().trim_start_matches("#/components/messages/");
            assert!(doc["components"]["messages"].get(name).is_some(), "{name}");
        }
    }
}
