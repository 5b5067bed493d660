//! One request to a registry as a value (sent by `RegistryClient::execute`): method, URL, headers, body, what it is for (named
//! in errors), whether it may be retried, and the statuses that count as success.
//!
//! ```no_run
//! # async fn f(client: &ocibuild_core::registry::RegistryClient, access: &ocibuild_core::registry::auth::Access) -> ocibuild_core::Result<()> {
//! use ocibuild_core::registry::request::Request;
//! use reqwest::{Method, StatusCode};
//! let url = client.url("org/app", "blobs/uploads/");
//! let request = Request::new(Method::POST, url, "start upload").expect(&[StatusCode::ACCEPTED]);
//! let response = client.execute(access, &request).await?;
//! # Ok(()) }
//! ```

use std::pin::Pin;

use futures_util::Stream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use url::Url;

use crate::Result;

/// The bytes of a request body as they are read (from a file, say).
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync>>;

/// A body that can be produced again for a retry.
pub enum Body {
    Empty,
    Bytes(bytes::Bytes),
    /// Made on each attempt (a file stream, say), with its length.
    Stream(Box<dyn Fn() -> Result<(ByteStream, u64)> + Send + Sync>),
}

pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) action: String,
    /// `false`: one attempt (a 401 is still answered), for chunk uploads, where the caller
    /// asks the registry how far it got before sending more.
    pub(crate) retries: bool,
    /// Statuses passed through; any other becomes an error. Empty: every response is.
    pub(crate) expect: Vec<StatusCode>,
}

impl Request {
    /// `action` says what the request is for in errors (`GET manifest a/b:1`): never the URL,
    /// which may carry upload session state.
    pub fn new(method: Method, url: Url, action: impl Into<String>) -> Request {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
            action: action.into(),
            retries: true,
            expect: Vec::new(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Request {
        self.headers.insert(name, value);
        self
    }

    pub fn body(mut self, body: Body) -> Request {
        self.body = body;
        self
    }

    /// One attempt only: no retry after a connection failure, a timeout or a 5xx.
    pub fn once(mut self) -> Request {
        self.retries = false;
        self
    }

    /// Only these statuses are a success; any other is turned into the matching error
    /// (`Unauthorized`, or `Registry` with the spec's code and message).
    pub fn expect(mut self, statuses: &[StatusCode]) -> Request {
        self.expect = statuses.to_vec();
        self
    }

    pub fn action(&self) -> &str {
        &self.action
    }
}
