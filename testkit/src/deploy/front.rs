//! The split deployment's round-robin front: a reverse proxy that plays the nginx of
//! `docker-compose.yml` (writes to the command-api pool, reads to the query-edge pool,
//! each in turn), routes around dead backends, and counts who answered.

use crate::http::{error_chain, BACKEND_HEADER};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Response header the front adds: how many backends it tried before this answer.
pub const ATTEMPTS_HEADER: &str = "x-split-attempts";

/// One process the front forwards to.
#[derive(Clone, Debug)]
pub struct Backend {
    /// `query-edge#1/g2`: the process and its generation.
    pub name: String,
    pub base: String,
}

/// The round-robin front's routing table and counters.
pub struct Front {
    writers: RwLock<Vec<Backend>>,
    readers: RwLock<Vec<Backend>>,
    next_write: AtomicUsize,
    next_read: AtomicUsize,
    client: reqwest::Client,
    /// Requests answered, by backend name.
    served: Mutex<BTreeMap<String, u64>>,
    /// Transport failures the front routed around, by backend name.
    failovers: Mutex<BTreeMap<String, u64>>,
    retries: AtomicU64,
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "proxy-authorization",
];

fn hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

fn front_error(status: StatusCode, msg: String) -> Response {
    let body = serde_json::json!({ "error": msg }).to_string();
    Response::builder().status(status).header("content-type", "application/json").body(Body::from(body)).unwrap()
}

