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

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::{self, general_purpose::GeneralPurpose, DecodePaddingMode};
use base64::Engine;
use serde_json::{Map, Value};

use super::reference::{self, DOCKER_HUB};
use crate::{Error, Result};

/// The server URL docker's helpers file Docker Hub credentials under.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";

/// The username a credential helper answers with when the secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

const HELPER_PREFIX: &str = "docker-credential-";

/// A helper's answer is a small JSON document; more than this is not one.
const MAX_HELPER_OUTPUT: u64 = 1 << 20;

#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A registry token used as is (`Authorization: Bearer`), for every scope.
    Bearer(String),
    /// An OAuth2 refresh token from `docker login` against an identity provider.
    IdentityToken {
        username: String,
        token: String,
    },
}

impl Credentials {
    /// Username and password as a user configured them; both empty means anonymous, so an
    /// unset pair of options needs no special case.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        let (username, password) = (username.into(), password.into());
        if username.is_empty() && password.is_empty() {
            Credentials::Anonymous
        } else {
            Credentials::Basic { username, password }
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Credentials::Anonymous)
    }
}

/// Shows the kind of credentials and the username, never a password or token.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const REDACTED: &str = "<redacted>";
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &REDACTED)
                .finish(),
            Credentials::Bearer(_) => f.debug_tuple("Bearer").field(&REDACTED).finish(),
            Credentials::IdentityToken { username, .. } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &REDACTED)
                .finish(),
        }
    }
}

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
}

impl Default for CredentialSources {
    fn default() -> Self {
        CredentialSources {
            docker_config: None,
            podman_auth: Vec::new(),
            helper_path: None,
            helper_timeout: Duration::from_secs(30),
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
    /// the credential helpers.
    pub fn from_environment(env: &super::Environment) -> CredentialSources {
        CredentialSources {
            helper_path: env.var("PATH").map(|p| p.to_os_string()),
            ..Self::from_vars(|name| env.var(name).map(|v| v.to_os_string()))
        }
    }

    /// The stored credentials for `registry` (`docker.io`, `ghcr.io`, `localhost:5000`), or
    /// `Anonymous` when no source has any. Missing files are skipped; broken ones are errors,
    /// since silently pulling anonymously would hide the real problem.
    pub fn lookup(&self, registry: &str) -> Result<Credentials> {
        let registry = normalize_key(registry);
        if let Some(path) = &self.docker_config {
            if let Some(config) = read_config(path)? {
                if let Some(c) = self.lookup_docker_config(&config, path, &registry)? {
                    return Ok(c);
                }
            }
        }
        for path in &self.podman_auth {
            if let Some(config) = read_config(path)? {
                if let Some(c) = from_auths(&config, path, &registry)? {
                    return Ok(c);
                }
            }
        }
        Ok(Credentials::Anonymous)
    }

    fn lookup_docker_config(
        &self,
        config: &Map<String, Value>,
        path: &Path,
        registry: &str,
    ) -> Result<Option<Credentials>> {
        let bad_file = |why: String| file_error(path, why);
        if let Some(helpers) = object_field(config, "credHelpers", path)? {
            if let Some((key, helper)) = find_entry(helpers, registry) {
                let helper = helper.as_str().ok_or_else(|| {
                    bad_file(format!("credHelpers entry {key:?} is not a string"))
                })?;
                if let Some(c) = self.run_helper(helper, registry)? {
                    return Ok(Some(c));
                }
            }
        }
        match config.get("credsStore") {
            Some(Value::String(store)) if !store.is_empty() => {
                if let Some(c) = self.run_helper(store, registry)? {
                    return Ok(Some(c));
                }
            }
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(bad_file("credsStore is not a string".into())),
        }
        from_auths(config, path, registry)
    }

    /// Ask `docker-credential-<name>` for `registry`'s credentials; `None` when it has none.
    fn run_helper(&self, name: &str, registry: &str) -> Result<Option<Credentials>> {
        let program = format!("{HELPER_PREFIX}{name}");
        let helper_error = |why: String| Error::Credentials {
            source_name: program.clone(),
            why,
        };
        // The name comes from a config file; it names a program, not a path.
        if name.is_empty() || name.contains(['/', '\\']) {
            return Err(helper_error("invalid credential helper name".into()));
        }
        let path = self.find_helper(&program).ok_or_else(|| {
            let place = if self.helper_path.is_some() {
                "the configured helper directories"
            } else {
                "PATH"
            };
            helper_error(format!(
                "the credential helper is not installed (not found in {place})"
            ))
        })?;
        let server_url = if registry == DOCKER_HUB {
            DOCKER_HUB_SERVER_URL
        } else {
            registry
        };
        let output =
            run_with_timeout(&path, server_url, self.helper_timeout).map_err(helper_error)?;
        // Without a status (reaped elsewhere), an answer that is not JSON counts as a failure.
        let failed = match output.status {
            Some(status) => !status.success(),
            None => serde_json::from_slice::<Value>(&output.stdout).is_err(),
        };
        if failed {
            let said = format!(
                "{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            if said.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            return Err(helper_error(format!(
                "`get` failed ({}): {}",
                output
                    .status
                    .map_or_else(|| "no exit status".to_string(), |s| s.to_string()),
                first_line(&said)
            )));
        }
        parse_helper_answer(&output.stdout).map_err(helper_error)
    }

