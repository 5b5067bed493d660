//! Before a push builds anything: does the registry answer, and do the credentials let us
//! push to the repository? A release build spends seconds on its layers; a push that would
//! fail on an unreachable registry or a wrong password should fail before that, with the
//! error the push itself would have given.
//!
//! Two requests through the client every push uses (same auth cache, retries, timeouts and
//! origin rule; no second auth path):
//! - `GET /v2/`, the distribution spec's API check, with the push's access: it proves the
//!   registry answers and, where the registry asks for credentials there, gets them accepted
//!   (Basic, or a token for `repository:<repo>:pull,push`);
//! - `POST /v2/<repo>/blobs/uploads/`, as a push's first upload does: only a push-scoped
//!   token or account gets a 202 (a token server may hand out a token that lacks `push`, and
//!   some registries accept any token at `/v2/`). The session it opens is cancelled with a
//!   `DELETE` at once (best effort: a registry that keeps it expires it), as
//!   go-containerregistry's `CheckPushPermission` does.
//!
//! ```no_run
//! # async fn f(target: &ocibuild_core::registry::push::PushTarget) -> ocibuild_core::Result<()> {
//! use ocibuild_core::registry::{preflight, Environment, Registries};
//! preflight::check_push(&Registries::new(), &Environment::from_process(), target).await?;
//! # Ok(()) }
//! ```

use reqwest::{Method, StatusCode};

use super::auth::{Access, Scopes};
use super::push::PushTarget;
use super::request::Request;
use super::{Environment, Registries};
use crate::Result;

