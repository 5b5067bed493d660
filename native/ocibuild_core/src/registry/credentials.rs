//! Credentials for a registry: given explicitly, or found where `docker login` and
//! `podman login` leave them.
//!
//! The lookup order is docker's, then podman's: in docker's `config.json`, a per-registry
//! `credHelpers` entry, then the `credsStore` helper, then an `auths` entry; then the `auths`
//! of each podman `auth.json`. Whatever finds nothing falls through to the next source, and
//! nothing at all means anonymous access.
//!
//! ```no_run
//! use ocibuild_core::registry::CredentialSources;
//! let credentials = CredentialSources::from_env().lookup("ghcr.io")?;
//! println!("{credentials:?}"); // never prints the secret
//! # Ok::<(), ocibuild_core::Error>(())
//! ```
//!
//! Errors name the file or helper at fault but never quote a credential, since they end up
//! in build logs.
//!
//! - `config_file`: decoding `config.json` / `auth.json` (untrusted, bounded input).
//! - `helper`: docker's `docker-credential-<name> get` protocol.
//! - `helper_process`: running a helper with a deadline and a trustworthy exit status, even
//!   where SIGCHLD is ignored (inside the BEAM).

pub mod config_file;
pub mod helper;
pub mod helper_process;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

pub use crate::credentials::Credentials;
use crate::Result;
use config_file::{file_error, find_entry, from_auths, normalize_key, object_field, read_config};
use helper::Helper;

/// Where to look for stored credentials.
#[derive(Clone, Debug)]
pub struct CredentialSources {
    /// docker's `config.json`.
    pub docker_config: Option<PathBuf>,
    /// podman's `auth.json` files, in the order they are searched.
    pub podman_auth: Vec<PathBuf>,
    /// Directories to find `docker-credential-*` helpers in, `PATH`-style; `None` uses `PATH`.
    pub helper_path: Option<OsString>,
    /// How long a helper may take before it is killed (a keychain prompt nobody answers).
    pub helper_timeout: Duration,
    /// Variables set for helpers on top of the process environment: inside the BEAM, the
    /// VM's view (`os:putenv/2`), so a helper sees the `HOME` and `PATH` it was found with.
    pub helper_env: Vec<(OsString, OsString)>,
}

impl Default for CredentialSources {
    fn default() -> Self {
        CredentialSources {
            docker_config: None,
            podman_auth: Vec::new(),
            helper_path: None,
            helper_timeout: Duration::from_secs(30),
            helper_env: Vec::new(),
        }
    }
}

impl CredentialSources {
    /// The files docker and podman use, from the environment: `$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json`; `$REGISTRY_AUTH_FILE`, or else
    /// `$XDG_RUNTIME_DIR/containers/auth.json` and `~/.config/containers/auth.json`.
    pub fn from_env() -> CredentialSources {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// [`CredentialSources::from_env`] over any variable lookup (tests pass a map).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> CredentialSources {
        let var = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = var("HOME");
        let docker_config = match var("DOCKER_CONFIG") {
            Some(dir) => Some(dir.join("config.json")),
            None => home.as_ref().map(|h| h.join(".docker").join("config.json")),
        };
        let podman_auth = match var("REGISTRY_AUTH_FILE") {
            Some(file) => vec![file],
            None => [
                var("XDG_RUNTIME_DIR").map(|d| d.join("containers").join("auth.json")),
                home.map(|h| h.join(".config").join("containers").join("auth.json")),
            ]
            .into_iter()
            .flatten()
            .collect(),
        };
        CredentialSources {
            docker_config,
            podman_auth,
            ..CredentialSources::default()
        }
    }

    /// [`CredentialSources::from_vars`] over an [`Environment`], whose `PATH` also finds
    /// the credential helpers, and whose variables the helpers run with.
    pub fn from_environment(env: &super::Environment) -> CredentialSources {
        let helper_env = super::environment::VARIABLES
            .iter()
            .filter_map(|name| Some((OsString::from(name), env.var(name)?.to_os_string())))
            .collect();
        CredentialSources {
            helper_path: env.var("PATH").map(|p| p.to_os_string()),
            helper_env,
            ..Self::from_vars(|name| env.var(name).map(|v| v.to_os_string()))
        }
    }

