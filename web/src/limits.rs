//! Connection limits of the server loop: how long a connection may take to send a
//! request head, how long it may sit idle between requests, how long a request body may
//! take, how large a head may be, and how many connections may be open at once.
//!
//! The head and idle timers run in [`Guarded`], a wrapper of the socket: a connection is
//! either waiting for a request (idle timer, from its previous response), reading a
//! head (head timer, from the head's first byte; for a new connection, from the
//! accept), or in a request (no socket timer: the handler may wait on its outcome, and
//! the body has its own deadline, [`DeadlineBody`]). The server loop tells the wrapper
//! where a request begins (the service is called) and ends (its response body is done,
//! [`Tracked`]).

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a listener lets in: the server loop's limits, and which other origins' pages
/// may call the API. Every field is a setting (`KURZ_HTTP_*`, `KURZ_CORS_ORIGINS`,
/// kurz's README).
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head must arrive whole within this time of its first byte (of the
    /// accept, for a connection's first request). Slow-header (slowloris) clients are
    /// closed after it.
    pub header_read: Duration,
    /// A keep-alive connection may wait this long for its next request. Longer than the
    /// idle timeout of a load balancer in front (AWS ALB: 60 s), as nginx's 75 s is.
    pub idle: Duration,
    /// A request body must arrive whole within this time of its head (the handler then
    /// answers 408).
    pub body_read: Duration,
    /// Largest request head (request line and headers), in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Connections open at once. Past it, new connections wait in the listen backlog
    /// until one closes; they never exhaust file descriptors (see [`fd_budget`]).
    pub max_connections: usize,
    /// On stop, how long in-flight requests may take to finish.
    pub drain: Duration,
    /// Origins (`https://app.example.com`) whose pages may call the API from a browser
    /// (CORS). Empty, the default: none, and browsers keep other sites' pages from
    /// reading kurz's answers or sending it non-simple requests.
    pub cors_origins: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(75),
            body_read: Duration::from_secs(60),
            max_header_bytes: 16 << 10,
            max_connections: 10_000,
            drain: Duration::from_secs(10),
            cors_origins: Vec::new(),
        }
    }
}

/// The smallest head limit hyper takes (its minimum read buffer).
pub const MIN_HEADER_BYTES: usize = 8192;

impl Limits {
    /// The connection cap this process can keep: `max_connections`, but no more than
    /// the file descriptors left after a reserve for the backends, logs and stores.
    pub fn effective_connections(&self) -> usize {
        self.max_connections.clamp(1, fd_budget().unwrap_or(usize::MAX))
    }
}

/// The CORS layer for `origins`, or `None` when none is configured. Answers preflights
/// for the API's methods and the headers its clients send.
pub fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o.trim().trim_end_matches('/')).ok()).collect();
    if allowed.is_empty() {
        return None;
    }
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("idempotency-key")])
            .expose_headers([header::RETRY_AFTER, HeaderName::from_static("ratelimit"), HeaderName::from_static("ratelimit-policy")])
            .max_age(Duration::from_secs(600)),
    )
}

/// Descriptors kept back from the connection cap for everything that is not a client
/// connection (log segments, store files, backend sockets, the listener).
const FD_RESERVE: u64 = 512;

