//! One registry endpoint: sends requests with auth and retries, turns failures into errors.
//!
//! Auth follows the distribution spec's token flow. The first request goes out with whatever
//! we already hold for its scope (nothing, at first); a 401 carries a `WWW-Authenticate`
//! challenge, which we answer once (Basic header, or a bearer token from the realm), cache
//! per (scopes, credentials) and reuse for every later request of any job. A 401 with a cached
//! header drops it and negotiates again (tokens expire).
//!
//! Retries: connection failures, timeouts and 408/429/5xx are retried with exponential
//! backoff (honouring `Retry-After`) up to the policy's attempt count.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

use super::challenge::{self, Challenge};
use super::credentials::Credentials;
use super::environment::Environment;
use super::retry::{self, RetryPolicy};
use super::transport;
use crate::digest::Digest;
use crate::{Error, Result};

/// What a job may do in which repositories, as token scopes
/// (`repository:org/app:pull,push`). The same scopes are asked for every request of a job so
/// one token serves them all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub fn pull(repository: &str) -> Scopes {
        Scopes(vec![format!("repository:{repository}:pull")])
    }

    pub fn push(repository: &str) -> Scopes {
        Scopes(vec![format!("repository:{repository}:pull,push")])
    }

    /// Also ask to read `repository` (the source of a cross-repository mount).
    pub fn with_pull(mut self, repository: &str) -> Scopes {
        let scope = format!("repository:{repository}:pull");
        if !self
            .0
            .iter()
            .any(|s| s.starts_with(&format!("repository:{repository}:")))
        {
            self.0.push(scope);
        }
        self
    }

    pub fn describe(&self) -> String {
        self.0.join(" ")
    }
}

/// Credentials and scopes for the requests of one job against one registry.
#[derive(Clone, Debug)]
pub struct Access {
    pub credentials: Credentials,
    pub scopes: Scopes,
}

/// The cache key for a negotiated header: scopes plus a fingerprint of the credentials (a
/// digest, so the secret itself is not kept twice).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AuthKey {
    scopes: Scopes,
    identity: String,
}

#[derive(Clone)]
struct CachedAuth {
    header: HeaderValue,
    expires: Option<Instant>,
}

/// A body that can be produced again for a retry.
pub enum Body {
    Empty,
    Bytes(bytes::Bytes),
    /// Made on each attempt (a file stream, say), with its length.
    Stream(Box<dyn Fn() -> Result<(reqwest::Body, u64)> + Send + Sync>),
}

/// One registry: its base URL, its HTTP client (one connection pool) and its auth cache.
pub struct RegistryClient {
    /// The registry as the user names it (`docker.io`, `localhost:5000`), for errors.
    pub registry: String,
    base: Url,
    http: reqwest::Client,
    auth: Mutex<HashMap<AuthKey, CachedAuth>>,
    pub retry: RetryPolicy,
    /// Token fetches made, for tests that check auth reuse.
    token_fetches: std::sync::atomic::AtomicU64,
    /// Held while answering a challenge, so parallel requests negotiate once.
    negotiating: tokio::sync::Mutex<()>,
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
    /// Clients are shared per scheme, host and extra CA file.
    pub fn client(
        &self,
        registry: &str,
        api_host: &str,
        env: &Environment,
    ) -> Result<Arc<RegistryClient>> {
        let scheme = transport::scheme_for(api_host, &transport::insecure_list(env));
        let ca = env.var_string("SSL_CERT_FILE").unwrap_or_default();
        let key = (format!("{scheme} {ca}"), api_host.to_string());
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
            auth: Mutex::default(),
            retry: self.retry.clone().unwrap_or_default(),
            token_fetches: Default::default(),
            negotiating: tokio::sync::Mutex::new(()),
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
    pub fn location(&self, response: &Response, action: &str) -> Result<Url> {
        let value = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.protocol_error(action, response.status(), "no Location header"))?;
        response.url().join(value).map_err(|_| {
            self.protocol_error(action, response.status(), "unparsable Location header")
        })
    }

