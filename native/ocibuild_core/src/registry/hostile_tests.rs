//! The registry client against registries that misbehave: URLs on other origins, error
//! bodies that are not the spec's, servers too slow to wait for, absurd token lifetimes.
//! Every server is in-process ([`super::testing`]) and records which headers reached which
//! `host:port`.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use super::client::{Access, Registries, RegistryClient, Request, Scopes};
use super::retry::RetryPolicy;
use super::testing::fixtures::{self, TestImage};
use super::testing::oci::{Auth, Config, Registry};
use super::testing::{Bodies, Reply, Seen, Server};
use super::upload::{BlobUpload, LocalData};
use super::{progress, Credentials, Environment};
use crate::digest::Digest;
use crate::error::TimeoutPhase;
use crate::{Error, Result};

/// Two attempts, no waiting between them.
fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    }
}

fn env(pairs: &[(&str, &str)]) -> Environment {
    Environment::from_pairs(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v))),
    )
}

fn client_with(server: &Server, env: &Environment) -> Arc<RegistryClient> {
    Registries::with_retry(quick())
        .client(&server.addr, &server.addr, env)
        .unwrap()
}

fn client(server: &Server) -> Arc<RegistryClient> {
    client_with(server, &Environment::default())
}

fn basic() -> Credentials {
    Credentials::Basic {
        username: "u".into(),
        password: "p".into(),
    }
}

const BASIC_U_P: &str = "Basic dTpw";

fn push_access(credentials: Credentials) -> Access {
    Access {
        credentials,
        scopes: Scopes::push("a/b"),
    }
}

/// A registry that asks for Basic auth on every request without it and answers the others
/// with `route`.
fn needs_basic(
    route: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |req| {
        if req.has_authorization() {
            route(req)
        } else {
            Reply::status("401 Unauthorized").header("WWW-Authenticate", "Basic realm=\"r\"")
        }
    }
}

async fn upload(client: &RegistryClient, access: &Access, data: &[u8], chunk: u64) -> Result<u64> {
    let digest = Digest::of(data);
    let local = LocalData::Bytes(bytes::Bytes::copy_from_slice(data));
    let sink = progress::ignore();
    BlobUpload {
        client,
        access,
        repo: "a/b",
        digest: &digest,
        size: data.len() as u64,
        data: &local,
        progress: &sink,
    }
    .run(None, chunk)
    .await
}

async fn get(client: &RegistryClient, access: &Access, path: &str) -> Result<reqwest::Response> {
    let request = Request::new(Method::GET, client.url("a/b", path), format!("GET {path}"));
    client.execute(access, &request).await
}

/// Wait (bounded) for another task's effect; a test never reads it once and hopes.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_no_authorization(server: &Server) {
    let seen = server.seen();
    assert!(!seen.is_empty(), "{} saw nothing", server.addr);
    for req in seen {
        assert!(
            !req.has_authorization(),
            "{} {} reached {} with credentials",
            req.method,
            req.target,
            req.at
        );
    }
}

// An upload Location on another port, or another host, is where S3-backed registries send
// the bytes: followed, but without our credentials.
#[tokio::test]
async fn an_upload_location_elsewhere_gets_no_credentials() {
    for storage_ip in ["127.0.0.1", "127.0.0.2"] {
        let storage = Server::start(storage_ip, |req| match req.method.as_str() {
            "PUT" => Reply::status("201 Created"),
            _ => Reply::status("404 Not Found"),
        })
        .await;
        let location = storage.url("/upload/1?_state=abc");
        let registry = Server::start(
            "127.0.0.1",
            needs_basic(move |_| {
                Reply::status("202 Accepted").header("Location", location.clone())
            }),
        )
        .await;
        let client = client(&registry);
        let sent = upload(&client, &push_access(basic()), b"ten bytes!", 1 << 20)
            .await
            .unwrap();
        assert_eq!(sent, 10);
        assert_no_authorization(&storage);
        let put = storage
            .seen()
            .into_iter()
            .find(|r| r.method == "PUT")
            .unwrap();
        assert_eq!(put.body, b"ten bytes!");
        assert!(put
            .target
            .starts_with("/upload/1?_state=abc&digest=sha256%3A"));
        // The first POST met the challenge; the second answered it.
        let posts: Vec<_> = registry
            .seen()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect();
        assert_eq!(posts.len(), 2);
        assert_eq!(posts[1].header("authorization"), Some(BASIC_U_P));
    }
}