    fn find_helper(&self, program: &str) -> Option<PathBuf> {
        let dirs = match &self.helper_path {
            Some(p) => p.clone(),
            None => std::env::var_os("PATH")?,
        };
        std::env::split_paths(&dirs)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    }
}

/// A helper's `{"ServerURL", "Username", "Secret"}`.
fn parse_helper_answer(stdout: &[u8]) -> std::result::Result<Option<Credentials>, String> {
    let json: Value = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "answered with invalid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let field = |name: &str| match json.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("answered with a {name} that is not a string")),
    };
    let (username, secret) = (field("Username")?, field("Secret")?);
    if secret.is_empty() && username.is_empty() {
        return Ok(None);
    }
    if username == TOKEN_USERNAME {
        // docker's convention: the secret is an identity token, and there is no username.
        return Ok(Some(Credentials::IdentityToken {
            username: String::new(),
            token: secret,
        }));
    }
    Ok(Some(Credentials::basic(username, secret)))
}

/// The `auths` entry for `registry`, decoded; `None` when there is none or it is empty
/// (docker leaves `{}` there when a credential store holds the secret).
fn from_auths(
    config: &Map<String, Value>,
    path: &Path,
    registry: &str,
) -> Result<Option<Credentials>> {
    let Some(auths) = object_field(config, "auths", path)? else {
        return Ok(None);
    };
    match find_entry(auths, registry) {
        Some((key, entry)) => decode_entry(key, entry).map_err(|why| file_error(path, why)),
        None => Ok(None),
    }
}

/// One `auths` entry: `auth` (base64 `user:password`), `username`/`password`,
/// `identitytoken`, or docker's rarely seen `registrytoken`.
fn decode_entry(key: &str, entry: &Value) -> std::result::Result<Option<Credentials>, String> {
    let entry = entry
        .as_object()
        .ok_or_else(|| format!("auths entry {key:?} is not an object"))?;
    let field = |name: &str| match entry.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!(
            "the {name} field of auths entry {key:?} is not a string"
        )),
    };
    let (mut username, mut password) = (field("username")?, field("password")?);
    let auth = field("auth")?.trim().to_string();
    if !auth.is_empty() {
        let bad = |what: &str| format!("the auth field of auths entry {key:?} {what}");
        let decoded = lenient_base64()
            .decode(&auth)
            .map_err(|_| bad("is not valid base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
        // Passwords may contain ':', usernames may not.
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| bad("does not hold username:password"))?;
        (username, password) = (user.to_string(), pass.to_string());
    }
    let identity_token = field("identitytoken")?;
    if !identity_token.is_empty() {
        return Ok(Some(Credentials::IdentityToken {
            username,
            token: identity_token,
        }));
    }
    let registry_token = field("registrytoken")?;
    if !registry_token.is_empty() {
        return Ok(Some(Credentials::Bearer(registry_token)));
    }
    Ok(match Credentials::basic(username, password) {
        Credentials::Anonymous => None,
        c => Some(c),
    })
}

