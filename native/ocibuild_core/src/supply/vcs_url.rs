//! Repository URLs made fit to publish: the one place that cleans a git (or hg) URL, for the
//! image's `org.opencontainers.image.source` annotation (`web_url`, called by `ocibuild_vcs`)
//! and for the SBOM's download locations and purls (`Remote`, `redact`).
//!
//! Whatever the form, credentials (`user:token@`), queries and fragments never come out: a
//! token in a remote URL or a lock file must not reach an image.
//!
//! ```
//! use ocibuild_core::supply::vcs_url::web_url;
//! assert_eq!(web_url("git@github.com:acme/hello.git").as_deref(), Some("https://github.com/acme/hello"));
//! assert_eq!(web_url("file:///srv/git/hello.git"), None);
//! ```

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// The authority without its user info: what follows the last `@`.
fn without_userinfo(authority: &str) -> &str {
    authority.rsplit('@').next().unwrap_or(authority)
}

// ----- the source annotation ------------------------------------------------------------------

/// The repository's web URL, as the source annotation gives it (ocibuild 0.10's form):
/// `git@host:org/repo.git` (git's scp-like syntax) and `ssh://[user@]host[:port]/path` become
/// `https://host/path` (an ssh port means nothing to https); `git+https://` and `git+http://`
/// lose the `git+`. User info, query and fragment are removed from every URL, and so is a
/// trailing `.git` (`https://github.com/org/repo.git` is `https://github.com/org/repo`, the
/// page a registry links the image to; git clones either). Scheme (lowercased), host, port and
/// the rest of the path of `http`, `https` and `git` URLs are kept as they are. Local paths,
/// `file://` URLs, other schemes and text that is not a URI are `None`: nobody else can fetch
/// them.
pub fn web_url(text: &str) -> Option<String> {
    let text = text.trim();
    let clean = match UrlParts::parse(text) {
        Some(parts) => parts.web()?,
        None => scp_like(text)?,
    };
    Some(without_git_suffix(&clean))
}

/// `scheme://[userinfo@]host[:port]path[?query][#fragment]`, read as RFC 3986 reads it.
struct UrlParts<'a> {
    scheme: String,
    /// Without brackets for an IPv6 literal.
    host: &'a str,
    port: Option<String>,
    path: &'a str,
}

impl<'a> UrlParts<'a> {
    /// `None` when `text` is not a URI with a host: then it may still be scp-like.
    fn parse(text: &'a str) -> Option<UrlParts<'a>> {
        let (scheme, after) = text.split_once("://")?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'));
        if !scheme_ok || !text.bytes().all(is_uri_byte) {
            return None;
        }
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
        // A second `@` is no URI: the user info ends at the first.
        if authority.matches('@').count() > 1 {
            return None;
        }
        let host_port = without_userinfo(authority);
        let (host, port) = match host_port.strip_prefix('[') {
            Some(literal) => {
                let (host, after) = literal.split_once(']')?;
                (host, after)
            }
            None => match host_port.find(':') {
                Some(i) => (&host_port[..i], &host_port[i..]),
                None => (host_port, ""),
            },
        };
        if host.is_empty() || host.contains(['[', ']']) {
            return None;
        }
        let port = match port.strip_prefix(':') {
            None if port.is_empty() => None,
            None => return None,
            Some("") => None,
            Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
                let trimmed = digits.trim_start_matches('0');
                Some(if trimmed.is_empty() { "0" } else { trimmed }.to_string())
            }
            Some(_) => return None,
        };
        Some(UrlParts {
            scheme: scheme.to_ascii_lowercase(),
            host,
            port,
            path,
        })
    }

    fn web(&self) -> Option<String> {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.to_string()
        };
        let authority = match &self.port {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let scheme = self.scheme.as_str();
        match scheme {
            "ssh" | "git+ssh" | "ssh+git" => Some(format!("https://{host}{}", self.path)),
            "git+https" | "git+http" => {
                Some(format!("{}://{authority}{}", &scheme[4..], self.path))
            }
            "https" | "http" | "git" => Some(format!("{scheme}://{authority}{}", self.path)),
            _ => None,
        }
    }
}

