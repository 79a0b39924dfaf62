//! The HTTP server loop of every kurz role: HTTP/1.1 on hyper's connection builder,
//! with ordered shutdown.
//!
//! kurz sits behind a load balancer or proxy that speaks HTTP/1.1 to it (nginx:
//! `proxy_http_version 1.1`), so the roles serve HTTP/1.1 only. Compared with
//! `axum::serve` this skips the HTTP/1-or-2 detection of hyper-util's auto builder and
//! the shared shutdown signal that every connection polled on every wake-up: a
//! connection here waits on its own child token, so requests on different cores share
//! no lock (`bench/results/redirects.md`).
//!
//! Shutdown: when `stop` fires the listener closes, every connection finishes the
//! request it is in and then closes (keep-alive ends), and the call returns once they
//! are all gone or `drain` has passed, whichever is first.

use axum::extract::connect_info::ConnectInfo;
use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use axum::Router;
use futures::future::{BoxFuture, Either, FutureExt};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;

use crate::limits::{DeadlineBody, Guarded, Phase, Tracked};
pub use crate::limits::{Limits, MIN_HEADER_BYTES};

/// Answers some requests ahead of the router, or hands the request back to it. The
/// query edge answers `GET /{code}` this way: nearly all of its traffic, and the
/// router's per-request work (route matching, the extensions map, a boxed future per
/// layer) is about a tenth of a redirect's cost (`bench/results/redirects.md`). A fast
/// path must behave exactly as its route does behind the router, middleware included
/// (`observe::observed`, `observe::observed_now`).
pub type FastPath = Arc<dyn Fn(Request, SocketAddr) -> Fast + Send + Sync>;

/// What a [`FastPath`] made of a request.
pub enum Fast {
    /// Answered at once: no future to allocate or poll (a redirect from the in-process
    /// cache, nearly all of the edge's traffic).
    Ready(Response),
    /// Answered by this future (a lookup that waits on I/O).
    Later(BoxFuture<'static, Response>),
    /// Not the fast path's: the router takes it.
    Pass(Request),
}

/// Serves `router` on `listener` until `stop`, under `limits`, then drains for at most
/// `limits.drain`. Each request carries [`ConnectInfo<SocketAddr>`] of its peer.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) -> std::io::Result<()> {
    serve_with(listener, router, None, limits, stop).await
}

