//! Image references: `alpine:3.19`, `ghcr.io/org/app:v1`, `host:5000/a/b@sha256:...`.
//!
//! The grammar is docker/distribution's, with its normalisation: a name without a registry is
//! on Docker Hub, and a one-component Docker Hub name is an official image under `library/`.
//!
//! ```
//! use ocibuild_core::reference::Reference;
//! let r = Reference::parse("alpine:3.19")?;
//! assert_eq!(r.to_string(), "docker.io/library/alpine:3.19");
//! assert_eq!(r.api_host(), "registry-1.docker.io");
//! # Ok::<(), ocibuild_core::Error>(())
//! ```

use std::fmt;
use std::net::Ipv6Addr;

use crate::digest::Digest;
use crate::{Error, Result};

/// Docker Hub's canonical name; its API is served by [`DOCKER_HUB_API_HOST`].
pub const DOCKER_HUB: &str = "docker.io";
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// Names Docker Hub also goes by, in references and in credential files.
const DOCKER_HUB_ALIASES: &[&str] = &[DOCKER_HUB, "index.docker.io", DOCKER_HUB_API_HOST];

/// docker/distribution's limit on a name (registry and repository as written).
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, ... (lowercase host, optional port).
    pub registry: String,
    /// `library/alpine`, `org/app`, `a/b/c`.
    pub repository: String,
    /// `None` when only a digest was given; `latest` is filled in when neither was.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// The rule of the reference grammar a string breaks, so a caller can say which one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    Empty,
    NameTooLong,
    Registry,
    Repository,
    Tag,
    Digest,
}

impl Rule {
    /// A short name for the rule (an Erlang atom on the other side of the NIF).
    pub fn name(self) -> &'static str {
        match self {
            Rule::Empty => "empty",
            Rule::NameTooLong => "name_too_long",
            Rule::Registry => "registry",
            Rule::Repository => "repository",
            Rule::Tag => "tag",
            Rule::Digest => "digest",
        }
    }

    /// The rule in one line, as a user needs it to fix the reference.
    pub fn explain(self) -> &'static str {
        match self {
            Rule::Empty => "an image reference cannot be empty",
            Rule::NameTooLong => {
                "the name (registry/repository, with docker.io/library/ for Docker Hub) must be \
                 at most 255 characters"
            }
            Rule::Registry => "the registry must be a host name or [IPv6] address with an optional :port",
            Rule::Repository => {
                "each repository component must be lower-case letters and digits, joined by \
                 single '.', '_', '__' or runs of '-'"
            }
            Rule::Tag => {
                "a tag is 1 to 128 letters, digits, '_', '.' or '-', and cannot start with '.' or '-'"
            }
            Rule::Digest => "a digest is sha256: followed by 64 lower-case hex digits",
        }
    }
}

impl Reference {
    /// Parse a reference as `docker pull` does: `[registry/]repository[:tag][@digest]`.
    pub fn parse(s: &str) -> Result<Reference> {
        Reference::check(s).map_err(|_| Error::InvalidReference(s.to_string()))
    }

    /// [`Reference::parse`], telling which [`Rule`] a bad reference breaks.
    pub fn check(s: &str) -> std::result::Result<Reference, Rule> {
        if s.is_empty() {
            return Err(Rule::Empty);
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(Digest::parse(d).map_err(|_| Rule::Digest)?)),
            None => (s, None),
        };
        let (name, tag) = split_tag(name_tag);
        if name.len() > MAX_NAME_LEN {
            return Err(Rule::NameTooLong);
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => (first, rest),
            _ => (DOCKER_HUB, name),
        };
        build(registry, path, tag, digest)
    }

    /// The tuple form `{Registry, Repository, Reference}`, where the last part is a tag or a
    /// `sha256:` digest. Validated and normalised as [`Reference::parse`] does.
    pub fn from_parts(registry: &str, repository: &str, reference: &str) -> Result<Reference> {
        let is_digest = reference.contains(':');
        let invalid = || {
            let sep = if is_digest { '@' } else { ':' };
            Error::InvalidReference(format!("{registry}/{repository}{sep}{reference}"))
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid());
        }
        let (tag, digest) = if is_digest {
            (None, Some(Digest::parse(reference).map_err(|_| invalid())?))
        } else {
            (Some(reference), None)
        };
        build(registry, repository, tag, digest).map_err(|_| invalid())
    }

    /// The host that serves this reference's registry API.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// What goes after `/manifests/`: the digest when pinned, else the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A push target: `registry` as configured (it may carry a scheme and a namespace, as in
