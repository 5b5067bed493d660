//! The `Authorization` headers a registry client has negotiated, per (scopes, credentials),
//! reused by every later request of any job until they expire.
//!
//! Parallel requests of a push all meet the first 401 together; [`AuthCache::turn`]
//! serialises negotiation, and a request whose header was already replaced by another's
//! negotiation just retries with the new one, so one token serves them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;

use super::answer::{bearer_header, identity};
use super::scopes::{Access, Scopes};
use crate::credentials::Credentials;

/// The cache key: scopes plus a fingerprint of the credentials.
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

pub struct AuthCache {
    entries: Mutex<HashMap<AuthKey, CachedAuth>>,
    /// Held while answering a challenge, so parallel requests negotiate once.
    negotiating: tokio::sync::Mutex<()>,
    /// Token fetches made, for tests that check auth reuse.
    token_fetches: AtomicU64,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache {
            entries: Mutex::default(),
            negotiating: tokio::sync::Mutex::new(()),
            token_fetches: AtomicU64::new(0),
        }
    }
}

impl AuthCache {
    /// The header to send for `access` now: a ready-made token as is (for every scope), else
    /// a negotiated one that has not expired.
    pub fn header(&self, access: &Access) -> Option<HeaderValue> {
        if let Credentials::Bearer(token) = &access.credentials {
            return bearer_header(token);
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let cached = entries.get(&key(access))?;
        match cached.expires {
            Some(t) if t <= Instant::now() => None,
            _ => Some(cached.header.clone()),
        }
    }

    pub fn forget(&self, access: &Access) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&key(access));
    }

    /// Keep `header` for `access`, for `ttl` (a token's lifetime) or for good (Basic).
    pub fn remember(&self, access: &Access, header: HeaderValue, ttl: Option<Duration>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Renew a little early so a token does not expire mid-request: 10 s early, or half
        // way through a token shorter-lived than 20 s.
        let expires =
            ttl.and_then(|t| Instant::now().checked_add(t - (t / 2).min(Duration::from_secs(10))));
        entries.insert(key(access), CachedAuth { header, expires });
    }

    /// Wait for the turn to negotiate; held until the guard drops.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.negotiating.lock().await
    }

    pub fn count_token_fetch(&self) {
        self.token_fetches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn token_fetches(&self) -> u64 {
        self.token_fetches.load(Ordering::Relaxed)
    }
}

fn key(access: &Access) -> AuthKey {
    AuthKey {
        scopes: access.scopes.clone(),
        identity: identity(&access.credentials),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(user: &str) -> Access {
        Access {
            credentials: Credentials::basic(user, "p"),
            scopes: Scopes::pull("a"),
        }
    }

    #[test]
    fn headers_are_kept_per_credentials_and_expire() {
        let cache = AuthCache::default();
        let h = HeaderValue::from_static("Bearer x");
        cache.remember(&access("u"), h.clone(), Some(Duration::from_secs(60)));
        assert_eq!(cache.header(&access("u")), Some(h));
        assert_eq!(cache.header(&access("other")), None);
        // A token with no lifetime left is renewed before it is ever sent.
        cache.remember(
            &access("u"),
            HeaderValue::from_static("Bearer y"),
            Some(Duration::ZERO),
        );
        assert_eq!(cache.header(&access("u")), None);
        cache.forget(&access("u"));
        assert_eq!(cache.header(&access("u")), None);
    }
}
