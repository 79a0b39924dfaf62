//! Users: create, list/paginate, get, update, delete.

use super::*;

#[tokio::test]
async fn create_user_returns_201_user_with_integer_id_and_rfc3339_timestamps_and_is_readable_at_once() {
    let api = Api::open();
    let u = api.new_user("alice@example.com", "alice").await;
    assert_eq!(u["email"], "alice@example.com");
    assert_eq!(u["username"], "alice");

    // read-your-writes: by id and in the list, immediately
    let g = api.get(&format!("/users/{}", id(&u))).await.ok(200);
    assert_user(&g);
    assert_eq!(g["id"], u["id"]);
    assert_eq!(g["email"], "alice@example.com");
    assert_eq!(g["username"], "alice");
    let list = api.get("/users?page=1&per_page=20").await.ok(200);
    assert!(ids(&list).contains(&id(&u)), "new user missing from GET /users: {list}");

    // username is optional
    let b = api.post("/users", json!({"email": "bob@example.com"})).await.ok(201);
    assert_user(&b);
    assert_eq!(b["email"], "bob@example.com");
    assert_ne!(id(&b), id(&u));
    api.get(&format!("/users/{}", id(&b))).await.ok(200);
}

#[tokio::test]
async fn create_user_missing_email_is_400_and_non_string_email_is_400_mentioning_string() {
    let api = Api::open();
    api.post("/users", json!({})).await.err(400, None);
    api.post("/users", json!({"username": "nomail"})).await.err(400, None);
    api.post("/users", json!({"email": null, "username": "nullmail"})).await.err(400, None);
    api.post("/users", json!({"email": 123})).await.err(400, Some("string"));
    api.post("/users", json!({"email": ["a@example.com"]})).await.err(400, Some("string"));
    api.post("/users", json!({"email": {"x": 1}})).await.err(400, Some("string"));
    let list = api.get("/users").await.ok(200);
    assert!(arr(&list).is_empty(), "rejected creates must not create users: {list}");
}

#[tokio::test]
async fn create_user_with_taken_email_is_409_mentioning_exists() {
    let api = Api::open();
    api.new_user("dup@example.com", "first").await;
    api.post("/users", json!({"email": "dup@example.com", "username": "second"})).await.err(409, Some("exists"));
    api.post("/users", json!({"email": "dup@example.com"})).await.err(409, Some("exists"));
    let list = api.get("/users").await.ok(200);
    assert_eq!(arr(&list).len(), 1, "duplicate must not be stored: {list}");
}

#[tokio::test]
async fn list_users_is_ordered_by_id_and_paginates_with_page_and_per_page() {
    let api = Api::open();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(id(&api.new_user(&format!("p{i}@example.com"), &format!("p{i}")).await));
    }
    created.sort();
    let mut seen = Vec::new();
    for (page, expect) in [(1, 3), (2, 3), (3, 1), (4, 0)] {
        let l = api.get(&format!("/users?page={page}&per_page=3")).await.ok(200);
        assert_eq!(arr(&l).len(), expect, "page {page} per_page 3: {l}");
        assert_ascending(&l, "GET /users page");
        for u in arr(&l) {
            assert_user(u);
        }
        seen.extend(ids(&l));
    }
    assert_eq!(seen, created, "pages must cover all users in id order");
    let all = api.get("/users").await.ok(200);
    assert_eq!(ids(&all), created);
}

#[tokio::test]
async fn list_users_default_page_size_is_20_in_id_order() {
    let api = Api::open();
    api.post_csv(None, "/users/bulk", users_csv(1..=25, false)).await.ok(201);
    let p1 = api.get("/users").await.ok(200);
    assert_eq!(ids(&p1), (1..=20).collect::<Vec<_>>());
    let p1b = api.get("/users?page=1&per_page=20").await.ok(200);
    assert_eq!(ids(&p1b), (1..=20).collect::<Vec<_>>());
    let p2 = api.get("/users?page=2").await.ok(200);
    assert_eq!(ids(&p2), (21..=25).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_users_non_integer_page_or_per_page_is_400() {
    let api = Api::open();
    api.new_user("x@example.com", "x").await;
    for q in ["page=abc", "per_page=abc", "page=1.5", "per_page=2.5", "page=1&per_page=x", "page=abc&per_page=20"] {
        api.get(&format!("/users?{q}")).await.err(400, None);
    }
}

#[tokio::test]
async fn get_unknown_user_is_404() {
    let api = Api::open();
    api.get("/users/999999").await.err(404, None);
    let u = api.new_user("a@example.com", "a").await;
    api.get(&format!("/users/{}", id(&u) + 1)).await.err(404, None);
}

#[tokio::test]
async fn update_user_returns_200_updated_user_visible_immediately() {
    let api = Api::open();
    let u = api.new_user("old@example.com", "before").await;
    let p = format!("/users/{}", id(&u));

    let r = api.put(&p, json!({"username": "after"})).await.ok(200);
    assert_user(&r);
    assert_eq!(r["id"], u["id"]);
    assert_eq!(r["username"], "after");
    assert_eq!(r["email"], "old@example.com");
    let g = api.get(&p).await.ok(200);
    assert_eq!(g["username"], "after");

    let r = api.put(&p, json!({"email": "new@example.com"})).await.ok(200);
    assert_eq!(r["email"], "new@example.com");
    assert_eq!(r["username"], "after");
    let g = api.get(&p).await.ok(200);
    assert_eq!(g["email"], "new@example.com");
    assert_eq!(g["username"], "after");
}

#[tokio::test]
async fn update_unknown_user_is_404() {
    let api = Api::open();
    api.put("/users/999999", json!({"username": "ghost"})).await.err(404, None);
}

#[tokio::test]
async fn update_user_to_another_users_email_is_409_mentioning_exists_and_own_email_is_200() {
    let api = Api::open();
    let a = api.new_user("a@example.com", "a").await;
    let b = api.new_user("b@example.com", "b").await;
    let pa = format!("/users/{}", id(&a));
    api.put(&pa, json!({"email": "b@example.com"})).await.err(409, Some("exists"));
    assert_eq!(api.get(&pa).await.ok(200)["email"], "a@example.com", "409 must not change the user");
    assert_eq!(api.get(&format!("/users/{}", id(&b))).await.ok(200)["email"], "b@example.com");

    let r = api.put(&pa, json!({"email": "a@example.com"})).await.ok(200);
    assert_eq!(r["email"], "a@example.com");
    let r = api.put(&pa, json!({"email": "a@example.com", "username": "a2"})).await.ok(200);
    assert_eq!(r["username"], "a2");
}

#[tokio::test]
async fn delete_user_returns_200_json_and_then_get_is_404() {
    let api = Api::open();
    let u = api.new_user("gone@example.com", "gone").await;
    let keep = api.new_user("keep@example.com", "keep").await;
    let p = format!("/users/{}", id(&u));
    let d = api.delete(&p).await;
    d.ok(200);
    assert!(!d.body.is_null(), "DELETE must return a JSON body, got {:?}", d.text);
    api.get(&p).await.err(404, None);
    api.put(&p, json!({"username": "zombie"})).await.err(404, None);
    let list = api.get("/users").await.ok(200);
    assert_eq!(ids(&list), vec![id(&keep)]);
    // a link can no longer name the deleted user
    api.post("/urls", json!({"original_url": "https://example.com/x", "user_id": id(&u)})).await.err(404, Some("user"));
}