/// `https://ghcr.io/myorg`) plus `repo_tag` (`app:v1`, or `app` for `latest`). A digest is
/// refused: a pushed manifest needs a tag to be found by.
pub fn parse_target(registry: &str, repo_tag: &str) -> Result<Reference> {
    let invalid = || Error::InvalidReference(format!("{registry}/{repo_tag}"));
    if repo_tag.contains('@') {
        return Err(invalid());
    }
    let trimmed = strip_scheme(registry).trim_end_matches('/');
    let (host, prefix) = match trimmed.split_once('/') {
        Some((host, prefix)) => (host, Some(prefix)),
        None => (trimmed, None),
    };
    let (repo, tag) = split_tag(repo_tag);
    let repository = match prefix {
        Some(p) => format!("{p}/{repo}"),
        None => repo.to_string(),
    };
    if host.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(invalid());
    }
    let tag = tag.or(Some(DEFAULT_TAG));
    build(host, &repository, tag, None).map_err(|_| invalid())
}

/// The canonical name of a registry host: lowercase, Docker Hub's aliases folded into
/// `docker.io`. `None` when it is not a valid `host[:port]`.
pub fn normalize_registry(registry: &str) -> Option<String> {
    let lower = registry.to_ascii_lowercase();
    if !is_valid_registry(&lower) {
        return None;
    }
    if DOCKER_HUB_ALIASES.contains(&lower.as_str()) {
        return Some(DOCKER_HUB.to_string());
    }
    Some(lower)
}

/// Drop a leading `http://` or `https://` (any case).
pub(crate) fn strip_scheme(s: &str) -> &str {
    for scheme in ["https://", "http://"] {
        if s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            return &s[scheme.len()..];
        }
    }
    s
}

/// Validate and normalise the parts; the first rule broken is the error.
fn build(
    registry: &str,
    path: &str,
    tag: Option<&str>,
    digest: Option<Digest>,
) -> std::result::Result<Reference, Rule> {
    let registry = normalize_registry(registry).ok_or(Rule::Registry)?;
    if !path.split('/').all(is_path_component) {
        return Err(Rule::Repository);
    }
    if tag.is_some_and(|t| !is_tag(t)) {
        return Err(Rule::Tag);
    }
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    // docker/distribution limits the normalised name, so what we print parses back.
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(Rule::NameTooLong);
    }
    // Neither tag nor digest means the default tag; a digest alone stays untagged.
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_string()),
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// Split `name[:tag]`. Only a colon after the last slash starts a tag; earlier ones belong to
/// a registry's port (`localhost:5000/app`).
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

/// docker's rule for the first component of a name: a registry when it has a dot (a domain),
/// a colon (a port) or is `localhost`; otherwise it is part of a Docker Hub repository.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// `host[:port]` where host is dot-separated domain components or a bracketed IPv6 address.
/// Expects lowercase input.
fn is_valid_registry(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(s), None),
        }
    };
    let host_ok = host.is_none_or(|h| h.split('.').all(is_domain_component));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
    });
    host_ok && port_ok
}

