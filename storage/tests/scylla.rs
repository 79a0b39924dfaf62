//! The read-store scenario suite against the ScyllaDB adapter, over a real CQL socket
//! served by kassandra (an in-memory, single-node CQL v4 server embedded as a library)
//! on a free loopback port. What this double cannot prove about Scylla is listed in
//! `infra/scylla-unproven.md`. Nothing here is skipped: if the double cannot start or
//! the adapter cannot talk to it, the tests fail.

use kurz_schemas::{Id, Link, User};
use kurz_storage::store::scylla::schema::{table_names, SCHEMA_CQL};
use kurz_storage::store::{ApplyError, Mutation, Position, VersionedLink};
use kurz_storage::{open_store, scenarios, StoreBatch};
use kurz_testkit::cql::start_node;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::response::PagingState;
use std::net::SocketAddr;

async fn raw_session(addr: SocketAddr) -> Session {
    SessionBuilder::new().known_node_addr(addr).auto_await_schema_agreement(false).build().await.expect("raw CQL session")
}

fn id(n: u64) -> Id {
    Id::new(n).unwrap()
}

fn batch(topic: &str, from: u64, to: u64, mutations: Vec<Mutation>) -> StoreBatch {
    StoreBatch {
        positions: vec![Position { projection: "p".into(), topic: topic.into(), partition: 0, from, to }],
        mutations,
        ..Default::default()
    }
}

