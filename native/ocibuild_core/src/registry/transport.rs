//! How we reach a registry: which scheme, which TLS roots, one HTTP client (and so one
//! keep-alive connection pool) per registry.
//!
//! HTTPS with the system's roots is the default. Plain HTTP is used only for loopback hosts
//! (`localhost`, `127.0.0.0/8`, `::1`) and for hosts the user lists in
//! `OCIBUILD_INSECURE_REGISTRIES` (comma separated, `host` or `host:port`). `SSL_CERT_FILE`
//! adds a CA bundle to the system roots (for a private registry's CA) rather than replacing them.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::Environment;
use crate::{Error, Result};

pub const INSECURE_ENV: &str = "OCIBUILD_INSECURE_REGISTRIES";

/// Where Debian, Fedora and Alpine keep the system CA bundle; read when the process's
/// `SSL_CERT_FILE` hid it from rustls-native-certs, so that variable only adds a CA.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The host part of `host`, `host:port`, `[::1]:port`.
pub fn host_only(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`: a registry on this machine, where TLS adds nothing.
pub fn is_loopback(authority: &str) -> bool {
    let host = host_only(authority);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `http` for loopback registries and those listed in `insecure` (exact `host:port` or bare
/// host entries), `https` for everything else.
pub fn scheme_for(authority: &str, insecure: &[String]) -> &'static str {
    let host = host_only(authority);
    let listed = insecure
        .iter()
        .any(|entry| entry.eq_ignore_ascii_case(authority) || entry.eq_ignore_ascii_case(host));
    if is_loopback(authority) || listed {
        "http"
    } else {
        "https"
    }
}

/// `OCIBUILD_INSECURE_REGISTRIES` as a list (empty entries and whitespace dropped).
pub fn insecure_list(env: &Environment) -> Vec<String> {
    env.var_string(INSECURE_ENV)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A rustls config trusting the system roots plus `SSL_CERT_FILE`, with ring as the provider.
pub fn tls_config(env: &Environment) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    // rustls-native-certs reads the process's SSL_CERT_FILE / SSL_CERT_DIR *instead of* the
    // system store when they are set, and opens that file without looking at what it is (a
    // FIFO there blocked the client's setup forever). So when they are set the system bundle
    // is read here, the process's SSL_CERT_FILE through the same regular-file check as
    // `env`'s, and only SSL_CERT_DIR (whose entries it stats as regular files first) is left
    // to it: those variables only ever add roots.
    let process_var = |v| std::env::var_os(v).filter(|x| !x.is_empty());
    let (process_file, process_dir) = (process_var("SSL_CERT_FILE"), process_var("SSL_CERT_DIR"));
    if process_file.is_none() && process_dir.is_none() {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    } else {
        for bundle in SYSTEM_BUNDLES.iter().map(Path::new).filter(|b| b.is_file()) {
            add_pem_file(&mut roots, bundle);
        }
        if let Some(pem) = process_file.and_then(|f| read_cert_file(Path::new(&f))) {
            roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).flatten());
        }
        for dir in process_dir.iter().flat_map(std::env::split_paths) {
            let found = rustls_native_certs::load_certs_from_paths(None, Some(&dir));
            roots.add_parsable_certificates(found.certs);
        }
    }
    if let Some(extra) = env.var_string("SSL_CERT_FILE") {
        let Some(pem) = read_cert_file(Path::new(&extra)) else {
            return Err(Error::InvalidOption {
                name: "SSL_CERT_FILE",
                why: format!(
                    "{extra} is not a readable regular file of at most {MAX_CERT_FILE} bytes"
                ),
            });
        };
        let added = roots
            .add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).flatten())
            .0;
        if added == 0 {
            return Err(Error::InvalidOption {
                name: "SSL_CERT_FILE",
                why: format!("{extra} holds no PEM certificate"),
            });
        }
    }
    // An empty store still serves plain-HTTP registries; HTTPS then fails with a clear error.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Http {
            registry: String::new(),
            why: format!("TLS setup: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A CA bundle is a few hundred KiB; the cap only stops a device or a huge file being read.
const MAX_CERT_FILE: u64 = 16 << 20;

/// The user's `SSL_CERT_FILE`, if it is a regular file within the cap. Opened with
/// O_NONBLOCK and checked once open, so a FIFO (even one swapped in after a first look)
/// fails at once instead of blocking the client's setup forever.
fn read_cert_file(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_CERT_FILE {
        return None;
    }
    let mut pem = Vec::new();
    file.take(MAX_CERT_FILE + 1).read_to_end(&mut pem).ok()?;
    (pem.len() as u64 <= MAX_CERT_FILE).then_some(pem)
}

fn add_pem_file(roots: &mut rustls::RootCertStore, path: &Path) -> usize {
    match CertificateDer::pem_file_iter(path) {
        Ok(iter) => roots.add_parsable_certificates(iter.flatten()).0,
        Err(_) => 0,
    }
}

/// One HTTP client: keep-alive pool and a bounded connect time. It follows no redirects:
/// the registry client does, so that each hop gets the same decision on credentials
/// (`origin::decide`) and the same timeouts as any other request.
pub fn http_client(tls: rustls::ClientConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(16)
        .user_agent(concat!("ocibuild/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Http {
            registry: String::new(),
            why: format!("building the HTTP client: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_use_plain_http() {
        for h in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.8.9.1",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(is_loopback(h), "{h}");
            assert_eq!(scheme_for(h, &[]), "http");
        }
        for h in [
            "ghcr.io",
            "registry.local:5000",
            "10.0.0.1:5000",
            "localhost.evil.com",
        ] {
            assert!(!is_loopback(h), "{h}");
            assert_eq!(scheme_for(h, &[]), "https");
        }
    }

    #[test]
    fn insecure_list_matches_host_or_host_port() {
        let list = vec!["registry.local".to_string(), "10.0.0.1:5000".to_string()];
        assert_eq!(scheme_for("registry.local:5000", &list), "http");
        assert_eq!(scheme_for("10.0.0.1:5000", &list), "http");
        assert_eq!(scheme_for("10.0.0.1:6000", &list), "https");
    }

    #[test]
    fn host_only_strips_ports_and_brackets() {
        assert_eq!(host_only("a.b:5000"), "a.b");
        assert_eq!(host_only("[::1]:5000"), "::1");
        assert_eq!(host_only("ghcr.io"), "ghcr.io");
    }

    use crate::special_files_testing::{mkfifo, within_bound};

    #[test]
    fn ssl_cert_file_must_be_a_regular_file_and_is_never_waited_on() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("ca.pem");
        mkfifo(&fifo);
        for path in [fifo.clone(), tmp.path().to_path_buf(), "/dev/zero".into()] {
            let env = Environment::from_pairs([("SSL_CERT_FILE".to_string(), path.clone().into())]);
            match within_bound(move || tls_config(&env)) {
                Err(Error::InvalidOption { name, why }) => {
                    assert_eq!(name, "SSL_CERT_FILE");
                    assert!(why.contains("not a readable regular file"), "{why}");
                }
                other => panic!("{}: expected an error, got {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn tls_config_builds_with_system_roots() {
        tls_config(&Environment::default()).unwrap();
    }
}
