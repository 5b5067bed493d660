//! An in-process HTTP/1.1 server for the registry client's tests, in the spirit of ggcr's
//! `httptest` handlers: each listener answers with a closure of the request it got, can be
//! switched to misbehave (never answer, trickle its body, stop reading ours, reset the
//! connection before, during or after a body), and records every request with the
//! `host:port` it reached and when, so a test can say exactly which headers went where.
//!
//! A request is recorded before it is answered, so once the client has its response the
//! record is there: tests never wait on a timer to read it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The listener's `ip:port`.
    pub at: String,
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When its head had arrived.
    pub when: Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has_authorization(&self) -> bool {
        self.header("authorization").is_some()
    }
}

/// How to answer one request.
pub enum Reply {
    /// Status line and headers, then the body. `Content-Length` is the body's unless the
    /// headers give one (a HEAD answer announces the size of a body it does not send).
    Send {
        status: &'static str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Never answer; hold the connection open.
    Hang,
    /// Headers announcing `len` bytes, then the body one byte per `every`.
    Trickle { len: usize, every: Duration },
    /// Reset the connection (RST) instead of answering.
    Reset,
    /// Send `reply`'s head and the first `keep` bytes of its body, then close: a download
    /// dropped mid-way. (A FIN, not an RST, so exactly `keep` bytes arrive: an RST may
    /// discard what the peer had not read yet.)
    Cut { reply: Box<Reply>, keep: usize },
}

impl Reply {
    pub fn status(status: &'static str) -> Reply {
        Reply::Send {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        if let Reply::Send { headers, .. } = &mut self {
            headers.push((name.to_string(), value.into()));
        }
        self
    }

    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Reply {
        if let Reply::Send { body, .. } = &mut self {
            *body = bytes.into();
        }
        self
    }
}

/// What to do once a request's head is in: read its body and answer, or read about half
/// of the body and reset the connection (a connection dropped mid-upload).
pub enum Head {
    ReadBody(Box<dyn FnOnce(&Seen) -> Reply + Send>),
    ResetMidBody,
}

type Router = dyn Fn(&Seen) -> Head + Send + Sync;

/// A listener on loopback and everything it has seen.
#[derive(Clone)]
pub struct Server {
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// What the server does with a request body before answering.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    Read,
    /// Read the head only, then hold the connection without reading: a registry that
    /// stops taking our upload.
    Stall,
}

impl Server {
    /// A server on `ip` (`127.0.0.1`, `127.0.0.2`, ...) answering with `handler`.
    pub async fn start(
        ip: &str,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Server {
        Server::start_with(ip, Bodies::Read, handler).await
    }

    pub async fn start_with(
        ip: &str,
        bodies: Bodies,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let handler = Arc::new(handler);
        Server::start_routed(ip, bodies, move |_| {
            let handler = handler.clone();
            Head::ReadBody(Box::new(move |request| handler(request)))
        })
        .await
    }

    /// A server that decides on each request's head before its body is read.
    pub async fn start_routed(
        ip: &str,
        bodies: Bodies,
        router: impl Fn(&Seen) -> Head + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = Server {
            addr: addr.clone(),
            seen: seen.clone(),
        };
        let router: Arc<Router> = Arc::new(router);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (seen, router, at) = (seen.clone(), router.clone(), addr.clone());
                tokio::spawn(connection(socket, at, bodies, seen, router));
            }
        });
        server
    }

    /// `http://ip:port` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// One request per connection (every answer says `Connection: close`), which keeps the
/// server simple and each request's record its own.
async fn connection(
    mut socket: TcpStream,
    at: String,
    bodies: Bodies,
    seen: Arc<Mutex<Vec<Seen>>>,
    router: Arc<Router>,
) {
    let Some((mut request, rest)) = read_head(&mut socket, at).await else {
        return;
    };
    let len: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if bodies == Bodies::Stall && len > 0 {
        seen.lock().unwrap().push(request);
        std::future::pending::<()>().await;
        return;
    }
    let (handler, want) = match router(&request) {
        Head::ReadBody(handler) => (Some(handler), len),
        Head::ResetMidBody => (None, len / 2),
    };
    request.body = rest;
    while request.body.len() < want {
        let mut buf = vec![0u8; 64 * 1024];
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.body.extend_from_slice(&buf[..n]),
        }
    }
    let Some(handler) = handler else {
        request.body.truncate(want);
        seen.lock().unwrap().push(request);
        reset(socket);
        return;
    };
    let reply = handler(&request);
    seen.lock().unwrap().push(request);
    answer(socket, reply).await;
}

/// Close with an RST rather than a FIN: the peer sees "connection reset".
fn reset(socket: TcpStream) {
    let _ = socket.set_zero_linger();
    drop(socket);
}

fn head(status: &str, headers: &[(String, String)], body_len: usize) -> String {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

async fn read_head(socket: &mut TcpStream, at: String) -> Option<(Seen, Vec<u8>)> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 8192];
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let seen = Seen {
        at,
        method,
        target,
        headers,
        body: Vec::new(),
        when: Instant::now(),
    };
    Some((seen, buf[end + 4..].to_vec()))
}

async fn answer(mut socket: TcpStream, reply: Reply) {
    match reply {
        Reply::Reset => reset(socket),
        Reply::Cut { reply, keep } => {
            if let Reply::Send {
                status,
                headers,
                body,
            } = *reply
            {
                let head = head(status, &headers, body.len());
                if socket.write_all(head.as_bytes()).await.is_ok() {
                    let _ = socket.write_all(&body[..keep.min(body.len())]).await;
                    let _ = socket.shutdown().await;
                }
            }
        }
        reply => {
            let _ = send(&mut socket, reply).await;
        }
    }
}

async fn send(socket: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Send {
            status,
            headers,
            body,
        } => {
            let head = head(status, &headers, body.len());
            socket.write_all(head.as_bytes()).await?;
            socket.write_all(&body).await
        }
        Reply::Hang => std::future::pending().await,
        Reply::Trickle { len, every } => {
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
            socket.write_all(head.as_bytes()).await?;
            for _ in 0..len {
                socket.write_all(b"x").await?;
                tokio::time::sleep(every).await;
            }
            Ok(())
        }
        // Answered by `answer`, which owns the socket these need to close.
        Reply::Reset | Reply::Cut { .. } => Ok(()),
    }
}
