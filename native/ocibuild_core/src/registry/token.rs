//! A token server's answer (distribution's token spec): the token and how long to keep it.
//!
//! The lifetime is clamped as docker does: missing, unusable or under a minute means a
//! minute (so `expires_in: 0` does not make every request negotiate again), and absurdly
//! long lifetimes are capped so no time arithmetic can overflow.
//!
//! ```
//! use std::time::Duration;
//! use ocibuild_core::registry::token::{parse_token_response, MIN_TTL};
//! let t = parse_token_response(br#"{"token":"abc","expires_in":0}"#).unwrap();
//! assert_eq!((t.token.as_str(), t.ttl), ("abc", MIN_TTL));
//! ```

use std::time::Duration;

use serde_json::Value;

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
