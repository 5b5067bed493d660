//! How to answer a 401's challenges with the credentials we hold: a Basic header, a token
//! from the bearer realm, or nothing (the 401 stands).
//!
//! ```
//! use ocibuild_core::credentials::Credentials;
//! use ocibuild_core::registry::auth::{challenge, choose, Access, Answer, Scopes};
//! let access = Access { credentials: Credentials::basic("u", "p"), scopes: Scopes::pull("a") };
//! let asked = challenge::parse(r#"Basic realm="r""#);
//! assert!(matches!(choose("r", &access, &asked)?, Answer::Header(_)));
//! # Ok::<(), ocibuild_core::Error>(())
//! ```

use base64::Engine;
use reqwest::header::HeaderValue;

use super::challenge::Challenge;
use super::scopes::Access;
use crate::credentials::Credentials;
use crate::digest::Digest;
use crate::registry::errors;
use crate::{Error, Result};

/// What to do about a 401.
#[derive(Debug)]
pub enum Answer<'c> {
    /// Send this header from now on (Basic: no token server involved).
    Header(HeaderValue),
    /// Fetch a token from this bearer challenge's realm.
    Token(&'c Challenge),
}

/// The answer to `challenges` for `access`. A ready-made bearer token that got a 401, or a
/// Basic challenge without a username and password, is `Unauthorized`: there is nothing
/// better to send.
pub fn choose<'c>(
    registry: &str,
    access: &Access,
    challenges: &'c [Challenge],
) -> Result<Answer<'c>> {
    let unauthorized = || {
        errors::unauthorized(
            registry,
            access.scopes.describe(),
            reqwest::StatusCode::UNAUTHORIZED,
        )
    };
    if matches!(access.credentials, Credentials::Bearer(_)) {
        return Err(unauthorized());
    }
    if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
        return Ok(Answer::Token(bearer));
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return basic_header(&access.credentials)
            .map(Answer::Header)
            .ok_or_else(unauthorized);
    }
    Err(Error::Auth {
        registry: registry.to_string(),
        why: "401 without a Basic or Bearer challenge".into(),
    })
}

/// `Authorization: Basic` for a username and password; `None` for any other credentials.
pub fn basic_header(creds: &Credentials) -> Option<HeaderValue> {
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

/// `Authorization: Bearer`; `None` when the token cannot be a header value.
pub fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Who the credentials are, for cache keys: a digest, so the secret itself is not kept twice.
pub fn identity(creds: &Credentials) -> String {
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

#[cfg(test)]
mod tests {
    use super::super::{challenge, Scopes};
    use super::*;

    fn access(credentials: Credentials) -> Access {
        Access {
            credentials,
            scopes: Scopes::pull("a/b"),
        }
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
    fn bearer_challenges_win_over_basic() {
        let asked = challenge::parse(r#"Basic realm="r", Bearer realm="https://t/token""#);
        let answer = choose("r", &access(Credentials::Anonymous), &asked).unwrap();
        assert!(matches!(answer, Answer::Token(c) if c.scheme == "bearer"));
    }

    #[test]
    fn nothing_to_answer_with_is_unauthorized() {
        let basic = challenge::parse(r#"Basic realm="r""#);
        let err = choose("r", &access(Credentials::Anonymous), &basic).unwrap_err();
        assert!(
            matches!(err, Error::Unauthorized { status: 401, .. }),
            "{err:?}"
        );
        let bearer = challenge::parse(r#"Bearer realm="https://t/token""#);
        let token = access(Credentials::Bearer("t".into()));
        let err = choose("r", &token, &bearer).unwrap_err();
        assert!(
            matches!(err, Error::Unauthorized { status: 401, .. }),
            "{err:?}"
        );
        let err = choose("r", &access(Credentials::Anonymous), &[]).unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    }
}
