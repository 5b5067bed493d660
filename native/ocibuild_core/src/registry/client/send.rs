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

use super::exchange::{Failure, Parts};
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
        let parts = Parts {
            method: &request.method,
            url: &request.url,
            headers: &request.headers,
            body: &request.body,
            action: &request.action,
        };
        let attempts = if request.retries {
            self.retry.max_attempts
        } else {
            1
        };
        let response = self
            .run(Auth::Registry(access), &parts, attempts)
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
        parts: &Parts<'_>,
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
            let response = match self.exchange(home, parts, sent_auth.as_ref()).await {
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
                    self.negotiate(access, &challenges, sent_auth.as_ref(), parts.action)
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
        let parts = Parts {
            method: &request.method,
            url: &request.url,
            headers: &request.headers,
            body: &request.body,
            action: &request.action,
        };
        let realm = Auth::Realm {
            home: &asked.home,
            header: asked.authorization.as_ref(),
        };
        let response = match self.run(realm, &parts, self.retry.max_attempts).await {
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