    pub fn protocol_error(&self, action: &str, status: StatusCode, why: &str) -> Error {
        Error::Registry {
            registry: self.registry.clone(),
            action: action.to_string(),
            status: status.as_u16(),
            code: None,
            message: why.to_string(),
        }
    }

    pub fn token_fetches(&self) -> u64 {
        self.token_fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Send a request with auth and retries; returns any response that is not a retryable
    /// failure or a 401 we could answer. Callers check the status they expect with
    /// [`RegistryClient::expect`].
    pub async fn send(
        &self,
        access: &Access,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Body,
        action: &str,
    ) -> Result<Response> {
        self.send_attempts(
            access,
            method,
            url,
            headers,
            body,
            action,
            self.retry.max_attempts,
        )
        .await
    }

    /// [`RegistryClient::send`] for a request with no body and no headers of its own.
    pub async fn send_empty(
        &self,
        access: &Access,
        method: Method,
        url: &Url,
        action: &str,
    ) -> Result<Response> {
        self.send(access, method, url, &HeaderMap::new(), &Body::Empty, action)
            .await
    }

    /// A small body (manifest, config, token) into memory, refusing more than `cap` bytes.
    pub async fn read_body(&self, response: Response, cap: usize, action: &str) -> Result<Vec<u8>> {
        read_capped(response, cap).await.map_err(|why| Error::Http {
            registry: self.registry.clone(),
            why: format!("{action}: {why}"),
        })
    }

    /// [`RegistryClient::send`] without retries (a 401 is still answered): for chunk uploads,
    /// where the caller asks the registry how far it got before sending more.
    pub async fn send_once(
        &self,
        access: &Access,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Body,
        action: &str,
    ) -> Result<Response> {
        self.send_attempts(access, method, url, headers, body, action, 1)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_attempts(
        &self,
        access: &Access,
        method: Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Body,
        action: &str,
        max_attempts: u32,
    ) -> Result<Response> {
        let mut attempt = 0u32;
        let mut renegotiated = false;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            let sent_auth = self.auth_header(access);
            if let Some(auth) = &sent_auth {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            request = attach_body(request, body)?;
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) if attempt < max_attempts && is_retryable_error(&e) => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    continue;
                }
                Err(e) => return Err(self.http_error(action, &e)),
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !renegotiated {
                renegotiated = true;
                let challenges = response
                    .headers()
                    .get_all(WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(challenge::parse)
                    .collect::<Vec<_>>();
                self.negotiate(access, &challenges, sent_auth.as_ref(), action)
                    .await?;
                attempt -= 1; // answering a challenge is not a failed attempt
                continue;
            }
            if retry::is_retryable_status(status.as_u16()) && attempt < max_attempts {
                let wait = retry_after(&response);
                tokio::time::sleep(self.retry.delay(attempt, wait)).await;
                continue;
            }
            return Ok(response);
        }
    }

    /// Pass a response with one of the `ok` statuses through; anything else becomes a
    /// tagged error with the registry's own error code and message.
    pub async fn expect(
        &self,
        response: Response,
        ok: &[StatusCode],
        access: &Access,
        action: &str,
    ) -> Result<Response> {
        if ok.contains(&response.status()) {
            return Ok(response);
        }
        Err(self.error_from(response, access, action).await)
    }

    pub async fn error_from(&self, response: Response, access: &Access, action: &str) -> Error {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Error::Unauthorized {
                registry: self.registry.clone(),
                scope: access.scopes.describe(),
                status: status.as_u16(),
            };
        }
        // Error bodies are small JSON documents; cap what we read of a misbehaving one.
        let body = read_capped(response, 64 * 1024).await.unwrap_or_default();
        let (code, message) = parse_error_body(&body);
        Error::Registry {
            registry: self.registry.clone(),
            action: action.to_string(),
            status: status.as_u16(),
            code,
            message,
        }
    }

    pub fn http_error(&self, action: &str, err: &reqwest::Error) -> Error {
        Error::Http {
            registry: self.registry.clone(),
            why: format!("{action}: {}", describe_error(err)),
        }
    }