/// [`serve`], with a [`FastPath`] tried before the router.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    fast: Option<FastPath>,
    limits: Limits,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = match crate::limits::cors(&limits.cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.effective_connections()));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The head and idle timers run in `Guarded`, with hyper's own header timer off.
    builder.header_read_timeout(None).max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    let limits = Arc::new(limits);
    loop {
        // Past the cap, wait for a connection to close before accepting: new
        // connections queue in the listen backlog instead of taking descriptors.
        let slot = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (io, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::error!(event = "accept_failed", error = %e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Responses are one small write each: send them now, not after a delayed ACK.
        let _ = io.set_nodelay(true);
        let router = router.clone();
        let fast = fast.clone();
        let closing = stop.child_token();
        let limits = limits.clone();
        let builder = builder.clone();
        connections.spawn(async move {
            let _slot = slot;
            let phase = Arc::new(Phase::default());
            let io = Guarded::new(io, phase.clone(), limits.header_read, limits.idle);
            let body_read = limits.body_read;
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let has_body = !req.body().is_end_stream();
                phase.begin(has_body);
                let tracked = {
                    let phase = phase.clone();
                    move |mut resp: Response| {
                        if has_body && phase.body_unread() {
                            resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                        }
                        resp.map(|body| Tracked { body, phase })
                    }
                };
                let req = if has_body {
                    let phase = phase.clone();
                    req.map(|b| axum::body::Body::new(DeadlineBody::new(b, body_read, phase)))
                } else {
                    req.map(axum::body::Body::new)
                };
                let req = match &fast {
                    Some(fast) => {
                        let head = req.method() == Method::HEAD;
                        match fast(req, peer) {
                            Fast::Ready(resp) => {
                                return Either::Left(Either::Left(std::future::ready(Ok::<_, Infallible>(tracked(as_routed(resp, head))))))
                            }
                            Fast::Later(answer) => {
                                return Either::Left(Either::Right(
                                    answer.map(move |resp| Ok::<_, Infallible>(tracked(as_routed(resp, head)))),
                                ))
                            }
                            Fast::Pass(req) => req,
                        }
                    }
                    None => req,
                };
                let mut req = req;
                req.extensions_mut().insert(ConnectInfo(peer));
                // A Router is always ready.
                Either::Right(router.clone().call(req).map(move |r| r.map(tracked)))
            });
            let conn = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                biased;
                r = conn.as_mut() => r,
                _ = closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(event = "connection_error", peer = %peer, error = %e);
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.drain, connections.wait()).await.is_err() {
        tracing::warn!(event = "drain_limit_reached", connections = connections.len(), "in-flight requests cut off");
    }
    Ok(())
}

/// What axum's router does to every response of a route, done to a fast path's: a
/// `Content-Length` from the body's exact size, then no body for `HEAD`. Without the
/// length, a `HEAD` answer would leave the client reading until the connection closes.
fn as_routed(mut resp: Response, head: bool) -> Response {
    use axum::http::header::CONTENT_LENGTH;
    use axum::http::HeaderValue;
    use hyper::body::Body as _;
    if !resp.headers().contains_key(CONTENT_LENGTH) {
        if let Some(n) = resp.body().size_hint().exact() {
            resp.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    if head {
        *resp.body_mut() = axum::body::Body::empty();
    }
    resp
}

/// Errors of one incoming connection (it was reset before we took it), not of the
/// listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(router: Router, drain: Duration) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>) {
        start_limited(router, Limits { drain, ..Limits::default() }).await
    }

    async fn start_limited(
        router: Router,
        limits: Limits,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<std::io::Result<()>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, router, limits, stop.clone()));
        (addr, stop, task)
    }

    async fn read_response(s: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before a response: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(buf).unwrap()
    }

    #[tokio::test]
    async fn requests_see_their_peer_and_keep_alive_serves_several() {
        let router = Router::new().route("/who", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }));
        let (addr, stop, task) = start(router, Duration::from_secs(5)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let me = s.local_addr().unwrap().to_string();
        for _ in 0..2 {
            s.write_all(b"GET /who HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
            let head = read_response(&mut s).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().trim().parse().unwrap();
            let mut body = vec![0u8; len];
            let already = head.split("\r\n\r\n").nth(1).unwrap().as_bytes().to_vec();
            body[..already.len()].copy_from_slice(&already);
            s.read_exact(&mut body[already.len()..]).await.unwrap();
            assert_eq!(String::from_utf8(body).unwrap(), me, "the handler sees this connection's address");
        }
        stop.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_fast_path_answers_what_it_takes_and_the_router_the_rest() {
        let router = Router::new().route("/{x}", get(|| async { "router" }));
        let fast: FastPath = Arc::new(|req: Request, peer: SocketAddr| match req.uri().path() {
            "/fast" => Fast::Later(Box::pin(async move { Response::new(axum::body::Body::from(format!("fast {}", peer.ip()))) })),
            "/ready" => Fast::Ready(Response::new(axum::body::Body::from(format!("ready {}", peer.ip())))),
            _ => Fast::Pass(req),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve_with(listener, router, Some(fast), Limits::default(), stop.clone()));
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        for (path, want) in [("/fast", "fast 127.0.0.1"), ("/slow", "router"), ("/ready", "ready 127.0.0.1"), ("/fast", "fast 127.0.0.1")] {
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
            let head = read_response(&mut s).await;
            let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().trim().parse().unwrap();
            let already = head.split("\r\n\r\n").nth(1).unwrap().as_bytes().to_vec();
            let mut body = vec![0u8; len];
            body[..already.len()].copy_from_slice(&already);
            s.read_exact(&mut body[already.len()..]).await.unwrap();
            assert_eq!(String::from_utf8(body).unwrap(), want, "{path}");
        }
        // A HEAD answer, from a future or given at once, carries the GET body's length and
        // no body, as a routed one does: the next response on the connection starts right
        // after its head.
        let mut chunk = [0u8; 1024];
        for (path, body) in [("/fast", "fast 127.0.0.1"), ("/ready", "ready 127.0.0.1")] {
            s.write_all(format!("HEAD {path} HTTP/1.1\r\nhost: x\r\n\r\nGET /slow HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).ends_with("router") {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&chunk[..n]);
            }
            let got = String::from_utf8(got).unwrap();
            let (head, rest) = got.split_once("\r\n\r\n").unwrap();
            assert!(head.contains(&format!("content-length: {}", body.len())), "the length of {body:?}: {head}");
            assert!(rest.starts_with("HTTP/1.1 200"), "no body after a HEAD answer of {path}: {rest:?}");
        }
        stop.cancel();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn stopping_finishes_the_request_in_flight_then_closes_idle_connections() {
        let router = Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
        let (addr, stop, task) = start(router, Duration::from_secs(10)).await;
        let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        let head = read_response(&mut busy).await;
        assert!(head.starts_with("HTTP/1.1 200"), "the in-flight request completes: {head}");
        let mut rest = Vec::new();
        idle.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "an idle keep-alive connection is closed without a response");
        task.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed");
    }

    #[tokio::test]
    async fn the_drain_limit_cuts_off_a_request_that_outlasts_it() {
        let router = Router::new().route("/hang", get(std::future::pending::<&'static str>));
        let (addr, stop, task) = start(router, Duration::from_millis(200)).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("returns at the drain limit").unwrap().unwrap();
    }
}
