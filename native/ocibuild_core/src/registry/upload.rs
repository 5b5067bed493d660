//! One blob into one repository, the way the distribution spec allows:
//! HEAD (already there?), cross-repository mount, then a monolithic PUT for small blobs or
//! chunked PATCHes for large ones.
//!
//! Chunked uploads honour `OCI-Chunk-Min-Length`, fall back to a monolithic upload when the
//! registry answers 416 (it does not do chunks the way we send them), and survive a dropped
//! connection: we ask the registry how much it has (GET on the upload URL, `Range: 0-N`) and
//! carry on from there instead of starting over.

use std::sync::Arc;

use reqwest::header::{HeaderValue, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::auth::Access;
use super::blob_source::{self, ChunkSource, Verdict};
use super::client::RegistryClient;
pub use super::local_data::LocalData;
use super::progress::{Phase, ProgressSink, Throttled};
use super::request::{Body, Request};
use crate::digest::Digest;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The repository already had it.
    Existed,
    /// Mounted from another repository of the same registry: no bytes sent.
    Mounted,
    /// Sent, with how many bytes went over the wire (resumed chunks count once).
    Uploaded(u64),
}

/// How many times a chunked upload asks for its offset and resumes before giving up.
const MAX_RESUMES: u32 = 5;

/// How many fresh sessions a monolithic upload opens after the registry lost one (404).
const MAX_SESSIONS: u32 = 3;

const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// Is the blob already in the repository?
pub async fn exists(
    client: &RegistryClient,
    access: &Access,
    repo: &str,
    digest: &Digest,
) -> Result<bool> {
    let url = client.url(repo, &format!("blobs/{digest}"));
    let head = Request::new(Method::HEAD, url, format!("HEAD blob {digest}"));
    let response = client.execute(access, &head).await?;
    match response.status() {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(client.error_from(response, access, head.action()).await),
    }
}

/// Try to mount `digest` from `from` (same registry). `Ok(None)`: mounted. `Ok(Some(url))`:
/// the registry declined but opened an upload session we can use.
pub async fn mount(
    client: &RegistryClient,
    access: &Access,
    repo: &str,
    digest: &Digest,
    from: &str,
) -> Result<Option<Url>> {
    let mut url = client.url(repo, "blobs/uploads/");
    url.query_pairs_mut()
        .append_pair("mount", digest.as_str())
        .append_pair("from", from);
    let post = Request::new(
        Method::POST,
        url,
        format!("mount blob {digest} from {from}"),
    );
    let response = client.execute(access, &post).await?;
    match response.status() {
        StatusCode::CREATED => Ok(None),
        StatusCode::ACCEPTED => Ok(Some(client.location(&response, post.action())?)),
        _ => Err(client.error_from(response, access, post.action()).await),
    }
}

/// One blob we hold locally, on its way into one repository.
pub struct BlobUpload<'a> {
    pub client: &'a RegistryClient,
    pub access: &'a Access,
    pub repo: &'a str,
    pub digest: &'a Digest,
    pub size: u64,
    pub data: &'a LocalData,
    pub progress: &'a ProgressSink,
}

enum Chunked {
    Done(u64),
    /// The registry refused a chunk with 416; bytes sent so far are reported.
    RangeNotSatisfiable(u64),
}

