//! The environment variables registry work reads, as a value.
//!
//! Inside the BEAM, `os:putenv/2` (and Elixir's `System.put_env/2`) change the VM's own copy
//! of the environment, which native code does not see. So the Erlang side reads the variables
//! below with `os:getenv/1` and passes them in; standalone Rust uses the process environment.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

/// Every variable we read: credentials files, TLS roots, insecure registries, helper lookup,
/// timeouts.
pub const VARIABLES: &[&str] = &[
    "DOCKER_CONFIG",
    "HOME",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "PATH",
    "SSL_CERT_FILE",
    "OCIBUILD_INSECURE_REGISTRIES",
    "OCIBUILD_REGISTRY_TIMEOUT",
    "OCIBUILD_MIN_TRANSFER_RATE",
    "OCIBUILD_TRANSFER_RATE_WINDOW",
];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    vars: BTreeMap<String, OsString>,
}

impl Environment {
    /// The process environment's values of [`VARIABLES`].
    pub fn from_process() -> Environment {
        Environment::from_pairs(
            VARIABLES
                .iter()
                .filter_map(|name| Some((name.to_string(), std::env::var_os(name)?))),
        )
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, OsString)>) -> Environment {
        Environment {
            vars: pairs.into_iter().collect(),
        }
    }

    /// A variable's value; empty values count as unset.
    pub fn var(&self, name: &str) -> Option<&OsStr> {
        self.vars
            .get(name)
            .map(OsString::as_os_str)
            .filter(|v| !v.is_empty())
    }

    pub fn var_string(&self, name: &str) -> Option<String> {
        self.var(name).map(|v| v.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_unset() {
        let env = Environment::from_pairs([
            ("HOME".to_string(), OsString::from("/root")),
            ("SSL_CERT_FILE".to_string(), OsString::new()),
        ]);
        assert_eq!(env.var("HOME"), Some(OsStr::new("/root")));
        assert_eq!(env.var("SSL_CERT_FILE"), None);
        assert_eq!(env.var("PATH"), None);
    }
}