fn put_link(n: u64, code: &str, version: u64) -> Mutation {
    Mutation::PutLink(VersionedLink { link: scenarios::store::link(n, code, Some(1), "https://x.io", true), version })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_scenarios() {
    let addr = start_node();
    let dir = tempfile::tempdir().unwrap();
    // A small page size makes every listing of the suite cross pages.
    let store = open_store(&format!("scylla://{addr}/kurz?page_size=3"), dir.path()).expect("open the scylla store on kassandra");
    scenarios::store::run(store).await;

    // The listings above really crossed pages: the double honours the page size.
    let raw = raw_session(addr).await;
    let mut all_users = raw.prepare("SELECT id, body FROM kurz.users_all WHERE bucket = ?").await.unwrap();
    all_users.set_page_size(3);
    let (page, next) = raw.execute_single_page(&all_users, (0i32,), PagingState::start()).await.unwrap();
    assert_eq!(page.into_rows_result().unwrap().rows_num(), 3);
    assert!(next.into_paging_control_flow().is_continue(), "more pages after the first 3 of 24 users");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_the_schema_and_a_second_open_is_harmless() {
    let addr = start_node();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("scylla://{addr}/kurz_m?consistency=one");
    let first = open_store(&url, dir.path()).expect("first open (creates the schema)");

    let raw = raw_session(addr).await;
    let rows = raw
        .query_unpaged("SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'kurz_m'", ())
        .await
        .expect("read system_schema.tables")
        .into_rows_result()
        .unwrap();
    let tables: Vec<String> = rows.rows::<(String,)>().unwrap().map(|r| r.unwrap().0).collect();
    for t in table_names(SCHEMA_CQL) {
        assert!(tables.contains(&t), "table {t} not created: {tables:?}");
    }

    let user: User = scenarios::store::user(7, "seven@x.io");
    first
        .apply(batch(
            "t",
            0,
            3,
            vec![Mutation::PutUser(user.clone()), put_link(30, "abc", 1), Mutation::AddClicks { link_id: id(30), n: 4 }],
        ))
        .await
        .unwrap();

    // The migration runs again on an existing schema: nothing is lost, both work.
    let second = open_store(&url, dir.path()).expect("second open (migration re-run)");
    for s in [&first, &second] {
        assert_eq!(s.position("p", "t", 0).await.unwrap(), 3);
        assert_eq!(s.user(id(7)).await.unwrap(), Some(user.clone()));
        assert_eq!(s.link_by_code("abc").await.unwrap().unwrap().version, 1);
        assert_eq!(s.click_count(id(30)).await.unwrap(), 4);
        s.ping().await.unwrap();
    }
    second.apply(batch("t", 3, 4, vec![Mutation::AddClicks { link_id: id(30), n: 1 }])).await.unwrap();
    assert_eq!(first.click_count(id(30)).await.unwrap(), 5);
}

/// A store whose positions were written before claims existed (the `positions` table
/// only) goes on from them: the first fenced write moves from the old row's offset,
/// and a batch from anywhere else is refused.
/// The CQL double keeps, per row, the write with the highest timestamp whatever order
/// writes arrive in, and a delete shadows every older write of its row (a tie goes to
/// the delete), as Scylla does. The store's fencing of rows rests on this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cql_double_keeps_the_latest_write_of_each_row() {
    use scylla::statement::prepared::PreparedStatement;
    let addr = start_node();
    let raw = raw_session(addr).await;
    raw.query_unpaged("CREATE KEYSPACE IF NOT EXISTS lww WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}", ())
        .await
        .unwrap();
    raw.query_unpaged("CREATE TABLE IF NOT EXISTS lww.t (k bigint, c text, v bigint, PRIMARY KEY (k, c))", ()).await.unwrap();
    let put = raw.prepare("INSERT INTO lww.t (k, c, v) VALUES (?, ?, ?)").await.unwrap();
    let del = raw.prepare("DELETE FROM lww.t WHERE k = ? AND c = ?").await.unwrap();
    let get = raw.prepare("SELECT v FROM lww.t WHERE k = ? AND c = ?").await.unwrap();
    let at = |st: &PreparedStatement, ts: i64| {
        let mut st = st.clone();
        st.set_timestamp(Some(ts));
        st
    };
    // Rows in partitions of their own: kassandra's reads filter by partition only.
    let read = |c: &'static str| {
        let (raw, get) = (&raw, &get);
        let k: i64 = if c == "a" { 1 } else { 2 };
        async move {
            let rows = raw.execute_unpaged(get, (k, c)).await.unwrap().into_rows_result().unwrap();
            rows.maybe_first_row::<(i64,)>().unwrap().map(|(v,)| v)
        }
    };
    raw.execute_unpaged(&at(&put, 10), (1i64, "a", 1i64)).await.unwrap();
    assert_eq!(read("a").await, Some(1));
    raw.execute_unpaged(&at(&put, 5), (1i64, "a", 2i64)).await.unwrap();
    assert_eq!(read("a").await, Some(1), "an older write arriving late loses");
    raw.execute_unpaged(&at(&put, 1), (2i64, "b", 3i64)).await.unwrap();
    assert_eq!(read("b").await, Some(3), "rows are ordered one by one");
    raw.execute_unpaged(&at(&del, 7), (1i64, "a")).await.unwrap();
    assert_eq!(read("a").await, Some(1), "an older delete loses too");
    raw.execute_unpaged(&at(&del, 20), (1i64, "a")).await.unwrap();
    assert_eq!(read("a").await, None);
    raw.execute_unpaged(&at(&put, 15), (1i64, "a", 4i64)).await.unwrap();
    raw.execute_unpaged(&at(&put, 20), (1i64, "a", 5i64)).await.unwrap();
    assert_eq!(read("a").await, None, "the tombstone shadows older writes and wins a tie");
    raw.execute_unpaged(&at(&put, 21), (1i64, "a", 6i64)).await.unwrap();
    assert_eq!(read("a").await, Some(6));
    assert_eq!(read("b").await, Some(3));
    // A delete of more than one row could not be ordered by the double: refused.
    assert!(raw.prepare("DELETE FROM lww.t WHERE k = ?").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_from_before_claims_are_carried_over() {
    let addr = start_node();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&format!("scylla://{addr}/kurz_l"), dir.path()).unwrap();
    let raw = raw_session(addr).await;
    raw.query_unpaged("INSERT INTO kurz_l.positions (projection, topic, log_partition, next_offset) VALUES ('p', 'clicks', 0, 7)", ())
        .await
        .unwrap();
    assert_eq!(store.position("p", "clicks", 0).await.unwrap(), 7);
    let again = store.apply(batch("clicks", 0, 7, vec![Mutation::AddClicks { link_id: id(50), n: 7 }])).await;
    assert!(matches!(again, Err(ApplyError::PositionMismatch { stored: 7, expected: 0, .. })), "{again:?}");
    store.apply(batch("clicks", 7, 9, vec![Mutation::AddClicks { link_id: id(50), n: 2 }])).await.unwrap();
    assert_eq!((store.position("p", "clicks", 0).await.unwrap(), store.click_count(id(50)).await.unwrap()), (9, 2));
}

/// The projector dies after a batch's rows but before its positions: the position
/// still says `from`, and the batch comes again, possibly longer (the log grew). The
/// re-run must give the state one clean run gives: clicks are not added twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_replayed_after_a_crash_before_its_positions_counts_once() {
    let addr = start_node();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&format!("scylla://{addr}/kurz_r"), dir.path()).unwrap();
    let hour = |n: u64| Mutation::AddCount { link_id: id(40), name: "h:0000000000000".into(), n };
    store.apply(batch("clicks", 0, 5, vec![Mutation::AddClicks { link_id: id(40), n: 1 }, hour(1)])).await.unwrap();
    let crashed =
        vec![Mutation::AddClicks { link_id: id(41), n: 2 }, Mutation::AddClicks { link_id: id(40), n: 2 }, hour(2), put_link(42, "k42", 9)];
    store.apply(batch("clicks", 5, 9, crashed)).await.unwrap();
    assert_eq!(store.click_count(id(40)).await.unwrap(), 3);

    // Undo the position write only, as if the process had died just before it.
    let raw = raw_session(addr).await;
    raw.query_unpaged(
        "INSERT INTO kurz_r.fenced_positions (projection, topic, log_partition, next_offset, epoch) VALUES ('p', 'clicks', 0, 5, 0)",
        (),
    )
    .await
    .unwrap();
    assert_eq!(store.position("p", "clicks", 0).await.unwrap(), 5);

    let replay = vec![
        Mutation::AddClicks { link_id: id(41), n: 2 },
        Mutation::AddClicks { link_id: id(40), n: 2 },
        hour(2),
        put_link(42, "k42", 9),
        Mutation::AddClicks { link_id: id(40), n: 1 }, // the record the log gained meanwhile
        hour(1),
    ];
    store.apply(batch("clicks", 5, 10, replay)).await.unwrap();
    assert_eq!(store.click_count(id(40)).await.unwrap(), 4, "1 + 2 + 1, not 1 + 2 + 2 + 1");
    let hours = store.click_counts(id(40), "h:", "h;").await.unwrap();
    assert_eq!(hours, vec![("h:0000000000000".to_string(), 4)], "aggregates too: 1 + 2 + 1");
    assert_eq!(store.click_count(id(41)).await.unwrap(), 2);
    let l: Link = store.link_by_code("k42").await.unwrap().unwrap().link;
    assert_eq!(l.id, id(42));

    // And the next batch adds on top again.
    store.apply(batch("clicks", 10, 11, vec![Mutation::AddClicks { link_id: id(40), n: 5 }])).await.unwrap();
    assert_eq!(store.click_count(id(40)).await.unwrap(), 9);
    assert_eq!(store.position("p", "clicks", 0).await.unwrap(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    // Bind then drop a listener: the port is free and nothing answers on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert!(open_store(&format!("scylla://127.0.0.1:{port}/kurz"), dir.path()).is_err());
    assert!(open_store("scylla://127.0.0.1:9042/bad-keyspace!", dir.path()).is_err());
}

/// Outside any tokio runtime the store brings its own for the driver, and can then be
/// used from another (here a current-thread) runtime.
#[test]
fn opens_outside_a_tokio_runtime() {
    let addr = start_node();
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&format!("scylla://{addr}/kurz_o"), dir.path()).expect("open without a runtime");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        store.ping().await.unwrap();
        store.apply(batch("t", 0, 1, vec![put_link(50, "k50", 1)])).await.unwrap();
        assert_eq!(store.link_by_code("k50").await.unwrap().unwrap().link.id, id(50));
    });
    drop(store);
}