impl BlobUpload<'_> {
    /// Send the blob; returns the bytes that went over the wire. `session` is an upload URL
    /// already opened (by a declined mount); otherwise one is opened here. Blobs of at least
    /// `chunk_size` bytes go in chunks.
    pub async fn run(&self, session: Option<Url>, chunk_size: u64) -> Result<u64> {
        let (session, min_chunk) = match session {
            Some(url) => (url, None),
            None => self.start_session().await?,
        };
        if self.size < chunk_size {
            return self.monolithic(Some(session)).await;
        }
        let chunk = chunk_size.max(min_chunk.unwrap_or(0)).max(1);
        match self.chunked(session, chunk).await? {
            Chunked::Done(sent) => Ok(sent),
            Chunked::RangeNotSatisfiable(sent) => Ok(sent + self.monolithic(None).await?),
        }
    }

    /// POST a new upload session: its URL, and the registry's minimum chunk size if it has
    /// one.
    async fn start_session(&self) -> Result<(Url, Option<u64>)> {
        let (client, access) = (self.client, self.access);
        let url = client.url(self.repo, "blobs/uploads/");
        let action = format!("start upload of {}", self.digest);
        let post = Request::new(Method::POST, url, &action).expect(&[StatusCode::ACCEPTED]);
        let response = client.execute(access, &post).await?;
        let min = response
            .headers()
            .get("OCI-Chunk-Min-Length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        Ok((client.location(&response, &action)?, min))
    }

    /// The whole blob in one PUT. Connection failures and 5xx are retried by the client on
    /// the same session; when the registry then says the session is gone (404), a fresh one
    /// is opened.
    async fn monolithic(&self, mut session: Option<Url>) -> Result<u64> {
        let (client, access, digest) = (self.client, self.access, self.digest);
        let verdict = Verdict::default();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let url = match session.take() {
                Some(u) => u,
                None => self.start_session().await?.0,
            };
            let put = Request::new(
                Method::PUT,
                with_digest(url, digest),
                format!("upload blob {digest}"),
            )
            .header(CONTENT_TYPE, OCTET_STREAM)
            .body(self.whole_body(&verdict)?)
            .expect(&[StatusCode::CREATED]);
            let failure = match client.execute(access, &put).await {
                Ok(_created) => return Ok(self.size),
                Err(e) => e,
            };
            if let Some(refused) = verdict.take() {
                // The body stopped itself: the blob on disk is not the one named.
                return Err(refused);
            }
            let session_lost = matches!(&failure, Error::Registry { status: 404, .. });
            if !session_lost || attempt >= MAX_SESSIONS {
                return Err(failure);
            }
            tokio::time::sleep(client.retry.delay(attempt, None)).await;
        }
    }

    async fn chunked(&self, mut session: Url, chunk: u64) -> Result<Chunked> {
        let (client, access, digest, size) = (self.client, self.access, self.digest, self.size);
        let mut offset = 0u64;
        // The offset the registry last confirmed with a 202.
        let mut acked = 0u64;
        let mut sent = 0u64;
        let mut resumes = 0u32;
        let mut source = ChunkSource::open(self.data, digest, size)?;
        while offset < size {
            let len = chunk.min(size - offset);
            let range = format!("{}-{}", offset, offset + len - 1);
            let Some(bytes) = source.take(offset, len).await? else {
                // The registry's offset cannot be served from bytes read once (it lost
                // confirmed bytes, or claims unsent ones): start over with a whole upload.
                return Ok(Chunked::RangeNotSatisfiable(sent));
            };
            let action = format!("upload chunk {range} of {digest}");
            // One attempt: after a failure we ask the registry how far it got instead.
            let patch = Request::new(Method::PATCH, session.clone(), &action)
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(
                    CONTENT_RANGE,
                    HeaderValue::from_str(&range).expect("digits and a dash"),
                )
                .body(self.chunk_body(offset, bytes))
                .once();
            let result = client.execute(access, &patch).await;
            sent += len;
            let failure = match result {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    let next = client.location(&r, &action)?;
                    offset = range_end(&r).map(|end| end + 1).unwrap_or(offset + len);
                    acked = offset;
                    source.confirm(offset);
                    session = next;
                    continue;
                }
                Ok(r) if r.status() == StatusCode::RANGE_NOT_SATISFIABLE => {
                    return Ok(Chunked::RangeNotSatisfiable(sent));
                }
                Ok(r) => client.error_from(r, access, &action).await,
                Err(e) => e,
            };
            let resumable = match &failure {
                Error::Http { .. } | Error::Timeout { .. } => true,
                Error::Registry { status, .. } => {
                    *status == 408 || *status == 429 || *status >= 500
                }
                _ => false,
            };
            resumes += 1;
            if !resumable || resumes > MAX_RESUMES {
                return Err(failure);
            }
            tokio::time::sleep(client.retry.delay(resumes, None)).await;
            // Ask the registry where the upload stands and carry on from there. distribution
            // answers `0-0` both for an empty session and for one holding a single byte; when
            // nothing had been acknowledged, the empty reading is the right one.
            let (url, next_offset) = self.status(&session).await?;
            session = url;
            offset = if next_offset == 1 && acked == 0 {
                0
            } else {
                next_offset
            };
        }
        // Every byte was checked as it was read; never commit a blob that failed.
        source.finish()?;
        let put = Request::new(
            Method::PUT,
            with_digest(session, digest),
            format!("finish upload of {digest}"),
        )
        .expect(&[StatusCode::CREATED]);
        client.execute(access, &put).await?;
        Ok(Chunked::Done(sent))
    }

    /// GET on an upload URL: the registry says how many bytes it holds (`Range: 0-N`).
    async fn status(&self, session: &Url) -> Result<(Url, u64)> {
        let (client, access) = (self.client, self.access);
        let action = format!("query upload of {}", self.digest);
        let get = Request::new(Method::GET, session.clone(), &action)
            .expect(&[StatusCode::NO_CONTENT, StatusCode::OK]);
        let response = client.execute(access, &get).await?;
        let offset = range_end(&response).map(|end| end + 1).unwrap_or(0);
        let url = client
            .location(&response, &action)
            .unwrap_or_else(|_| session.clone());
        Ok((url, offset))
    }

    /// The whole blob as one request body, re-made on every attempt and checked as it is
    /// sent (see `blob_source`), reporting progress as the bytes are handed to the connection.
    fn whole_body(&self, verdict: &Verdict) -> Result<Body> {
        let size = self.size;
        match self.data {
            LocalData::Bytes(b) => {
                blob_source::verify_bytes(b, self.digest, size)?;
                self.throttled().update(size);
                Ok(Body::Bytes(b.clone()))
            }
            LocalData::File(path) => {
                let (path, digest, verdict) = (path.clone(), self.digest.clone(), verdict.clone());
                let throttled = self.throttled_factory();
                Ok(Body::Stream(Box::new(move || {
                    // A fresh count for every attempt: a retried body starts again at zero.
                    let mut progress = throttled();
                    let body = blob_source::whole_file_body(
                        &path,
                        &digest,
                        size,
                        &verdict,
                        move |done| progress.update(done),
                    )?;
                    Ok((body, size))
                })))
            }
        }
    }

    /// One chunk's bytes (already read and hashed by the `ChunkSource`), starting at `offset`.
    fn chunk_body(&self, offset: u64, bytes: bytes::Bytes) -> Body {
        self.throttled().update(offset + bytes.len() as u64);
        Body::Bytes(bytes)
    }

    fn throttled(&self) -> Throttled {
        (self.throttled_factory())()
    }

    fn throttled_factory(&self) -> impl Fn() -> Throttled + Send + Sync + 'static {
        let (sink, digest, total) = (Arc::clone(self.progress), self.digest.clone(), self.size);
        move || {
            Throttled::new(
                Arc::clone(&sink),
                Phase::Upload,
                Some(digest.clone()),
                Some(total),
            )
        }
    }
}

