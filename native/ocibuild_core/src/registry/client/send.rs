//! The one request loop every registry request goes through, token fetches included:
//! send with the header we hold, answer a 401 once, retry what is worth retrying.
//!
//! Auth follows the distribution spec's token flow. The first request goes out with whatever
//! we already hold for its scope (nothing, at first); a 401 carries a `WWW-Authenticate`
//! challenge, which we answer once (Basic header, or a bearer token from the realm), cache
//! per (scopes, credentials) and reuse for every later request of any job. A 401 with a cached
//! header drops it and negotiates again (tokens expire). Only the registry's own 401s are
//! answered: a storage host we were redirected to must not get to name a realm for our
//! credentials.
//!
//! Retries: connection failures, timeouts and 408/429/5xx are retried with exponential
//! backoff (honouring `Retry-After`) up to the policy's attempt count.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use url::Url;

use super::exchange::Failure;
use super::RegistryClient;
use crate::registry::auth::token::{self, MAX_TOKEN_RESPONSE};
use crate::registry::auth::{self, challenge, Access, Answer, Challenge};
use crate::registry::errors;
use crate::registry::origin;
use crate::registry::request::Request;
use crate::registry::retry;
use crate::{Error, Result};

/// Whose `Authorization` a request carries.
pub(super) enum Auth<'a> {
    /// The registry's: the header cached for this access; a 401 from the registry's own
    /// origin is answered once.
    Registry(&'a Access),
    /// A token realm's: this header (if any), only to `home`'s origin; a 401 is the answer.
    Realm {
        home: &'a Url,
        header: Option<&'a HeaderValue>,
    },
}

impl RegistryClient {
    /// Send `request` with `access`'s credentials, answering a 401 once and retrying
    /// connection failures, timeouts and 408/429/5xx (unless the request is `once`). With
    /// `expect` statuses, any other status is an error; otherwise every response that is not
    /// a retryable failure comes back for the caller to judge.
    pub async fn execute(&self, access: &Access, request: &Request) -> Result<Response> {
        let attempts = if request.retries {
            self.retry.max_attempts
        } else {
            1
        };
        let response = self
            .run(Auth::Registry(access), request, attempts)
            .await
            .map_err(|f| self.failure_error(&request.action, f))?;
        if request.expect.is_empty() || request.expect.contains(&response.status()) {
            return Ok(response);
        }
        Err(self.error_from(response, access, &request.action).await)
    }

    /// The loop itself. A failure that is not worth another try, or the last one, is
    /// returned as is, for the caller to say whose it was.
    pub(super) async fn run(
        &self,
        auth: Auth<'_>,
        request: &Request,
        max_attempts: u32,
    ) -> std::result::Result<Response, Failure> {
        let mut attempt = 0u32;
        let mut renegotiated = false;
        loop {
            attempt += 1;
            let (home, sent_auth) = match &auth {
                Auth::Registry(access) => (&self.base, self.auth.header(access)),
                Auth::Realm { home, header } => (*home, header.cloned()),
            };
            let response = match self.exchange(home, request, sent_auth.as_ref()).await {
                Ok(r) => r,
                Err(f) if attempt < max_attempts && f.is_retryable() => {
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                    continue;
                }
                Err(f) => return Err(f),
            };
            let status = response.status();
            if let Auth::Registry(access) = &auth {
                let ours = origin::same_origin(&self.base, response.url());
                if status == StatusCode::UNAUTHORIZED && !renegotiated && ours {
                    renegotiated = true;
                    let challenges = challenges(&response);
                    self.negotiate(access, &challenges, sent_auth.as_ref(), &request.action)
                        .await
                        .map_err(Failure::Final)?;
                    attempt -= 1; // answering a challenge is not a failed attempt
                    continue;
                }
            }
            if retry::is_retryable_status(status.as_u16()) && attempt < max_attempts {
                let wait = retry_after(&response);
                tokio::time::sleep(self.retry.delay(attempt, wait)).await;
                continue;
            }
            return Ok(response);
        }
    }

    /// Answer a 401's challenges: Basic with the credentials, or a bearer token from the
    /// realm, kept in the auth cache. Fails with `Unauthorized` when there is nothing to
    /// answer with. Boxed: fetching a token goes through [`RegistryClient::run`] again.
    fn negotiate<'a>(
        &'a self,
        access: &'a Access,
        challenges: &'a [Challenge],
        sent: Option<&'a HeaderValue>,
        action: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let _turn = self.auth.turn().await;
            let current = self.auth.header(access);
            if current.is_some() && current.as_ref() != sent {
                // Another request negotiated while we waited: use its header.
                return Ok(());
            }
            self.auth.forget(access);
            match auth::choose(&self.registry, access, challenges)? {
                Answer::Header(header) => self.auth.remember(access, header, None),
                Answer::Token(bearer) => {
                    let (token, ttl) = self.fetch_token(access, bearer, action).await?;
                    let header = auth::answer::bearer_header(&token).ok_or_else(|| {
                        errors::auth(
                            &self.registry,
                            "the token server returned a token that is not a valid header value"
                                .into(),
                        )
                    })?;
                    self.auth.remember(access, header, Some(ttl));
                }
            }
            Ok(())
        })
    }

    async fn fetch_token(
        &self,
        access: &Access,
        challenge: &Challenge,
        action: &str,
    ) -> Result<(String, Duration)> {
        let asked = token::token_request(
            &self.registry,
            &self.base,
            &self.insecure,
            access,
            challenge,
            action,
        )?;
        self.auth.count_token_fetch();
        let request = &asked.request;
        let realm = Auth::Realm {
            home: &asked.home,
            header: asked.authorization.as_ref(),
        };
        let response = match self.run(realm, request, self.retry.max_attempts).await {
            Ok(r) => r,
            Err(Failure::Transport(e)) => return Err(asked.transport_error(&self.registry, &e)),
            Err(f) => return Err(self.failure_error(&request.action, f)),
        };
        asked.check_status(&self.registry, response.status(), action)?;
        let body = self
            .read_body(response, MAX_TOKEN_RESPONSE, &request.action)
            .await?;
        let answer = token::parse_token_response(&body)
            .map_err(|why| errors::auth(&self.registry, why.into()))?;
        Ok((answer.token, answer.ttl))
    }

    pub(super) fn failure_error(&self, action: &str, failure: Failure) -> Error {
        match failure {
            Failure::Transport(e) => errors::http(&self.registry, action, &e),
            Failure::Timeout(phase) => errors::timeout(&self.registry, action, phase),
            Failure::Final(e) => e,
        }
    }
}

