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
//!
//! Redirects are followed here, not by reqwest, so that every hop of every request (and every
//! URL a registry hands back: upload `Location`s, token realms) is cleared by
//! [`origin::decide`] before it is sent: credentials only to the registry's own origin, never
//! from HTTPS to plain HTTP. Every exchange runs under the [`Timeouts`]: a deadline for the
//! response headers and a minimum rate for the bodies both ways.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use futures_util::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use url::Url;

use super::challenge::{self, Challenge};
use crate::credentials::Credentials;
use super::environment::Environment;
use super::origin::{self, Carry, Refusal};
use super::retry::{self, RetryPolicy};
use super::timeouts::{RateMeter, Timeouts};
use super::token;
use super::transport;
use crate::digest::Digest;
use crate::error::TimeoutPhase;
use crate::{Error, Result};

/// Hops one request may take before we give up on it, as browsers and reqwest do.
const MAX_REDIRECTS: usize = 10;

/// What of a registry's error body may reach an error term: the spec's `code` and `message`,
/// cut to this many characters.
const MAX_ERROR_TEXT: usize = 200;

/// Request bodies held in memory go out in pieces of this size, so the transfer-rate check
/// sees them move.
const BODY_PIECE: usize = 64 * 1024;

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

/// The bytes of a request body as they are read (from a file, say).
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync>>;

/// A body that can be produced again for a retry.
pub enum Body {
    Empty,
    Bytes(bytes::Bytes),
    /// Made on each attempt (a file stream, say), with its length.
    Stream(Box<dyn Fn() -> Result<(ByteStream, u64)> + Send + Sync>),
}

/// Why one exchange (a request and its redirects) failed.
enum Failure {
    /// The connection failed; maybe worth another try.
    Transport(reqwest::Error),
    /// Too slow; worth another try.
    Timeout(TimeoutPhase),
    /// Not worth another try (a refused URL, an unreadable local file).
    Final(Error),
}

