//! docker's credential helper protocol: `docker-credential-<name> get`, the server URL on
//! stdin, `{"ServerURL", "Username", "Secret"}` on stdout, and a non-zero exit status for
//! any failure ("credentials not found" being the one that means "try elsewhere").
//!
//! A helper's output is never quoted in an error: it holds the secret, sometimes next to the
//! very warning that made it unusable. Errors say which helper and what kind of failure.
//!
//! ```no_run
//! # use ocibuild_core::registry::credentials::helper::Helper;
//! # use std::time::Duration;
//! # async fn f() -> ocibuild_core::Result<()> {
//! let helper = Helper::find("pass", None)?;
//! let credentials = helper.get("ghcr.io", &[], Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::helper_process::{self, Failure, Limits};
use crate::credentials::Credentials;
use crate::reference::DOCKER_HUB;
use crate::{Error, Result};

/// The server URL docker's helpers file Docker Hub credentials under.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";

/// The username a credential helper answers with when the secret is an identity token.
const TOKEN_USERNAME: &str = "<token>";

pub const HELPER_PREFIX: &str = "docker-credential-";

/// A helper's answer is a small JSON document (cloud tokens take a few KiB); far more than
/// that is a broken or hostile helper.
pub const MAX_HELPER_OUTPUT: usize = 64 * 1024;

/// What docker's helpers say, on stdout, when they hold nothing for a server.
const NOT_FOUND_MESSAGE: &str = "credentials not found";

/// An installed `docker-credential-<name>`.
#[derive(Debug)]
pub struct Helper {
    program: String,
    path: PathBuf,
}

impl Helper {
    /// The helper `name` from a config file, found in `dirs` (`PATH`-style; `None`: `PATH`).
    pub fn find(name: &str, dirs: Option<&OsStr>) -> Result<Helper> {
        let program = format!("{HELPER_PREFIX}{name}");
        // The name comes from a config file; it names a program, not a path.
        if name.is_empty() || name.contains(['/', '\\']) {
            return Err(helper_error(
                &program,
                "invalid credential helper name".into(),
            ));
        }
        let path = find_in(&program, dirs).ok_or_else(|| {
            let place = if dirs.is_some() {
                "the configured helper directories"
            } else {
                "PATH"
            };
            let why = format!("the credential helper is not installed (not found in {place})");
            helper_error(&program, why)
        })?;
        Ok(Helper { program, path })
    }

    /// The helper's credentials for `registry`; `None` when it has none.
    /// `env` is set on top of the process environment.
    pub async fn get(
        &self,
        registry: &str,
        env: &[(OsString, OsString)],
        timeout: Duration,
    ) -> Result<Option<Credentials>> {
        let server_url = if registry == DOCKER_HUB {
            DOCKER_HUB_SERVER_URL
        } else {
            registry
        };
        let limits = Limits {
            timeout,
            max_output: MAX_HELPER_OUTPUT,
        };
        let done = helper_process::run(&self.path, "get", server_url.as_bytes(), env, limits)
            .await
            .map_err(|failure| helper_error(&self.program, describe(failure)))?;
        if done.status != 0 {
            if says_not_found(&done.stdout) || says_not_found(&done.stderr) {
                return Ok(None);
            }
            let why = format!("`get` failed with exit status {}", done.status);
            return Err(helper_error(&self.program, why));
        }
        parse_answer(&done.stdout).map_err(|why| helper_error(&self.program, why))
    }
}

fn describe(failure: Failure) -> String {
    match failure {
        Failure::OutputTooLarge(_) => {
            format!(
                "the credential helper wrote more than {} KiB and was stopped",
                MAX_HELPER_OUTPUT / 1024
            )
        }
        other => other.to_string(),
    }
}

fn says_not_found(output: &[u8]) -> bool {
    String::from_utf8_lossy(output)
        .to_ascii_lowercase()
        .contains(NOT_FOUND_MESSAGE)
}

/// A helper's `{"ServerURL", "Username", "Secret"}`. An empty username and secret is
/// docker's "nothing stored"; a missing `Secret` is a broken helper.
pub fn parse_answer(stdout: &[u8]) -> std::result::Result<Option<Credentials>, String> {
    // Only the position: serde's messages can quote the document.
    let json: Value = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "answered with invalid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    let Value::Object(answer) = json else {
        return Err("answered with JSON that is not an object".into());
    };
    let field = |name: &str| match answer.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("answered with a {name} that is not a string")),
    };
    let secret = field("Secret")?.ok_or("answered without a Secret field")?;
    let username = field("Username")?.unwrap_or_default();
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

fn helper_error(program: &str, why: String) -> Error {
    Error::Credentials {
        source_name: program.to_string(),
        why,
    }
}

fn find_in(program: &str, dirs: Option<&OsStr>) -> Option<PathBuf> {
    let dirs = match dirs {
        Some(dirs) => dirs.to_os_string(),
        None => std::env::var_os("PATH")?,
    };
    std::env::split_paths(&dirs)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials::basic(u, p))
    }

    #[test]
    fn answers() {
        let ok = |json: &str| parse_answer(json.as_bytes()).unwrap();
        assert_eq!(
            ok(r#"{"ServerURL":"x","Username":"u","Secret":"p"}"#),
            basic("u", "p")
        );
        assert_eq!(ok(r#"{"Secret":"p"}"#), basic("", "p"));
        assert_eq!(ok("{\"Username\":\"\",\"Secret\":\"\"}\n\n"), None);
        assert_eq!(
            ok(r#"{"Username":"<token>","Secret":"refresh"}"#),
            Some(Credentials::IdentityToken {
                username: String::new(),
                token: "refresh".into()
            })
        );
    }

    #[test]
    fn broken_answers_are_errors_that_quote_nothing() {
        for (output, expected) in [
            (
                "{\"Username\":\"u\",\"Secret\":\"hunter2\"}\nwarning: hunter2",
                "invalid JSON",
            ),
            ("[\"hunter2\"]", "not an object"),
            ("{\"Username\":\"hunter2\"}", "without a Secret"),
            (
                "{\"Username\":\"u\",\"Secret\":[\"hunter2\"]}",
                "Secret that is not a string",
            ),
            (
                "{\"Username\":7,\"Secret\":\"hunter2\"}",
                "Username that is not a string",
            ),
            ("", "invalid JSON"),
        ] {
            let why = parse_answer(output.as_bytes()).unwrap_err();
            assert!(why.contains(expected), "{output}: {why}");
            assert!(!why.contains("hunter2"), "{output}: {why}");
        }
    }

    #[test]
    fn helper_names_that_are_paths_or_empty_are_refused() {
        for name in ["", "../x", "a/b", "a\\b"] {
            let err = Helper::find(name, Some(OsStr::new("/nonexistent"))).unwrap_err();
            assert!(
                err.to_string().contains("invalid credential helper name"),
                "{err}"
            );
        }
    }
}