    /// The stored credentials for `registry` (`docker.io`, `ghcr.io`, `localhost:5000`), or
    /// `Anonymous` when no source has any. Missing files are skipped; broken ones are errors,
    /// since silently pulling anonymously would hide the real problem.
    ///
    /// For callers without a runtime: runs [`CredentialSources::find`] on a small one of its
    /// own, on a thread of its own, so that even a caller inside a runtime cannot make tokio
    /// panic with "a runtime within a runtime" (async code should await `find` instead).
    pub fn lookup(&self, registry: &str) -> Result<Credentials> {
        // Made, used and dropped on the thread: dropping a runtime in async code panics too.
        let on_its_own = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| crate::Error::io("starting the credential lookup", e))?
                .block_on(self.find(registry))
        };
        std::thread::scope(|scope| {
            scope.spawn(on_its_own).join().unwrap_or_else(|_| {
                Err(crate::Error::io(
                    "looking up credentials",
                    std::io::Error::other("the lookup thread panicked"),
                ))
            })
        })
    }

    /// [`CredentialSources::lookup`], awaited: a credential helper runs without holding a
    /// thread, and config files are read on the blocking pool.
    pub async fn find(&self, registry: &str) -> Result<Credentials> {
        let registry = normalize_key(registry);
        if let Some(path) = &self.docker_config {
            if let Some(config) = read_config_blocking(path).await? {
                if let Some(c) = self.lookup_docker_config(&config, path, &registry).await? {
                    return Ok(c);
                }
            }
        }
        for path in &self.podman_auth {
            if let Some(config) = read_config_blocking(path).await? {
                if let Some(c) = from_auths(&config, path, &registry)? {
                    return Ok(c);
                }
            }
        }
        Ok(Credentials::Anonymous)
    }

    async fn lookup_docker_config(
        &self,
        config: &Map<String, Value>,
        path: &Path,
        registry: &str,
    ) -> Result<Option<Credentials>> {
        if let Some(helpers) = object_field(config, "credHelpers", path)? {
            if let Some((key, helper)) = find_entry(helpers, registry) {
                let helper = helper.as_str().ok_or_else(|| {
                    let key = config_file::quoted_key(key);
                    file_error(path, format!("credHelpers entry {key} is not a string"))
                })?;
                if let Some(c) = self.run_helper(helper, registry).await? {
                    return Ok(Some(c));
                }
            }
        }
        match config.get("credsStore") {
            Some(Value::String(store)) if !store.is_empty() => {
                if let Some(c) = self.run_helper(store, registry).await? {
                    return Ok(Some(c));
                }
            }
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(file_error(path, "credsStore is not a string".into())),
        }
        from_auths(config, path, registry)
    }

    /// Ask `docker-credential-<name>` for `registry`'s credentials; `None` when it has none.
    async fn run_helper(&self, name: &str, registry: &str) -> Result<Option<Credentials>> {
        let helper = Helper::find(name, self.helper_path.as_deref())?;
        helper
            .get(registry, &self.helper_env, self.helper_timeout)
            .await
    }
}

/// A config file read on the blocking pool: a home directory may be on a slow file system.
async fn read_config_blocking(path: &Path) -> Result<Option<Map<String, Value>>> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || read_config(&owned))
        .await
        .map_err(|e| crate::Error::io("reading a credentials file", std::io::Error::other(e)))?
}

/// Explicit credentials, else the ones the config files hold for `registry` (a credential
/// helper may take a while: it is awaited, holding no thread).
pub async fn resolve(
    explicit: Option<Credentials>,
    registry: &str,
    env: &super::Environment,
) -> Result<Credentials> {
    if let Some(c) = explicit {
        return Ok(c);
    }
    CredentialSources::from_environment(env)
        .find(registry)
        .await
}

#[cfg(test)]
mod tests {
    use super::helper::HELPER_PREFIX;
    use super::*;
    use crate::Error;
    use base64::Engine;
    use std::collections::HashMap;
    use std::time::Instant;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn basic(u: &str, p: &str) -> Credentials {
        Credentials::Basic {
            username: u.into(),
            password: p.into(),
        }
    }

