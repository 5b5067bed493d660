//! Platforms (`os/architecture[/variant]`), as OCI indexes and configs spell them.

use std::fmt;

use serde_json::{json, Value};

use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parse `linux/amd64` or `linux/arm64/v8`. Each part must be non-empty and made of
    /// lowercase letters, digits, `.`, `_` or `-` (the characters OCI platform values use).
    pub fn parse(spec: &str) -> Result<Platform> {
        let parts: Vec<&str> = spec.trim().split('/').collect();
        let valid = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| valid(p)) {
            return Err(Error::InvalidPlatform(spec.to_string()));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }

    /// The platform of the machine we run on, in OCI's names (`amd64`, not `x86_64`).
    /// Images are Linux images whatever the build host is.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new("linux", arch, variant)
    }

    /// The `platform` object of an index descriptor.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "os": self.os, "architecture": self.architecture });
        if let Some(variant) = &self.variant {
            v["variant"] = json!(variant);
        }
        v
    }

    /// Read a platform from a descriptor's `platform` object or from an image config (both
    /// carry `os`, `architecture` and optionally `variant`). `None` if os or arch is absent.
    pub fn from_json(v: &Value) -> Option<Platform> {
        let os = v.get("os")?.as_str()?;
        let arch = v.get("architecture")?.as_str()?;
        let variant = v.get("variant").and_then(Value::as_str);
        Some(Platform::new(os, arch, variant))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Does an image of platform `have` satisfy a request for `want`? A wanted variant must
/// match, except that `arm64` and `arm64/v8` are the same thing.
pub fn platform_matches(want: &Platform, have: &Platform) -> bool {
    let norm = |p: &Platform| -> Option<String> {
        match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", Some("v8")) => None,
            (_, v) => v.map(str::to_string),
        }
    };
    want.os == have.os
        && want.architecture == have.architecture
        && (want.variant.is_none() || norm(want) == norm(have))
}

/// Pick the index entry for `want`, skipping attestation manifests and `unknown/unknown`
/// entries. Among several matches, an exact variant match wins, then the first.
pub fn choose<'a>(index: &'a Value, want: &Platform) -> Result<&'a Value> {
    let entries = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::InvalidJson {
            what: "image index".into(),
            why: "no manifests array".into(),
        })?;
    let usable: Vec<(&Value, Platform)> = entries
        .iter()
        .filter(|d| {
            d.pointer("/annotations/vnd.docker.reference.type")
                .and_then(Value::as_str)
                != Some("attestation-manifest")
        })
        .filter_map(|d| Some((d, Platform::from_json(d.get("platform")?)?)))
        .filter(|(_, p)| p.os != "unknown")
        .collect();
    let exact = usable.iter().find(|(_, p)| p == want);
    let loose = usable.iter().find(|(_, p)| platform_matches(want, p));
    match exact.or(loose) {
        Some((d, _)) => Ok(d),
        None => Err(Error::NoMatchingPlatform {
            wanted: want.to_string(),
            available: listed_platforms(&usable),
        }),
    }
}

/// The image for each wanted platform among the platforms of a source's images (`None`: an
/// image that does not say), by [`platform_matches`], as `(position, platform)`. With none
/// wanted: the only image with its own platform, else the host's. What a loaded tarball's
/// images are chosen by; a registry index is chosen by [`choose`], with the same matcher.
pub fn choose_among(
    have: &[Option<Platform>],
    wanted: &[Platform],
) -> Result<Vec<(usize, Option<Platform>)>> {
    if wanted.is_empty() {
        return match have {
            [only] => Ok(vec![(0, only.clone())]),
            _ => choose_among(have, &[Platform::host()]),
        };
    }
    wanted
        .iter()
        .map(|want| {
            have.iter()
                .position(|h| h.as_ref().is_some_and(|h| platform_matches(want, h)))
                .map(|i| (i, Some(want.clone())))
                .ok_or_else(|| Error::NoMatchingPlatform {
                    wanted: want.to_string(),
                    available: have
                        .iter()
                        .map(|h| h.as_ref().map_or("unknown".into(), Platform::to_string))
                        .take(MAX_LISTED_PLATFORMS)
                        .collect(),
                })
        })
        .collect()
}

/// At most this many of an index's platforms are named in an error.
const MAX_LISTED_PLATFORMS: usize = 32;

