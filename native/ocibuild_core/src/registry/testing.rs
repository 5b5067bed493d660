//! An in-process HTTP/1.1 server for the registry client's tests, in the spirit of ggcr's
//! `httptest` handlers: each listener answers with a closure of the request it got, can be
//! switched to misbehave (never answer, trickle its body, stop reading ours), and records
//! every request with the `host:port` it reached, so a test can say exactly which headers
//! went where.
//!
//! A request is recorded before it is answered, so once the client has its response the
//! record is there: tests never wait on a timer to read it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Status line and headers (without `Content-Length`, which is added), then the body.
    Send {
        status: &'static str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Never answer; hold the connection open.
    Hang,
    /// Headers announcing `len` bytes, then the body one byte per `every`.
    Trickle { len: usize, every: Duration },
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

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

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
        let listener = TcpListener::bind((ip, 0)).await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let server = Server {
            addr: addr.clone(),
            seen: seen.clone(),
        };
        let handler: Arc<Handler> = Arc::new(handler);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (seen, handler, at) = (seen.clone(), handler.clone(), addr.clone());
                tokio::spawn(connection(socket, at, bodies, seen, handler));
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
    handler: Arc<Handler>,
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
    request.body = rest;
    while request.body.len() < len {
        let mut buf = vec![0u8; 64 * 1024];
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.body.extend_from_slice(&buf[..n]),
        }
    }
    let reply = handler(&request);
    seen.lock().unwrap().push(request);
    let _ = answer(&mut socket, reply).await;
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
    };
    Some((seen, buf[end + 4..].to_vec()))
}

async fn answer(socket: &mut TcpStream, reply: Reply) -> std::io::Result<()> {
    match reply {
        Reply::Send {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status}\r\n");
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str(&format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ));
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
    }
}