/// `Ok(())` when `target`'s registry answers and accepts its credentials for a push to its
/// repository; else the error a push would have met (`Http`, `Timeout`, `Unauthorized`,
/// `Auth`, `Registry`, `Downgrade`, ...).
pub async fn check_push(
    registries: &Registries,
    env: &Environment,
    target: &PushTarget,
) -> Result<()> {
    let client = registries.client(&target.registry, super::api_host(&target.registry), env)?;
    let access = Access {
        credentials: target.credentials.clone(),
        scopes: Scopes::push(&target.repository),
    };

    let mut api_root = client.url(&target.repository, "");
    api_root.set_path("/v2/");
    let ping = Request::new(Method::GET, api_root, "check the registry API (GET /v2/)")
        .expect(&[StatusCode::OK]);
    client.execute(&access, &ping).await?;

    let uploads = client.url(&target.repository, "blobs/uploads/");
    let action = format!("check push access to {}", target.repository);
    let post = Request::new(Method::POST, uploads, &action).expect(&[StatusCode::ACCEPTED]);
    let response = client.execute(&access, &post).await?;
    // Only a session we can name is cancelled; any answer to the DELETE is fine.
    if let Ok(session) = client.location(&response, &action) {
        let cancel = Request::new(Method::DELETE, session, "cancel the push check's upload").once();
        let _ = client.execute(&access, &cancel).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Credentials;
    use crate::registry::testing::fixtures::{env, registries, Push, TestImage};
    use crate::registry::testing::oci::{Auth, Config, Registry};
    use crate::Error;

    const USER: &str = "ociuser";
    const PASSWORD: &str = "s3cret-pw";

    fn target(addr: &str, credentials: Credentials) -> PushTarget {
        PushTarget::parse(addr, "team/app:1", &[], credentials).unwrap()
    }

    async fn check(addr: &str, credentials: Credentials) -> Result<()> {
        check_push(&registries(), &env(), &target(addr, credentials)).await
    }

    /// What a real push of a small image with `credentials` gives.
    async fn push(registry: &Registry, credentials: Credentials) -> Result<()> {
        let image = TestImage::new(&[1024], 7);
        Push::new()
            .credentials(credentials)
            .run(registry, "team/app:1", &[image.push_image()])
            .await
            .map(|_| ())
    }

    /// The tag, registry and status of an error: what a caller matches on. (The scopes a
    /// token request names can differ: a push's first request is a HEAD, whose challenge
    /// adds a pull scope.)
    fn kind(err: &Error) -> String {
        match err {
            Error::Unauthorized {
                registry, status, ..
            } => format!("unauthorized {registry} {status}"),
            Error::Http { registry, .. } => format!("http {registry}"),
            other => format!("{other:?}"),
        }
    }

    fn basic() -> Config {
        Config {
            auth: Auth::Basic {
                username: USER.into(),
                password: PASSWORD.into(),
            },
            ..Config::default()
        }
    }

    fn token(anonymous_pull: bool) -> Config {
        Config {
            auth: Auth::Token {
                username: USER.into(),
                password: PASSWORD.into(),
                anonymous_pull,
                uses: None,
            },
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn an_open_registry_passes_and_the_check_leaves_no_upload_open() {
        let registry = Registry::start(Config::default()).await;
        check(registry.addr(), Credentials::Anonymous)
            .await
            .unwrap();
        let methods: Vec<String> = registry
            .seen()
            .iter()
            .map(|s| format!("{} {}", s.method, s.target))
            .collect();
        assert_eq!(methods[0], "GET /v2/");
        assert_eq!(methods[1], "POST /v2/team/app/blobs/uploads/");
        assert!(methods[2].starts_with("DELETE /v2/team/app/blobs/uploads/"));
        assert_eq!(methods.len(), 3);
        assert_eq!(registry.open_uploads(), 0);
        assert!(registry.manifest("team/app", "1").is_none());
    }

    #[tokio::test]
    async fn basic_auth_refuses_wrong_credentials_as_the_push_would() {
        let registry = Registry::start(basic()).await;
        for refused in [Credentials::Anonymous, Credentials::basic(USER, "wrong")] {
            let checked = check(registry.addr(), refused.clone()).await.unwrap_err();
            assert!(
                matches!(checked, Error::Unauthorized { status: 401, .. }),
                "{checked:?}"
            );
            let pushed = push(&registry, refused).await.unwrap_err();
            assert_eq!(kind(&checked), kind(&pushed));
        }
        check(registry.addr(), Credentials::basic(USER, PASSWORD))
            .await
            .unwrap();
        assert_eq!(registry.open_uploads(), 0);
    }

    // The token server gives an anonymous caller a pull-only token: `/v2/` lets it in, the
    // upload does not. A wrong password is refused by the token server itself.
    #[tokio::test]
    async fn a_token_without_push_scope_is_refused_before_the_push() {
        let registry = Registry::start(token(true)).await;
        for refused in [Credentials::Anonymous, Credentials::basic(USER, "wrong")] {
            let checked = check(registry.addr(), refused.clone()).await.unwrap_err();
            assert!(
                matches!(checked, Error::Unauthorized { status: 401, .. }),
                "{checked:?}"
            );
            let pushed = push(&registry, refused).await.unwrap_err();
            assert_eq!(kind(&checked), kind(&pushed));
        }
        let before = registry.tokens_issued();
        check(registry.addr(), Credentials::basic(USER, PASSWORD))
            .await
            .unwrap();
        assert_eq!(
            registry.tokens_issued(),
            before + 1,
            "one token for the check"
        );
        assert!(registry.seen().iter().any(|s| s
            .target
            .contains("scope=repository%3Ateam%2Fapp%3Apull%2Cpush")));
    }

    #[tokio::test]
    async fn a_closed_port_is_an_http_error_naming_the_registry() {
        let addr = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let err = check(&addr, Credentials::Anonymous).await.unwrap_err();
        assert!(
            matches!(&err, Error::Http { registry, .. } if *registry == addr),
            "{err:?}"
        );
    }

    // Something that is not a registry (no `/v2/`) is the registry error a push would meet.
    #[tokio::test]
    async fn a_server_without_the_registry_api_is_a_registry_error() {
        let server = crate::registry::testing::Server::start("127.0.0.1", |_| {
            crate::registry::testing::Reply::status("404 Not Found").body("no such page")
        })
        .await;
        let err = check(&server.addr, Credentials::Anonymous)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Registry { status: 404, .. }),
            "{err:?}"
        );
        assert_eq!(server.seen().len(), 1, "nothing after a failed ping");
    }
}