/// The platforms an index lists, as an error names them: only those written as a platform
/// is (`Platform::parse`'s grammar), once each, and at most [`MAX_LISTED_PLATFORMS`], so a
/// hostile index can put neither control characters nor megabytes into the error.
fn listed_platforms(usable: &[(&Value, Platform)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, p) in usable {
        let name = p.to_string();
        let plain = name.len() <= 64 && Platform::parse(&name).is_ok_and(|q| q.to_string() == name);
        if plain && !names.contains(&name) {
            names.push(name);
        }
        if names.len() == MAX_LISTED_PLATFORMS {
            break;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_with_and_without_variant() {
        assert_eq!(
            Platform::parse("linux/amd64").unwrap(),
            Platform::new("linux", "amd64", None)
        );
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(arm.variant.as_deref(), Some("v8"));
        assert_eq!(arm.to_string(), "linux/arm64/v8");
    }

    #[test]
    fn rejects_malformed_specs() {
        for bad in [
            "",
            "linux",
            "linux/",
            "/amd64",
            "linux/amd64/v8/x",
            "Linux/AMD64",
            "linux/am d64",
        ] {
            assert!(
                matches!(Platform::parse(bad), Err(Error::InvalidPlatform(_))),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn host_is_linux_with_an_oci_architecture_name() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert_ne!(host.architecture, "x86_64");
        assert_ne!(host.architecture, "aarch64");
    }

    #[test]
    fn choose_among_takes_the_only_image_the_host_or_each_wanted() {
        let amd = Platform::new("linux", "amd64", None);
        let arm = Platform::new("linux", "arm64", Some("v8"));
        assert_eq!(choose_among(&[None], &[]).unwrap(), vec![(0, None)]);
        let both = [Some(amd.clone()), Some(arm.clone())];
        let host = choose_among(&both, &[]).unwrap();
        assert_eq!(host[0].1, Some(Platform::host()));
        let want_arm = Platform::new("linux", "arm64", None);
        assert_eq!(
            choose_among(&both, &[want_arm.clone(), amd.clone()]).unwrap(),
            vec![(1, Some(want_arm)), (0, Some(amd))]
        );
        // arm64 and arm64/v8 are one platform, for a tarball as for an index.
        let v8 = Platform::new("linux", "arm64", Some("v8"));
        assert_eq!(choose_among(&both, &[v8]).unwrap()[0].0, 1);
        match choose_among(&[Some(arm), None], &[Platform::new("linux", "s390x", None)]) {
            Err(Error::NoMatchingPlatform { wanted, available }) => {
                assert_eq!(wanted, "linux/s390x");
                assert_eq!(available, vec!["linux/arm64/v8", "unknown"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_round_trip() {
        let p = Platform::new("linux", "arm", Some("v7"));
        assert_eq!(Platform::from_json(&p.to_json()), Some(p));
    }

    fn index() -> Value {
        json!({"manifests": [
            {"digest": "sha256:aa", "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:bb", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:cc", "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
            {"digest": "sha256:dd", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
            {"digest": "sha256:ee", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}
        ]})
    }

    #[test]
    fn a_hostile_index_puts_no_control_characters_or_megabytes_in_the_error() {
        let mut manifests = vec![
            json!({"digest": "sha256:aa", "platform": {"os": "linux\u{1b}]0;pwned\u{7}", "architecture": "amd64"}}),
            json!({"digest": "sha256:bb", "platform": {"os": "linux", "architecture": "x".repeat(100_000)}}),
            json!({"digest": "sha256:cc", "platform": {"os": "linux", "architecture": "arm64"}}),
            json!({"digest": "sha256:dd", "platform": {"os": "linux", "architecture": "arm64"}}),
        ];
        for i in 0..1000 {
            manifests.push(json!({"digest": "sha256:ee", "platform": {"os": "linux", "architecture": format!("a{i}")}}));
        }
        let want = Platform::parse("linux/s390x").unwrap();
        match choose(&json!({ "manifests": manifests }), &want) {
            Err(Error::NoMatchingPlatform { available, .. }) => {
                assert_eq!(available.len(), MAX_LISTED_PLATFORMS);
                assert_eq!(
                    available[0], "linux/arm64",
                    "listed once, the odd ones left out"
                );
                assert!(available.iter().all(|p| Platform::parse(p).is_ok()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn chooses_by_platform_and_variant() {
        let i = index();
        let pick = |s: &str| {
            choose(&i, &Platform::parse(s).unwrap())
                .map(|d| d["digest"].as_str().unwrap().to_string())
        };
        assert_eq!(pick("linux/amd64").unwrap(), "sha256:aa");
        assert_eq!(pick("linux/arm64").unwrap(), "sha256:bb");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "sha256:bb");
        assert_eq!(pick("linux/arm/v7").unwrap(), "sha256:ee");
        assert_eq!(pick("linux/arm").unwrap(), "sha256:dd");
    }

    #[test]
    fn no_match_lists_what_is_available_without_attestations() {
        let err = choose(&index(), &Platform::parse("linux/s390x").unwrap()).unwrap_err();
        match err {
            Error::NoMatchingPlatform { wanted, available } => {
                assert_eq!(wanted, "linux/s390x");
                assert_eq!(
                    available,
                    vec![
                        "linux/amd64",
                        "linux/arm64/v8",
                        "linux/arm/v6",
                        "linux/arm/v7"
                    ]
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
