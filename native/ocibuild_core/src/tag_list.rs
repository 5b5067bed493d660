//! The image tags a user gives (`-t`, a project file's `tag`, 0.10's `tags`): each text may be
//! a `;`-separated list, each tag is checked by the reference grammar, and tags are grouped by
//! the repository they name, as written, so one push puts the manifest and the group's other
//! tags point at it. The one place this is decided; Erlang reaches it through the NIF's
//! `reference_tags/1`.
//!
//! ```
//! use ocibuild_core::tag_list;
//! let groups = tag_list::parse(&["app:1; app:latest", "ghcr.io/org/app:2"]).unwrap();
//! assert_eq!(groups[0].name, "app");
//! assert_eq!(groups[0].tags, ["app:1", "app:latest"]);
//! assert_eq!(groups[0].versions, ["1", "latest"]);
//! assert_eq!(groups[1].name, "ghcr.io/org/app");
//! ```

use crate::reference::Reference;

/// Tags naming one repository (as written), in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// `app`, `ghcr.io/org/app`, `localhost:5000/app`: the tag without its `:tag` part.
    pub name: String,
    /// The full tags, `app:1`.
    pub tags: Vec<String>,
    /// Each tag's part after the last `:` that follows the last `/` (`latest` when none).
    pub versions: Vec<String>,
}

/// A tag the grammar refuses: the tag as expanded, and the rule in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub tag: String,
    pub why: String,
}

/// Erlang's `string:trim/1` whitespace (Unicode Pattern_White_Space), so a tag list means
/// what it meant when Erlang expanded it.
const TRIMMED: &[char] = &[
    ' ', '\t', '\n', '\r', '\u{0B}', '\u{0C}', '\u{85}', '\u{200E}', '\u{200F}', '\u{2028}',
    '\u{2029}',
];

/// Every tag of `texts`: `;`-lists expanded, each trimmed, empty ones dropped.
pub fn expand<S: AsRef<str>>(texts: &[S]) -> Vec<String> {
    texts
        .iter()
        .flat_map(|t| t.as_ref().split(';'))
        .map(|t| t.trim_matches(TRIMMED))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `expand`, every tag checked (`[registry/]repository[:tag]`, no `@digest`), grouped by the
/// repository as written, groups in the order their first tag appears.
pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Vec<Group>, Invalid> {
    let mut groups: Vec<Group> = Vec::new();
    for tag in expand(texts) {
        check(&tag)?;
        let (name, version) = split(&tag);
        match groups.iter_mut().find(|g| g.name == name) {
            Some(g) => {
                g.tags.push(tag.clone());
                g.versions.push(version.to_string());
            }
            None => groups.push(Group {
                name: name.to_string(),
                tags: vec![tag.clone()],
                versions: vec![version.to_string()],
            }),
        }
    }
    Ok(groups)
}

fn check(tag: &str) -> Result<(), Invalid> {
    let invalid = |why: &str| Invalid {
        tag: tag.to_string(),
        why: why.to_string(),
    };
    match Reference::check(tag) {
        Ok(r) if r.digest.is_some() => Err(invalid(
            "name the image as [registry/]repository[:tag], without a @digest",
        )),
        Ok(_) => Ok(()),
        Err(rule) => Err(invalid(rule.explain())),
    }
}

/// `ghcr.io/org/app:v1` -> (`ghcr.io/org/app`, `v1`); a `:` before the last `/` is a port.
pub fn split(tag: &str) -> (&str, &str) {
    let name = tag.split_once('@').map_or(tag, |(n, _)| n);
    let last_slash = name.rfind('/');
    match name.rfind(':') {
        Some(colon) if last_slash.is_none_or(|s| colon > s) => (&name[..colon], &name[colon + 1..]),
        _ => (name, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lists_expand_trimmed_without_empties() {
        assert_eq!(
            expand(&[" a:1 ;; a:2\u{2028}", "", "b"]),
            ["a:1", "a:2", "b"]
        );
    }

    #[test]
    fn a_port_is_not_a_tag() {
        assert_eq!(
            split("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(split("localhost:5000/app:1"), ("localhost:5000/app", "1"));
        assert_eq!(split("app"), ("app", "latest"));
    }

    #[test]
    fn groups_keep_the_order_given() {
        let groups = parse(&["b:1;a:1", "b:2"]).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].tags, ["b:1", "b:2"]);
        assert_eq!(groups[0].versions, ["1", "2"]);
        assert_eq!(groups[1].tags, ["a:1"]);
    }

    #[test]
    fn the_first_bad_tag_is_the_error() {
        let err = parse(&["ok:1;bad tag!!", "Up:1"]).unwrap_err();
        assert_eq!(err.tag, "bad tag!!");
        assert!(err.why.contains("lower-case"), "{}", err.why);
        let digest = format!("app@sha256:{}", "a".repeat(64));
        assert!(parse(&[digest]).unwrap_err().why.contains("@digest"));
    }

    proptest! {
        #[test]
        fn prop_every_expanded_tag_is_in_exactly_one_group(
            names in proptest::collection::vec("[a-c]{1,2}(:[0-9]{1,2})?", 0..8)
        ) {
            let text = names.join(";");
            let groups = parse(&[text.as_str()]).unwrap();
            let flat: Vec<String> = groups.iter().flat_map(|g| g.tags.clone()).collect();
            let mut sorted_flat = flat.clone();
            sorted_flat.sort();
            let mut sorted_names = names.clone();
            sorted_names.sort();
            prop_assert_eq!(sorted_flat, sorted_names);
            for g in &groups {
                for (t, v) in g.tags.iter().zip(&g.versions) {
                    prop_assert_eq!(split(t), (g.name.as_str(), v.as_str()));
                }
            }
        }
    }
}