    fn auth_key(access: &Access) -> AuthKey {
        AuthKey {
            scopes: access.scopes.clone(),
            identity: identity(&access.credentials),
        }
    }

    fn auth_header(&self, access: &Access) -> Option<HeaderValue> {
        if let Credentials::Bearer(token) = &access.credentials {
            // A ready-made token is used as is, for every scope.
            return bearer_header(token);
        }
        let cache = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        let cached = cache.get(&Self::auth_key(access))?;
        match cached.expires {
            Some(t) if t <= Instant::now() => None,
            _ => Some(cached.header.clone()),
        }
    }

    fn forget_auth(&self, access: &Access) {
        let mut cache = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        cache.remove(&Self::auth_key(access));
    }

    fn remember_auth(&self, access: &Access, header: HeaderValue, ttl: Option<Duration>) {
        let mut cache = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        // Renew a little early so a token does not expire mid-request: 10 s early, or half
        // way through a token shorter-lived than 20 s.
        let expires = ttl.map(|t| Instant::now() + t - (t / 2).min(Duration::from_secs(10)));
        cache.insert(Self::auth_key(access), CachedAuth { header, expires });
    }

    /// Answer a 401's challenges: Basic with the credentials, or a bearer token from the
    /// realm. Fails with `Unauthorized` when there is nothing to answer with.
    ///
    /// Parallel requests of a push all meet the first 401 together; negotiation is serialised
    /// and a request whose header was already replaced by another's negotiation just retries
    /// with the new one, so one token serves them all.
    async fn negotiate(
        &self,
        access: &Access,
        challenges: &[Challenge],
        sent: Option<&HeaderValue>,
        action: &str,
    ) -> Result<()> {
        let _turn = self.negotiating.lock().await;
        let current = self.auth_header(access);
        if current.is_some() && current.as_ref() != sent {
            return Ok(());
        }
        self.forget_auth(access);
        let unauthorized = || Error::Unauthorized {
            registry: self.registry.clone(),
            scope: access.scopes.describe(),
            status: 401,
        };
        if matches!(access.credentials, Credentials::Bearer(_)) {
            return Err(unauthorized());
        }
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let (token, ttl) = self.fetch_token(access, bearer, action).await?;
            let header = bearer_header(&token).ok_or_else(|| Error::Auth {
                registry: self.registry.clone(),
                why: "the token server returned a token that is not a valid header value".into(),
            })?;
            self.remember_auth(access, header, Some(ttl));
            return Ok(());
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return match basic_header(&access.credentials) {
                Some(h) => {
                    self.remember_auth(access, h, None);
                    Ok(())
                }
                None => Err(unauthorized()),
            };
        }
        Err(Error::Auth {
            registry: self.registry.clone(),
            why: "401 without a Basic or Bearer challenge".into(),
        })
    }

    async fn fetch_token(
        &self,
        access: &Access,
        challenge: &Challenge,
        action: &str,
    ) -> Result<(String, Duration)> {
        let auth_error = |why: String| Error::Auth {
            registry: self.registry.clone(),
            why,
        };
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| auth_error("bearer challenge without a realm".into()))?;
        let mut url =
            Url::parse(realm).map_err(|_| auth_error(format!("unparsable realm {realm:?}")))?;
        let realm_host = url.host_str().unwrap_or_default().to_string();
        let plain_ok = url.scheme() == "http" && transport::is_loopback(&realm_host);
        if url.scheme() != "https" && !plain_ok {
            return Err(auth_error(format!(
                "token realm {realm} is not HTTPS; refusing to send credentials over plain HTTP"
            )));
        }
        let service = challenge.params.get("service");
        // Our scopes first; the challenge's own scope too, in case it asks for something else.
        let mut scopes = access.scopes.0.clone();
        if let Some(s) = challenge.params.get("scope") {
            for one in s.split(' ') {
                if !one.is_empty() && !scopes.iter().any(|x| x == one) {
                    scopes.push(one.to_string());
                }
            }
        }
        let request = match &access.credentials {
            Credentials::IdentityToken { token, .. } => {
                // OAuth2 refresh-token grant, as docker does with an identity token.
                let mut form: Vec<(&str, String)> = vec![
                    ("grant_type", "refresh_token".into()),
                    ("refresh_token", token.clone()),
                    ("client_id", "ocibuild".into()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.clone()));
                }
                form.push(("scope", scopes.join(" ")));
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", urlencode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                self.http
                    .post(url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
            }
            creds => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in &scopes {
                        q.append_pair("scope", s);
                    }
                }
                let mut r = self.http.get(url.clone());
                if let Some(h) = basic_header(creds) {
                    r = r.header(AUTHORIZATION, h);
                }
                r
            }
        };
        self.token_fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let r = request
                .try_clone()
                .ok_or_else(|| auth_error("token request cannot be retried".into()))?;
            match r.send().await {
                Ok(resp)
                    if retry::is_retryable_status(resp.status().as_u16())
                        && attempt < self.retry.max_attempts =>
                {
                    tokio::time::sleep(self.retry.delay(attempt, retry_after(&resp))).await;
                }
                Ok(resp) => break resp,
                Err(e) if attempt < self.retry.max_attempts && is_retryable_error(&e) => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                }
                Err(e) => {
                    return Err(auth_error(format!(
                        "token server {realm_host}: {}",
                        describe_error(&e)
                    )))
                }
            }
        };
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                registry: self.registry.clone(),
                scope: scopes.join(" "),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(auth_error(format!(
                "token server {realm_host} answered {status} while {action}"
            )));
        }
        let body = read_capped(response, 1 << 20)
            .await
            .map_err(|e| auth_error(format!("reading the token: {e}")))?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| auth_error("the token server's answer is not JSON".into()))?;
        let token = json
            .get("token")
            .or_else(|| json.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_error("the token server's answer has no token".into()))?;
        // The spec's default lifetime is 60 s when expires_in is absent.
        let ttl = json
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .unwrap_or(60);
        Ok((token.to_string(), Duration::from_secs(ttl)))
    }
}

