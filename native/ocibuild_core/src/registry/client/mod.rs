//! One registry endpoint: its base URL, its HTTP client (one connection pool) and its auth
//! cache, and every request to it.
//!
//! - `send`: the one request loop (auth negotiation, retries) every request goes through,
//!   token fetches included.
//! - `exchange`: one request and its redirects, each hop cleared by the origin rule, under
//!   the timeouts.
//! - `body`: response bodies read under the minimum transfer rate.
//!
//! A request is a [`Request`] value; [`RegistryClient::execute`] sends it:
//!
//! ```no_run
//! # async fn f() -> ocibuild_core::Result<()> {
//! use ocibuild_core::credentials::Credentials;
//! use ocibuild_core::registry::{auth::{Access, Scopes}, request::Request, Environment, Registries};
//! use reqwest::{Method, StatusCode};
//! let client = Registries::new().client("ghcr.io", "ghcr.io", &Environment::default())?;
//! let access = Access { credentials: Credentials::Anonymous, scopes: Scopes::pull("org/app") };
//! let url = client.url("org/app", "tags/list");
//! let request = Request::new(Method::GET, url, "list tags").expect(&[StatusCode::OK]);
//! let response = client.execute(&access, &request).await?;
//! # Ok(()) }
//! ```

mod body;
mod exchange;
mod send;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::header::LOCATION;
use reqwest::{Response, StatusCode};
use url::Url;

use super::auth::AuthCache;
use super::environment::Environment;
use super::errors;
use super::retry::RetryPolicy;
use super::timeouts::Timeouts;
use super::transport;
use crate::{Error, Result};

pub use super::auth::{Access, Scopes};
pub use super::errors::{describe_error, is_retryable_error};
pub use super::request::{Body, ByteStream, Request};
pub use body::BodyReader;

/// One registry: its base URL, its HTTP client (one connection pool) and its auth cache.
pub struct RegistryClient {
    /// The registry as the user names it (`docker.io`, `localhost:5000`), for errors.
    pub registry: String,
    base: Url,
    http: reqwest::Client,
    auth: AuthCache,
    pub retry: RetryPolicy,
    timeouts: Timeouts,
    /// `OCIBUILD_INSECURE_REGISTRIES`: token realms there may be plain HTTP.
    insecure: Vec<String>,
}

/// Every registry we have talked to, so clients (pools, tokens) are shared by all jobs.
#[derive(Default)]
pub struct Registries {
    clients: Mutex<HashMap<(String, String), Arc<RegistryClient>>>,
    retry: Option<RetryPolicy>,
}

impl Registries {
    pub fn new() -> Registries {
        Registries::default()
    }

    /// A set whose clients use `retry` (tests use short delays).
    pub fn with_retry(retry: RetryPolicy) -> Registries {
        Registries {
            clients: Mutex::default(),
            retry: Some(retry),
        }
    }

    /// The client for `registry` (canonical name; `docker.io` is reached at its API host).
    /// Clients are shared per scheme, host, extra CA file, insecure list and timeouts.
    pub fn client(
        &self,
        registry: &str,
        api_host: &str,
        env: &Environment,
    ) -> Result<Arc<RegistryClient>> {
        let insecure = transport::insecure_list(env);
        let timeouts = Timeouts::from_env(env)?;
        let scheme = transport::scheme_for(api_host, &insecure);
        let ca = env.var_string("SSL_CERT_FILE").unwrap_or_default();
        let key = (
            format!("{scheme} {ca} {insecure:?} {timeouts:?}"),
            api_host.to_string(),
        );
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let base = Url::parse(&format!("{scheme}://{api_host}/"))
            .map_err(|_| Error::InvalidReference(registry.to_string()))?;
        let http = transport::http_client(transport::tls_config(env)?).map_err(|e| match e {
            Error::Http { why, .. } => Error::Http {
                registry: registry.to_string(),
                why,
            },
            other => other,
        })?;
        let client = Arc::new(RegistryClient {
            registry: registry.to_string(),
            base,
            http,
            auth: AuthCache::default(),
            retry: self.retry.clone().unwrap_or_default(),
            timeouts,
            insecure,
        });
        clients.insert(key, client.clone());
        Ok(client)
    }
}

impl RegistryClient {
    /// `/v2/<repository>/<rest>` on this registry.
    pub fn url(&self, repository: &str, rest: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/v2/{repository}/{rest}"));
        url
    }