/// What RFC 3986 allows in a URI: unreserved, reserved and `%`.
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

/// `[user@]host:path` as the web URL `https://host/path`.
fn scp_like(text: &str) -> Option<String> {
    let scp = ScpLike::parse(text)?;
    Some(format!(
        "https://{}/{}",
        scp.host,
        scp.path.trim_start_matches('/')
    ))
}

/// git's scp-like syntax, `[user@]host:path`: no scheme, a colon after the host. The host is
/// a name of at least two letters (a one-letter one is a drive letter, `C:/src/repo`, a local
/// path) or a bracketed IPv6 literal; the user info ends at the first `@` and never comes out.
struct ScpLike<'a> {
    has_user: bool,
    host: &'a str,
    /// Up to any `?` or `#`; never empty, never `//...`.
    path: &'a str,
}

impl<'a> ScpLike<'a> {
    fn parse(text: &'a str) -> Option<ScpLike<'a>> {
        let after_user = text
            .split_once('@')
            .filter(|(user, _)| !user.is_empty() && !user.contains('/'))
            .map(|(_, rest)| (true, rest));
        after_user
            .into_iter()
            .chain(std::iter::once((false, text)))
            .find_map(|(has_user, rest)| {
                ScpLike::host_path(rest).map(|(host, path)| ScpLike {
                    has_user,
                    host,
                    path,
                })
            })
    }

    fn host_path(text: &str) -> Option<(&str, &str)> {
        let (host, rest) = if text.starts_with('[') {
            let end = text.find(']')?;
            let literal = &text[1..end];
            let ok = !literal.is_empty()
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            if !ok {
                return None;
            }
            text.split_at(end + 1)
        } else {
            let end = text
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                .unwrap_or(text.len());
            if end < 2 {
                return None;
            }
            text.split_at(end)
        };
        let path = rest.strip_prefix(':')?;
        if path.starts_with("//") {
            return None;
        }
        let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
        (!path.is_empty()).then_some((host, path))
    }
}

/// `.../repo.git` and `.../repo.git/` lose the `.git`; a host, or a path that is only `.git`,
/// stays.
fn without_git_suffix(url: &str) -> String {
    let strip = || -> Option<String> {
        let (scheme, after) = url.split_once("://")?;
        if scheme.is_empty() || scheme.contains('/') {
            return None;
        }
        let slash = after.find('/')?;
        if slash == 0 {
            return None;
        }
        let path = after[slash + 1..]
            .strip_suffix('/')
            .unwrap_or(&after[slash + 1..]);
        let repo = path.rsplit('/').next().unwrap_or(path);
        let name = repo.strip_suffix(".git").filter(|n| !n.is_empty())?;
        let keep = url.len() - (after.len() - slash - 1) + (path.len() - repo.len()) + name.len();
        Some(url[..keep].to_string())
    };
    strip().unwrap_or_else(|| url.to_string())
}

// ----- the SBOM -----------------------------------------------------------------------------

/// Which version control system a remote belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vcs {
    Git,
    Hg,
}

/// A dependency's repository: scheme, host (with port) and path, without credentials, query
/// or fragment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Remote {
    vcs: Vcs,
    scheme: String,
    host: String,
    path: String,
}

/// Hosts that serve only git, so their URLs are git even without `.git`.
const GIT_HOSTS: &[&str] = &["github.com", "gitlab.com", "bitbucket.org", "codeberg.org"];

