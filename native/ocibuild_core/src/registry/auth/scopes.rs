//! What a job may do in which repositories, as token scopes (`repository:org/app:pull,push`),
//! and the credentials it does it with.
//!
//! ```
//! use ocibuild_core::registry::auth::Scopes;
//! let s = Scopes::push("org/app").with_pull("library/base");
//! assert_eq!(s.describe(), "repository:org/app:pull,push repository:library/base:pull");
//! ```

use crate::credentials::Credentials;

/// The same scopes are asked for every request of a job so one token serves them all.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub fn pull(repository: &str) -> Scopes {
        Scopes(vec![format!("repository:{repository}:pull")])
    }

    pub fn push(repository: &str) -> Scopes {
        Scopes(vec![format!("repository:{repository}:pull,push")])
    }

    /// Also ask to read `repository` (the source of a cross-repository mount).
    pub fn with_pull(mut self, repository: &str) -> Scopes {
        let scope = format!("repository:{repository}:pull");
        if !self
            .0
            .iter()
            .any(|s| s.starts_with(&format!("repository:{repository}:")))
        {
            self.0.push(scope);
        }
        self
    }

    /// Each scope, as a token request names it.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn describe(&self) -> String {
        self.0.join(" ")
    }
}

/// Credentials and scopes for the requests of one job against one registry.
#[derive(Clone, Debug)]
pub struct Access {
    pub credentials: Credentials,
    pub scopes: Scopes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_add_mount_source_once() {
        let s = Scopes::push("org/app")
            .with_pull("library/base")
            .with_pull("library/base");
        assert_eq!(
            s.describe(),
            "repository:org/app:pull,push repository:library/base:pull"
        );
        assert_eq!(Scopes::push("a").with_pull("a"), Scopes::push("a"));
    }
}