    /// Resolve a `Location` header (absolute or relative) against the registry.
    /// Whether credentials may follow it is decided when it is used, like any other URL.
    pub fn location(&self, response: &Response, action: &str) -> Result<Url> {
        let value = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.protocol_error(action, response.status(), "no Location header"))?;
        response.url().join(value).map_err(|_| {
            self.protocol_error(action, response.status(), "unparsable Location header")
        })
    }

    pub fn protocol_error(&self, action: &str, status: StatusCode, why: &str) -> Error {
        errors::protocol(&self.registry, action, status, why)
    }

    pub fn token_fetches(&self) -> u64 {
        self.auth.token_fetches()
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The error a response we did not expect stands for: `Unauthorized` for 401/403, else
    /// `Registry` with the spec's code and message from its (capped) body.
    pub async fn error_from(&self, response: Response, access: &Access, action: &str) -> Error {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return errors::unauthorized(&self.registry, access.scopes.describe(), status);
        }
        // A body that is too slow or too big just tells us nothing.
        let body = self
            .read_body(response, errors::MAX_ERROR_BODY, action)
            .await
            .unwrap_or_default();
        errors::status(&self.registry, action, status, &body)
    }

    pub fn http_error(&self, action: &str, err: &reqwest::Error) -> Error {
        errors::http(&self.registry, action, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use crate::registry::testing::{Reply, Server};
    use reqwest::Method;

    fn client_at(addr: &str) -> Arc<RegistryClient> {
        Registries::new()
            .client(addr, addr, &Environment::default())
            .unwrap()
    }

    fn access(creds: Credentials) -> Access {
        Access {
            credentials: creds,
            scopes: Scopes::pull("a/b"),
        }
    }

    /// `GET /v2/a/b/<path>` with `creds`, as the pull code sends it.
    async fn get(
        client: &RegistryClient,
        creds: Credentials,
        path: &str,
        what: &str,
    ) -> Result<Response> {
        let request = Request::new(Method::GET, client.url("a/b", path), what);
        client.execute(&access(creds), &request).await
    }

    // A registry may redirect a blob GET to storage elsewhere (S3, a CDN): the redirected
    // request must not carry our credentials.
    #[tokio::test]
    async fn redirects_to_another_host_drop_the_authorization_header() {
        let storage = Server::start("127.0.0.2", |_| Reply::status("200 OK").body("blob")).await;
        let target = storage.url("/blob");
        let registry = Server::start("127.0.0.1", move |_| {
            Reply::status("307 Temporary Redirect").header("Location", target.clone())
        })
        .await;
        let client = client_at(&registry.addr);
        let creds = Credentials::Bearer("s3cret-token".into());
        let response = get(&client, creds, "blobs/sha256:00", "GET blob")
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            registry.seen()[0].header("authorization"),
            Some("Bearer s3cret-token")
        );
        assert!(!storage.seen()[0].has_authorization());
    }

    // Credentials go to a token realm only over HTTPS (plain HTTP only on loopback).
    #[tokio::test]
    async fn a_plain_http_realm_elsewhere_is_refused() {
        let registry = Server::start("127.0.0.1", |_| {
            Reply::status("401 Unauthorized").header(
                "WWW-Authenticate",
                "Bearer realm=\"http://auth.example.invalid/token\",service=\"r\"",
            )
        })
        .await;
        let client = client_at(&registry.addr);
        let creds = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let err = get(&client, creds, "manifests/latest", "GET manifest")
            .await
            .unwrap_err();
        match err {
            Error::Auth { why, .. } => assert!(why.contains("not HTTPS"), "{why}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    // A 401 after the challenge was answered means the credentials are not good enough.
    #[tokio::test]
    async fn basic_challenge_is_answered_once_then_unauthorized() {
        let registry = Server::start("127.0.0.1", |_| {
            Reply::status("401 Unauthorized").header("WWW-Authenticate", "Basic realm=\"r\"")
        })
        .await;
        let client = client_at(&registry.addr);
        let creds = Credentials::Basic {
            username: "u".into(),
            password: "wrong".into(),
        };
        let response = get(&client, creds.clone(), "manifests/latest", "GET")
            .await
            .unwrap();
        let err = client.error_from(response, &access(creds), "GET").await;
        assert!(
            matches!(err, Error::Unauthorized { status: 401, .. }),
            "{err:?}"
        );
        let seen = registry.seen();
        assert!(!seen[0].has_authorization());
        assert_eq!(seen[1].header("authorization"), Some("Basic dTp3cm9uZw=="));
    }
}