/// The store over TLS, with the CQL double behind a TLS terminator (socat) whose
/// certificate the test made: the driver verifies it against the test CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_scenarios_over_tls() {
    let addr = start_node();
    let tls = kurz_testkit::TlsFiles::make("");
    let port = kurz_testkit::free_port();
    let listen = format!(
        "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
        tls.path("server.pem"),
        tls.path("server.key")
    );
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
        }
    }
    let _socat = Kill(
        std::process::Command::new("socat")
            .args([listen, format!("TCP:{addr}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("socat"),
    );
    kurz_testkit::wait_for(port, "socat");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("scylla://127.0.0.1:{port}/kurz?tls_ca={}", tls.path("ca.pem"));
    let store = open_store(&url, dir.path()).expect("open the scylla store over TLS");
    scenarios::store::run(store).await;
    // Without the CA the server is not trusted: no session.
    assert!(open_store(&format!("scylla://127.0.0.1:{port}/kurz?tls=true"), dir.path()).is_err());
}

/// The vault port on Scylla, over a real CQL socket, in a keyspace of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_scenarios() {
    let addr = start_node();
    let url = format!("scylla://{addr}/kurz_vault?consistency=one");
    kurz_storage::scenarios::vault::run(kurz_storage::open_vault(&url, std::path::Path::new("/nonexistent")).await.unwrap()).await;
    // A second process sees what the first wrote.
    let other = kurz_storage::open_vault(&url, std::path::Path::new("/nonexistent")).await.unwrap();
    assert_eq!(
        other.get("7f3c1d2e-0000-4000-8000-000000000001").await.unwrap(),
        kurz_storage::vault::KeyState::Erased { at: 1_700_000_000_123 }
    );
    // Its schema is the reviewed file, in its own keyspace: no store table is made.
    let raw = raw_session(addr).await;
    let names: Vec<String> = raw
        .query_unpaged("SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'kurz_vault'", ())
        .await
        .expect("read system_schema.tables")
        .into_rows_result()
        .unwrap()
        .rows::<(String,)>()
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(names, vec!["vault_keys".to_string()], "{names:?}");
}

/// Processes of one deployment start together, and each migrates the vault's new
/// keyspace: every one of them opens it (the CQL double once refused a prepare in that
/// race, "Keyspace or table does nor exist", and a command-api exited at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vaults_opened_together_on_a_new_keyspace_all_start() {
    let addr = start_node();
    let nowhere = std::path::Path::new("/nonexistent");
    for round in 0..6 {
        let url = format!("scylla://{addr}/race_vault_{round}?consistency=one");
        // Stores migrate their own keyspaces meanwhile, as they do in those processes.
        let stores: Vec<_> = (0..2)
            .map(|i| {
                let url = format!("scylla://{addr}/race_store_{round}_{i}?consistency=one");
                tokio::task::spawn_blocking(move || {
                    let dir = tempfile::tempdir().unwrap();
                    open_store(&url, dir.path()).map(|_| ())
                })
            })
            .collect();
        let opens: Vec<_> = (0..4).map(|_| kurz_storage::open_vault(&url, nowhere)).collect();
        for (i, r) in futures::future::join_all(opens).await.into_iter().enumerate() {
            let v = r.unwrap_or_else(|e| panic!("round {round}, opener {i}: {e}"));
            assert_eq!(v.get("7f3c1d2e-0000-4000-8000-000000000001").await.unwrap(), kurz_storage::vault::KeyState::Unknown);
        }
        for s in stores {
            s.await.unwrap().unwrap();
        }
    }
}