fn attach_body(request: RequestBuilder, body: &Body) -> Result<RequestBuilder> {
    Ok(match body {
        Body::Empty => request.header(reqwest::header::CONTENT_LENGTH, 0),
        Body::Bytes(b) => request.body(b.clone()),
        Body::Stream(make) => {
            let (stream, len) = make()?;
            request
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(stream)
        }
    })
}

fn basic_header(creds: &Credentials) -> Option<HeaderValue> {
    match creds {
        Credentials::Basic { username, password } => {
            let raw = format!("{username}:{password}");
            let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
            let mut v = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        }
        _ => None,
    }
}

fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

fn identity(creds: &Credentials) -> String {
    match creds {
        Credentials::Anonymous => "anonymous".into(),
        Credentials::Basic { username, password } => {
            Digest::of(format!("basic\0{username}\0{password}").as_bytes()).to_string()
        }
        Credentials::Bearer(t) => Digest::of(format!("bearer\0{t}").as_bytes()).to_string(),
        Credentials::IdentityToken { username, token } => {
            Digest::of(format!("identity\0{username}\0{token}").as_bytes()).to_string()
        }
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
}

/// Connection refused/reset, timeouts and broken bodies are worth another try; a bad URL or
/// a TLS certificate error is not.
pub fn is_retryable_error(err: &reqwest::Error) -> bool {
    if err.is_builder() || err.is_redirect() || err.is_decode() {
        return false;
    }
    let text = describe_error(err).to_ascii_lowercase();
    let tls = text.contains("certificate") || text.contains("invalidcertificate");
    !tls && (err.is_connect() || err.is_timeout() || err.is_request() || err.is_body())
}

/// The error and its causes on one line, without the URL (upload URLs carry session state).
pub fn describe_error(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    // reqwest's own message names the URL; strip anything after " for url (".
    parts
        .into_iter()
        .map(|p| match p.find(" for url (") {
            Some(i) => p[..i].to_string(),
            None => p,
        })
        .collect::<Vec<_>>()
        .join(": ")
}

pub async fn read_capped(
    mut response: Response,
    cap: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe_error(&e))? {
        if out.len() + chunk.len() > cap {
            return Err(format!("response larger than {cap} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The first `{code, message}` of an OCI error body, else the body's first line.
fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(first) = json.get("errors").and_then(|e| e.get(0)) {
            let code = first
                .get("code")
                .and_then(|c| c.as_str())
                .map(str::to_string);
            let message = first
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string();
            return (code, message);
        }
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or_default();
    (None, line.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_add_mount_source_once() {
        let s = Scopes::push("org/app")
            .with_pull("library/base")
            .with_pull("library/base");
        assert_eq!(
            s.describe(),
            "repository:org/app:pull,push repository:library/base:pull"
        );
        assert_eq!(Scopes::push("a").with_pull("a"), Scopes::push("a"));
    }

    #[test]
    fn identity_never_contains_the_secret() {
        let id = identity(&Credentials::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        });
        assert!(!id.contains("hunter2"));
        assert_ne!(
            id,
            identity(&Credentials::Basic {
                username: "u".into(),
                password: "other".into()
            })
        );
    }

    #[test]
    fn basic_header_is_base64_and_sensitive() {
        let h = basic_header(&Credentials::Basic {
            username: "user".into(),
            password: "pa:ss".into(),
        })
        .unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic dXNlcjpwYTpzcw==");
        assert!(basic_header(&Credentials::Anonymous).is_none());
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let (code, msg) = parse_error_body(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        );
        assert_eq!(code.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(msg, "manifest unknown");
        let (code, msg) = parse_error_body(b"<html>bad gateway\nmore");
        assert_eq!(code, None);
        assert_eq!(msg, "<html>bad gateway");
    }

    /// A one-shot HTTP server on `ip`: answers each connection with `answer(request head)`
    /// and hands every request head it saw to the returned receiver.
    async fn serve(
        ip: &str,
        answer: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (tx, answer) = (tx.clone(), answer.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let _ = sock.write_all(answer(&head).as_bytes()).await;
                    let _ = tx.send(head);
                });
            }
        });
        (addr, rx)
    }

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
        let url = client.url("a/b", path);
        client
            .send_empty(&access(creds), Method::GET, &url, what)
            .await
    }

    // A registry may redirect a blob GET to storage elsewhere (S3, a CDN): the redirected
    // request must not carry our credentials.
    #[tokio::test]
    async fn redirects_to_another_host_drop_the_authorization_header() {
        let (storage, mut seen_by_storage) = serve("127.0.0.2", |_| {
            "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nblob".into()
        })
        .await;
        let target = format!("http://{storage}/blob");
        let (registry, mut seen_by_registry) = serve("127.0.0.1", move |_| {
            format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        })
        .await;
        let client = client_at(&registry);
        let creds = Credentials::Bearer("s3cret-token".into());
        let response = get(&client, creds, "blobs/sha256:00", "GET blob")
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let to_registry = seen_by_registry.recv().await.unwrap();
        let to_storage = seen_by_storage.recv().await.unwrap();
        assert!(to_registry
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret-token"));
        assert!(
            !to_storage.to_ascii_lowercase().contains("authorization"),
            "{to_storage}"
        );
    }

    // Credentials go to a token realm only over HTTPS (plain HTTP only on loopback).
    #[tokio::test]
    async fn a_plain_http_realm_elsewhere_is_refused() {
        let (registry, _seen) = serve("127.0.0.1", |_| {
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://auth.example.invalid/token\",service=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
        })
        .await;
        let client = client_at(&registry);
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
        let (registry, mut seen) = serve("127.0.0.1", |_| {
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
        })
        .await;
        let client = client_at(&registry);
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
        let first = seen.recv().await.unwrap();
        let second = seen.recv().await.unwrap();
        assert!(!first.to_ascii_lowercase().contains("authorization"));
        assert!(second.contains("Basic dTp3cm9uZw=="));
    }
}
