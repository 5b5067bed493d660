//! The token server's side of the token flow (distribution's token spec): the request for a
//! bearer challenge's realm ([`token_request`]) and its answer: the token and how long to
//! keep it ([`parse_token_response`]). The client sends the request through its one retry
//! loop, like any other.
//!
//! The lifetime is clamped as docker does: missing, unusable or under a minute means a
//! minute (so `expires_in: 0` does not make every request negotiate again), and absurdly
//! long lifetimes are capped so no time arithmetic can overflow.
//!
//! ```
//! use std::time::Duration;
//! use ocibuild_core::registry::auth::token::{parse_token_response, MIN_TTL};
//! let t = parse_token_response(br#"{"token":"abc","expires_in":0}"#).unwrap();
//! assert_eq!((t.token.as_str(), t.ttl), ("abc", MIN_TTL));
//! ```

use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use super::answer::basic_header;
use super::challenge::Challenge;
use super::scopes::Access;
use crate::credentials::Credentials;
use crate::registry::errors;
use crate::registry::origin;
use crate::registry::request::{Body, Request};
use crate::Result;

/// A token server's answer is a small JSON document; more than this is refused.
pub const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// How to ask a realm for a token for one job's scopes.
pub struct TokenRequest {
    pub request: Request,
    /// The realm's own origin: where its credentials belong; a redirect elsewhere gets none.
    pub home: Url,
    /// `Authorization` for the realm (Basic), if the credentials call for one.
    pub authorization: Option<HeaderValue>,
    /// The realm's host, for errors.
    pub realm_host: String,
    /// Our scopes, then the challenge's own (in case it asks for something else).
    pub scopes: Vec<String>,
}

/// The request for `challenge`'s realm: an OAuth2 refresh-token grant (POST) with an
/// identity token, as docker does; else a GET with the scopes in the query and Basic
/// credentials if we have them. A realm must be HTTPS unless the registry itself is plain
/// HTTP on loopback or listed as insecure (`registry` names it in errors, `base` is its URL).
pub fn token_request(
    registry: &str,
    base: &Url,
    insecure: &[String],
    access: &Access,
    challenge: &Challenge,
    action: &str,
) -> Result<TokenRequest> {
    let auth_error = |why: String| errors::auth(registry, why);
    let realm = challenge
        .params
        .get("realm")
        .ok_or_else(|| auth_error("bearer challenge without a realm".into()))?;
    let mut url =
        Url::parse(realm).map_err(|_| auth_error(format!("unparsable realm {realm:?}")))?;
    if !origin::realm_allowed(base, &url, insecure) {
        return Err(auth_error(format!(
            "token realm {} is not HTTPS; refusing to send credentials over plain HTTP",
            origin::origin_of(&url)
        )));
    }
    let realm_host = url.host_str().unwrap_or_default().to_string();
    let service = challenge.params.get("service");
    let mut scopes: Vec<String> = access.scopes.iter().map(str::to_string).collect();
    if let Some(s) = challenge.params.get("scope") {
        for one in s.split(' ') {
            if !one.is_empty() && !scopes.iter().any(|x| x == one) {
                scopes.push(one.to_string());
            }
        }
    }
    let action = format!("fetching a token from {realm_host} for {action}");
    let (request, authorization) = match &access.credentials {
        Credentials::IdentityToken { token, .. } => {
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
            let request = Request::new(Method::POST, url.clone(), action)
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                )
                .body(Body::Bytes(body.into()));
            (request, None)
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
            let request = Request::new(Method::GET, url.clone(), action);
            (request, basic_header(creds))
        }
    };
    Ok(TokenRequest {
        home: url,
        request,
        authorization,
        realm_host,
        scopes,
    })
}

impl TokenRequest {
    /// The realm's status: 401/403 mean the credentials do not reach the scopes; anything
    /// else but success means no token (`action` is what needed it).
    pub fn check_status(&self, registry: &str, status: StatusCode, action: &str) -> Result<()> {
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(errors::unauthorized(
                registry,
                self.scopes.join(" "),
                status,
            ));
        }
        if !status.is_success() {
            return Err(errors::auth(
                registry,
                format!(
                    "token server {} answered {status} while {action}",
                    self.realm_host
                ),
            ));
        }
        Ok(())
    }

    /// The connection to the realm failed: an auth error naming the token server.
    pub fn transport_error(&self, registry: &str, err: &reqwest::Error) -> crate::Error {
        errors::auth(
            registry,
            format!(
                "token server {}: {}",
                self.realm_host,
                errors::describe_error(err)
            ),
        )
    }
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The shortest lifetime we believe, as docker's `minimumTokenLifetimeSeconds`.
pub const MIN_TTL: Duration = Duration::from_secs(60);