/// The inclusive end of a `Range: 0-N` header (`bytes=0-N` too). `0--1`, which some
/// registries send for an empty upload, means nothing is there yet.
fn range_end(response: &Response) -> Option<u64> {
    let value = response.headers().get(RANGE)?.to_str().ok()?;
    parse_range_end(value)
}

fn parse_range_end(value: &str) -> Option<u64> {
    let value = value.trim().trim_start_matches("bytes=");
    let (_, end) = value.split_once('-')?;
    if end.starts_with('-') {
        return None;
    }
    end.trim().parse().ok()
}

fn with_digest(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_parse() {
        assert_eq!(parse_range_end("0-1023"), Some(1023));
        assert_eq!(parse_range_end("bytes=0-5"), Some(5));
        assert_eq!(parse_range_end("0--1"), None);
        assert_eq!(parse_range_end("garbage"), None);
    }

    proptest::proptest! {
        #[test]
        fn prop_range_header_parses_or_refuses(value in "\\PC{0,40}", end in proptest::prelude::any::<u64>()) {
            // Arbitrary text never panics, and a well-formed range always reads back.
            let _ = parse_range_end(&value);
            proptest::prop_assert_eq!(parse_range_end(&format!("0-{end}")), Some(end));
            proptest::prop_assert_eq!(parse_range_end(&format!("bytes=0-{end}")), Some(end));
        }
    }

    #[test]
    fn digest_is_appended_to_existing_query() {
        let d = Digest::of(b"x");
        let url = with_digest(
            Url::parse("http://r/v2/a/blobs/uploads/u?_state=abc").unwrap(),
            &d,
        );
        assert_eq!(
            url.query(),
            Some(&format!("_state=abc&digest=sha256%3A{}", d.hex())[..])
        );
    }
}
