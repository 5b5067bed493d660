//! `WWW-Authenticate` challenges (RFC 7235 §4.1): what a 401 asks us to authenticate with.
//!
//! One header may hold several challenges, and commas separate both challenges and their
//! parameters, so a challenge ends where a token appears that is not followed by `=`:
//!
//! ```
//! use ocibuild_core::registry::auth::challenge;
//! let c = challenge::parse(r#"Bearer realm="https://auth.docker.io/token",scope="repository:a:pull,push""#);
//! assert_eq!(c[0].scheme, "bearer");
//! assert_eq!(c[0].params["scope"], "repository:a:pull,push");
//! ```
//!
//! Parsing is lenient: a malformed parameter is skipped up to the next comma rather than
//! failing the whole header, since a registry's odd header should not hide a usable challenge.

use std::collections::BTreeMap;

/// The `params` key under which a challenge's token68 (`Negotiate abc==`) is kept; no
/// parameter name can be empty, so it cannot collide with one.
pub const TOKEN68_KEY: &str = "";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// The token68 form of credentials some schemes use instead of parameters.
    pub fn token68(&self) -> Option<&str> {
        self.params.get(TOKEN68_KEY).map(String::as_str)
    }
}

/// Every challenge in one `WWW-Authenticate` value, schemes and parameter names lowercased,
/// values unquoted and unescaped. Garbage yields fewer challenges, never an error.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut challenges = Vec::new();
    loop {
        p.skip_separators();
        if p.at_end() {
            break;
        }
        let Some(scheme) = p.token() else {
            // Not a challenge start: skip this element.
            p.skip_past_comma();
            continue;
        };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        // The first item must be separated from the scheme by whitespace.
        if p.skip_whitespace() > 0 {
            if let Some(t) = p.token68() {
                challenge.params.insert(TOKEN68_KEY.to_string(), t);
            } else {
                p.params(&mut challenge.params);
            }
        }
        challenges.push(challenge);
    }
    challenges
}

/// A cursor over the header's bytes. The header is ASCII per the RFC; non-ASCII bytes only
/// occur inside quoted strings, which are copied as UTF-8 (lossily) when they do.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// `tchar` from RFC 7230 §3.2.6.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