    /// A temp dir with a docker config and/or podman auth file and helper scripts.
    struct Fixture {
        dir: tempfile::TempDir,
        sources: CredentialSources,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let bin = dir.path().join("bin");
            std::fs::create_dir(&bin).unwrap();
            let sources = CredentialSources {
                docker_config: Some(dir.path().join("docker").join("config.json")),
                podman_auth: vec![
                    dir.path().join("run").join("auth.json"),
                    dir.path().join("home").join("auth.json"),
                ],
                helper_path: Some(bin.into_os_string()),
                helper_timeout: Duration::from_secs(10),
                helper_env: Vec::new(),
            };
            Fixture { dir, sources }
        }

        fn write(&self, path: &Path, json: &str) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, json).unwrap();
        }

        fn docker(&self, json: &str) -> &Self {
            self.write(self.sources.docker_config.as_ref().unwrap(), json);
            self
        }

        fn podman(&self, index: usize, json: &str) -> &Self {
            self.write(&self.sources.podman_auth[index], json);
            self
        }

        /// `docker-credential-<name>`: a shell script whose body sees the server URL in $url
        /// and records it in `<name>.log`.
        fn helper(&self, name: &str, body: &str) -> &Self {
            use std::os::unix::fs::PermissionsExt;
            let path = self
                .dir
                .path()
                .join("bin")
                .join(format!("{HELPER_PREFIX}{name}"));
            let log = self.dir.path().join(format!("{name}.log"));
            let script = format!(
                "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r url\necho \"$url\" >> '{}'\n{body}\n",
                log.display()
            );
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            self
        }

        fn helper_calls(&self, name: &str) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        }

        fn lookup(&self, registry: &str) -> Result<Credentials> {
            self.sources.lookup(registry)
        }
    }

    fn helper_answer(user: &str, secret: &str) -> String {
        format!(r#"printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$url""#)
    }

    const NOT_FOUND: &str = "echo 'credentials not found in native keychain'; exit 1";

    // The sync lookup works from inside a runtime too (where a nested block_on would panic).
    #[tokio::test]
    async fn lookup_works_inside_a_runtime() {
        let f = Fixture::new();
        f.docker(r#"{"credsStore": "h"}"#)
            .helper("h", &helper_answer("bob", "pw"));
        assert_eq!(f.lookup("ghcr.io").unwrap(), basic("bob", "pw"));
        assert_eq!(f.sources.find("ghcr.io").await.unwrap(), basic("bob", "pw"));
    }

    #[test]
    fn basic_constructor_and_anonymous() {
        assert_eq!(Credentials::basic("", ""), Credentials::Anonymous);
        assert_eq!(Credentials::basic("u", ""), basic("u", ""));
        assert_eq!(Credentials::basic("", "p"), basic("", "p"));
        assert!(Credentials::default().is_anonymous());
        assert!(!basic("u", "p").is_anonymous());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let all = [
            basic("alice", "hunter2"),
            Credentials::Bearer("hunter2".into()),
            Credentials::IdentityToken {
                username: "alice".into(),
                token: "hunter2".into(),
            },
            Credentials::Anonymous,
        ];
        for c in all {
            for shown in [format!("{c:?}"), format!("{c:#?}")] {
                assert!(!shown.contains("hunter2"), "{shown}");
            }
        }
        assert_eq!(
            format!("{:?}", basic("alice", "x")),
            r#"Basic { username: "alice", password: "<redacted>" }"#
        );
    }

    #[test]
    fn from_vars_follows_docker_and_podman() {
        let vars = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, OsString> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect();
            CredentialSources::from_vars(move |k| map.get(k).cloned())
        };
        let s = vars(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/run/user/1")]);
        assert_eq!(
            s.docker_config,
            Some(PathBuf::from("/h/.docker/config.json"))
        );
        assert_eq!(
            s.podman_auth,
            vec![
                PathBuf::from("/run/user/1/containers/auth.json"),
                PathBuf::from("/h/.config/containers/auth.json")
            ]
        );
        assert_eq!(s.helper_path, None);
        assert_eq!(s.helper_timeout, Duration::from_secs(30));

        let s = vars(&[
            ("HOME", "/h"),
            ("DOCKER_CONFIG", "/dc"),
            ("REGISTRY_AUTH_FILE", "/a.json"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
        ]);
        assert_eq!(s.docker_config, Some(PathBuf::from("/dc/config.json")));
        assert_eq!(s.podman_auth, vec![PathBuf::from("/a.json")]);

        let s = vars(&[("DOCKER_CONFIG", ""), ("REGISTRY_AUTH_FILE", "")]);
        assert_eq!((s.docker_config, s.podman_auth), (None, vec![]));
    }

    #[test]
    fn nothing_anywhere_is_anonymous() {
        let f = Fixture::new();
        assert_eq!(f.lookup("ghcr.io").unwrap(), Credentials::Anonymous);
        f.docker(r#"{"auths": {"quay.io": {"auth": "dTpw"}}}"#);
        assert_eq!(f.lookup("ghcr.io").unwrap(), Credentials::Anonymous);
        assert_eq!(
            CredentialSources::default().lookup("ghcr.io").unwrap(),
            Credentials::Anonymous
        );
    }

    #[test]
    fn auth_field_splits_at_the_first_colon() {
        let f = Fixture::new();
        let auth = b64("bob:pa:ss");
        f.docker(&format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{auth}"}}}}}}"#
        ));
        assert_eq!(f.lookup("ghcr.io").unwrap(), basic("bob", "pa:ss"));
        // Registry names are case-insensitive.
        assert_eq!(f.lookup("GHCR.io").unwrap(), basic("bob", "pa:ss"));
    }

    #[test]
    fn auth_without_padding_and_username_password_fields() {
        let f = Fixture::new();
        let unpadded = b64("ab:c").trim_end_matches('=').to_string();
        f.docker(&format!(
            r#"{{"auths": {{
                "a.io": {{"auth": "{unpadded}"}},
                "b.io": {{"username": "u", "password": "p"}},
                "c.io": {{}},
                "d.io": {{"auth": ""}}
            }}}}"#
        ));
        assert_eq!(f.lookup("a.io").unwrap(), basic("ab", "c"));
        assert_eq!(f.lookup("b.io").unwrap(), basic("u", "p"));
        assert_eq!(f.lookup("c.io").unwrap(), Credentials::Anonymous);
        assert_eq!(f.lookup("d.io").unwrap(), Credentials::Anonymous);
    }

    #[test]
    fn docker_hub_key_variants() {
        let auth = b64("hub:secret");
        for key in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
            "https://registry-1.docker.io/v2/",
            "http://docker.io",
        ] {
            let f = Fixture::new();
            f.docker(&format!(
                r#"{{"auths": {{"{key}": {{"auth": "{auth}"}}}}}}"#
            ));
            for asked in ["docker.io", "index.docker.io"] {
                assert_eq!(
                    f.lookup(asked).unwrap(),
                    basic("hub", "secret"),
                    "{key} / {asked}"
                );
            }
            assert_eq!(
                f.lookup("ghcr.io").unwrap(),
                Credentials::Anonymous,
                "{key}"
            );
        }
    }

    #[test]
    fn keys_with_scheme_and_path_match_their_host() {
        let f = Fixture::new();
        let auth = b64("u:p");
        f.docker(&format!(
            r#"{{"auths": {{"https://localhost:5000/v2/": {{"auth": "{auth}"}}}}}}"#
        ));
        assert_eq!(f.lookup("localhost:5000").unwrap(), basic("u", "p"));
        assert_eq!(f.lookup("localhost").unwrap(), Credentials::Anonymous);
        assert_eq!(f.lookup("localhost:5001").unwrap(), Credentials::Anonymous);
    }

    #[test]
    fn exact_key_wins_over_variants() {
        let f = Fixture::new();
        f.docker(&format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "docker.io": {{"auth": "{}"}}
            }}}}"#,
            b64("url:1"),
            b64("exact:2")
        ));
        // Asking by an alias means asking for the canonical name.
        for asked in ["docker.io", "index.docker.io"] {
            assert_eq!(f.lookup(asked).unwrap(), basic("exact", "2"));
        }
    }

    #[test]
    fn identity_tokens() {
        let f = Fixture::new();
        f.docker(&format!(
            r#"{{"auths": {{
                "a.io": {{"auth": "{}", "identitytoken": "refresh-me"}},
                "b.io": {{"identitytoken": "tok"}},
                "c.io": {{"registrytoken": "bearer-tok"}}
            }}}}"#,
            b64("alice:")
        ));
        assert_eq!(
            f.lookup("a.io").unwrap(),
            Credentials::IdentityToken {
                username: "alice".into(),
                token: "refresh-me".into()
            }
        );
        assert_eq!(
            f.lookup("b.io").unwrap(),
            Credentials::IdentityToken {
                username: String::new(),
                token: "tok".into()
            }
        );
        assert_eq!(
            f.lookup("c.io").unwrap(),
            Credentials::Bearer("bearer-tok".into())
        );
    }

    #[test]
    fn podman_files_in_order_with_namespaced_keys() {
        let f = Fixture::new();
        f.podman(
            0,
            &format!(
                r#"{{"auths": {{"quay.io/org": {{"auth": "{}"}}}}}}"#,
                b64("ns:1")
            ),
        );
        f.podman(
            1,
            &format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "ghcr.io": {{"auth": "{}"}}}}}}"#,
                b64("second:2"),
                b64("gh:3")
            ),
        );
        assert_eq!(f.lookup("quay.io").unwrap(), basic("ns", "1"));
        assert_eq!(f.lookup("ghcr.io").unwrap(), basic("gh", "3"));
    }

    #[test]
    fn host_key_preferred_to_namespaced_key_in_one_file() {
        let f = Fixture::new();
        f.podman(
            0,
            &format!(
                r#"{{"auths": {{"quay.io/aaa": {{"auth": "{}"}}, "quay.io": {{"auth": "{}"}}}}}}"#,
                b64("ns:1"),
                b64("host:2")
            ),
        );
        assert_eq!(f.lookup("quay.io").unwrap(), basic("host", "2"));
    }

    #[test]
    fn docker_config_comes_before_podman() {
        let f = Fixture::new();
        f.docker(&format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            b64("docker:1")
        ));
        f.podman(
            0,
            &format!(
                r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
                b64("podman:2")
            ),
        );
        assert_eq!(f.lookup("ghcr.io").unwrap(), basic("docker", "1"));
        // An empty docker entry (secret kept by a store) falls through to podman.
        f.docker(r#"{"auths": {"ghcr.io": {}}}"#);
        assert_eq!(f.lookup("ghcr.io").unwrap(), basic("podman", "2"));
    }

    #[test]
    fn cred_helpers_take_precedence_over_auths() {
        let f = Fixture::new();
        f.helper("test", &helper_answer("from-helper", "s3cret"));
        f.docker(&format!(
            r#"{{"credHelpers": {{"ghcr.io": "test"}},
                "auths": {{"ghcr.io": {{"auth": "{}"}}, "quay.io": {{"auth": "{}"}}}}}}"#,
            b64("from-auths:1"),
            b64("quay:2")
        ));
        assert_eq!(f.lookup("ghcr.io").unwrap(), basic("from-helper", "s3cret"));
        assert_eq!(f.lookup("quay.io").unwrap(), basic("quay", "2"));
        assert_eq!(f.helper_calls("test"), vec!["ghcr.io"]);
    }

    #[test]
    fn creds_store_gets_docker_hubs_server_url() {
        let f = Fixture::new();
        f.helper("store", &helper_answer("hubuser", "hubpass"));
        f.docker(r#"{"credsStore": "store", "auths": {"https://index.docker.io/v1/": {}}}"#);
        assert_eq!(f.lookup("docker.io").unwrap(), basic("hubuser", "hubpass"));
        assert_eq!(
            f.lookup("localhost:5000").unwrap(),
            basic("hubuser", "hubpass")
        );
        assert_eq!(
            f.helper_calls("store"),
            vec!["https://index.docker.io/v1/", "localhost:5000"]
        );
    }

    #[test]
    fn cred_helper_keyed_by_docker_hub_url() {
        let f = Fixture::new();
        f.helper("hub", &helper_answer("h", "p"));
        f.docker(r#"{"credHelpers": {"https://index.docker.io/v1/": "hub"}}"#);
        assert_eq!(f.lookup("docker.io").unwrap(), basic("h", "p"));
    }

    #[test]
    fn helper_not_found_falls_through() {
        let f = Fixture::new();
        f.helper("empty", NOT_FOUND);
        f.helper("store", "echo 'credentials not found' >&2; exit 1");
        f.docker(&format!(
            r#"{{"credHelpers": {{"ghcr.io": "empty"}}, "credsStore": "store",
                "auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            b64("fallback:1")
        ));
        assert_eq!(f.lookup("ghcr.io").unwrap(), basic("fallback", "1"));
        assert_eq!(f.lookup("quay.io").unwrap(), Credentials::Anonymous);
        assert_eq!(f.helper_calls("empty"), vec!["ghcr.io"]);
        assert_eq!(f.helper_calls("store"), vec!["ghcr.io", "quay.io"]);
    }

    #[test]
    fn helper_not_found_then_podman() {
        let f = Fixture::new();
        f.helper("store", NOT_FOUND);
        f.docker(r#"{"credsStore": "store"}"#);
        f.podman(
            1,
            &format!(
                r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
                b64("p:1")
            ),
        );
        assert_eq!(f.lookup("ghcr.io").unwrap(), basic("p", "1"));
    }

    #[test]
    fn helper_identity_token_and_empty_answers() {
        let f = Fixture::new();
        f.helper("tok", &helper_answer("<token>", "refresh"));
        f.helper("blank", &helper_answer("", ""));
        f.docker(r#"{"credHelpers": {"a.io": "tok", "b.io": "blank"}}"#);
        assert_eq!(
            f.lookup("a.io").unwrap(),
            Credentials::IdentityToken {
                username: String::new(),
                token: "refresh".into()
            }
        );
        assert_eq!(f.lookup("b.io").unwrap(), Credentials::Anonymous);
    }

    fn credentials_error(result: Result<Credentials>) -> (String, String) {
        match result {
            Err(Error::Credentials { source_name, why }) => (source_name, why),
            other => panic!("expected a credentials error, got {other:?}"),
        }
    }

    #[test]
    fn missing_helper_is_an_error_naming_it() {
        let f = Fixture::new();
        f.docker(r#"{"credsStore": "nosuch"}"#);
        let (source, why) = credentials_error(f.lookup("ghcr.io"));
        assert_eq!(source, "docker-credential-nosuch");
        assert!(why.contains("not installed"), "{why}");
    }

    #[test]
    fn helper_found_on_path_when_no_helper_path() {
        // Without helper_path the search is PATH's, where no such helper exists.
        let f = Fixture::new();
        let sources = CredentialSources {
            helper_path: None,
            ..f.sources.clone()
        };
        f.docker(r#"{"credsStore": "ocibuild-test-surely-missing"}"#);
        let (source, why) = credentials_error(sources.lookup("ghcr.io"));
        assert_eq!(source, "docker-credential-ocibuild-test-surely-missing");
        assert!(why.contains("PATH"), "{why}");
    }

    #[test]
    fn helper_names_cannot_be_paths() {
        let f = Fixture::new();
        f.docker(r#"{"credsStore": "../../bin/sh"}"#);
        let (_, why) = credentials_error(f.lookup("ghcr.io"));
        assert!(why.contains("invalid credential helper name"), "{why}");
    }

    #[test]
    fn non_executable_helper_is_not_found() {
        let f = Fixture::new();
        let path = f.dir.path().join("bin").join("docker-credential-plain");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        f.docker(r#"{"credsStore": "plain"}"#);
        let (_, why) = credentials_error(f.lookup("ghcr.io"));
        assert!(why.contains("not installed"), "{why}");
    }

    #[test]
    fn failing_helper_is_an_error() {
        let f = Fixture::new();
        f.helper("broken", "echo 'keychain locked: hunter2' >&2; exit 2");
        f.docker(r#"{"credsStore": "broken"}"#);
        let (source, why) = credentials_error(f.lookup("ghcr.io"));
        assert_eq!(source, "docker-credential-broken");
        assert!(why.contains("exit status 2"), "{why}");
        // What the helper said is not repeated: it may hold the secret.
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn helper_with_bad_json_is_an_error_without_the_output() {
        let f = Fixture::new();
        f.helper(
            "garbled",
            "echo '{\"Username\": \"u\", \"Secret\": \"hunter2\"'",
        );
        f.docker(r#"{"credsStore": "garbled"}"#);
        let (_, why) = credentials_error(f.lookup("ghcr.io"));
        assert!(why.contains("invalid JSON"), "{why}");
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn slow_helper_is_killed() {
        let mut f = Fixture::new();
        f.sources.helper_timeout = Duration::from_millis(300);
        f.helper("slow", "exec sleep 30");
        f.docker(r#"{"credsStore": "slow"}"#);
        let started = Instant::now();
        let (_, why) = credentials_error(f.lookup("ghcr.io"));
        assert!(why.contains("did not answer"), "{why}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn bad_base64_error_names_the_file_not_the_secret() {
        let f = Fixture::new();
        f.docker(r#"{"auths": {"ghcr.io": {"auth": "hunter2!!not-base64"}}}"#);
        let (source, why) = credentials_error(f.lookup("ghcr.io"));
        assert_eq!(
            source,
            f.sources
                .docker_config
                .as_ref()
                .unwrap()
                .display()
                .to_string()
        );
        assert!(why.contains("base64") && why.contains("ghcr.io"), "{why}");
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn auth_without_colon_is_an_error() {
        let f = Fixture::new();
        f.docker(&format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            b64("hunter2")
        ));
        let (_, why) = credentials_error(f.lookup("ghcr.io"));
        assert!(why.contains("username:password"), "{why}");
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn invalid_json_is_an_error_without_the_contents() {
        let f = Fixture::new();
        f.podman(0, r#"{"auths": {"ghcr.io": {"auth": "hunter2"}"#);
        let (source, why) = credentials_error(f.lookup("ghcr.io"));
        assert_eq!(source, f.sources.podman_auth[0].display().to_string());
        assert!(why.contains("invalid JSON"), "{why}");
        assert!(!why.contains("hunter2"), "{why}");
    }

    #[test]
    fn wrong_shapes_are_errors_without_the_values() {
        for json in [
            r#"["hunter2"]"#,
            r#"{"auths": "hunter2"}"#,
            r#"{"auths": {"ghcr.io": "hunter2"}}"#,
            r#"{"auths": {"ghcr.io": {"auth": ["hunter2"]}}}"#,
            r#"{"credHelpers": {"ghcr.io": 7}}"#,
            r#"{"credsStore": ["hunter2"]}"#,
        ] {
            let f = Fixture::new();
            f.docker(json);
            let (_, why) = credentials_error(f.lookup("ghcr.io"));
            assert!(!why.contains("hunter2"), "{json}: {why}");
        }
    }

    #[test]
    fn unreadable_existing_file_is_an_error() {
        let f = Fixture::new();
        // A directory where the file should be: it exists but cannot be read as a file.
        std::fs::create_dir_all(f.sources.docker_config.as_ref().unwrap()).unwrap();
        let (_, why) = credentials_error(f.lookup("ghcr.io"));
        assert!(why.contains("cannot read"), "{why}");
    }

    #[test]
    fn key_normalisation() {
        for (key, host) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("HTTP://Registry-1.Docker.IO", "docker.io"),
            ("quay.io/org/sub", "quay.io"),
            ("localhost:5000", "localhost:5000"),
            ("  ghcr.io  ", "ghcr.io"),
            ("[::1]:5000/x", "[::1]:5000"),
        ] {
            assert_eq!(normalize_key(key), host, "{key}");
        }
    }
}