/// Forwards one request. Writes go to the command-api pool, reads to the query-edge pool,
/// each in turn. A backend that cannot be reached (connection refused: a dead process)
/// is skipped and the same request goes to the next one. A request that reached a
/// backend which then died without answering is retried on the next backend only when
/// that is safe: GET/HEAD/PUT/DELETE, or any write carrying an `Idempotency-Key`.
async fn forward(front: Arc<Front>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, 256 << 20).await {
        Ok(b) => b,
        Err(e) => return front_error(StatusCode::BAD_REQUEST, format!("front: reading the request body: {e}")),
    };
    // As infra/nginx/nginx.conf: writes, and the private reads (a user's API keys, the
    // domain registry), go to the command-api; a POST to a code goes to the edge.
    let path = parts.uri.path();
    let private_read = (path.starts_with("/users/") && path.ends_with("/api-keys"))
        || path == "/domains"
        || path.strip_prefix("/domains/").is_some_and(|h| !h.is_empty() && !h.contains('/'));
    // A POST to a code (not a reserved name) is a protected link's password: the edge.
    let first = parts.uri.path().trim_start_matches('/').split('/').next().unwrap_or("");
    let unlock = parts.method == Method::POST && kurz_schemas::ShortCode::is_plain_code(first);
    let write = (matches!(parts.method, Method::POST | Method::PUT | Method::DELETE | Method::PATCH) && !unlock) || private_read;
    let resendable = !matches!(parts.method, Method::POST | Method::PATCH) || parts.headers.contains_key("idempotency-key");
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let start = if write { &front.next_write } else { &front.next_read }.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut tried: Vec<String> = Vec::new();
    let mut attempt = 0usize;
    let mut failed_in_round = 0usize;
    loop {
        let backend = {
            let pool = front.readers_or_writers(write);
            if pool.is_empty() {
                return front_error(
                    StatusCode::BAD_GATEWAY,
                    format!("front: no {} backend", if write { "command-api" } else { "query-edge" }),
                );
            }
            pool[(start + attempt) % pool.len()].clone()
        };
        attempt += 1;
        let mut rb = front.client.request(parts.method.clone(), format!("{}{}", backend.base, path));
        for (k, v) in parts.headers.iter() {
            if !hop_by_hop(k) {
                rb = rb.header(k, v);
            }
        }
        let sent = rb.body(body.clone()).send().await;
        let failure = match sent {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(bytes) => {
                        *front.served.lock().unwrap().entry(backend.name.clone()).or_default() += 1;
                        return respond(status, &headers, bytes, &backend, attempt);
                    }
                    Err(e) => (false, format!("{} ({}): reading the answer: {}", backend.name, backend.base, error_chain(&e))),
                }
            }
            Err(e) => (e.is_connect(), format!("{} ({}): {}", backend.name, backend.base, error_chain(&e))),
        };
        let (unreached, why) = failure;
        tried.push(why);
        *front.failovers.lock().unwrap().entry(backend.name.clone()).or_default() += 1;
        if !(unreached || resendable) {
            return front_error(
                StatusCode::BAD_GATEWAY,
                format!(
                    "front: {} {path}: backend failed mid-request and the request is not safe to resend: {}",
                    parts.method,
                    tried.join("; ")
                ),
            );
        }
        if Instant::now() > deadline {
            return front_error(
                StatusCode::BAD_GATEWAY,
                format!("front: {} {path}: every backend failed for 90 s: {}", parts.method, tried.join("; ")),
            );
        }
        front.retries.fetch_add(1, Ordering::Relaxed);
        failed_in_round += 1;
        if failed_in_round >= front.readers_or_writers(write).len() {
            // A whole round failed: back off a little before the next one.
            failed_in_round = 0;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Front {
    fn new() -> Front {
        Front {
            writers: RwLock::new(Vec::new()),
            readers: RwLock::new(Vec::new()),
            next_write: AtomicUsize::new(0),
            next_read: AtomicUsize::new(0),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(64)
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            served: Mutex::new(BTreeMap::new()),
            failovers: Mutex::new(BTreeMap::new()),
            retries: AtomicU64::new(0),
        }
    }

    fn readers_or_writers(&self, write: bool) -> Vec<Backend> {
        if write {
            self.writers.read().unwrap().clone()
        } else {
            self.readers.read().unwrap().clone()
        }
    }

    /// Routes writes to `writers` and reads to `readers` from now on.
    pub fn set_pools(&self, writers: Vec<Backend>, readers: Vec<Backend>) {
        *self.writers.write().unwrap() = writers;
        *self.readers.write().unwrap() = readers;
    }

    /// Answers per backend, failovers per backend, and retries, as the front counted them.
    pub fn stats(&self) -> String {
        format!(
            "served {:?}; transport failures routed around {:?}; resends {}",
            self.served.lock().unwrap(),
            self.failovers.lock().unwrap(),
            self.retries.load(Ordering::Relaxed)
        )
    }

    /// Answers counted per backend name prefix (e.g. `query-edge#1`).
    pub fn served_by(&self, prefix: &str) -> u64 {
        self.served.lock().unwrap().iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum()
    }
}

fn respond(status: reqwest::StatusCode, headers: &HeaderMap, body: Bytes, backend: &Backend, attempts: usize) -> Response {
    let mut b = Response::builder().status(status.as_u16());
    for (k, v) in headers.iter() {
        if !hop_by_hop(k) {
            b = b.header(k, v);
        }
    }
    b.header(BACKEND_HEADER, HeaderValue::from_str(&format!("{} {}", backend.name, backend.base)).unwrap())
        .header(ATTEMPTS_HEADER, attempts.to_string())
        .body(Body::from(body))
        .unwrap()
}

/// A running front: its base URL, its state, and the runtime it serves on (its own, so
/// that it outlives any test's runtime; stopped on drop).
pub struct Running {
    /// `http://127.0.0.1:4711`.
    pub base: String,
    pub state: Arc<Front>,
    rt: Option<tokio::runtime::Runtime>,
}

/// Starts a front with empty pools on a free loopback port.
pub fn start() -> Running {
    let state = Arc::new(Front::new());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("split-front").enable_all().build().unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let serving = state.clone();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| forward(serving.clone(), req));
        axum::serve(listener, app).await.unwrap();
    });
    Running { base: format!("http://{addr}"), state, rt: Some(rt) }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Api;

    /// A backend that answers every request with its name, or a port nothing listens on.
    fn backend(name: &str, alive: bool) -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        if alive {
            listener.set_nonblocking(true).unwrap();
            let me = name.to_string();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let app = axum::Router::new().fallback(move || {
                        let me = me.clone();
                        async move { me }
                    });
                    axum::serve(listener, app).await.unwrap();
                })
            });
        }
        Backend { name: name.into(), base }
    }

    #[tokio::test]
    async fn writes_go_to_the_writers_reads_to_the_readers_and_around_a_dead_one() {
        let front = start();
        let (w0, w1, dead, r0) = (backend("w0", true), backend("w1", true), backend("dead", false), backend("r0", true));
        front.state.set_pools(vec![w0, dead, w1], vec![r0]);
        let api = Api::new(front.base.clone());
        let mut writers = Vec::new();
        for _ in 0..3 {
            let r = api.post("/urls", serde_json::json!({})).await;
            assert_eq!(r.status, 200, "{r:?}");
            writers.push(r.text.clone());
            assert!(r.backend().starts_with(&format!("{} ", r.text)), "{r:?}");
        }
        writers.sort();
        assert_eq!(writers, vec!["w0", "w1", "w1"], "the dead writer's turn went to the next one");
        let r = api.get("/abc").await;
        assert_eq!((r.text.as_str(), r.header(ATTEMPTS_HEADER).as_deref()), ("r0", Some("1")));
        assert_eq!(front.state.served_by("w"), 3);
        assert!(front.state.stats().contains("\"dead\": 1"), "{}", front.state.stats());
    }
}