// The same rule for the Locations of PATCH answers during a chunked upload.
#[tokio::test]
async fn chunk_locations_elsewhere_get_no_credentials() {
    let storage = Server::start("127.0.0.2", |req| {
        let end = req
            .header("content-range")
            .and_then(|r| r.split_once('-'))
            .map(|(_, end)| end.to_string());
        match (req.method.as_str(), end) {
            ("PATCH", Some(end)) => Reply::status("202 Accepted")
                .header("Location", "/storage/next")
                .header("Range", format!("0-{end}")),
            ("PUT", _) => Reply::status("201 Created"),
            _ => Reply::status("400 Bad Request"),
        }
    })
    .await;
    let elsewhere = storage.url("/storage/first");
    let registry = Server::start(
        "127.0.0.1",
        needs_basic(move |req| match req.method.as_str() {
            "POST" => Reply::status("202 Accepted").header("Location", "/v2/a/b/blobs/uploads/u1"),
            "PATCH" => Reply::status("202 Accepted")
                .header("Location", elsewhere.clone())
                .header("Range", "0-3"),
            _ => Reply::status("400 Bad Request"),
        }),
    )
    .await;
    let client = client(&registry);
    let data = b"0123456789";
    upload(&client, &push_access(basic()), data, 4)
        .await
        .unwrap();
    assert_no_authorization(&storage);
    let to_storage = storage.seen();
    let methods: Vec<_> = to_storage.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["PATCH", "PATCH", "PUT"]);
    let patched: Vec<u8> = to_storage.iter().flat_map(|r| r.body.clone()).collect();
    assert_eq!(patched, b"456789");
    let first_patch = registry
        .seen()
        .into_iter()
        .find(|r| r.method == "PATCH" && r.has_authorization())
        .unwrap();
    assert_eq!(first_patch.body, b"0123");
}

