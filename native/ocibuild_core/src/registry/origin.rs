//! Where credentials may go. Registries hand us URLs (redirects, upload `Location`s, token
//! realms); every request asks [`decide`] before it is sent, so one rule covers them all:
//!
//! - the registry's own origin (scheme, host and port) gets the credentials;
//! - any other origin gets the request without them (S3-backed registries redirect blob
//!   reads and hand out upload URLs on storage hosts, which sign their own URLs);
//! - HTTPS never continues over plain HTTP, with or without credentials;
//! - nothing but `http` and `https` is followed.
//!
//! Token realms are checked by [`realm_allowed`]: the credentials go there on purpose, so a
//! realm must be HTTPS unless the registry itself is one we reach over plain HTTP.
//!
//! ```
//! use url::Url;
//! use ocibuild_core::registry::origin::{decide, Carry, Refusal};
//! let home = Url::parse("https://ghcr.io/").unwrap();
//! let same = Url::parse("https://ghcr.io:443/v2/a/blobs/uploads/1").unwrap();
//! let s3 = Url::parse("https://bucket.s3.amazonaws.com/blob?sig=x").unwrap();
//! let plain = Url::parse("http://ghcr.io/v2/a/blobs/uploads/1").unwrap();
//! assert_eq!(decide(&home, &same), Ok(Carry::Credentials));
//! assert_eq!(decide(&home, &s3), Ok(Carry::Nothing));
//! assert_eq!(decide(&home, &plain), Err(Refusal::Downgrade));
//! ```

use url::Url;

use super::transport;

/// What a request may carry to a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carry {
    Credentials,
    Nothing,
}

/// Why a target is not followed at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// From HTTPS to plain HTTP.
    Downgrade,
    /// Neither `http` nor `https` (`file:`, `ftp:`, ...).
    Scheme,
}

/// May a request to `target` go out, and with the credentials that belong to `home`?
pub fn decide(home: &Url, target: &Url) -> Result<Carry, Refusal> {
    match target.scheme() {
        "https" => {}
        "http" if home.scheme() == "https" => return Err(Refusal::Downgrade),
        "http" => {}
        _ => return Err(Refusal::Scheme),
    }
    if same_origin(home, target) {
        Ok(Carry::Credentials)
    } else {
        Ok(Carry::Nothing)
    }
}

/// Scheme, host and port (the scheme's default when none is written) all equal.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().is_some()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `scheme://host:port` of a URL, without its path and query (upload URLs carry session
/// state, and signed storage URLs carry signatures): what errors may name.
pub fn origin_of(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// May we send credentials to `realm` to get a token for the registry at `registry`? HTTPS
/// always; plain HTTP only when the registry itself is reached over plain HTTP (loopback or
/// `OCIBUILD_INSECURE_REGISTRIES`) and so is the realm's host.
pub fn realm_allowed(registry: &Url, realm: &Url, insecure: &[String]) -> bool {
    match realm.scheme() {
        "https" => true,
        "http" => {
            let authority = match (realm.host_str(), realm.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => return false,
            };
            registry.scheme() == "http" && transport::scheme_for(&authority, insecure) == "http"
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn only_the_registrys_own_origin_gets_credentials() {
        let home = url("https://registry.example:5000/");
        assert_eq!(
            decide(&home, &url("https://REGISTRY.example:5000/v2/x?_state=1")),
            Ok(Carry::Credentials)
        );
        for elsewhere in [
            "https://registry.example/v2/x",
            "https://registry.example:5001/v2/x",
            "https://other.example:5000/v2/x",
            "https://registry.example.evil:5000/v2/x",
        ] {
            assert_eq!(
                decide(&home, &url(elsewhere)),
                Ok(Carry::Nothing),
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn https_never_downgrades_even_to_its_own_host() {
        let home = url("https://registry.example/");
        for target in [
            "http://registry.example/v2/x",
            "http://registry.example:443/v2/x",
            "http://127.0.0.1:5000/v2/x",
        ] {
            assert_eq!(
                decide(&home, &url(target)),
                Err(Refusal::Downgrade),
                "{target}"
            );
        }
        assert_eq!(
            decide(&home, &url("file:///etc/passwd")),
            Err(Refusal::Scheme)
        );
    }

    #[test]
    fn plain_http_registries_may_be_upgraded_and_keep_their_origin() {
        let home = url("http://127.0.0.1:5000/");
        assert_eq!(
            decide(&home, &url("http://127.0.0.1:5000/v2/x")),
            Ok(Carry::Credentials)
        );
        assert_eq!(
            decide(&home, &url("http://127.0.0.2:5000/v2/x")),
            Ok(Carry::Nothing)
        );
        assert_eq!(
            decide(&home, &url("https://127.0.0.1:5000/v2/x")),
            Ok(Carry::Nothing)
        );
    }

    #[test]
    fn realms_are_https_unless_the_registry_is_plain_http_too() {
        let tls = url("https://ghcr.io/");
        let local = url("http://localhost:5000/");
        let insecure = vec!["auth.lan".to_string()];
        assert!(realm_allowed(&tls, &url("https://ghcr.io/token"), &[]));
        assert!(realm_allowed(
            &local,
            &url("https://auth.docker.io/token"),
            &[]
        ));
        assert!(realm_allowed(
            &local,
            &url("http://127.0.0.1:5001/token"),
            &[]
        ));
        assert!(realm_allowed(
            &local,
            &url("http://auth.lan:8080/token"),
            &insecure
        ));
        assert!(!realm_allowed(
            &tls,
            &url("http://127.0.0.1:5001/token"),
            &[]
        ));
        assert!(!realm_allowed(
            &local,
            &url("http://auth.example/token"),
            &[]
        ));
        assert!(!realm_allowed(&local, &url("ftp://127.0.0.1/token"), &[]));
    }

    #[test]
    fn errors_name_the_origin_only() {
        assert_eq!(
            origin_of(&url("http://s3.example:9000/b/k?X-Amz-Signature=secret")),
            "http://s3.example:9000"
        );
    }

    proptest! {
        // For any pair of URLs: credentials only ever go to the home origin, and an HTTPS
        // home is never followed to plain HTTP.
        #[test]
        fn prop_decide_keeps_credentials_home(
            home_tls in any::<bool>(),
            target_scheme in prop::sample::select(vec!["http", "https", "ftp", "file"]),
            host in prop::sample::select(vec!["a.example", "b.example", "127.0.0.1", "127.0.0.2"]),
            port in prop::option::of(1u16..=65535),
            path in "[a-z0-9/?=&]{0,20}",
        ) {
            let home = url(if home_tls { "https://a.example/" } else { "http://a.example/" });
            let authority = match port { Some(p) => format!("{host}:{p}"), None => host.to_string() };
            let Ok(target) = Url::parse(&format!("{target_scheme}://{authority}/{path}")) else {
                return Ok(());
            };
            match decide(&home, &target) {
                Ok(Carry::Credentials) => prop_assert!(same_origin(&home, &target)),
                Ok(Carry::Nothing) => prop_assert!(!same_origin(&home, &target)),
                Err(Refusal::Downgrade) => prop_assert!(home_tls && target_scheme == "http"),
                Err(Refusal::Scheme) => prop_assert!(target_scheme != "http" && target_scheme != "https"),
            }
            if home_tls {
                prop_assert!(decide(&home, &target).is_err() || target.scheme() == "https");
            }
        }
    }
}