/// Tools differ on base64 padding; accept it either way.
fn lenient_base64() -> GeneralPurpose {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// The host a config key is about: `https://index.docker.io/v1/` is `docker.io`, podman's
/// `quay.io/org` is `quay.io`. Lowercase, Docker Hub's aliases folded.
fn normalize_key(key: &str) -> String {
    let without_scheme = reference::strip_scheme(key.trim());
    let host = without_scheme.split('/').next().unwrap_or_default();
    reference::normalize_registry(host).unwrap_or_else(|| host.to_ascii_lowercase())
}

/// The entry of `map` for `registry`, best match first: the exact key, then a key naming
/// just the host (with a scheme or URL path, as docker writes them), then a podman
/// `host/namespace` key. Among equals, map order (sorted) decides, so the choice is stable.
fn find_entry<'a>(map: &'a Map<String, Value>, registry: &str) -> Option<(&'a str, &'a Value)> {
    if let Some((k, v)) = map.get_key_value(registry) {
        return Some((k, v));
    }
    let rank = |key: &str| {
        let has_scheme = reference::strip_scheme(key).len() != key.len();
        let has_namespace = !has_scheme && key.trim_end_matches('/').contains('/');
        usize::from(has_namespace)
    };
    map.iter()
        .filter(|(k, _)| normalize_key(k) == registry)
        .min_by_key(|(k, _)| rank(k))
        .map(|(k, v)| (k.as_str(), v))
}

/// A config file as a JSON object; `None` when it does not exist.
fn read_config(path: &Path) -> Result<Option<Map<String, Value>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, format!("cannot read the file: {e}"))),
    };
    // Only the position of a syntax error: serde's messages can quote the document.
    let json: Value = serde_json::from_slice(&bytes).map_err(|e| {
        file_error(
            path,
            format!("invalid JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    match json {
        Value::Object(map) => Ok(Some(map)),
        _ => Err(file_error(path, "not a JSON object".into())),
    }
}

/// `config[name]` as an object; absent or null is `None`, another type is an error.
fn object_field<'a>(
    config: &'a Map<String, Value>,
    name: &str,
    path: &Path,
) -> Result<Option<&'a Map<String, Value>>> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(file_error(path, format!("{name} is not an object"))),
    }
}

fn file_error(path: &Path, why: String) -> Error {
    Error::Credentials {
        source_name: path.display().to_string(),
        why,
    }
}

fn first_line(s: &str) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output");
    line.chars().take(200).collect()
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

struct HelperOutput {
    /// `None` when the child was reaped by someone else (see `ECHILD`).
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Run `program get` with `input` on stdin, killing it after `timeout`. Output is read on
/// threads so a chatty helper cannot block on a full pipe while we wait for it.
/// `waitpid` on a child someone else reaped (Linux and macOS agree on the number).
const ECHILD: i32 = 10;

fn run_with_timeout(
    program: &Path,
    input: &str,
    timeout: Duration,
) -> std::result::Result<HelperOutput, String> {
    let deadline = Instant::now() + timeout;
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the credential helper: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gives EPIPE here; its exit status says more.
        let _ = stdin.write_all(input.as_bytes());
    }
    let stdout = read_on_thread(child.stdout.take());
    let stderr = read_on_thread(child.stderr.take());
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the credential helper did not answer within {} s",
                    timeout.as_secs_f32()
                ));
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            // Inside the BEAM, SIGCHLD is ignored and the kernel reaps children itself, so
            // there is no status to collect: the helper's output has to speak for it.
            Err(e) if e.raw_os_error() == Some(ECHILD) => break None,
            Err(e) => return Err(format!("waiting for the credential helper: {e}")),
        }
    };
    // A grandchild may still hold the pipes open; do not wait for it past the deadline.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        rx.recv_timeout(wait).unwrap_or_default()
    };
    Ok(HelperOutput {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn read_on_thread(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.take(MAX_HELPER_OUTPUT).read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    } else {
        let _ = tx.send(Vec::new());
    }
    rx
}

/// Explicit credentials, else the ones the config files hold for `registry` (read on a
/// blocking thread: a credential helper may take a while).
pub async fn resolve(
    explicit: Option<Credentials>,
    registry: &str,
    env: &super::Environment,
) -> Result<Credentials> {
    if let Some(c) = explicit {
        return Ok(c);
    }
    let sources = CredentialSources::from_environment(env);
    let registry = registry.to_string();
    tokio::task::spawn_blocking(move || sources.lookup(&registry))
        .await
        .map_err(|e| crate::Error::io("looking up credentials", std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
        f.helper("broken", "echo 'keychain locked' >&2; exit 2");
        f.docker(r#"{"credsStore": "broken"}"#);
        let (source, why) = credentials_error(f.lookup("ghcr.io"));
        assert_eq!(source, "docker-credential-broken");
        assert!(why.contains("keychain locked"), "{why}");
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
