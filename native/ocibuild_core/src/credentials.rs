//! Registry credentials as a value: what a caller hands over for a registry, whichever way it
//! was found. Finding them (environment, docker and podman config files, credential helpers)
//! is `registry::credentials`' job; this module sits below `image/` and `registry/` so both
//! can name the value without importing each other.
//!
//! ```
//! use ocibuild_core::credentials::Credentials;
//! let c = Credentials::basic("user", "hunter2");
//! assert_eq!(format!("{c:?}"), r#"Basic { username: "user", password: "<redacted>" }"#);
//! assert!(Credentials::basic("", "").is_anonymous());
//! ```

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
