//! An in-memory CQL v4 node (kassandra) serving a real socket: the stand-in for
//! ScyllaDB in tests, since no Scylla runs on these machines. What it cannot prove is
//! listed in `infra/scylla-unproven.md`. The lightweight transactions kassandra lacks
//! are run here, around it ([`lwt`]), and so is last-write-wins by row timestamp, which
//! kassandra also lacks ([`clock`]).

mod clock;
mod lwt;

use futures::{SinkExt, StreamExt};
use kassandra::error::DbError;
use kassandra::frame::request::{Request, RequestOpcode};
use kassandra::frame::response::error::Error as CqlError;
use kassandra::frame::response::result::QueryResult;
use kassandra::frame::response::Response;
use kassandra::frame::{request_stream, response_sink};
use kassandra::KassandraSession;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

/// Starts a fresh kassandra node on its own thread and runtime (so a client blocking
/// in `open_store` cannot starve it) and returns its address.
pub fn start_node() -> SocketAddr {
    start_node_on("127.0.0.1:0")
}

/// Starts a node on `addr` (e.g. `127.0.0.1:9042`) and returns the bound address.
pub fn start_node_on(addr: &str) -> SocketAddr {
    let addr = addr.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("kassandra".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("kassandra runtime");
            rt.block_on(async move {
                let node = Arc::new(Mutex::new(Node {
                    session: KassandraSession::new(),
                    lwt: lwt::Plans::default(),
                    clocks: clock::Clocks::default(),
                }));
                let listener = match TcpListener::bind(addr.as_str()).await {
                    Ok(l) => l,
                    Err(e) => return drop(tx.send(Err(e.to_string()))),
                };
                let _ = tx.send(listener.local_addr().map_err(|e| e.to_string()));
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(serve(node.clone(), stream));
                    }
                }
            })
        })
        .expect("spawn the kassandra thread");
    rx.recv().expect("the kassandra thread died before listening").expect("kassandra could not bind a loopback port")
}

/// The node, the conditional statements prepared on it and its row timestamps.
struct Node {
    session: KassandraSession,
    lwt: lwt::Plans,
    clocks: clock::Clocks,
}

/// The text of a PREPARE request if it is a conditional statement.
fn conditional_text(opcode: RequestOpcode, data: &[u8]) -> Option<&str> {
    if opcode != RequestOpcode::Prepare || data.len() < 4 {
        return None;
    }
    let n = u32::from_be_bytes(data[..4].try_into().ok()?) as usize;
    let text = std::str::from_utf8(data.get(4..4 + n)?).ok()?;
    lwt::is_conditional(text).then_some(text)
}

async fn serve(node: Arc<Mutex<Node>>, mut stream: TcpStream) {
    let (mut read, mut write) = stream.split();
    let mut requests = request_stream(&mut read);
    let mut responses = response_sink(&mut write);
    while let Some(Ok((frame, opcode, data))) = requests.next().await {
        let response = if frame.version.is_unsupported() {
            Response::unsupported_version()
        } else if let Some(text) = conditional_text(opcode, &data) {
            let mut node = node.lock().unwrap_or_else(|p| p.into_inner());
            let Node { session, lwt, .. } = &mut *node;
            lwt.prepare(session, text).map_or_else(Response::Error, Response::Result)
        } else {
            match Request::deserialize(opcode, &data, frame.flags) {
                Ok(request) => answer(&node, request),
                Err(e) => Response::Error(e),
            }
        };
        if responses.send((response, frame.stream)).await.is_err() {
            break;
        }
    }
}

/// One request against the shared node. A panic inside kassandra (it has `todo!`s for
/// CQL it lacks) becomes a server error instead of a hung connection.
fn answer(node: &Mutex<Node>, request: Request<'_>) -> Response {
    let mut guard = node.lock().unwrap_or_else(|p| p.into_inner());
    let Node { session: node, lwt, clocks } = &mut *guard;
    let answered = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let result = match request {
            Request::StartUp(_) | Request::Register { .. } => return Response::Ready,
            Request::Options => return Response::options(),
            Request::Query(q) => node.process(q),
            Request::Prepare(q) => {
                let text = q.clone();
                node.prepare(q).and_then(|r| match &r {
                    QueryResult::Prepared(p) => clocks.prepared(node, &text, p.id).map(|()| r),
                    _ => Ok(r),
                })
            }
            Request::Execute(e) => match lwt.execute(node, &e) {
                Some(r) => r,
                None => match clocks.check(&e) {
                    None => node.execute(e),
                    // Older than the row's last write: dropped, as a real node would.
                    Some(None) => Ok(QueryResult::Void),
                    Some(Some(pending)) => {
                        let r = node.execute(e);
                        if r.is_ok() {
                            clocks.record(pending);
                        }
                        r
                    }
                },
            },
            Request::Batch(b) => node.process_batch(b),
            Request::AuthResponse => Err(CqlError::new(DbError::ProtocolError, "no authentication")),
        };
        result.map_or_else(Response::Error, Response::Result)
    }));
    answered.unwrap_or_else(|panic| {
        let why = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        Response::Error(CqlError::new(DbError::ServerError, format!("kassandra panicked: {}", why.unwrap_or_default())))
    })
}