/// One registry: its base URL, its HTTP client (one connection pool) and its auth cache.
pub struct RegistryClient {
    /// The registry as the user names it (`docker.io`, `localhost:5000`), for errors.
    pub registry: String,
    base: Url,
    http: reqwest::Client,
    auth: Mutex<HashMap<AuthKey, CachedAuth>>,
    pub retry: RetryPolicy,
    timeouts: Timeouts,
    /// `OCIBUILD_INSECURE_REGISTRIES`: token realms there may be plain HTTP.
    insecure: Vec<String>,
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
            auth: Mutex::default(),
            retry: self.retry.clone().unwrap_or_default(),
            timeouts,
            insecure,
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
        let mut reader = self.reader(response, action);
        let mut out = Vec::new();
        while let Some(chunk) = reader.chunk().await? {
            if out.len() + chunk.len() > cap {
                return Err(Error::Http {
                    registry: self.registry.clone(),
                    why: format!("{action}: response larger than {cap} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// A response body to read chunk by chunk under the minimum transfer rate.
    pub fn reader<'c>(&'c self, response: Response, action: &str) -> BodyReader<'c> {
        BodyReader {
            meter: RateMeter::new(&self.timeouts, Instant::now()),
            client: self,
            response,
            total: 0,
            action: action.to_string(),
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    fn timeout_error(&self, action: &str, phase: TimeoutPhase) -> Error {
        Error::Timeout {
            registry: self.registry.clone(),
            action: action.to_string(),
            phase,
        }
    }

    fn failure_error(&self, action: &str, failure: Failure) -> Error {
        match failure {
            Failure::Transport(e) => self.http_error(action, &e),
            Failure::Timeout(phase) => self.timeout_error(action, phase),
            Failure::Final(e) => e,
        }
    }

    fn refusal_error(&self, refusal: Refusal, target: &Url, action: &str) -> Error {
        match refusal {
            Refusal::Downgrade => Error::Downgrade {
                registry: self.registry.clone(),
                to: origin::origin_of(target),
            },
            Refusal::Scheme => Error::Http {
                registry: self.registry.clone(),
                why: format!("{action}: refusing to follow a {:?} URL", target.scheme()),
            },
        }
    }

    /// One request and the redirects it leads to. Every hop is cleared by
    /// [`origin::decide`] against `home` (the origin `auth` belongs to), and runs under the
    /// timeouts.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        home: &Url,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        auth: Option<&HeaderValue>,
        body: &Body,
        action: &str,
    ) -> std::result::Result<Response, Failure> {
        let empty = Body::Empty;
        let (mut method, mut target, mut body) = (method.clone(), url.clone(), body);
        for _ in 0..=MAX_REDIRECTS {
            let carry = origin::decide(home, &target)
                .map_err(|r| Failure::Final(self.refusal_error(r, &target, action)))?;
            let mut request = self
                .http
                .request(method.clone(), target.clone())
                .headers(headers.clone());
            if let (Carry::Credentials, Some(auth)) = (carry, auth) {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let (request, sent) = attach_body(request, body).map_err(Failure::Final)?;
            let response = self.watch(request.send(), sent.as_deref()).await?;
            let status = response.status();
            let Some(next) = redirect_target(&response) else {
                return Ok(response);
            };
            target =
                next.map_err(|why| Failure::Final(self.protocol_error(action, status, why)))?;
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
        Err(Failure::Final(self.protocol_error(
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
            let sent_auth = self.auth_header(access);
            let exchange = self
                .exchange(
                    &self.base,
                    &method,
                    url,
                    headers,
                    sent_auth.as_ref(),
                    body,
                    action,
                )
                .await;
            let response = match exchange {
                Ok(r) => r,
                Err(f) if attempt < max_attempts && f.is_retryable() => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    continue;
                }
                Err(f) => return Err(self.failure_error(action, f)),
            };
            let status = response.status();
            // Only our registry's own challenges are answered: a storage host we were sent
            // to must not get to name a realm for our credentials.
            let ours = origin::same_origin(&self.base, response.url());
            if status == StatusCode::UNAUTHORIZED && !renegotiated && ours {
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
        // Error bodies are small JSON documents; cap what we read of a misbehaving one, and
        // a body that is too slow or too big just tells us nothing.
        let body = self
            .read_body(response, 64 * 1024, action)
            .await
            .unwrap_or_default();
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
        let expires =
            ttl.and_then(|t| Instant::now().checked_add(t - (t / 2).min(Duration::from_secs(10))));
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
        if !origin::realm_allowed(&self.base, &url, &self.insecure) {
            return Err(auth_error(format!(
                "token realm {} is not HTTPS; refusing to send credentials over plain HTTP",
                origin::origin_of(&url)
            )));
        }
        let realm_host = url.host_str().unwrap_or_default().to_string();
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
        let mut headers = HeaderMap::new();
        let (method, body, auth) = match &access.credentials {
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
                headers.insert(
                    reqwest::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                (Method::POST, Body::Bytes(body.into()), None)
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
                (Method::GET, Body::Empty, basic_header(creds))
            }
        };
        self.token_fetches.fetch_add(1, Ordering::Relaxed);
        let token_action = format!("fetching a token from {realm_host} for {action}");
        // The realm's own origin is where its credentials belong; a redirect elsewhere
        // gets none.
        let home = url.clone();
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let exchange = self
                .exchange(
                    &home,
                    &method,
                    &url,
                    &headers,
                    auth.as_ref(),
                    &body,
                    &token_action,
                )
                .await;
            match exchange {
                Ok(resp)
                    if retry::is_retryable_status(resp.status().as_u16())
                        && attempt < self.retry.max_attempts =>
                {
                    tokio::time::sleep(self.retry.delay(attempt, retry_after(&resp))).await;
                }
                Ok(resp) => break resp,
                Err(f) if attempt < self.retry.max_attempts && f.is_retryable() => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                }
                Err(Failure::Transport(e)) => {
                    return Err(auth_error(format!(
                        "token server {realm_host}: {}",
                        describe_error(&e)
                    )))
                }
                Err(f) => return Err(self.failure_error(&token_action, f)),
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
        let body = self.read_body(response, 1 << 20, &token_action).await?;
        let answer = token::parse_token_response(&body).map_err(|why| auth_error(why.into()))?;
        Ok((answer.token, answer.ttl))
    }
}

impl Failure {
    fn is_retryable(&self) -> bool {
        match self {
            Failure::Transport(e) => is_retryable_error(e),
            Failure::Timeout(_) => true,
            Failure::Final(_) => false,
        }
    }
}

/// How much of a request body the connection has taken, for the transfer-rate check, and
/// when it had all of it (from then on the response headers have their deadline).
pub struct SentBytes {
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
        Body::Empty => return Ok((request.header(reqwest::header::CONTENT_LENGTH, 0), None)),
        Body::Bytes(b) if b.is_empty() => {
            return Ok((request.header(reqwest::header::CONTENT_LENGTH, 0), None))
        }
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
        return Ok((request.header(reqwest::header::CONTENT_LENGTH, 0), None));
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
        .header(reqwest::header::CONTENT_LENGTH, len)
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

/// A response body read under the minimum transfer rate.
pub struct BodyReader<'c> {
    client: &'c RegistryClient,
    response: Response,
    meter: RateMeter,
    total: u64,
    action: String,
}

impl BodyReader<'_> {
    /// The next piece of the body; `None` at its end. A body slower than the minimum rate
    /// over a window ends with [`Error::Timeout`].
    pub async fn chunk(&mut self) -> Result<Option<bytes::Bytes>> {
        loop {
            let window_end = tokio::time::Instant::from_std(self.meter.next_check());
            let piece = match tokio::time::timeout_at(window_end, self.response.chunk()).await {
                Ok(Ok(Some(c))) => Some(c),
                Ok(Ok(None)) => return Ok(None),
                Ok(Err(e)) => return Err(self.client.http_error(&self.action, &e)),
                Err(_window_over) => None,
            };
            if let Some(c) = &piece {
                self.total += c.len() as u64;
            }
            if self.meter.check(Instant::now(), self.total).is_err() {
                let t = self.client.timeouts;
                let phase = TimeoutPhase::Body {
                    min_rate: t.min_rate,
                    window: t.window,
                };
                return Err(self.client.timeout_error(&self.action, phase));
            }
            if piece.is_some() {
                return Ok(piece);
            }
        }
    }
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

/// The first `{code, message}` of a body in the spec's error shape
/// (`{"errors":[{"code":..,"message":..}]}`), each cut to 200 characters without control
/// characters. Any other body (an HTML page, a proxy's text, a token) is not echoed at all:
/// it may be huge, misleading, or hold what was not meant for an error message.
fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, String::new());
    };
    let first = json.get("errors").and_then(|e| e.get(0));
    let Some(code) = first.and_then(|f| f.get("code")).and_then(|c| c.as_str()) else {
        return (None, String::new());
    };
    let message = first
        .and_then(|f| f.get("message"))
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    (Some(error_text(code)), error_text(message))
}

fn error_text(s: &str) -> String {
    s.chars()
        .take(MAX_ERROR_TEXT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{Reply, Server};

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
        assert_eq!((code, msg), (None, String::new()));
    }

    #[test]
    fn error_text_is_cut_on_a_char_boundary() {
        let body = serde_json::json!({"errors": [{"code": "X", "message": "é".repeat(300)}]});
        let (_, msg) = parse_error_body(body.to_string().as_bytes());
        assert_eq!(msg, "é".repeat(MAX_ERROR_TEXT));
    }

    proptest::proptest! {
        // Whatever a registry sends, the error holds at most the spec's two short fields.
        #[test]
        fn prop_error_body_is_never_echoed_beyond_the_spec(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let (code, msg) = parse_error_body(&body);
            proptest::prop_assert!(msg.chars().count() <= MAX_ERROR_TEXT);
            proptest::prop_assert!(code.is_some() || msg.is_empty());
            proptest::prop_assert!(!msg.chars().any(char::is_control));
        }
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