/// `[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9]` (input already lowercased).
fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            alnum(first) && alnum(last) && b.iter().all(|x| alnum(x) || *x == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`: lowercase alphanumeric runs joined by one
/// separator each, where a separator is `.`, `_`, `__` or any number of dashes.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: &u8| x.is_ascii_alphanumeric() || *x == b'_';
    match b.first() {
        Some(first) if word(first) && b.len() <= MAX_TAG_LEN => {
            b.iter().all(|x| word(x) || *x == b'.' || *x == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn digest() -> String {
        format!("sha256:{HEX}")
    }

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (
            r.registry,
            r.repository,
            r.tag,
            r.digest.map(|d| d.to_string()),
        )
    }

    fn assert_parts(
        s: &str,
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) {
        assert_eq!(
            parts(s),
            (
                registry.to_string(),
                repository.to_string(),
                tag.map(str::to_string),
                digest.map(str::to_string)
            ),
            "{s}"
        );
    }

    fn assert_invalid(s: &str) {
        match Reference::parse(s) {
            Err(Error::InvalidReference(original)) => assert_eq!(original, s),
            other => panic!("{s:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn bare_names_are_official_docker_hub_images() {
        assert_parts(
            "alpine",
            "docker.io",
            "library/alpine",
            Some("latest"),
            None,
        );
        assert_parts(
            "alpine:3.19",
            "docker.io",
            "library/alpine",
            Some("3.19"),
            None,
        );
        assert_parts("user/app:1", "docker.io", "user/app", Some("1"), None);
        assert_parts("a/b/c", "docker.io", "a/b/c", Some("latest"), None);
    }

    #[test]
    fn docker_hub_aliases_normalise() {
        for host in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "Docker.IO",
        ] {
            assert_parts(
                &format!("{host}/alpine"),
                "docker.io",
                "library/alpine",
                Some("latest"),
                None,
            );
            assert_parts(
                &format!("{host}/user/app:x"),
                "docker.io",
                "user/app",
                Some("x"),
                None,
            );
        }
    }

    #[test]
    fn registries_are_recognised_by_dot_colon_or_localhost() {
        assert_parts("ghcr.io/org/app:v1", "ghcr.io", "org/app", Some("v1"), None);
        assert_parts("localhost:5000/x:y", "localhost:5000", "x", Some("y"), None);
        assert_parts("localhost/x", "localhost", "x", Some("latest"), None);
        assert_parts("host:5000/a/b/c:t", "host:5000", "a/b/c", Some("t"), None);
        assert_parts(
            "GHCR.io/org/app",
            "ghcr.io",
            "org/app",
            Some("latest"),
            None,
        );
        assert_parts("[::1]:5000/app:1", "[::1]:5000", "app", Some("1"), None);
        assert_parts("[fe80::1]/app", "[fe80::1]", "app", Some("latest"), None);
        // Neither a dot, a colon nor localhost: a Docker Hub namespace.
        assert_parts(
            "myhost/app",
            "docker.io",
            "myhost/app",
            Some("latest"),
            None,
        );
    }

    #[test]
    fn a_colon_without_a_slash_after_it_is_a_tag() {
        // As in docker: `localhost:5000` alone is the official image `localhost`, tag 5000.
        assert_parts(
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            None,
        );
    }

    #[test]
    fn digests_with_and_without_tags() {
        let d = digest();
        assert_parts(
            &format!("alpine@{d}"),
            "docker.io",
            "library/alpine",
            None,
            Some(&d),
        );
        assert_parts(
            &format!("alpine:3.19@{d}"),
            "docker.io",
            "library/alpine",
            Some("3.19"),
            Some(&d),
        );
        assert_parts(
            &format!("localhost:5000/a/b@{d}"),
            "localhost:5000",
            "a/b",
            None,
            Some(&d),
        );
    }

    #[test]
    fn repository_components_follow_the_grammar() {
        for ok in [
            "a",
            "a.b",
            "a_b",
            "a__b",
            "a-b",
            "a---b",
            "a1.b2_c3__d4-e5",
            "0",
        ] {
            assert!(is_path_component(ok), "{ok}");
        }
        for bad in [
            "", "A", "a..b", "a___b", "a._b", "-a", "a-", ".a", "a.", "_a", "a_", "a b", "a-_b",
        ] {
            assert!(!is_path_component(bad), "{bad:?}");
        }
    }

    #[test]
    fn tags_follow_the_grammar() {
        for ok in ["latest", "3.19", "_x", "V1.0-rc.1", &"a".repeat(128)] {
            assert!(is_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a b", &"a".repeat(129)] {
            assert!(!is_tag(bad), "{bad:?}");
        }
    }

    #[test]
    fn invalid_references_are_rejected_with_the_original_string() {
        let d = digest();
        for bad in [
            "",
            "Alpine",
            "user/App",
            "alpine:",
            "alpine@",
            "alpine:@",
            "alpine:tag@",
            "/alpine",
            "alpine/",
            "a//b",
            "al pine",
            " alpine",
            "alpine:la test",
            "alpine@sha256:abc",
            "alpine@sha512:abc",
            &format!("alpine@sha256:{}", HEX.to_uppercase()),
            &format!("alpine@{d}@{d}"),
            "localhost:/x",
            "localhost:port/x",
            "localhost:99999/x",
            "-bad.io/x",
            "bad-.io/x",
            "a..io/x",
            "[::1/x",
            "[zz::1]:5000/x",
            "[::1]x/y",
            "ghcr.io/org/app:.tag",
            "ghcr.io/org/app:ta/g",
        ] {
            assert_invalid(bad);
        }
    }

    #[test]
    fn names_are_limited_to_255_characters() {
        let long = format!("ghcr.io/{}", "a".repeat(255 - "ghcr.io/".len()));
        assert!(Reference::parse(&long).is_ok());
        assert_invalid(&format!("{long}a"));
        let long_tag = format!("{long}:{}", "t".repeat(128));
        assert!(Reference::parse(&long_tag).is_ok());
    }

    #[test]
    fn display_is_canonical() {
        let d = digest();
        for (input, shown) in [
            ("alpine", "docker.io/library/alpine:latest".to_string()),
            ("alpine:3.19", "docker.io/library/alpine:3.19".to_string()),
            (
                "index.docker.io/user/app:1",
                "docker.io/user/app:1".to_string(),
            ),
            ("ghcr.io/org/app:v1", "ghcr.io/org/app:v1".to_string()),
            (
                &format!("alpine@{d}"),
                format!("docker.io/library/alpine@{d}"),
            ),
            (
                &format!("localhost:5000/x:y@{d}"),
                format!("localhost:5000/x:y@{d}"),
            ),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), shown);
            // The canonical form parses back to the same reference.
            assert_eq!(Reference::parse(&shown).unwrap(), r);
        }
    }

    #[test]
    fn api_host_and_reference() {
        let hub = Reference::parse("alpine").unwrap();
        assert_eq!(hub.api_host(), DOCKER_HUB_API_HOST);
        assert_eq!(hub.reference(), "latest");
        let local = Reference::parse("localhost:5000/x:y").unwrap();
        assert_eq!(local.api_host(), "localhost:5000");
        assert_eq!(local.reference(), "y");
        let pinned = Reference::parse(&format!("ghcr.io/a/b:1@{}", digest())).unwrap();
        assert_eq!(pinned.reference(), digest());
        let untagged = Reference { tag: None, ..local };
        assert_eq!(untagged.reference(), "latest");
    }

    #[test]
    fn from_parts_validates_and_normalises() {
        let r = Reference::from_parts("docker.io", "alpine", "3.19").unwrap();
        assert_eq!(r, Reference::parse("alpine:3.19").unwrap());
        let r = Reference::from_parts("index.docker.io", "user/app", "1").unwrap();
        assert_eq!(r.to_string(), "docker.io/user/app:1");
        let r = Reference::from_parts("GHCR.IO", "org/app", &digest()).unwrap();
        assert_eq!((r.registry.as_str(), r.tag.as_deref()), ("ghcr.io", None));
        assert_eq!(r.digest.unwrap().to_string(), digest());
        // An explicit registry needs no dot: it was named as a registry.
        let r = Reference::from_parts("myregistry", "app", "v1").unwrap();
        assert_eq!(r.to_string(), "myregistry/app:v1");
        let r = Reference::from_parts("[::1]:5000", "a/b", "t").unwrap();
        assert_eq!(r.to_string(), "[::1]:5000/a/b:t");
    }

    #[test]
    fn from_parts_rejects_bad_parts() {
        for (reg, repo, reference) in [
            ("", "app", "v1"),
            ("ghcr.io", "", "v1"),
            ("ghcr.io", "App", "v1"),
            ("ghcr.io", "app", ""),
            ("ghcr.io", "app", ".v1"),
            ("ghcr.io", "app", "sha256:abc"),
            ("ghcr.io/org", "app", "v1"),
            ("bad host", "app", "v1"),
        ] {
            match Reference::from_parts(reg, repo, reference) {
                Err(Error::InvalidReference(s)) => {
                    assert!(s.contains(repo) && s.contains(reference), "{s}")
                }
                other => panic!("{reg} {repo} {reference}: {other:?}"),
            }
        }
    }

    #[test]
    fn push_targets_take_a_namespace_and_a_scheme() {
        let t = parse_target("ghcr.io/myorg", "app:v1").unwrap();
        assert_eq!(t.to_string(), "ghcr.io/myorg/app:v1");
        let t = parse_target("https://ghcr.io/myorg/", "app").unwrap();
        assert_eq!(t.to_string(), "ghcr.io/myorg/app:latest");
        let t = parse_target("http://localhost:5000", "a/b:t").unwrap();
        assert_eq!(t.to_string(), "localhost:5000/a/b:t");
        let t = parse_target("HTTPS://Index.Docker.io", "user/app:1").unwrap();
        assert_eq!(t.to_string(), "docker.io/user/app:1");
        let t = parse_target("docker.io/user", "app").unwrap();
        assert_eq!(t.to_string(), "docker.io/user/app:latest");
        let t = parse_target("myregistry", "app:1").unwrap();
        assert_eq!(
            (t.registry.as_str(), t.repository.as_str()),
            ("myregistry", "app")
        );
    }

    #[test]
    fn push_targets_need_a_valid_tag_and_no_digest() {
        for (reg, repo_tag) in [
            ("ghcr.io", &format!("app@{}", digest())),
            ("ghcr.io", &format!("app:v1@{}", digest())),
            ("ghcr.io", &"app:".to_string()),
            ("ghcr.io", &"App:v1".to_string()),
            ("", &"app:v1".to_string()),
            ("https://", &"app:v1".to_string()),
            ("ghcr.io//org", &"app".to_string()),
            ("ftp://ghcr.io", &"app".to_string()),
        ] {
            match parse_target(reg, repo_tag) {
                Err(Error::InvalidReference(s)) => assert_eq!(s, format!("{reg}/{repo_tag}")),
                other => panic!("{reg} {repo_tag}: {other:?}"),
            }
        }
    }

    #[test]
    fn check_names_the_rule_broken() {
        let d = digest();
        for (bad, rule) in [
            ("", Rule::Empty),
            ("bad tag!!", Rule::Repository),
            ("MyApp:1", Rule::Repository),
            ("app:bad tag", Rule::Tag),
            ("app:.x", Rule::Tag),
            ("app\0:1", Rule::Repository),
            ("app:1\0", Rule::Tag),
            ("app@sha256:zz", Rule::Digest),
            ("-x.io/app", Rule::Registry),
            ("localhost:99999/app", Rule::Registry),
            (&format!("{}@{d}", "a".repeat(256)), Rule::NameTooLong),
        ] {
            assert_eq!(Reference::check(bad), Err(rule), "{bad:?}");
            assert!(!rule.explain().is_empty() && !rule.explain().contains('\n'));
        }
    }

    #[test]
    fn docker_hub_names_are_limited_once_normalised() {
        // `docker.io/library/` + 237 = 255: the canonical form must parse back.
        let fits = "a".repeat(255 - "docker.io/library/".len());
        let r = Reference::parse(&fits).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        assert_eq!(
            Reference::check(&format!("{fits}a")),
            Err(Rule::NameTooLong)
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// The OCI distribution grammar, stated run by run: a repository component is
        /// lower-case alphanumeric runs separated by exactly `.`, `_`, `__` or dashes.
        fn grammar_component(c: &str) -> bool {
            let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
            let runs: Vec<&str> = c.split(|ch: char| alnum(ch)).collect();
            let separators = &runs[1..runs.len().saturating_sub(1)];
            c.chars().all(|ch| alnum(ch) || "._-".contains(ch))
                && c.starts_with(alnum)
                && c.ends_with(alnum)
                && separators.iter().all(|s| {
                    s.is_empty() || [".", "_", "__"].contains(s) || s.chars().all(|ch| ch == '-')
                })
        }

        fn grammar_tag(t: &str) -> bool {
            let word = |ch: char| ch.is_ascii_alphanumeric() || ch == '_';
            (1..=128).contains(&t.len())
                && t.starts_with(word)
                && t.chars().all(|ch| word(ch) || ch == '.' || ch == '-')
        }

        /// Anything accepted is canonical, follows the grammar and prints to what it parsed.
        fn check_accepted(r: &Reference) {
            assert!(r.repository.split('/').all(grammar_component), "{r:?}");
            assert!(r.tag.as_deref().is_none_or(grammar_tag), "{r:?}");
            assert!(r.tag.is_some() || r.digest.is_some());
            assert_eq!(
                normalize_registry(&r.registry).as_deref(),
                Some(r.registry.as_str())
            );
            if let Some(d) = &r.digest {
                let hex = d.as_str().strip_prefix("sha256:").unwrap();
                assert!(
                    hex.len() == 64
                        && hex
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                );
            }
            assert!(r.registry.len() + 1 + r.repository.len() <= MAX_NAME_LEN);
            let shown = r.to_string();
            assert_eq!(Reference::check(&shown).as_ref(), Ok(r), "{shown}");
        }

        fn component() -> impl Strategy<Value = String> {
            "[a-z0-9]{1,4}(([._]|__|-{1,3})[a-z0-9]{1,4}){0,2}"
        }

        proptest! {
            #[test]
            fn prop_reference_arbitrary_strings_parse_or_name_a_rule(s in any::<String>()) {
                if let Ok(r) = Reference::check(&s) {
                    check_accepted(&r);
                }
            }

            #[test]
            fn prop_reference_near_valid_strings_parse_or_name_a_rule(
                s in "([A-Za-z0-9.:_-]{0,12}/){0,3}[A-Za-z0-9._ -]{0,12}(:[A-Za-z0-9._!-]{0,10})?(@sha256:[0-9a-fA-F]{62,66})?",
            ) {
                if let Ok(r) = Reference::check(&s) {
                    check_accepted(&r);
                }
            }

            #[test]
            fn prop_reference_grammar_strings_are_accepted_as_written(
                registry in prop::sample::select(vec!["", "ghcr.io/", "localhost:5000/", "Index.Docker.io/", "[::1]:5000/", "a-b.c/"]),
                mut path in prop::collection::vec(component(), 1..4),
                tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
                hex in proptest::option::of("[0-9a-f]{64}"),
            ) {
                // Without a registry, a first component with a dot would be read as one; make
                // it a plain component rather than reject the case (rejects cap large budgets).
                if registry.is_empty() && path.len() > 1 {
                    path[0] = path[0].replace('.', "_");
                }
                let path = path.join("/");
                let mut s = format!("{registry}{path}");
                if let Some(t) = &tag {
                    s = format!("{s}:{t}");
                }
                if let Some(h) = &hex {
                    s = format!("{s}@sha256:{h}");
                }
                let r = Reference::check(&s).unwrap_or_else(|rule| panic!("{s}: {rule:?}"));
                check_accepted(&r);
                prop_assert!(r.repository.ends_with(&path));
                prop_assert_eq!(r.tag.as_deref(), tag.as_deref().or(hex.as_ref().map_or(Some(DEFAULT_TAG), |_| None)));
                // One upper-case letter in the repository breaks it, and says so.
                let upper = format!("{registry}X{path}");
                prop_assert_eq!(Reference::check(&upper), Err(Rule::Repository));
            }
        }
    }
}
