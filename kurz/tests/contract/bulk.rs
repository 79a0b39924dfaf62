//! Bulk loads (CSV bodies and import-dir files) and the replaced service's seed data set.

use super::*;

#[tokio::test]
async fn bulk_users_csv_body_returns_201_count_and_ignores_unknown_columns() {
    let api = Api::open();
    let r = api.post_csv(None, "/users/bulk", users_csv(1..=150, true)).await.ok(201);
    assert_eq!(r["count"], 150, "{r}");
    let u = api.get("/users/1").await.ok(200);
    assert_user(&u);
    assert_eq!(u["email"], "bulkuser1@example.com");
    assert_eq!(u["username"], "bulkuser1");
    assert!(u["created_at"].as_str().unwrap().starts_with("2025-01-02T03:04:05"), "created_at from CSV: {u}");
    assert!(u.get("plan").is_none_or(|p| p.is_null()), "unknown CSV column must be ignored: {u}");
    assert_eq!(api.get("/users/150").await.ok(200)["email"], "bulkuser150@example.com");
    api.get("/users/151").await.err(404, None);
    let mut all = Vec::new();
    for page in 1..=4 {
        let l = api.get(&format!("/users?page={page}&per_page=50")).await.ok(200);
        all.extend(ids(&l));
    }
    assert_eq!(all, (1..=150).collect::<Vec<_>>());
    // loaded emails count as taken
    api.post("/users", json!({"email": "bulkuser7@example.com"})).await.err(409, Some("exists"));
}

#[tokio::test]
async fn bulk_loads_from_import_dir_file_404_for_missing_and_400_for_escaping_names() {
    let root = tempfile::tempdir().unwrap();
    let import = root.path().join("import");
    std::fs::create_dir_all(import.join("sub")).unwrap();
    std::fs::write(import.join("users.csv"), users_csv(1..=3, true)).unwrap();
    std::fs::write(import.join("urls.csv"), urls_csv(1..=4, 3)).unwrap();
    std::fs::write(import.join("events.csv"), events_csv(1..=2, 4, "view")).unwrap();
    std::fs::write(import.join("sub/users.csv"), users_csv(10..=11, false)).unwrap();
    std::fs::write(root.path().join("outside.csv"), users_csv(20..=21, false)).unwrap();
    let api = Api::with_import_dir("open", import);

    for (path, file, n) in [("/users/bulk", "users.csv", 3), ("/urls/bulk", "urls.csv", 4), ("/events/bulk", "events.csv", 2)] {
        let r = api.post(path, json!({"file": file})).await.ok(201);
        assert_eq!(r["count"], n, "{path}: {r}");
    }
    assert_eq!(api.get("/users/2").await.ok(200)["email"], "bulkuser2@example.com");
    let l = api.get("/urls/4").await.ok(200);
    assert_eq!(l["short_code"], "bk00004");
    assert_eq!(l["is_active"], false);
    assert_eq!(api.get("/urls/3").await.ok(200)["is_active"], true);
    let e = api.get("/events/2").await.ok(200);
    assert_event(&e);
    assert_eq!(e["event_type"], "view");
    assert_eq!(e["details"], json!({"n": 2}));

    for path in ["/users/bulk", "/urls/bulk", "/events/bulk"] {
        api.post(path, json!({"file": "missing.csv"})).await.err(404, None);
        api.post(path, json!({"file": "../outside.csv"})).await.err(400, None);
        api.post(path, json!({"file": "../x"})).await.err(400, None);
        api.post(path, json!({"file": "a/b"})).await.err(400, None);
        api.post(path, json!({"file": "sub/users.csv"})).await.err(400, None);
        api.post(path, json!({"file": "/etc/passwd"})).await.err(400, None);
    }
    // nothing from outside / the subdirectory got loaded
    api.get("/users/10").await.err(404, None);
    api.get("/users/20").await.err(404, None);
}

// ---------------------------------------------------------------------------------------------
// the replaced service's data set
// ---------------------------------------------------------------------------------------------

