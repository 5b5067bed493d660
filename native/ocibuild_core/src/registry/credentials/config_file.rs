//! docker's `config.json` and podman's `auth.json`, decoded as the untrusted input they are:
//! bounded in size, never a panic on any bytes, and errors that name the file and the entry
//! at fault but never quote a value (an `auth` field is a password in base64).
//!
//! ```
//! # use ocibuild_core::registry::credentials::config_file::{parse_config, from_auths};
//! # use std::path::Path;
//! let path = Path::new("auth.json");
//! let config = parse_config(br#"{"auths": {"ghcr.io": {"auth": "dTpw"}}}"#, path)?;
//! assert!(from_auths(&config, path, "ghcr.io")?.is_some());
//! # Ok::<(), ocibuild_core::Error>(())
//! ```

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::engine::{self, general_purpose::GeneralPurpose, DecodePaddingMode};
use base64::Engine;
use serde_json::{Map, Value};

use crate::credentials::Credentials;
use crate::reference;
use crate::{Error, Result};

/// Real files hold a handful of registries; anything near this size is not one.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Keys are registry names, worth quoting to say which entry is broken, but not at any length.
const MAX_QUOTED_KEY_CHARS: usize = 100;

/// A config file as a JSON object; `None` when it does not exist.
pub fn read_config(path: &Path) -> Result<Option<Map<String, Value>>> {
    let bytes = match read_bounded(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, format!("cannot read the file: {e}"))),
    };
    parse_config(&bytes, path).map(Some)
}

/// The bytes of a regular file of at most [`MAX_CONFIG_BYTES`]. Opened without blocking, so
/// a FIFO where the file should be is an error rather than a wait for a writer.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB",
            MAX_CONFIG_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// A config file's bytes as a JSON object. Errors give only the position of a syntax error:
/// serde's messages can quote the document.
pub fn parse_config(bytes: &[u8], path: &Path) -> Result<Map<String, Value>> {
    let json: Value = serde_json::from_slice(bytes).map_err(|e| {
        file_error(
            path,
            format!("invalid JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    match json {
        Value::Object(map) => Ok(map),
        _ => Err(file_error(path, "not a JSON object".into())),
    }
}

/// `config[name]` as an object; absent or null is `None`, another type is an error.
pub fn object_field<'a>(
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

/// The `auths` entry for `registry`, decoded; `None` when there is none or it is empty
/// (docker leaves `{}` there when a credential store holds the secret).
pub fn from_auths(
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
    let key = quoted_key(key);
    let entry = entry
        .as_object()
        .ok_or_else(|| format!("auths entry {key} is not an object"))?;
    let field = |name: &str| match entry.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!(
            "the {name} field of auths entry {key} is not a string"
        )),
    };
    let (mut username, mut password) = (field("username")?, field("password")?);
    let auth = field("auth")?;
    let auth = auth.trim();
    if !auth.is_empty() {
        let bad = |what: &str| format!("the auth field of auths entry {key} {what}");
        let decoded = lenient_base64()
            .decode(auth)
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
pub fn normalize_key(key: &str) -> String {
    let without_scheme = reference::strip_scheme(key.trim());
    let host = without_scheme.split('/').next().unwrap_or_default();
    reference::normalize_registry(host).unwrap_or_else(|| host.to_ascii_lowercase())
}

/// The entry of `map` for `registry`, best match first: the exact key, then a key naming
/// just the host (with a scheme or URL path, as docker writes them), then a podman
/// `host/namespace` key. Among equals, map order (sorted) decides, so the choice is stable.
pub fn find_entry<'a>(map: &'a Map<String, Value>, registry: &str) -> Option<(&'a str, &'a Value)> {
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

/// A key as an error shows it: quoted, escaped, and cut short.
pub fn quoted_key(key: &str) -> String {
    let mut chars = key.chars();
    let head: String = chars.by_ref().take(MAX_QUOTED_KEY_CHARS).collect();
    let more = if chars.next().is_some() { "..." } else { "" };
    format!("{head:?}{more}")
}

pub fn file_error(path: &Path, why: String) -> Error {
    Error::Credentials {
        source_name: path.display().to_string(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::CredentialSources;
    use proptest::prelude::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn long_keys_are_cut_short_in_errors() {
        assert_eq!(quoted_key("ghcr.io"), r#""ghcr.io""#);
        let long = "a".repeat(500);
        let quoted = quoted_key(&long);
        assert!(quoted.len() < 110 && quoted.ends_with("\"..."), "{quoted}");
    }

    #[test]
    fn a_file_over_the_size_cap_is_an_error_naming_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut big = br#"{"auths": {}, "pad": ""#.to_vec();
        big.resize(MAX_CONFIG_BYTES as usize + 10, b'x');
        big.extend_from_slice(br#""}"#);
        std::fs::write(&path, &big).unwrap();
        match read_config(&path) {
            Err(Error::Credentials { why, .. }) => assert!(why.contains("larger than"), "{why}"),
            other => panic!("expected a size error, got {other:?}"),
        }
    }

    #[test]
    fn a_fifo_or_device_is_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("config.json");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        for path in [fifo.as_path(), Path::new("/dev/zero")] {
            match read_config(path) {
                Err(Error::Credentials { why, .. }) => {
                    assert!(why.contains("not a regular file"), "{why}")
                }
                other => panic!("{}: expected an error, got {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn non_utf8_auth_is_an_error_without_the_value() {
        let path = Path::new("c.json");
        let mut decoded = b"user:hunter2".to_vec();
        decoded.push(0xff);
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            b64(&decoded)
        );
        let config = parse_config(json.as_bytes(), path).unwrap();
        let err = from_auths(&config, path, "ghcr.io")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not UTF-8") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn non_utf8_bytes_and_deep_nesting_are_json_errors() {
        let path = Path::new("c.json");
        for bytes in [
            b"{\"auths\": {\"a\xff\": {}}}".to_vec(),
            "[".repeat(100_000).into_bytes(),
        ] {
            let err = parse_config(&bytes, path).unwrap_err().to_string();
            assert!(err.contains("invalid JSON"), "{err}");
        }
    }

    // -- properties --------------------------------------------------------------------

    const REGISTRIES: [&str; 4] = ["ghcr.io", "docker.io", "quay.io", "localhost:5000"];

    /// Sources whose helpers can never be found, so a property never starts a process.
    fn no_helpers() -> CredentialSources {
        CredentialSources {
            docker_config: None,
            podman_auth: Vec::new(),
            helper_path: Some("/nonexistent/ocibuild-no-helpers".into()),
            helper_timeout: Duration::from_secs(1),
            helper_env: Vec::new(),
        }
    }

    fn secret() -> impl Strategy<Value = String> {
        "[A-Za-z0-9+/=:]{6,24}".prop_map(|s| format!("Zq{s}"))
    }

    /// The ways a secret appears where credentials are kept, well-formed or not.
    fn secret_value(secret: String) -> impl Strategy<Value = Value> {
        let user = "[a-z]{0,6}";
        prop_oneof![
            Just(Value::String(secret.clone())),
            user.prop_map({
                let s = secret.clone();
                move |u| Value::String(b64(format!("{u}:{s}").as_bytes()))
            }),
            Just(Value::String(b64(secret.as_bytes()))),
            Just(Value::String(b64(
                &[secret.as_bytes(), &[0xff, 0xfe]].concat()
            ))),
            Just(Value::String(format!("{secret}!!not base64"))),
            Just(Value::Array(vec![Value::String(secret.clone())])),
            Just(serde_json::json!({ "nested": secret })),
        ]
    }

    /// JSON-shaped values with the secret at some leaves, under keys config files use.
    fn json_with_secret(secret: String) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[ -~]{0,12}".prop_map(Value::String),
            secret_value(secret),
        ];
        let keys = prop_oneof![
            Just("auths"),
            Just("auth"),
            Just("username"),
            Just("password"),
            Just("identitytoken"),
            Just("registrytoken"),
            Just("ghcr.io"),
            Just("https://index.docker.io/v1/"),
            Just("quay.io/org"),
            Just("localhost:5000"),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|pairs| {
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
                }),
            ]
        })
    }

    /// An `auths` map whose entries hold the secret in their credential fields.
    fn auths_with_secret(secret: String) -> impl Strategy<Value = Value> {
        let field = prop_oneof![
            Just("auth"),
            Just("username"),
            Just("password"),
            Just("identitytoken"),
            Just("registrytoken"),
        ];
        let entry =
            prop::collection::vec((field, secret_value(secret.clone())), 0..4).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
            });
        let entry = prop_oneof![entry, json_with_secret(secret)];
        prop::collection::vec((prop::sample::select(&REGISTRIES[..]), entry), 0..4).prop_map(
            |pairs| Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()),
        )
    }

    /// A docker config: `auths` as above, helpers that cannot be found, and other noise.
    fn docker_config_with_secret(secret: String) -> impl Strategy<Value = Value> {
        let helper = prop_oneof![
            Just(Value::Null),
            Just(Value::from("nosuch")),
            Just(Value::from(7)),
            Just(serde_json::json!(["x"])),
        ];
        (
            prop_oneof![auths_with_secret(secret.clone()), json_with_secret(secret)],
            helper.clone(),
            prop::option::of(prop::collection::vec(
                (prop::sample::select(&REGISTRIES[..]), helper.clone()),
                0..3,
            )),
        )
            .prop_map(|(auths, store, helpers)| {
                let mut config = Map::new();
                config.insert("auths".into(), auths);
                config.insert("credsStore".into(), store);
                if let Some(helpers) = helpers {
                    let helpers = helpers.into_iter().map(|(k, v)| (k.into(), v)).collect();
                    config.insert("credHelpers".into(), Value::Object(helpers));
                }
                Value::Object(config)
            })
    }

    /// Every form an error of a lookup may take, as text.
    fn error_texts(result: &Result<Option<Credentials>>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(e) => vec![e.to_string(), format!("{e:?}"), format!("{e:#?}")],
        }
    }

    fn assert_no_secret(texts: &[String], secret: &str) -> std::result::Result<(), TestCaseError> {
        let encoded = [secret.to_string(), b64(secret.as_bytes())];
        for text in texts {
            for form in &encoded {
                prop_assert!(!text.contains(form.as_str()), "{text} quotes {form}");
            }
        }
        Ok(())
    }

    fn docker_lookups(bytes: &[u8]) -> Vec<Result<Option<Credentials>>> {
        let path = PathBuf::from("config.json");
        match parse_config(bytes, &path) {
            Err(e) => vec![Err(e)],
            Ok(config) => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let sources = no_helpers();
                REGISTRIES
                    .iter()
                    .map(|r| runtime.block_on(sources.lookup_docker_config(&config, &path, r)))
                    .collect()
            }
        }
    }

    fn auth_json_lookups(bytes: &[u8]) -> Vec<Result<Option<Credentials>>> {
        let path = PathBuf::from("auth.json");
        match parse_config(bytes, &path) {
            Err(e) => vec![Err(e)],
            Ok(config) => REGISTRIES
                .iter()
                .map(|r| from_auths(&config, &path, r))
                .collect(),
        }
    }

    proptest! {
        #[test]
        fn prop_docker_config_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            docker_lookups(&bytes);
        }

        #[test]
        fn prop_docker_config_errors_never_quote_the_secret(
            (secret, config) in secret().prop_flat_map(|s| (Just(s.clone()), docker_config_with_secret(s)))
        ) {
            let bytes = serde_json::to_vec(&config).unwrap();
            for result in docker_lookups(&bytes) {
                assert_no_secret(&error_texts(&result), &secret)?;
            }
        }

        #[test]
        fn prop_docker_config_json_shaped_values_never_panic(
            (secret, json) in secret().prop_flat_map(|s| (Just(s.clone()), json_with_secret(s)))
        ) {
            let bytes = serde_json::to_vec(&json).unwrap();
            for result in docker_lookups(&bytes) {
                assert_no_secret(&error_texts(&result), &secret)?;
            }
        }

        #[test]
        fn prop_auth_json_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            auth_json_lookups(&bytes);
        }

        #[test]
        fn prop_auth_json_errors_never_quote_the_secret(
            (secret, auths) in secret().prop_flat_map(|s| (Just(s.clone()), auths_with_secret(s)))
        ) {
            let bytes = serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap();
            for result in auth_json_lookups(&bytes) {
                assert_no_secret(&error_texts(&result), &secret)?;
            }
        }

        #[test]
        fn prop_auth_json_truncated_documents_never_quote_the_secret(
            (secret, auths, cut) in secret().prop_flat_map(|s| (Just(s.clone()), auths_with_secret(s), any::<prop::sample::Index>()))
        ) {
            // A half-written file: syntax errors must not quote what came before the cut.
            let bytes = serde_json::to_vec(&serde_json::json!({ "auths": auths })).unwrap();
            let cut = cut.index(bytes.len() + 1);
            for result in auth_json_lookups(&bytes[..cut]) {
                assert_no_secret(&error_texts(&result), &secret)?;
            }
        }
    }
}