/// A hook that holds the first batch that reaches `point` after [`Gate::arm`], until
/// the test lets it go: a writer paused at that instruction.
struct Gate {
    point: kurz_storage::store::scylla::Hold,
    armed: std::sync::Mutex<Option<(tokio::sync::oneshot::Sender<()>, tokio::sync::oneshot::Receiver<()>)>>,
}

impl Gate {
    fn install(store: &mut kurz_storage::store::scylla::ScyllaStore, point: kurz_storage::store::scylla::Hold) -> std::sync::Arc<Gate> {
        let gate = std::sync::Arc::new(Gate { point, armed: std::sync::Mutex::new(None) });
        let g = gate.clone();
        store.hold_at(std::sync::Arc::new(move |at, _topic: &str| {
            let g = g.clone();
            Box::pin(async move {
                if at != g.point {
                    return;
                }
                let armed = g.armed.lock().unwrap().take();
                if let Some((held, go)) = armed {
                    let _ = held.send(());
                    let _ = go.await;
                }
            })
        }));
        gate
    }

    /// Arms the gate: the first receiver says a batch is held, the sender lets it go.
    fn arm(&self) -> (tokio::sync::oneshot::Receiver<()>, tokio::sync::oneshot::Sender<()>) {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel();
        *self.armed.lock().unwrap() = Some((held_tx, go_rx));
        (held_rx, go_tx)
    }
}