/// Every challenge of every `WWW-Authenticate` header of a 401.
fn challenges(response: &Response) -> Vec<Challenge> {
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenge::parse)
        .collect()
}

fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use reqwest::Method;

    use super::*;
    use crate::credentials::Credentials;
    use crate::registry::auth::Scopes;
    use crate::registry::retry::RetryPolicy;
    use crate::registry::testing::{Reply, Server};
    use crate::registry::{Environment, Registries};

    fn client(server: &Server, attempts: u32) -> Arc<RegistryClient> {
        let quick = RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        };
        Registries::with_retry(quick)
            .client(&server.addr, &server.addr, &Environment::default())
            .unwrap()
    }

    fn access() -> Access {
        Access {
            credentials: Credentials::basic("u", "p"),
            scopes: Scopes::pull("a/b"),
        }
    }

    /// Answers 503 (with `Retry-After: 0`) to the first `failures` requests, then `ok`.
    fn flaky(
        failures: usize,
        ok: impl Fn(&crate::registry::testing::Seen) -> Reply + Send + Sync + 'static,
    ) -> impl Fn(&crate::registry::testing::Seen) -> Reply + Send + Sync + 'static {
        let count = AtomicUsize::new(0);
        move |req| {
            if count.fetch_add(1, Ordering::SeqCst) < failures {
                Reply::status("503 Service Unavailable").header("Retry-After", "0")
            } else {
                ok(req)
            }
        }
    }

    // Token fetches go through the same loop as registry requests: a token server's 503 is
    // retried (honouring Retry-After) instead of failing the push.
    #[tokio::test]
    async fn a_token_servers_503_is_retried_like_any_request() {
        let tokens = Server::start(
            "127.0.0.1",
            flaky(1, |_| Reply::status("200 OK").body(r#"{"token":"tok"}"#)),
        )
        .await;
        let challenge = format!("Bearer realm=\"{}\",service=\"reg\"", tokens.url("/token"));
        let registry = Server::start("127.0.0.1", move |req| match req.header("authorization") {
            Some("Bearer tok") => Reply::status("200 OK").body("{}"),
            _ => Reply::status("401 Unauthorized").header("WWW-Authenticate", challenge.clone()),
        })
        .await;
        let client = client(&registry, 3);
        let request = Request::new(
            Method::GET,
            client.url("a/b", "manifests/1"),
            "GET manifest",
        )
        .expect(&[StatusCode::OK]);
        client.execute(&access(), &request).await.unwrap();
        assert_eq!(client.token_fetches(), 1);
        let seen = tokens.seen();
        assert_eq!(seen.len(), 2, "one 503, then the token");
        // Basic credentials go to the realm (its own origin) on every attempt.
        assert!(seen
            .iter()
            .all(|s| s.header("authorization") == Some("Basic dTpw")));
    }

    // A token server that keeps failing is an auth error naming it, after the policy's
    // attempts.
    #[tokio::test]
    async fn a_token_server_that_keeps_failing_is_an_auth_error() {
        let tokens = Server::start("127.0.0.1", |_| Reply::status("502 Bad Gateway")).await;
        let challenge = format!("Bearer realm=\"{}\"", tokens.url("/token"));
        let registry = Server::start("127.0.0.1", move |_| {
            Reply::status("401 Unauthorized").header("WWW-Authenticate", challenge.clone())
        })
        .await;
        let client = client(&registry, 2);
        let request = Request::new(
            Method::GET,
            client.url("a/b", "manifests/1"),
            "GET manifest",
        );
        let err = client.execute(&access(), &request).await.unwrap_err();
        match err {
            Error::Auth { why, .. } => assert!(why.contains("502"), "{why}"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(tokens.seen().len(), 2);
    }

    // `once` is one attempt; the default is the policy's; `expect` turns other statuses into
    // the registry's error.
    #[tokio::test]
    async fn once_means_one_attempt_and_expect_judges_the_status() {
        let registry = Server::start(
            "127.0.0.1",
            flaky(1, |_| {
                Reply::status("404 Not Found")
                    .body(r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#)
            }),
        )
        .await;
        let client = client(&registry, 3);
        let url = client.url("a/b", "manifests/1");
        let once = Request::new(Method::GET, url.clone(), "GET manifest").once();
        let response = client.execute(&access(), &once).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let expecting = Request::new(Method::GET, url, "GET manifest").expect(&[StatusCode::OK]);
        let err = client.execute(&access(), &expecting).await.unwrap_err();
        assert!(
            matches!(&err, Error::Registry { status: 404, code: Some(c), .. } if c == "MANIFEST_UNKNOWN"),
            "{err:?}"
        );
        assert_eq!(registry.seen().len(), 2);
    }
}