impl Remote {
    /// A lock file's source as a repository: `https://`/`http://`/`ssh://`/`git://` URLs,
    /// scp-like `git@host:org/repo.git`, and `git+`/`hg+` prefixed ones. An https URL counts
    /// as git when it ends in `.git`, says `git+`, or is on a git-only host; otherwise (a path,
    /// `hg` without a URL, an unknown https URL) the source is no repository we can name.
    pub(crate) fn parse(source: &str) -> Option<Remote> {
        let (explicit, rest) = if let Some(rest) = source.strip_prefix("git+") {
            (Some(Vcs::Git), rest)
        } else if let Some(rest) = source.strip_prefix("hg+") {
            (Some(Vcs::Hg), rest)
        } else {
            (None, source)
        };
        let (scheme, authority, path) = match rest.split_once("://") {
            Some((scheme, after)) => {
                let scheme = scheme.to_ascii_lowercase();
                if !matches!(scheme.as_str(), "https" | "http" | "ssh" | "git") {
                    return None;
                }
                let (authority, path) = after.split_once('/').unwrap_or((after, ""));
                (scheme, authority, path)
            }
            // scp-like `user@host:path` (or `host:path.git`). The user or the `.git` tells it
            // from other `word:word` sources (`hexpm:org`).
            None => {
                let scp = ScpLike::parse(rest)?;
                if !scp.has_user && !scp.path.ends_with(".git") {
                    return None;
                }
                ("ssh".to_string(), scp.host, scp.path)
            }
        };
        let host = without_userinfo(authority).to_ascii_lowercase();
        let path = path
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .trim_matches('/')
            .to_string();
        if host.is_empty() || path.is_empty() {
            return None;
        }
        let bare_host = host.split(':').next().unwrap_or(&host);
        let vcs = match explicit {
            Some(vcs) => vcs,
            None if scheme == "git"
                || scheme == "ssh"
                || path.ends_with(".git")
                || GIT_HOSTS.contains(&bare_host.trim_start_matches("www.")) =>
            {
                Vcs::Git
            }
            None => return None,
        };
        Some(Remote {
            vcs,
            scheme,
            host,
            path,
        })
    }

    /// `(org, repo)` when this is a GitHub repository.
    pub(crate) fn github_repo(&self) -> Option<(&str, &str)> {
        if self.vcs != Vcs::Git || !matches!(self.host.as_str(), "github.com" | "www.github.com") {
            return None;
        }
        let (org, repo) = self.path.split_once('/')?;
        let repo = repo.strip_suffix(".git").unwrap_or(repo);
        if org.is_empty() || repo.is_empty() || repo.contains('/') {
            return None;
        }
        Some((org, repo))
    }

    /// SPDX's VCS download location, `<vcs>+<scheme>://<host>/<path>[@<revision>]`; GitHub
    /// repositories in their https form.
    pub(crate) fn vcs_location(&self, revision: &str) -> String {
        let mut out = match self.github_repo() {
            Some((org, repo)) => format!(
                "git+https://github.com/{}/{}.git",
                url_path(org),
                url_path(repo)
            ),
            None => {
                let tool = match self.vcs {
                    Vcs::Git => "git",
                    Vcs::Hg => "hg",
                };
                format!(
                    "{tool}+{}://{}/{}",
                    self.scheme,
                    self.host,
                    url_path(&self.path)
                )
            }
        };
        if !revision.is_empty() {
            out.push('@');
            out.push_str(&url_path(revision));
        }
        out
    }
}

/// A URL path keeps `/` and what is already percent-encoded; `@` and `#` are encoded since
/// they separate the revision and subpath of a VCS location.
const URL_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}')
    .add(b'?')
    .add(b'#')
    .add(b'@');

fn url_path(s: &str) -> String {
    utf8_percent_encode(s, URL_PATH).to_string()
}

