//! What a failed exchange with a registry becomes: the tagged [`Error`] a caller matches on.
//!
//! Every registry error names the registry and what we were doing (`GET manifest a/b:1`),
//! never a URL (upload URLs carry session state) and never more of a response body than the
//! spec's `code` and `message`, cleaned and cut short: a body may be huge, misleading, or hold
//! what was not meant for an error message.
//!
//! ```
//! use ocibuild_core::registry::errors::parse_error_body;
//! let (code, message) = parse_error_body(br#"{"errors":[{"code":"DENIED","message":"no"}]}"#);
//! assert_eq!((code.as_deref(), message.as_str()), (Some("DENIED"), "no"));
//! assert_eq!(parse_error_body(b"<html>oops"), (None, String::new()));
//! ```

use reqwest::StatusCode;
use url::Url;

use super::origin::{self, Refusal};
use crate::error::TimeoutPhase;
use crate::Error;

/// What of a registry's error body may reach an error term: the spec's `code` and `message`,
/// cut to this many characters.
pub const MAX_ERROR_TEXT: usize = 200;

/// How much of an error body is read at most; a slower or bigger one just tells us nothing.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// A registry's answer we cannot use (no `Location`, a redirect loop), with its status.
pub fn protocol(registry: &str, action: &str, status: StatusCode, why: &str) -> Error {
    Error::Registry {
        registry: registry.to_string(),
        action: action.to_string(),
        status: status.as_u16(),
        code: None,
        message: why.to_string(),
    }
}

/// A status we did not expect (other than 401/403: see [`unauthorized`]), with what the
/// body says in the spec's error shape.
pub fn status(registry: &str, action: &str, status: StatusCode, body: &[u8]) -> Error {
    let (code, message) = parse_error_body(body);
    Error::Registry {
        registry: registry.to_string(),
        action: action.to_string(),
        status: status.as_u16(),
        code,
        message,
    }
}

/// A 401 or 403 that stands: the credentials do not reach `scope`.
pub fn unauthorized(registry: &str, scope: String, status: StatusCode) -> Error {
    Error::Unauthorized {
        registry: registry.to_string(),
        scope,
        status: status.as_u16(),
    }
}

/// The token flow failed for a reason that is not the credentials.
pub fn auth(registry: &str, why: String) -> Error {
    Error::Auth {
        registry: registry.to_string(),
        why,
    }
}

/// The connection failed.
pub fn http(registry: &str, action: &str, err: &reqwest::Error) -> Error {
    Error::Http {
        registry: registry.to_string(),
        why: format!("{action}: {}", describe_error(err)),
    }
}

pub fn timeout(registry: &str, action: &str, phase: TimeoutPhase) -> Error {
    Error::Timeout {
        registry: registry.to_string(),
        action: action.to_string(),
        phase,
    }
}

/// A URL [`origin::decide`] will not let a request go to.
pub fn refusal(registry: &str, refusal: Refusal, target: &Url, action: &str) -> Error {
    match refusal {
        Refusal::Downgrade => Error::Downgrade {
            registry: registry.to_string(),
            to: origin::origin_of(target),
        },
        Refusal::Scheme => Error::Http {
            registry: registry.to_string(),
            why: format!("{action}: refusing to follow a {:?} URL", target.scheme()),
        },
    }
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
/// characters. Any other body (an HTML page, a proxy's text, a token) is not echoed at all.
pub fn parse_error_body(body: &[u8]) -> (Option<String>, String) {
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

    #[test]
    fn a_status_error_carries_the_spec_fields_only() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"gone\nsecret"}]}"#;
        let err = status("r", "GET blob", StatusCode::NOT_FOUND, body);
        match err {
            Error::Registry {
                status: 404,
                code: Some(code),
                message,
                ..
            } => assert_eq!(
                (code.as_str(), message.as_str()),
                ("BLOB_UNKNOWN", "gone secret")
            ),
            other => panic!("unexpected {other:?}"),
        }
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
}
