//! An edge whose cache still holds a link's version from before its password was
//! replaced: the old password's key is erased, so that copy cannot be checked. The edge
//! reads the link again from the store and checks the visitor's password against the
//! current one (and repairs its cache), rather than answering 500. Real embedded store,
//! vault and cache, over a real socket.

use kurz_query_edge::capture::CaptureSettings;
use kurz_query_edge::routes::unlock::Unlock;
use kurz_query_edge::QueryEdge;
use kurz_schemas::{CachedLink, Id, Link, LinkOptions, Ts};
use kurz_storage::store::{Mutation, StoreBatch, VersionedLink};
use kurz_storage::vault::Keyring;
use kurz_storage::{open_cache, open_log, ReadStore};
use std::net::SocketAddr;
use std::sync::Arc;

async fn sealed(keys: &Keyring, password: &str) -> kurz_schemas::sealed::Sealed {
    let phc = kurz_web::hashing::hash_password(password.to_string()).await.unwrap();
    let subject = keys.mint().await.unwrap();
    let Some(kurz_schemas::personal::SubjectKey::Live(key)) = keys.key(&subject) else { panic!("a minted key is live") };
    kurz_schemas::sealed::seal(&key, Keyring::nonce(), &subject, phc.as_bytes())
}

fn link(password: kurz_schemas::sealed::Sealed) -> Link {
    Link {
        domain: None,
        id: Id::new(7).unwrap(),
        short_code: "guarded".into(),
        original_url: "https://t.example/secret".into(),
        title: None,
        is_active: true,
        user_id: None,
        created_at: Ts(0),
        updated_at: Ts(0),
        options: LinkOptions { password: Some(password), ..Default::default() },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cached_password_is_checked_against_the_stores_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::embedded(dir.path()).unwrap();
    let (old, new) = (sealed(&keys, "old secret").await, sealed(&keys, "new secret").await);
    let store: Arc<dyn ReadStore> = Arc::new(kurz_storage::store::embedded::RedbStore::open(&dir.path().join("store.redb")).unwrap());
    let current = link(new.clone());
    store
        .apply(StoreBatch { mutations: vec![Mutation::PutLink(VersionedLink { link: current.clone(), version: 2 })], ..Default::default() })
        .await
        .unwrap();
    // The cache still holds version 1, and the old password's key is gone.
    let cache = open_cache("memory").unwrap();
    cache.offer("guarded", CachedLink::live(link(old.clone()), 1)).await.unwrap();
    keys.erase(&old.subject, Ts::now().0).await.unwrap();

    let log = open_log("embedded", dir.path()).unwrap();
    let capture = CaptureSettings { enabled: false, ..CaptureSettings::default() };
    let edge = QueryEdge::build(log, store, cache.clone(), &capture).unwrap().protect_links(Unlock::new(keys.clone(), None, false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = edge.router();
    tokio::spawn(async move { axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await });

    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let post = |password: &'static str| {
        let c = c.clone();
        async move {
            c.post(format!("http://{addr}/guarded"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("password={}", password.replace(' ', "+")))
                .send()
                .await
                .unwrap()
        }
    };
    let old_try = post("old secret").await;
    assert_eq!(old_try.status(), 401, "the replaced password no longer opens the link");
    let new_try = post("new secret").await;
    assert_eq!(new_try.status(), 302, "the current password opens it");
    assert_eq!(new_try.headers()["location"], "https://t.example/secret");
    assert_eq!(cache.get_local("guarded").unwrap().version, 2, "the cache was repaired with the store's version");
}