/// The longest: a day. A job that outlives it negotiates again, which costs one request.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub token: String,
    pub ttl: Duration,
}

// The token is a secret: never in a debug print or a panic message.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// `token` (or OAuth2's `access_token`) and the clamped `expires_in` of a token server's
/// JSON answer; `Err` says, without quoting the body, why there is no token in it.
pub fn parse_token_response(body: &[u8]) -> Result<TokenResponse, &'static str> {
    let json: Value =
        serde_json::from_slice(body).map_err(|_| "the token server's answer is not JSON")?;
    let token = ["token", "access_token"]
        .iter()
        .filter_map(|k| json.get(k).and_then(Value::as_str))
        .find(|t| !t.is_empty())
        .ok_or("the token server's answer has no token")?;
    Ok(TokenResponse {
        token: token.to_string(),
        ttl: clamp_ttl(json.get("expires_in")),
    })
}

fn clamp_ttl(expires_in: Option<&Value>) -> Duration {
    let seconds = match expires_in {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| *f >= 1.0)
                    .map(|f| f.min(u64::MAX as f64) as u64)
            })
            .unwrap_or(0),
        _ => 0,
    };
    Duration::from_secs(seconds).clamp(MIN_TTL, MAX_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ttl(body: &str) -> Duration {
        parse_token_response(body.as_bytes()).unwrap().ttl
    }

    #[test]
    fn lifetimes_are_clamped() {
        assert_eq!(ttl(r#"{"token":"t"}"#), MIN_TTL);
        assert_eq!(ttl(r#"{"token":"t","expires_in":0}"#), MIN_TTL);
        assert_eq!(ttl(r#"{"token":"t","expires_in":-5}"#), MIN_TTL);
        assert_eq!(ttl(r#"{"token":"t","expires_in":"300"}"#), MIN_TTL);
        assert_eq!(
            ttl(r#"{"token":"t","expires_in":300}"#),
            Duration::from_secs(300)
        );
        assert_eq!(
            ttl(r#"{"token":"t","expires_in":300.7}"#),
            Duration::from_secs(300)
        );
        assert_eq!(
            ttl(r#"{"token":"t","expires_in":18446744073709551615}"#),
            MAX_TTL
        );
        assert_eq!(ttl(r#"{"token":"t","expires_in":1e308}"#), MAX_TTL);
    }

    #[test]
    fn access_token_is_the_oauth2_spelling() {
        let t = parse_token_response(br#"{"access_token":"a","token":""}"#).unwrap();
        assert_eq!(t.token, "a");
    }

    #[test]
    fn no_token_no_json() {
        assert!(parse_token_response(b"<html>").is_err());
        assert!(parse_token_response(br#"{"token":""}"#).is_err());
        assert!(parse_token_response(br#"{"token":5}"#).is_err());
        assert!(parse_token_response(b"[]").is_err());
    }

    #[test]
    fn debug_never_shows_the_token() {
        let t = parse_token_response(br#"{"token":"s3cret"}"#).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    proptest! {
        #[test]
        fn prop_token_response_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(t) = parse_token_response(&body) {
                prop_assert!(t.ttl >= MIN_TTL && t.ttl <= MAX_TTL);
            }
        }

        #[test]
        fn prop_token_response_ttl_always_within_bounds(
            expires in prop_oneof![
                any::<u64>().prop_map(|n| n.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| format!("{f:e}")),
                "[0-9]{1,40}",
                Just("null".to_string()),
                Just("\"60\"".to_string()),
                Just("[]".to_string()),
            ],
            token in "[A-Za-z0-9._-]{1,40}",
        ) {
            let body = format!(r#"{{"token":"{token}","expires_in":{expires}}}"#);
            match parse_token_response(body.as_bytes()) {
                Ok(t) => {
                    prop_assert_eq!(t.token, token);
                    prop_assert!(t.ttl >= MIN_TTL && t.ttl <= MAX_TTL);
                }
                // NaN and infinities print as JSON that is not JSON.
                Err(why) => prop_assert_eq!(why, "the token server's answer is not JSON"),
            }
        }
    }
}