async fn check_seed_rows(api: &Api) {
    // users (e-mail addresses are the admin's to read in token mode)
    let u1 = api.get_as(Some(ADMIN_TOKEN), "/users/1").await.ok(200);
    assert_user(&u1);
    assert_eq!(u1["email"], "cobaltriver87@example.com");
    assert_eq!(u1["username"], "cobaltriver87");
    assert!(u1["created_at"].as_str().unwrap().starts_with("2025-05-07T09:27:28"), "{u1}");
    let u200 = api.get_as(Some(ADMIN_TOKEN), "/users/200").await.ok(200);
    assert_eq!(u200["email"], "harborcanyon04@seeded.app");
    assert_eq!(api.get("/users/400").await.ok(200)["username"], "forestuplink10");
    api.get("/users/401").await.err(404, None);
    let last = api.get("/users?page=20&per_page=20").await.ok(200);
    assert_eq!(ids(&last), (381..=400).collect::<Vec<_>>());
    assert!(arr(&api.get("/users?page=21&per_page=20").await.ok(200)).is_empty());

    // urls
    let l1 = api.get("/urls/1").await.ok(200);
    assert_url(&l1);
    assert_eq!(l1["short_code"], "r10UYL");
    assert_eq!(l1["original_url"], "https://relay.cloud/ivory/kernel/1");
    assert_eq!(l1["title"], "Roadmap update garden");
    assert_eq!(l1["user_id"], 1);
    assert_eq!(l1["is_active"], true);
    assert!(l1["created_at"].as_str().unwrap().starts_with("2025-12-02T03:44:06"), "{l1}");
    let l7 = api.get("/urls/7").await.ok(200);
    assert_eq!(l7["short_code"], "vxknqj");
    assert_eq!(l7["is_active"], false);
    assert_eq!(l7["user_id"], 145);
    let l1000 = api.get("/links/1000").await.ok(200);
    assert_eq!(l1000["short_code"], "Cwqzj5");
    assert_eq!(l1000["user_id"], 378);
    assert_eq!(api.get("/urls/2000").await.ok(200)["short_code"], "SvTSCq");
    let r = api.get("/r10UYL").await;
    assert_eq!(r.status, 302, "{}", r.text);
    assert_eq!(r.header("location").as_deref(), Some("https://relay.cloud/ivory/kernel/1"));
    api.get("/vxknqj").await.err(404, None);
    let s = api.get("/SvTSCq+").await.ok(200);
    assert_eq!(s["original_url"], "https://hackstack.io/opal/lagoon/2000");
    assert!(s["click_count"].is_u64());
    assert_eq!(arr(&api.get("/urls?user_id=117&limit=500").await.ok(200)).len(), 12);
    let inactive = api.get("/urls?is_active=false&limit=500").await.ok(200);
    assert_eq!(arr(&inactive).len(), 377);
    assert_ascending(&inactive, "seed inactive urls");
    assert_eq!(ids(&api.get("/urls?limit=1000").await.ok(200)), (1..=500).collect::<Vec<_>>());

    // events
    let e1 = api.get("/events/1").await.ok(200);
    assert_event(&e1);
    assert_eq!(e1["url_id"], 1);
    assert_eq!(e1["user_id"], 1);
    assert_eq!(e1["event_type"], "created");
    assert_eq!(e1["details"], json!({"short_code": "r10UYL", "original_url": "https://relay.cloud/ivory/kernel/1"}));
    let e3422 = api.get("/events/3422").await.ok(200);
    assert_eq!(e3422["url_id"], 1406);
    assert_eq!(e3422["user_id"], 269);
    assert_eq!(e3422["event_type"], "deleted");
    assert_eq!(e3422["details"], json!({"reason": "duplicate"}));
    assert!(e3422["timestamp"].as_str().unwrap().starts_with("2025-07-13T19:43:57"), "{e3422}");
    assert_eq!(arr(&api.get("/events?event_type=deleted&limit=500").await.ok(200)).len(), 216);
    assert_eq!(arr(&api.get("/events?event_type=updated&limit=1000").await.ok(200)).len(), 500);
    assert_eq!(arr(&api.get("/events?url_id=17").await.ok(200)).len(), 3);
    let by_user = api.get("/events?user_id=269&limit=500").await.ok(200);
    assert_eq!(arr(&by_user).len(), 17);
    assert_ascending(&by_user, "seed events of user 269");
}

#[tokio::test]
async fn seed_data_loads_via_bulk_files_users_urls_events_with_counts_400_2000_3422() {
    let api = Api::with_import_dir("open", seed_dir());
    for (path, file, n) in [("/users/bulk", "users.csv", 400), ("/urls/bulk", "urls.csv", 2000), ("/events/bulk", "events.csv", 3422)] {
        let r = api.post(path, json!({"file": file})).await.ok(201);
        assert_eq!(r["count"], n, "{path} {file}: {r}");
    }
    check_seed_rows(&api).await;

    // new writes after the load do not collide with loaded ids or emails
    let u = api.new_user("brand-new@example.com", "brandnew").await;
    assert!(!(1..=400).contains(&id(&u)), "new user id collides with a loaded id: {u}");
    assert_eq!(api.get("/users/1").await.ok(200)["email"], "cobaltriver87@example.com");
    api.post("/users", json!({"email": "cobaltriver87@example.com"})).await.err(409, Some("exists"));
    let l = api.new_url(json!({"original_url": "https://example.com/after-seed", "user_id": 1})).await;
    assert!(!(1..=2000).contains(&id(&l)), "new link id collides with a loaded id: {l}");
    assert_eq!(api.get("/urls/1").await.ok(200)["short_code"], "r10UYL");
    let e = api.post("/events", json!({"url_id": 1, "event_type": "view", "user_id": 1})).await.ok(201);
    assert!(!(1..=3422).contains(&id(&e)), "new event id collides with a loaded id: {e}");
    assert_eq!(api.get("/events/1").await.ok(200)["event_type"], "created");
    // events on a seeded inactive link are refused
    api.post("/events", json!({"url_id": 7, "event_type": "view"})).await.err(400, Some("inactive"));
}

#[tokio::test]
async fn seed_data_loads_via_csv_bodies_in_order_with_counts_400_2000_3422() {
    let api = Api::token();
    let dir = seed_dir();
    for (path, file, n) in [("/users/bulk", "users.csv", 400), ("/urls/bulk", "urls.csv", 2000), ("/events/bulk", "events.csv", 3422)] {
        let csv = std::fs::read_to_string(dir.join(file)).unwrap();
        let r = api.post_csv(Some(ADMIN_TOKEN), path, csv).await.ok(201);
        assert_eq!(r["count"], n, "{path} {file}: {r}");
    }
    check_seed_rows(&api).await;
}
