//! Auth flows through push and pull: anonymous, Basic, Bearer tokens from a token endpoint
//! (anonymous pull, refused push, one token per push, a ready token), and tokens that expire
//! mid-push and are fetched again.

use super::fixtures::{pull, registries, Push, TestImage};
use super::oci::{Auth, Config, Registry};
use crate::registry::Credentials;
use crate::Error;

const USER: &str = "ociuser";
const PASSWORD: &str = "s3cret-pw";

fn user() -> Credentials {
    Credentials::basic(USER, PASSWORD)
}

fn basic_registry() -> Config {
    Config {
        auth: Auth::Basic {
            username: USER.into(),
            password: PASSWORD.into(),
        },
        ..Config::default()
    }
}

fn token_registry(uses: Option<usize>) -> Config {
    Config {
        auth: Auth::Token {
            username: USER.into(),
            password: PASSWORD.into(),
            anonymous_pull: true,
            uses,
        },
        ..Config::default()
    }
}

fn assert_unauthorized<T: std::fmt::Debug>(result: crate::Result<T>) {
    assert!(
        matches!(result, Err(Error::Unauthorized { status: 401, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_open_registry_is_used_without_credentials() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[100 * 1024], 20);
    Push::new()
        .run(&registry, "open/app:1", &[image.push_image()])
        .await
        .unwrap();
    let pulled = pull(
        &registries(),
        &registry,
        "open/app:1",
        &Credentials::Anonymous,
    )
    .await
    .unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].base.manifest, image.manifest);
    assert_eq!(pulled[0].base.manifest_digest, image.digest());
    assert!(registry.seen().iter().all(|r| !r.has_authorization()));
}

#[tokio::test]
async fn basic_auth_refuses_wrong_credentials_and_takes_the_right_ones() {
    let registry = Registry::start(basic_registry()).await;
    let image = TestImage::new(&[100 * 1024], 21);
    for refused in [
        Credentials::Anonymous,
        Credentials::basic(USER, "wrong"),
        Credentials::basic("", ""),
    ] {
        assert_unauthorized(
            Push::new()
                .credentials(refused)
                .run(&registry, "auth/app:no", &[image.push_image()])
                .await,
        );
    }
    // Requests without credentials from `from` on: only those that met the challenge.
    let unanswered = |from: usize| {
        registry.seen()[from..]
            .iter()
            .filter(|r| !r.has_authorization())
            .count()
    };
    let before = registry.seen().len();
    Push::new()
        .credentials(user())
        .run(&registry, "auth/app:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "auth/app", "1");
    // The two blobs' HEADs go out together, before either has met the challenge.
    assert!(unanswered(before) <= 2, "{}", unanswered(before));
    let before = registry.seen().len();
    let pulled = pull(&registries(), &registry, "auth/app:1", &user())
        .await
        .unwrap();
    assert_eq!(pulled[0].base.manifest_digest, image.digest());
    assert_eq!(unanswered(before), 1);
    assert!(registry.manifest("auth/app", "no").is_none());
}

// The token flow: the challenge names the realm; the user's credentials go to it once for
// the whole chunked push (one token for the push scope); anonymous callers may pull but not
// push; a ready token is used as is.
#[tokio::test]
async fn bearer_tokens_serve_a_whole_push() {
    let registry = Registry::start(token_registry(None)).await;
    let image = TestImage::new(&[600 * 1024], 22);
    let push = Push::new().credentials(user()).chunked(128 * 1024);
    push.run(&registry, "tok/app:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "tok/app", "1");
    assert_eq!(registry.tokens_issued(), 1);
    let asked = &registry.requests("GET", "/token?")[0];
    assert!(asked.has_authorization());
    assert!(
        asked
            .target
            .contains("scope=repository%3Atok%2Fapp%3Apull%2Cpush"),
        "{}",
        asked.target
    );
    assert!(asked.target.contains("service=test"));
    // The registry saw the user's password nowhere but in the token request.
    let bearer = registry
        .seen()
        .iter()
        .filter(|r| !r.target.starts_with("/token"))
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect::<Vec<_>>();
    assert!(
        bearer.iter().all(|h| h.starts_with("Bearer ")),
        "{bearer:?}"
    );

    // Anonymous: pull yes, push no.
    let pulled = pull(
        &registries(),
        &registry,
        "tok/app:1",
        &Credentials::Anonymous,
    )
    .await
    .unwrap();
    assert_eq!(pulled[0].base.manifest_digest, image.digest());
    assert_unauthorized(
        Push::new()
            .run(&registry, "tok/anon:1", &[image.push_image()])
            .await,
    );

    // A token obtained elsewhere, used as is: no token request.
    let token = bearer[0].trim_start_matches("Bearer ").to_string();
    let issued = registry.tokens_issued();
    let other = TestImage::new(&[1024], 23);
    Push::new()
        .credentials(Credentials::Bearer(token))
        .run(&registry, "tok/app:ready", &[other.push_image()])
        .await
        .unwrap();
    other.assert_in(&registry, "tok/app", "ready");
    assert_eq!(registry.tokens_issued(), issued);
}

// Tokens that stop working after three requests (expired before their announced lifetime):
// each refusal drops the cached token and fetches a new one, and the push completes.
#[tokio::test]
async fn expired_tokens_are_fetched_again_mid_push() {
    let registry = Registry::start(token_registry(Some(3))).await;
    let image = TestImage::new(&[5 * 64 * 1024], 24);
    Push::new()
        .credentials(user())
        .chunked(64 * 1024)
        .run(&registry, "tok/expiring:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "tok/expiring", "1");
    let issued = registry.tokens_issued();
    // HEADs, POSTs, five PATCHes, PUTs and the manifest: at least twelve requests, at most
    // three per token.
    assert!(issued >= 4, "{issued} tokens");
}