/// Raises the soft open-files limit to the hard one (as Go's runtime and nginx's
/// `worker_rlimit_nofile` do), and returns the soft limit it ends at.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is `u64` on Linux, not on every unix
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return None;
        }
        if l.rlim_cur < l.rlim_max {
            let want = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                l.rlim_cur = l.rlim_max;
            }
        }
        Some(l.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

/// Client connections this process can hold: the open-files limit less a reserve.
#[allow(clippy::unnecessary_cast)] // as above
pub fn fd_budget() -> Option<usize> {
    #[cfg(unix)]
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 || l.rlim_cur == libc::RLIM_INFINITY {
            return None;
        }
        Some((l.rlim_cur as u64).saturating_sub(FD_RESERVE).max(1).try_into().unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    None
}

/// What the server loop tells a connection's [`Guarded`] socket: whether a request is
/// in the service, and how many have ended.
#[derive(Default)]
pub(crate) struct Phase {
    busy: AtomicBool,
    ended: AtomicU32,
    /// A read that waited while a request was in the service: woken when it ends, so
    /// the idle timer starts even if the client sends nothing more.
    reader: futures::task::AtomicWaker,
    /// The request in the service has a body not yet read to its end.
    body_pending: AtomicBool,
}

impl Phase {
    pub(crate) fn begin(&self, has_body: bool) {
        self.body_pending.store(has_body, Ordering::Relaxed);
        self.busy.store(true, Ordering::Relaxed);
    }

    /// Whether the answer leaves part of its request's body unread: then the connection
    /// cannot carry another request, and the answer must say `Connection: close`, or the
    /// client would reuse a connection the server is about to close.
    pub(crate) fn body_unread(&self) -> bool {
        self.body_pending.load(Ordering::Relaxed)
    }
    fn end(&self) {
        self.ended.fetch_add(1, Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        self.reader.wake();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Waiting for a request's first byte.
    Request,
    /// A head has begun.
    Head,
}

/// A socket with the head and idle timers (module doc).
pub(crate) struct Guarded<IO> {
    io: IO,
    phase: Arc<Phase>,
    limits: (Duration, Duration),
    seen_ended: u32,
    was_busy: bool,
    wait: Wait,
    timer: Pin<Box<Sleep>>,
    /// Closing: the write side is shut, and what the client still sends is discarded
    /// until it closes or [`LINGER`] passes.
    lingering: bool,
}

/// How long a closing connection keeps reading (and discarding) what its client still
/// sends, as nginx's lingering close does: a server that answers early (401, 413, 408)
/// and closes at once with unread bytes would reset the connection, and the client
/// could lose the answer it was sent.
pub const LINGER: Duration = Duration::from_secs(2);

impl<IO> Guarded<IO> {
    pub(crate) fn new(io: IO, phase: Arc<Phase>, header_read: Duration, idle: Duration) -> Self {
        // A new connection must send its whole first head within the head timeout.
        let timer = Box::pin(tokio::time::sleep(header_read));
        Guarded { io, phase, limits: (header_read, idle), seen_ended: 0, was_busy: false, wait: Wait::Head, timer, lingering: false }
    }
}

/// The error a timed-out connection's read ends with.
fn timed_out(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.phase.busy.load(Ordering::Acquire) {
            // A request body is read under its own deadline (DeadlineBody).
            this.was_busy = true;
            this.phase.reader.register(cx.waker());
            if this.phase.busy.load(Ordering::Acquire) {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
        }
        let ended = this.phase.ended.load(Ordering::Relaxed);
        if ended != this.seen_ended || this.was_busy {
            // A response has gone out since the last read: the idle wait begins.
            this.seen_ended = ended;
            this.was_busy = false;
            this.wait = Wait::Request;
            this.timer.as_mut().reset(Instant::now() + this.limits.1);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.wait == Wait::Request && buf.filled().len() > before {
                    this.wait = Wait::Head;
                    this.timer.as_mut().reset(Instant::now() + this.limits.0);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out(if this.wait == Wait::Head { "request head" } else { "idle connection" }))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.lingering {
            std::task::ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.lingering = true;
            this.timer.as_mut().reset(Instant::now() + LINGER);
        }
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() && !this.timer.is_elapsed() => continue,
                // The client closed (or reset): done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return this.timer.as_mut().poll(cx).map(Ok),
            }
        }
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A response body that tells the connection its request has ended when it is done
/// (hyper drops a body once it has written it).
pub(crate) struct Tracked {
    pub(crate) body: axum::body::Body,
    pub(crate) phase: Arc<Phase>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.phase.end();
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The error a request body ends with once its deadline has passed; body extractors
/// answer it with 408 (`kurz_web::body`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that must arrive whole by a deadline, and tells its connection when
/// it has been read to the end.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    limit: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    phase: Arc<Phase>,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, limit: Duration, phase: Arc<Phase>) -> Self {
        DeadlineBody { inner, deadline: Instant::now() + limit, limit, timer: None, phase }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                if f.is_none() || this.inner.is_end_stream() {
                    this.phase.body_pending.store(false, Ordering::Relaxed);
                }
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::serve;
    use axum::routing::{get, post};
    use axum::Router;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    /// A bound on waits that should end by themselves, so a broken limit fails the test
    /// instead of hanging it. Not a measure of speed.
    const BOUND: Duration = Duration::from_secs(20);

    fn router() -> Router {
        Router::new()
            .route("/x", get(|| async { "ok" }))
            .route("/echo", post(|crate::RawBody(b): crate::RawBody| async move { format!("{} bytes", b.len()) }))
    }

    async fn start(limits: Limits) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, crate::finish(router()), limits, stop.clone()));
        (addr, stop)
    }

    /// Reads one response head (and what came with it).
    async fn response(s: &mut TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(BOUND, s.read(&mut chunk)).await.expect("an answer").unwrap();
            assert!(n > 0, "closed before a response: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Whether the server has closed `s` (reads until EOF or a reset).
    async fn closed(s: &mut TcpStream) -> bool {
        let mut rest = Vec::new();
        tokio::time::timeout(BOUND, s.read_to_end(&mut rest)).await.is_ok()
    }

    #[tokio::test]
    async fn a_partial_head_is_closed_at_the_header_timeout() {
        let (addr, _stop) = start(Limits { header_read: Duration::from_millis(200), ..Limits::default() }).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nA: ").await.unwrap();
        assert!(closed(&mut s).await, "a head that never ends is closed");
        // A connection that never sends a byte is closed too.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut silent).await);
    }

    #[tokio::test]
    async fn idle_keep_alive_has_its_own_timer() {
        // The head timer is short, the idle one long: a connection may rest between
        // requests longer than a head may take, and is closed at the idle limit.
        let (addr, _stop) =
            start(Limits { header_read: Duration::from_millis(150), idle: Duration::from_millis(1500), ..Limits::default() }).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(response(&mut s).await.starts_with("HTTP/1.1 200"), "still open after resting past the head timeout");
        let mut short = TcpStream::connect(addr).await.unwrap();
        short.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(response(&mut short).await.starts_with("HTTP/1.1 200"));
        assert!(closed(&mut short).await, "closed at the idle limit");
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_gets_408() {
        let (addr, _stop) = start(Limits { body_read: Duration::from_millis(200), ..Limits::default() }).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789").await.unwrap();
        let head = response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 408"), "{head}");
        assert!(head.contains("did not arrive"), "a JSON message says why: {head}");
        // A whole body within the limit is read.
        let mut ok = TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc").await.unwrap();
        let head = response(&mut ok).await;
        assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("3 bytes"), "{head}");
    }

    #[tokio::test]
    async fn an_answer_that_leaves_the_body_unread_closes_the_connection_and_still_arrives() {
        let (addr, _stop) = start(Limits::default()).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        // /x never reads a body: it answers from the head.
        s.write_all(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n").await.unwrap();
        s.write_all(&vec![b'a'; 200_000]).await.unwrap();
        let head = response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 405") || head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("connection: close"), "the client must not reuse it: {head}");
        // The server keeps reading while it closes: more of the body is still taken
        // (no reset), then the connection ends.
        let _ = s.write_all(&vec![b'a'; 100_000]).await;
        assert!(closed(&mut s).await);
        // A request whose body was read keeps its connection.
        let mut k = TcpStream::connect(addr).await.unwrap();
        k.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}").await.unwrap();
        let head = response(&mut k).await;
        assert!(head.starts_with("HTTP/1.1 200") && !head.to_ascii_lowercase().contains("connection: close"), "{head}");
    }

    #[tokio::test]
    async fn a_head_past_the_limit_gets_431() {
        let (addr, _stop) = start(Limits { max_header_bytes: MIN_HEADER_BYTES, ..Limits::default() }).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let big = format!("GET /x HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(20_000));
        let _ = s.write_all(big.as_bytes()).await;
        let head = response(&mut s).await;
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");
        let mut fine = TcpStream::connect(addr).await.unwrap();
        fine.write_all(format!("GET /x HTTP/1.1\r\nhost: x\r\nx-small: {}\r\n\r\n", "a".repeat(4000)).as_bytes()).await.unwrap();
        assert!(response(&mut fine).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn two_thousand_idle_sockets_do_not_keep_a_fresh_client_out() {
        raise_fd_limit();
        if fd_budget().is_some_and(|b| b < 4_200) {
            panic!("this test needs 4,200 descriptors (2,000 sockets, both ends); the limit allows {:?}", fd_budget());
        }
        // A cap below the number of idle sockets: the fresh client waits until the head
        // timer closes idle ones, and is then served.
        let (addr, _stop) = start(Limits { header_read: Duration::from_millis(300), max_connections: 500, ..Limits::default() }).await;
        let mut idle = Vec::new();
        for _ in 0..2_000 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let mut fresh = TcpStream::connect(addr).await.unwrap();
        fresh.write_all(b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let head = response(&mut fresh).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut first = idle.swap_remove(0);
        assert!(closed(&mut first).await, "the idle sockets were closed by the server");
    }

    #[tokio::test]
    async fn cors_is_off_unless_origins_are_configured() {
        let preflight = b"OPTIONS /echo HTTP/1.1\r\nhost: x\r\norigin: https://app.example\r\naccess-control-request-method: POST\r\naccess-control-request-headers: content-type\r\n\r\n";
        let simple = |origin: &str| format!("GET /x HTTP/1.1\r\nhost: x\r\norigin: {origin}\r\n\r\n");
        // Off: no CORS header on any answer, so browsers keep other sites out.
        let (off, _s1) = start(Limits::default()).await;
        let mut c = TcpStream::connect(off).await.unwrap();
        c.write_all(simple("https://app.example").as_bytes()).await.unwrap();
        let head = response(&mut c).await.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200") && !head.contains("access-control-"), "{head}");
        // On: the listed origin is allowed, with the API's headers; another is not.
        let (on, _s2) = start(Limits { cors_origins: vec!["https://app.example/".into()], ..Limits::default() }).await;
        let mut c = TcpStream::connect(on).await.unwrap();
        c.write_all(preflight).await.unwrap();
        let head = response(&mut c).await.to_ascii_lowercase();
        assert!(head.contains("access-control-allow-origin: https://app.example"), "{head}");
        assert!(head.contains("access-control-allow-headers: authorization,content-type,idempotency-key"), "{head}");
        let mut c = TcpStream::connect(on).await.unwrap();
        c.write_all(simple("https://evil.example").as_bytes()).await.unwrap();
        let head = response(&mut c).await.to_ascii_lowercase();
        assert!(!head.contains("access-control-allow-origin"), "{head}");
    }

    #[test]
    fn the_connection_cap_stays_inside_the_descriptor_budget() {
        let l = Limits { max_connections: usize::MAX, ..Limits::default() };
        let budget = fd_budget();
        assert_eq!(l.effective_connections(), budget.unwrap_or(usize::MAX));
        assert_eq!(Limits { max_connections: 0, ..Limits::default() }.effective_connections(), 1);
    }
}