/// The source with any `user:password@`, query and fragment removed, for a comment.
pub(crate) fn redact(source: &str) -> String {
    let source = &source[..source.find(['?', '#']).unwrap_or(source.len())];
    let Some((scheme, rest)) = source.split_once("://") else {
        // scp-like `user:token@host:path`: the user info ends before the first `/`.
        let end = source.find('/').unwrap_or(source.len());
        return match source[..end].rfind('@') {
            Some(at) => source[at + 1..].to_string(),
            None => source.to_string(),
        };
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    format!("{scheme}://{}{path}", without_userinfo(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ocibuild 0.10's cases (`ocibuild_vcs_tests` runs them through the NIF too).
    #[test]
    fn web_urls() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "git@github.com:acme/hello.git",
                Some("https://github.com/acme/hello"),
            ),
            (
                "github.com:acme/hello.git",
                Some("https://github.com/acme/hello"),
            ),
            (
                "git@host.example:/srv/repo.git",
                Some("https://host.example/srv/repo"),
            ),
            (
                "ssh://git@host:2222/org/repo.git",
                Some("https://host/org/repo"),
            ),
            ("ssh://host/org/repo", Some("https://host/org/repo")),
            (
                "git+ssh://git@host.example/x/y",
                Some("https://host.example/x/y"),
            ),
            ("https://user:token@host/x", Some("https://host/x")),
            (
                "https://github.com/acme/hello?x=1#frag",
                Some("https://github.com/acme/hello"),
            ),
            (
                "HTTPS://github.com/acme/hello",
                Some("https://github.com/acme/hello"),
            ),
            (
                "http://git.local:8080/a/b.git",
                Some("http://git.local:8080/a/b"),
            ),
            ("https://[::1]:8443/a.git", Some("https://[::1]:8443/a")),
            (
                "https://example.com/a%20b.git",
                Some("https://example.com/a%20b"),
            ),
            (
                "git://git.kernel.org/pub/scm/git/git.git",
                Some("git://git.kernel.org/pub/scm/git/git"),
            ),
            (
                "git+https://u:p@example.com/a.git",
                Some("https://example.com/a"),
            ),
            (
                "  https://github.com/acme/hello\n",
                Some("https://github.com/acme/hello"),
            ),
            (
                "https://github.com/acme/hello.git/",
                Some("https://github.com/acme/hello"),
            ),
            (
                "https://example.com/a.git?x=1",
                Some("https://example.com/a"),
            ),
            (
                "https://example.com/a.github",
                Some("https://example.com/a.github"),
            ),
            ("https://git.git", Some("https://git.git")),
            ("https://example.com/.git", Some("https://example.com/.git")),
            (
                "https://Host.Example:08443/X",
                Some("https://Host.Example:8443/X"),
            ),
            ("https://host:/x", Some("https://host/x")),
            ("/srv/git/hello.git", None),
            ("../hello", None),
            ("hello", None),
            ("file:///srv/git/hello.git", None),
            ("C:/src/hello", None),
            ("C:\\src\\hello", None),
            ("ftp://example.com/hello.git", None),
            ("https:///nohost", None),
            ("https://example.org/a b", None),
            ("https://example.com/\u{fc}", None),
            ("https://host:abc/x", None),
            ("", None),
        ];
        for (url, want) in cases {
            assert_eq!(web_url(url).as_deref(), *want, "{url:?}");
        }
    }

    #[test]
    fn no_token_survives_any_form() {
        for url in [
            "https://x-access-token:s3cr3t@github.com/a/b.git",
            "https://s3cr3t@dev.azure.com/o/p/_git/b",
            "https://oauth2:s3cr3t@gitlab.com/a/b.git?private_token=s3cr3t#s3cr3t",
            "http://user:s3cr3t@[::1]:8080/a/b",
            "ssh://git:s3cr3t@github.com/a/b.git",
            "git+https://user:s3cr3t@github.com/a/b.git",
            "user:s3cr3t@github.com:a/b.git",
            "https://user:s3cr3t@with@at@github.com/a/b.git",
        ] {
            let cleaned = web_url(url).unwrap_or_default();
            assert!(!cleaned.contains("s3cr3t"), "{url}: {cleaned}");
            let remote = Remote::parse(url).map(|r| r.vcs_location("v1"));
            assert!(
                !format!("{remote:?}").contains("s3cr3t"),
                "{url}: {remote:?}"
            );
            assert!(!redact(url).contains("s3cr3t"), "{url}");
        }
    }

    proptest::proptest! {
        /// Whatever the text, a cleaned URL carries no user info and no query or fragment.
        #[test]
        fn prop_web_url_has_no_userinfo_query_or_fragment(s in ".*") {
            if let Some(url) = web_url(&s) {
                let (_, after) = url.split_once("://").unwrap();
                let authority = after.split('/').next().unwrap();
                proptest::prop_assert!(!authority.contains('@'), "{}", url);
                proptest::prop_assert!(!url.contains(['?', '#']), "{}", url);
            }
        }
    }
}