fn is_whitespace(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_whitespace(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(is_whitespace) {
            self.i += 1;
        }
        self.i - start
    }

    /// Whitespace and the empty list elements `#rule` allows (`a, , b`).
    fn skip_separators(&mut self) {
        while self.peek().is_some_and(|b| is_whitespace(b) || b == b',') {
            self.i += 1;
        }
    }

    fn skip_past_comma(&mut self) {
        while let Some(b) = self.peek() {
            self.i += 1;
            if b == b',' {
                break;
            }
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A token68 is only one if the challenge ends right after it; `realm="x"` starts the
    /// same way and is a parameter. On failure the cursor is left where it was.
    fn token68(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_token68_char) {
            self.i += 1;
        }
        let body_end = self.i;
        while self.peek() == Some(b'=') {
            self.i += 1;
        }
        let end = self.i;
        self.skip_whitespace();
        let ends_challenge = self.at_end() || (self.peek() == Some(b',') && !self.param_follows());
        if body_end > start && ends_challenge {
            Some(String::from_utf8_lossy(&self.s[start..end]).into_owned())
        } else {
            self.i = start;
            None
        }
    }

    /// Whether the next list element is `name=...` (a parameter) rather than a new
    /// challenge. Lets `realm=, service="s"` read as parameters, not as the token68 `realm=`.
    fn param_follows(&mut self) -> bool {
        let saved = self.i;
        self.skip_separators();
        let is_param = self.token().is_some() && {
            self.skip_whitespace();
            self.peek() == Some(b'=')
        };
        self.i = saved;
        is_param
    }

    /// `#auth-param`, up to the start of the next challenge or the end.
    fn params(&mut self, params: &mut BTreeMap<String, String>) {
        loop {
            self.skip_separators();
            if self.at_end() {
                return;
            }
            let start = self.i;
            let Some(name) = self.token() else {
                self.skip_past_comma();
                continue;
            };
            self.skip_whitespace();
            if self.peek() != Some(b'=') {
                // A bare token: the next challenge's scheme. Leave it for the caller.
                self.i = start;
                return;
            }
            self.i += 1;
            self.skip_whitespace();
            let value = if self.peek() == Some(b'"') {
                Some(self.quoted_string())
            } else {
                self.token()
            };
            match value {
                // RFC 7235: a parameter occurs once; keep the first if a server repeats it.
                Some(v) => {
                    params.entry(name.to_ascii_lowercase()).or_insert(v);
                }
                None => self.skip_past_comma(),
            }
        }
    }

    /// A quoted string starting at `"`, with `\x` escapes. An unterminated string runs to the
    /// end of the header.
    fn quoted_string(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn challenge(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.to_string(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn docker_hub_bearer() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse(h),
            vec![challenge(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/alpine:pull"),
                ]
            )]
        );
    }

    #[test]
    fn basic_with_realm() {
        assert_eq!(
            parse(r#"Basic realm="Registry Realm""#),
            vec![challenge("basic", &[("realm", "Registry Realm")])]
        );
    }

    #[test]
    fn commas_inside_quotes_do_not_split() {
        let c = parse(
            r#"Bearer realm="https://r/token",scope="repository:a:pull,push repository:b:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].params["scope"],
            "repository:a:pull,push repository:b:pull"
        );
    }

    #[test]
    fn escaped_quotes_and_backslashes() {
        let c = parse(r#"Basic realm="say \"hi\", \\ok\\""#);
        assert_eq!(
            c,
            vec![challenge("basic", &[("realm", r#"say "hi", \ok\"#)])]
        );
    }

    #[test]
    fn several_challenges_in_one_header() {
        let h = r#"Basic realm="simple", Bearer realm="https://r/token", service="reg", Newauth"#;
        assert_eq!(
            parse(h),
            vec![
                challenge("basic", &[("realm", "simple")]),
                challenge(
                    "bearer",
                    &[("realm", "https://r/token"), ("service", "reg")]
                ),
                challenge("newauth", &[]),
            ]
        );
    }

    #[test]
    fn rfc_7235_example() {
        let h = r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#;
        assert_eq!(
            parse(h),
            vec![
                challenge(
                    "newauth",
                    &[
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", r#"Login to "apps""#)
                    ]
                ),
                challenge("basic", &[("realm", "simple")]),
            ]
        );
    }

    #[test]
    fn token68_values() {
        let c = parse("Negotiate YIIB+w/Zx==, Basic realm=x");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "negotiate");
        assert_eq!(c[0].token68(), Some("YIIB+w/Zx=="));
        assert_eq!(c[1], challenge("basic", &[("realm", "x")]));
        assert_eq!(parse("Custom abc")[0].token68(), Some("abc"));
        assert_eq!(parse("Custom abc=  ")[0].token68(), Some("abc="));
        assert_eq!(parse(r#"Basic realm="x""#)[0].token68(), None);
    }

    #[test]
    fn names_lowercased_values_kept() {
        let c = parse(r#"BEARER Realm="https://R/Token",SERVICE=Registry.Example"#);
        assert_eq!(
            c,
            vec![challenge(
                "bearer",
                &[
                    ("realm", "https://R/Token"),
                    ("service", "Registry.Example")
                ]
            )]
        );
    }

    #[test]
    fn extra_whitespace_and_empty_elements() {
        let h = "  Bearer   realm = \"https://r/t\" ,\t service=\"s\"  , ,  Basic\trealm=\"b\"  ";
        assert_eq!(
            parse(h),
            vec![
                challenge("bearer", &[("realm", "https://r/t"), ("service", "s")]),
                challenge("basic", &[("realm", "b")]),
            ]
        );
    }

    #[test]
    fn scheme_alone_and_empty_header() {
        assert_eq!(parse("Bearer"), vec![challenge("bearer", &[])]);
        assert!(parse("").is_empty());
        assert!(parse("  , ,").is_empty());
    }

    #[test]
    fn repeated_params_keep_the_first() {
        let c = parse(r#"Bearer realm="a", realm="b""#);
        assert_eq!(c[0].params["realm"], "a");
    }

    #[test]
    fn malformed_input_is_survived() {
        // Unterminated quote: the value runs to the end.
        let c = parse(r#"Bearer realm="https://r/t, service=x"#);
        assert_eq!(
            c,
            vec![challenge("bearer", &[("realm", "https://r/t, service=x")])]
        );
        // A parameter without a value is skipped; the rest still parses.
        let c = parse(r#"Bearer realm=, service="s""#);
        assert_eq!(c, vec![challenge("bearer", &[("service", "s")])]);
        // Junk before a challenge is skipped.
        let c = parse(r#"=== , Basic realm="r""#);
        assert_eq!(c, vec![challenge("basic", &[("realm", "r")])]);
        // Non-ASCII inside a quoted string is kept.
        let c = parse("Basic realm=\"Régistre\"");
        assert_eq!(c[0].params["realm"], "Régistre");
    }

    /// `value` as a quoted-string: quotes and backslashes escaped.
    fn quote(value: &str) -> String {
        let mut out = String::from("\"");
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        out
    }

    proptest! {
        #[test]
        fn prop_challenge_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for c in parse(&String::from_utf8_lossy(&bytes)) {
                prop_assert!(!c.scheme.is_empty());
                prop_assert!(c.params.keys().all(|k| k.is_empty() || k.bytes().all(is_tchar)));
            }
        }

        // Any value survives quoting and parsing, next to another parameter and another
        // challenge, whatever commas, quotes, backslashes or `=` it holds.
        #[test]
        fn prop_challenge_quoted_strings_round_trip(
            scheme in "[A-Za-z][A-Za-z0-9_-]{0,8}",
            name in "[A-Za-z][A-Za-z0-9_-]{0,8}",
            value in any::<String>(),
            other in "[ -~]{0,20}",
        ) {
            let header = format!(
                "{scheme} {name}={}, zz_last={}, Basic realm={}",
                quote(&value),
                quote(&other),
                quote(&value)
            );
            let parsed = parse(&header);
            prop_assert_eq!(parsed.len(), 2, "{}", header);
            prop_assert_eq!(&parsed[0].scheme, &scheme.to_ascii_lowercase());
            let key = name.to_ascii_lowercase();
            prop_assert_eq!(parsed[0].params.get(&key), Some(&value));
            if key != "zz_last" {
                prop_assert_eq!(parsed[0].params.get("zz_last"), Some(&other));
            }
            prop_assert_eq!(&parsed[1], &challenge("basic", &[("realm", &value)]));
        }
    }
}