fn under(epoch: u64, mut b: StoreBatch) -> StoreBatch {
    b.epoch = epoch;
    b
}

/// Two projector processes on one partition: A passes its batch's checks and pauses
/// before its rows; B claims the partition and goes on; A wakes and writes its rows.
/// Its rows carry timestamps below B's lease, so they lose to B's whatever order they
/// arrive in, and its position move is refused: the count is B's, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_writers_late_rows_lose_to_the_new_owner() {
    use kurz_storage::store::scylla::{Hold, ScyllaStore};
    use kurz_storage::store::ReadStore;
    let addr = start_node();
    let url = format!("scylla://{addr}/kurz_z");
    let mut a = ScyllaStore::open(&url).unwrap();
    let gate = Gate::install(&mut a, Hold::BeforeRows);
    let a = std::sync::Arc::new(a);
    let b = ScyllaStore::open(&url).unwrap();
    let x = id(60);
    let clicks = |from, to, n| batch("clicks", from, to, vec![Mutation::AddClicks { link_id: x, n }]);

    let ea = a.claim("clicks", 0).await.unwrap();
    a.apply(under(ea, clicks(0, 5, 1))).await.unwrap();
    let (held, go) = gate.arm();
    let stale = tokio::spawn({
        let (a, stalled) = (a.clone(), under(ea, clicks(5, 10, 5)));
        async move { a.apply(stalled).await }
    });
    held.await.unwrap();

    let eb = b.claim("clicks", 0).await.unwrap();
    assert!(eb > ea);
    b.apply(under(eb, clicks(5, 10, 5))).await.unwrap();
    b.apply(under(eb, clicks(10, 12, 2))).await.unwrap();
    assert_eq!(b.click_count(x).await.unwrap(), 8);

    go.send(()).unwrap();
    let late = stale.await.unwrap();
    assert!(matches!(late, Err(ApplyError::Fenced { claimed, epoch, .. }) if claimed == eb && epoch == ea), "{late:?}");
    // A read B's row and wrote 8 + 5 under its old lease: that write lost.
    assert_eq!(b.click_count(x).await.unwrap(), 8, "the stale writer's late row must lose");
    assert_eq!(b.position("p", "clicks", 0).await.unwrap(), 12);
}