// A host we were redirected to must not get to name a token realm for our credentials.
#[tokio::test]
async fn a_challenge_from_elsewhere_is_not_answered() {
    let realm = Server::start("127.0.0.2", |_| {
        Reply::status("200 OK").body(r#"{"token":"t"}"#)
    })
    .await;
    let realm_url = realm.url("/token");
    let storage = Server::start("127.0.0.2", move |_| {
        Reply::status("401 Unauthorized")
            .header("WWW-Authenticate", format!("Bearer realm=\"{realm_url}\""))
    })
    .await;
    let blob = storage.url("/blob");
    let registry = Server::start(
        "127.0.0.1",
        needs_basic(move |_| {
            Reply::status("307 Temporary Redirect").header("Location", blob.clone())
        }),
    )
    .await;
    let client = client(&registry);
    let access = push_access(basic());
    let response = get(&client, &access, "blobs/sha256:00").await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let err = client.error_from(response, &access, "GET blob").await;
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(realm.seen().is_empty(), "the foreign realm was asked");
    assert_no_authorization(&storage);
}

// Basic credentials go to the realm the registry named; when the realm redirects to another
// host, that host gets the token request without them.
#[tokio::test]
async fn a_realm_redirect_elsewhere_gets_no_credentials() {
    let issuer = Server::start("127.0.0.2", |_| {
        Reply::status("200 OK").body(r#"{"token":"tok","expires_in":300}"#)
    })
    .await;
    let issuer_url = issuer.url("/issue");
    let realm = Server::start("127.0.0.1", move |req| {
        let query = req.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        Reply::status("307 Temporary Redirect").header("Location", format!("{issuer_url}?{query}"))
    })
    .await;
    let challenge = format!("Bearer realm=\"{}\",service=\"reg\"", realm.url("/token"));
    let registry = Server::start("127.0.0.1", move |req| match req.header("authorization") {
        Some("Bearer tok") => Reply::status("200 OK").body("{}"),
        _ => Reply::status("401 Unauthorized").header("WWW-Authenticate", challenge.clone()),
    })
    .await;
    let client = client(&registry);
    let response = get(&client, &push_access(basic()), "manifests/latest")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let asked = realm.seen();
    assert_eq!(asked[0].header("authorization"), Some(BASIC_U_P));
    assert!(asked[0].target.contains("service=reg"));
    assert_no_authorization(&issuer);
}

// A registry's error page, a huge body, or JSON beyond the spec's fields: nothing but the
// spec's code and message (cut short) reaches the error.
#[tokio::test]
async fn error_bodies_are_not_echoed() {
    let long = format!("bad\u{1b}[31m {}", "m".repeat(1000));
    let cases: Vec<(Vec<u8>, Option<&str>, String)> = vec![
        (b"<html><body>secret internals</body></html>".to_vec(), None, String::new()),
        (vec![b'A'; 1 << 20], None, String::new()),
        (
            serde_json::json!({"errors": [{"code": "DENIED", "message": long, "detail": {"internal": "secret internals"}}], "debug": "secret internals"})
                .to_string()
                .into_bytes(),
            Some("DENIED"),
            format!("bad [31m {}", "m".repeat(1000)).chars().take(200).collect(),
        ),
        (br#"{"errors":[{"message":"secret internals"}]}"#.to_vec(), None, String::new()),
    ];
    for (body, code, message) in cases {
        let registry = Server::start("127.0.0.1", move |_| {
            Reply::status("400 Bad Request").body(body.clone())
        })
        .await;
        let client = client(&registry);
        let access = push_access(Credentials::Anonymous);
        let response = get(&client, &access, "manifests/latest").await.unwrap();
        let err = client.error_from(response, &access, "GET manifest").await;
        match &err {
            Error::Registry {
                status: 400,
                code: c,
                message: m,
                ..
            } => {
                assert_eq!(c.as_deref(), code);
                assert_eq!(m, &message);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}

fn timeout_phase(result: Result<impl std::fmt::Debug>) -> TimeoutPhase {
    match result {
        Err(Error::Timeout {
            phase, registry, ..
        }) => {
            assert!(registry.starts_with("127.0.0.1:"), "{registry}");
            phase
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

// A registry that never answers: each attempt ends at the headers' deadline, and the
// retries with it.
#[tokio::test]
async fn silent_registries_time_out_at_the_headers_deadline() {
    let registry = Server::start("127.0.0.1", |_| Reply::Hang).await;
    let client = client_with(&registry, &env(&[("OCIBUILD_REGISTRY_TIMEOUT", "0.2")]));
    let started = Instant::now();
    let result = get(
        &client,
        &push_access(Credentials::Anonymous),
        "manifests/latest",
    )
    .await;
    let elapsed = started.elapsed();
    let limit = Duration::from_millis(200);
    assert_eq!(timeout_phase(result), TimeoutPhase::Headers { limit });
    assert!(elapsed >= 2 * limit, "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    eventually("both attempts to reach the registry", || {
        registry.seen().len() == 2
    })
    .await;
}

// One byte every 50 ms is far below 100 bytes/s over 0.3 s windows.
#[tokio::test]
async fn trickling_bodies_time_out_at_the_minimum_rate() {
    let registry = Server::start("127.0.0.1", |_| Reply::Trickle {
        len: 10_000,
        every: Duration::from_millis(50),
    })
    .await;
    let client = client_with(
        &registry,
        &env(&[
            ("OCIBUILD_MIN_TRANSFER_RATE", "100"),
            ("OCIBUILD_TRANSFER_RATE_WINDOW", "0.3"),
        ]),
    );
    let started = Instant::now();
    let response = get(
        &client,
        &push_access(Credentials::Anonymous),
        "manifests/latest",
    )
    .await
    .unwrap();
    let result = client.read_body(response, 1 << 20, "GET manifest").await;
    let phase = timeout_phase(result);
    assert_eq!(
        phase,
        TimeoutPhase::Body {
            min_rate: 100,
            window: Duration::from_millis(300)
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

// A registry that stops reading our upload: the body stops moving, the rate check ends it.
#[tokio::test]
async fn a_registry_that_stops_reading_our_upload_times_out() {
    let registry = Server::start_with("127.0.0.1", Bodies::Stall, |req| {
        match req.method.as_str() {
            "POST" => Reply::status("202 Accepted").header("Location", "/v2/a/b/blobs/uploads/u1"),
            _ => Reply::status("201 Created"),
        }
    })
    .await;
    let client = client_with(
        &registry,
        &env(&[
            ("OCIBUILD_MIN_TRANSFER_RATE", "1000000"),
            ("OCIBUILD_TRANSFER_RATE_WINDOW", "0.3"),
        ]),
    );
    let data = vec![7u8; 32 << 20];
    let started = Instant::now();
    let result = upload(
        &client,
        &push_access(Credentials::Anonymous),
        &data,
        1 << 30,
    )
    .await;
    assert!(
        matches!(timeout_phase(result), TimeoutPhase::Body { .. }),
        "not a body timeout"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

// A registry that takes the whole upload and then never answers: the headers' deadline
// starts once the body is out, and ends it.
#[tokio::test]
async fn a_registry_silent_after_our_upload_times_out() {
    let registry = Server::start("127.0.0.1", |req| match req.method.as_str() {
        "POST" => Reply::status("202 Accepted").header("Location", "/v2/a/b/blobs/uploads/u1"),
        _ => Reply::Hang,
    })
    .await;
    let client = client_with(&registry, &env(&[("OCIBUILD_REGISTRY_TIMEOUT", "0.3")]));
    let data = vec![7u8; 1 << 20];
    let started = Instant::now();
    let result = upload(
        &client,
        &push_access(Credentials::Anonymous),
        &data,
        1 << 30,
    )
    .await;
    // Two attempts of 0.3 s: the deadline runs from the end of the body, not from a later
    // check of the transfer rate (a 60 s window by default).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        timeout_phase(result),
        TimeoutPhase::Headers {
            limit: Duration::from_millis(300)
        }
    );
    eventually("the uploads to arrive whole", || {
        let puts: Vec<_> = registry
            .seen()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .collect();
        puts.len() == 2 && puts.iter().all(|p| p.body == data)
    })
    .await;
}

// `expires_in: 0` is read as a minute (one token serves both pulls), and 2^64-1 neither
// panics nor overflows.
#[tokio::test]
async fn token_lifetimes_are_clamped() {
    for expires_in in ["0", "18446744073709551615", "-1", "1e300"] {
        let registry = Registry::start(Config {
            auth: Auth::Token {
                username: "u".into(),
                password: "p".into(),
                anonymous_pull: true,
                uses: None,
            },
            token_expires_in: Some(expires_in),
            ..Config::default()
        })
        .await;
        let image = TestImage::new(&[1024], 1);
        image.seed(&registry, "a/b", "latest");
        let registries = fixtures::registries();
        for _ in 0..2 {
            let pulled = fixtures::pull(
                &registries,
                &registry,
                "a/b:latest",
                &Credentials::Anonymous,
            )
            .await
            .unwrap_or_else(|e| panic!("expires_in {expires_in}: {e:?}"));
            assert_eq!(pulled[0].base.manifest_digest, image.digest());
        }
        assert_eq!(registry.tokens_issued(), 1, "expires_in {expires_in}");
    }
}

// A token the registry stops taking before its (clamped) lifetime is over is replaced on the
// 401: the cached header is dropped and a new token fetched, once.
#[tokio::test]
async fn a_token_refused_before_its_time_is_renewed() {
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = issued.clone();
    let tokens = Server::start("127.0.0.1", move |_| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Reply::status("200 OK").body(format!(r#"{{"token":"tok{n}","expires_in":2}}"#))
    })
    .await;
    let challenge = format!("Bearer realm=\"{}\"", tokens.url("/token"));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let registry = Server::start("127.0.0.1", move |req| {
        // tok1 serves one request, then counts as expired; tok2 serves the rest.
        let ok = match req.header("authorization") {
            Some("Bearer tok1") => answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0,
            Some("Bearer tok2") => true,
            _ => false,
        };
        if ok {
            Reply::status("200 OK").body("{}")
        } else {
            Reply::status("401 Unauthorized").header("WWW-Authenticate", challenge.clone())
        }
    })
    .await;
    let client = client(&registry);
    let access = push_access(Credentials::Anonymous);
    for _ in 0..3 {
        let response = get(&client, &access, "manifests/latest").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(client.token_fetches(), 2);
    assert_eq!(tokens.seen().len(), 2);
}
