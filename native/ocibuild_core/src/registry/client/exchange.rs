//! One exchange: a request and the redirects it leads to, under the timeouts.
//!
//! Redirects are followed here, not by reqwest, so that every hop (and every URL a registry
//! hands back: upload `Location`s, token realms) is cleared by [`origin::decide`] before it is
//! sent: credentials only to the origin they belong to, never from HTTPS to plain HTTP. The
//! response headers have a deadline, and request bodies must keep the minimum rate.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

use super::RegistryClient;
use crate::error::TimeoutPhase;
use crate::registry::errors;
use crate::registry::origin::{self, Carry};
use crate::registry::request::{Body, ByteStream, Request};
use crate::registry::timeouts::RateMeter;
use crate::{Error, Result};

/// Hops one request may take before we give up on it, as browsers and reqwest do.
const MAX_REDIRECTS: usize = 10;

/// Request bodies held in memory go out in pieces of this size, so the transfer-rate check
/// sees them move.
const BODY_PIECE: usize = 64 * 1024;

/// Why one exchange failed.
pub(super) enum Failure {
    /// The connection failed; maybe worth another try.
    Transport(reqwest::Error),
    /// Too slow; worth another try.
    Timeout(TimeoutPhase),
    /// Not worth another try (a refused URL, an unreadable local file, a failed negotiation).
    Final(Error),
}

impl Failure {
    pub(super) fn is_retryable(&self) -> bool {
        match self {
            Failure::Transport(e) => errors::is_retryable_error(e),
            Failure::Timeout(_) => true,
            Failure::Final(_) => false,
        }
    }
}

impl RegistryClient {
    /// One request and the redirects it leads to. Every hop is cleared by
    /// [`origin::decide`] against `home` (the origin `auth` belongs to), and runs under the
    /// timeouts.
    pub(super) async fn exchange(
        &self,
        home: &Url,
        outgoing: &Request,
        auth: Option<&HeaderValue>,
    ) -> std::result::Result<Response, Failure> {
        let empty = Body::Empty;
        let (mut method, mut target, mut body) = (
            outgoing.method.clone(),
            outgoing.url.clone(),
            &outgoing.body,
        );
        let action = outgoing.action.as_str();
        for _ in 0..=MAX_REDIRECTS {
            let carry = origin::decide(home, &target)
                .map_err(|r| Failure::Final(errors::refusal(&self.registry, r, &target, action)))?;
            let mut request = self
                .http
                .request(method.clone(), target.clone())
                .headers(outgoing.headers.clone());
            if let (Carry::Credentials, Some(auth)) = (carry, auth) {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let (request, sent) = attach_body(request, body).map_err(Failure::Final)?;
            let response = self.watch(request.send(), sent.as_deref()).await?;
            let status = response.status();
            let Some(next) = redirect_target(&response) else {
                return Ok(response);
            };
            target = next.map_err(|why| {
                Failure::Final(errors::protocol(&self.registry, action, status, why))
            })?;
            // As browsers do: 303 always, and 301/302 after anything but GET/HEAD, continue
            // as a GET without the body.
            let to_get = status == StatusCode::SEE_OTHER
                || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && method != Method::GET
                    && method != Method::HEAD);
            if to_get {
                method = Method::GET;
                body = &empty;
            }
        }
        Err(Failure::Final(errors::protocol(
            &self.registry,
            action,
            StatusCode::LOOP_DETECTED,
            "more than 10 redirects",
        )))
    }

    /// Wait for a response under the timeouts: while our body is going out it must keep the
    /// minimum rate; once it is all out (or there is none) the headers have their deadline.
    async fn watch(
        &self,
        send: impl Future<Output = reqwest::Result<Response>>,
        sent: Option<&SentBytes>,
    ) -> std::result::Result<Response, Failure> {
        let t = self.timeouts;
        let start = Instant::now();
        let mut meter = RateMeter::new(&t, start);
        tokio::pin!(send);
        loop {
            let uploading = sent.filter(|s| s.done_at().is_none());
            let wake = match (uploading, sent.and_then(SentBytes::done_at)) {
                (Some(_), _) => meter.next_check(),
                (None, Some(done)) => done + t.headers,
                (None, None) => start + t.headers,
            };
            let finished = async {
                match uploading {
                    Some(s) => s.finished.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut send => return r.map_err(Failure::Transport),
                () = finished => continue,
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            match uploading {
                Some(s) if s.done_at().is_none() => {
                    if meter.check(Instant::now(), s.bytes()).is_err() {
                        return Err(Failure::Timeout(TimeoutPhase::Body {
                            min_rate: t.min_rate,
                            window: t.window,
                        }));
                    }
                }
                Some(_) => {} // finished while we slept: the headers' deadline starts now
                None => {
                    return Err(Failure::Timeout(TimeoutPhase::Headers { limit: t.headers }));
                }
            }
        }
    }
}

/// How much of a request body the connection has taken, for the transfer-rate check, and
/// when it had all of it (from then on the response headers have their deadline).
struct SentBytes {
    bytes: AtomicU64,
    len: u64,
    done_at: Mutex<Option<Instant>>,
    /// Wakes the watcher the moment the body is out, so the headers' deadline starts then.
    finished: tokio::sync::Notify,
}

impl SentBytes {
    fn new(len: u64) -> SentBytes {
        SentBytes {
            bytes: AtomicU64::new(0),
            len,
            done_at: Mutex::new(None),
            finished: tokio::sync::Notify::new(),
        }
    }

    fn add(&self, n: usize) {
        let total = self.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total >= self.len {
            let mut done = self.done_at.lock().unwrap_or_else(|p| p.into_inner());
            if done.is_none() {
                *done = Some(Instant::now());
                self.finished.notify_one();
            }
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn done_at(&self) -> Option<Instant> {
        *self.done_at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The request with its body (and `Content-Length`), and the counter of the body's bytes.
fn attach_body(
    request: RequestBuilder,
    body: &Body,
) -> Result<(RequestBuilder, Option<Arc<SentBytes>>)> {
    let (stream, len): (ByteStream, u64) = match body {
        Body::Empty => return Ok((request.header(CONTENT_LENGTH, 0), None)),
        Body::Bytes(b) if b.is_empty() => return Ok((request.header(CONTENT_LENGTH, 0), None)),
        Body::Bytes(b) => {
            let (b, len) = (b.clone(), b.len() as u64);
            let pieces = (0..b.len()).step_by(BODY_PIECE).map(move |at| {
                Ok::<_, std::io::Error>(b.slice(at..(at + BODY_PIECE).min(b.len())))
            });
            (Box::pin(futures_util::stream::iter(pieces)), len)
        }
        Body::Stream(make) => make()?,
    };
    if len == 0 {
        return Ok((request.header(CONTENT_LENGTH, 0), None));
    }
    let sent = Arc::new(SentBytes::new(len));
    let counter = Arc::clone(&sent);
    let counted = stream.map(move |piece| {
        if let Ok(p) = &piece {
            counter.add(p.len());
        }
        piece
    });
    let request = request
        .header(CONTENT_LENGTH, len)
        .body(reqwest::Body::wrap_stream(counted));
    Ok((request, Some(sent)))
}

/// Where a redirect points: `None` when the response is not one we follow.
fn redirect_target(response: &Response) -> Option<std::result::Result<Url, &'static str>> {
    let follow = matches!(
        response.status(),
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    if !follow {
        return None;
    }
    let location = response.headers().get(LOCATION)?;
    Some(
        location
            .to_str()
            .ok()
            .and_then(|l| response.url().join(l).ok())
            .ok_or("unparsable redirect Location"),
    )
}