/// A pauses after its rows, before its positions; B claims and re-applies the same
/// offsets in shorter batches, so one link of A's attempt is not in B's first batch.
/// That link's row is recognised as A's unsettled attempt and recounted from its base:
/// every click counts once, in the counts and the aggregates.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsettled_attempt_that_ran_further_counts_once() {
    use kurz_storage::store::scylla::{Hold, ScyllaStore};
    use kurz_storage::store::ReadStore;
    let addr = start_node();
    let url = format!("scylla://{addr}/kurz_u");
    let mut a = ScyllaStore::open(&url).unwrap();
    let gate = Gate::install(&mut a, Hold::BeforePositions);
    let a = std::sync::Arc::new(a);
    let b = ScyllaStore::open(&url).unwrap();
    let (x, y) = (id(61), id(62));
    let hour = |link_id, n| Mutation::AddCount { link_id, name: "h:0000000000000".into(), n };
    let add = |link_id, n| [Mutation::AddClicks { link_id, n }, hour(link_id, n)];

    let ea = a.claim("clicks", 0).await.unwrap();
    a.apply(under(ea, batch("clicks", 0, 5, add(x, 1).to_vec()))).await.unwrap();
    let (held, go) = gate.arm();
    let stale = tokio::spawn({
        let attempt = under(ea, batch("clicks", 5, 9, [add(x, 2), add(y, 3)].concat()));
        let a = a.clone();
        async move { a.apply(attempt).await }
    });
    held.await.unwrap();
    assert_eq!(b.click_count(y).await.unwrap(), 3, "A's rows are written, its position is not");

    let eb = b.claim("clicks", 0).await.unwrap();
    b.apply(under(eb, batch("clicks", 5, 7, add(x, 2).to_vec()))).await.unwrap();
    b.apply(under(eb, batch("clicks", 7, 10, add(y, 4).to_vec()))).await.unwrap();
    go.send(()).unwrap();
    let late = stale.await.unwrap();
    assert!(matches!(late, Err(ApplyError::Fenced { .. })), "{late:?}");

    assert_eq!(b.click_count(x).await.unwrap(), 3, "1 + 2");
    assert_eq!(b.click_count(y).await.unwrap(), 4, "3 of the attempt's clicks plus 1, each once: not 3 + 4");
    assert_eq!(b.click_counts(y, "h:", "h;").await.unwrap(), vec![("h:0000000000000".to_string(), 4)]);
    assert_eq!(b.position("p", "clicks", 0).await.unwrap(), 10);
}

/// As above, but the run that recognised A's attempt ends before it reaches the link
/// its first batch did not touch: B's next batch is fenced by a third writer C, which
/// claims and goes on from where B's position stands. A's row for `y` was written by a
/// batch that never settled, and C must know that from the row alone, not from a run
/// it did not see: it counts `y`'s clicks once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsettled_attempt_outlives_the_run_that_found_it() {
    use kurz_storage::store::scylla::{Hold, ScyllaStore};
    use kurz_storage::store::ReadStore;
    let addr = start_node();
    let url = format!("scylla://{addr}/kurz_o");
    let mut a = ScyllaStore::open(&url).unwrap();
    let gate = Gate::install(&mut a, Hold::BeforePositions);
    let a = std::sync::Arc::new(a);
    let b = ScyllaStore::open(&url).unwrap();
    let c = ScyllaStore::open(&url).unwrap();
    let (x, y) = (id(63), id(64));
    let hour = |link_id, n| Mutation::AddCount { link_id, name: "h:0000000000000".into(), n };
    let add = |link_id, n| [Mutation::AddClicks { link_id, n }, hour(link_id, n)];

    let ea = a.claim("clicks", 0).await.unwrap();
    a.apply(under(ea, batch("clicks", 0, 5, add(x, 1).to_vec()))).await.unwrap();
    let (held, go) = gate.arm();
    let stale = tokio::spawn({
        let attempt = under(ea, batch("clicks", 5, 9, [add(x, 2), add(y, 3)].concat()));
        let a = a.clone();
        async move { a.apply(attempt).await }
    });
    held.await.unwrap();

    let eb = b.claim("clicks", 0).await.unwrap();
    b.apply(under(eb, batch("clicks", 5, 7, add(x, 2).to_vec()))).await.unwrap();
    let ec = c.claim("clicks", 0).await.unwrap();
    let fenced = b.apply(under(eb, batch("clicks", 7, 10, add(y, 4).to_vec()))).await;
    assert!(matches!(fenced, Err(ApplyError::Fenced { .. })), "{fenced:?}");
    c.apply(under(ec, batch("clicks", 7, 10, add(y, 4).to_vec()))).await.unwrap();
    go.send(()).unwrap();
    let late = stale.await.unwrap();
    assert!(matches!(late, Err(ApplyError::Fenced { .. })), "{late:?}");

    assert_eq!(c.click_count(x).await.unwrap(), 3, "1 + 2");
    assert_eq!(c.click_count(y).await.unwrap(), 4, "3 of the attempt's clicks plus 1, each once: not 3 + 4");
    assert_eq!(c.click_counts(y, "h:", "h;").await.unwrap(), vec![("h:0000000000000".to_string(), 4)]);
    assert_eq!(c.position("p", "clicks", 0).await.unwrap(), 10);
}
