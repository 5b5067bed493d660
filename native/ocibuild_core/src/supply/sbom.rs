//! The SPDX 2.2 JSON SBOM of a release image.
//!
//! One package per component, each with a package URL (purl) as its external reference: the
//! app, every dependency in the lock file (`pkg:hex`, `pkg:github` for git dependencies on
//! GitHub, else `pkg:generic`), ERTS (and the OTP release, when known) at the versions the
//! release holds, the release's other applications (OTP's, Elixir's), and the base image
//! (`pkg:oci/<name>@<digest>`). The document DESCRIBES the app, which DEPENDS_ON the rest.
//! The same input gives the same bytes: packages are sorted, JSON keys too, and the document
//! namespace is derived from the content.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::image::json::canonical;
use crate::registry::Reference;
use crate::reproducible::rfc3339;
use crate::Result;

pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// Where every image carries its SBOM.
pub const SBOM_PATH: &str = "/sbom.spdx.json";

const NOASSERTION: &str = "NOASSERTION";

/// What the SBOM describes. `created` is unix seconds (the caller's `SOURCE_DATE_EPOCH`, else
/// now).
#[derive(Clone, Debug, Default)]
pub struct SbomInput {
    pub name: String,
    pub version: String,
    pub created: u64,
    /// The creator tool, e.g. `ocibuild-0.1.0`.
    pub tool: String,
    pub erts_version: Option<String>,
    pub otp_version: Option<String>,
    /// The release's other applications: name, version.
    pub otp_apps: Vec<(String, String)>,
    pub dependencies: Vec<Dependency>,
    pub base: Option<BaseImage>,
    /// `linux/amd64`: platform images of one build differ by this and their base.
    pub platform: Option<String>,
}

/// A lock-file entry: `source` is `hex`, a git URL (then `version` is the locked revision),
/// or anything else (a path, another SCM).
#[derive(Clone, Debug)]
pub struct Dependency {
    pub name: String,
    pub version: String,
    pub source: String,
}

/// The base image as pulled: its reference and the manifest digest the registry served.
#[derive(Clone, Debug)]
pub struct BaseImage {
    pub reference: String,
    pub digest: Digest,
}

/// One SPDX package before it gets its SPDXID.
struct Package {
    name: String,
    version: String,
    purl: String,
    download: String,
    comment: Option<String>,
}

/// The SPDX 2.2 JSON document for `input`.
pub fn spdx_json(input: &SbomInput) -> Result<Vec<u8>> {
    let app = Package {
        name: input.name.clone(),
        version: input.version.clone(),
        purl: purl("generic", None, &input.name, &input.version, &[]),
        download: NOASSERTION.into(),
        comment: None,
    };
    let mut others: Vec<Package> = input.dependencies.iter().map(dependency).collect();
    if let Some(erts) = &input.erts_version {
        others.push(Package {
            name: "erts".into(),
            version: erts.clone(),
            purl: purl("generic", Some("erlang"), "erts", erts, &[]),
            download: NOASSERTION.into(),
            comment: Some("the Erlang runtime system the release runs on".into()),
        });
    }
    if let Some(otp) = &input.otp_version {
        others.push(Package {
            name: "erlang-otp".into(),
            version: otp.clone(),
            purl: purl("generic", Some("erlang"), "otp", otp, &[]),
            download: format!("https://github.com/erlang/otp/releases/tag/OTP-{otp}"),
            comment: None,
        });
    }
    for (name, version) in &input.otp_apps {
        others.push(Package {
            name: name.clone(),
            version: version.clone(),
            purl: purl("generic", None, name, version, &[]),
            download: NOASSERTION.into(),
            comment: Some("an application the release bundles".into()),
        });
    }
    if let Some(base) = &input.base {
        others.push(base_image(base, input.platform.as_deref()));
    }
    others.sort_by(|a, b| (&a.name, &a.version, &a.purl).cmp(&(&b.name, &b.version, &b.purl)));

    let app_id = spdx_id(0, &app.name);
    let mut packages = vec![package_json(&app, &app_id)];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", &app_id)];
    for (i, p) in others.iter().enumerate() {
        let id = spdx_id(i + 1, &p.name);
        packages.push(package_json(p, &id));
        relationships.push(relationship(&app_id, "DEPENDS_ON", &id));
    }

    let title = match &input.platform {
        Some(p) => format!("{}-{} ({p})", input.name, input.version),
        None => format!("{}-{}", input.name, input.version),
    };
    let mut doc = json!({
        "spdxVersion": "SPDX-2.2",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": title,
        "creationInfo": {
            "created": rfc3339(input.created),
            "creators": [format!("Tool: {}", input.tool)],
        },
        "packages": packages,
        "relationships": relationships,
    });
    // Unique per content, and the same for the same content (what SPDX asks of it).
    let namespace = Digest::of(&canonical(&doc));
    doc["documentNamespace"] = json!(format!(
        "https://spdx.org/spdxdocs/ocibuild/{}-{}-{}",
        uri_part(&input.name),
        uri_part(&input.version),
        &namespace.as_str()["sha256:".len()..]
    ));
    Ok(canonical(&doc))
}

fn dependency(dep: &Dependency) -> Package {
    let (name, version) = (&dep.name, &dep.version);
    match dep.source.as_str() {
        "hex" => Package {
            name: name.clone(),
            version: version.clone(),
            purl: purl("hex", None, &name.to_lowercase(), version, &[]),
            download: format!("https://repo.hex.pm/tarballs/{name}-{version}.tar"),
            comment: None,
        },
        source if is_git(source) => {
            let url = https_git_url(source);
            let download = format!("git+{url}@{version}");
            match github_repo(&url) {
                Some((org, repo)) => Package {
                    name: name.clone(),
                    version: version.clone(),
                    purl: purl(
                        "github",
                        Some(&org.to_lowercase()),
                        &repo.to_lowercase(),
                        version,
                        &[],
                    ),
                    download,
                    comment: None,
                },
                None => Package {
                    name: name.clone(),
                    version: version.clone(),
                    purl: purl("generic", None, name, version, &[("vcs_url", &download)]),
                    download,
                    comment: None,
                },
            }
        }
        other => Package {
            name: name.clone(),
            version: if version.is_empty() {
                NOASSERTION.into()
            } else {
                version.clone()
            },
            purl: purl("generic", None, name, version, &[]),
            download: NOASSERTION.into(),
            comment: (!other.is_empty()).then(|| format!("source: {other}")),
        },
    }
}

fn base_image(base: &BaseImage, platform: Option<&str>) -> Package {
    let parsed = Reference::parse(&base.reference).ok();
    let (name, repository_url, tag) = match &parsed {
        Some(r) => (
            r.repository
                .rsplit('/')
                .next()
                .unwrap_or(&r.repository)
                .to_lowercase(),
            Some(format!("{}/{}", r.registry, r.repository)),
            r.tag.clone(),
        ),
        // A `tar://` base or other local source: its last path component.
        None => (
            base.reference
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or("base")
                .to_lowercase(),
            None,
            None,
        ),
    };
    let mut qualifiers: Vec<(&str, &str)> = Vec::new();
    let arch = platform.and_then(|p| p.split('/').nth(1));
    if let Some(arch) = arch {
        qualifiers.push(("arch", arch));
    }
    if let Some(url) = &repository_url {
        qualifiers.push(("repository_url", url));
    }
    if let Some(tag) = &tag {
        qualifiers.push(("tag", tag));
    }
    Package {
        name: base.reference.clone(),
        version: base.digest.to_string(),
        purl: purl("oci", None, &name, base.digest.as_str(), &qualifiers),
        download: NOASSERTION.into(),
        comment: Some("the base image".into()),
    }
}

/// purl components are percent-encoded; `:` in a version (a digest) too, as the spec's
/// examples write `sha256%3A...`.
const PURL_PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');
/// Qualifier values keep `/` readable (`repository_url=docker.io/library/debian`).
const PURL_QUALIFIER: &AsciiSet = &PURL_PART.remove(b'/');

/// `pkg:type/namespace/name@version?k=v&...` (qualifiers sorted by key, as the spec wants).
fn purl(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let enc = |s: &str| utf8_percent_encode(s, PURL_PART).to_string();
    let mut out = format!("pkg:{kind}/");
    if let Some(ns) = namespace {
        out.push_str(&enc(ns));
        out.push('/');
    }
    out.push_str(&enc(name));
    if !version.is_empty() {
        out.push('@');
        out.push_str(&enc(version));
    }
    let mut qs: Vec<&(&str, &str)> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    qs.sort();
    for (i, (k, v)) in qs.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&utf8_percent_encode(v, PURL_QUALIFIER).to_string());
    }
    out
}

fn is_git(source: &str) -> bool {
    ["https://", "http://", "git://", "ssh://", "git@", "git+"]
        .iter()
        .any(|p| source.starts_with(p))
        || source.ends_with(".git")
}

/// A git source as an https URL where it has one: `git@host:org/repo.git` and `ssh://`
/// forms become `https://host/org/repo.git`; any user:password is dropped.
fn https_git_url(source: &str) -> String {
    let s = source.strip_prefix("git+").unwrap_or(source);
    if let Some(rest) = s.strip_prefix("git@") {
        if let Some((host, path)) = rest.split_once(':') {
            return format!("https://{host}/{}", path.trim_start_matches('/'));
        }
    }
    for scheme in ["ssh://", "git://", "https://", "http://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let host = if scheme == "ssh://" {
                host.split(':').next().unwrap_or(host)
            } else {
                host
            };
            let scheme = if scheme == "http://" {
                "http://"
            } else {
                "https://"
            };
            return format!("{scheme}{host}/{path}");
        }
    }
    s.to_string()
}

/// `(org, repo)` of a github.com URL.
fn github_repo(url: &str) -> Option<(String, String)> {
    let path = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("http://github.com/"))?;
    let mut parts = path.trim_end_matches('/').splitn(3, '/');
    let org = parts.next().filter(|s| !s.is_empty())?;
    let repo = parts.next().filter(|s| !s.is_empty())?;
    Some((org.to_string(), repo.trim_end_matches(".git").to_string()))
}

/// `SPDXRef-Package-<n>-<name>`, the name reduced to the letters SPDX IDs allow; the index
/// keeps IDs unique when two names reduce alike.
fn spdx_id(index: usize, name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-Package-{index}-{cleaned}")
}

fn uri_part(s: &str) -> String {
    utf8_percent_encode(s, PURL_PART).to_string()
}

fn package_json(p: &Package, id: &str) -> Value {
    let mut v = json!({
        "SPDXID": id,
        "name": p.name,
        "versionInfo": p.version,
        "downloadLocation": p.download,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": p.purl,
        }],
    });
    if let Some(c) = &p.comment {
        v["comment"] = json!(c);
    }
    v
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> SbomInput {
        SbomInput {
            name: "hello_elixir".into(),
            version: "0.1.0".into(),
            created: 1_700_000_000,
            tool: "ocibuild-0.1.0".into(),
            erts_version: Some("13.1.5".into()),
            otp_version: Some("25.2.3".into()),
            otp_apps: vec![
                ("kernel".into(), "8.5.3".into()),
                ("elixir".into(), "1.14.0".into()),
            ],
            dependencies: vec![
                Dependency {
                    name: "jason".into(),
                    version: "1.4.1".into(),
                    source: "hex".into(),
                },
                Dependency {
                    name: "tiny_dep".into(),
                    version: "0123abc".into(),
                    source: "git@github.com:Acme/Tiny_Dep.git".into(),
                },
                Dependency {
                    name: "gitlab_dep".into(),
                    version: "feed".into(),
                    source: "https://user:secret@gitlab.com/g/dep.git".into(),
                },
                Dependency {
                    name: "local".into(),
                    version: "".into(),
                    source: "path".into(),
                },
            ],
            base: Some(BaseImage {
                reference: "docker.io/library/debian:stable-slim".into(),
                digest: Digest::of(b"base"),
            }),
            platform: Some("linux/amd64".into()),
        }
    }

    fn doc(input: &SbomInput) -> Value {
        serde_json::from_slice(&spdx_json(input).unwrap()).unwrap()
    }

    fn purl_of<'a>(doc: &'a Value, name: &str) -> &'a str {
        doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["externalRefs"][0]["referenceLocator"].as_str())
            .unwrap_or_else(|| panic!("no package {name}"))
    }

    #[test]
    fn document_fields() {
        let d = doc(&input());
        assert_eq!(d["spdxVersion"], "SPDX-2.2");
        assert_eq!(d["dataLicense"], "CC0-1.0");
        assert_eq!(d["SPDXID"], "SPDXRef-DOCUMENT");
        assert_eq!(d["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(d["creationInfo"]["creators"][0], "Tool: ocibuild-0.1.0");
        let ns = d["documentNamespace"].as_str().unwrap();
        assert!(
            ns.starts_with("https://spdx.org/spdxdocs/ocibuild/hello_elixir-0.1.0-"),
            "{ns}"
        );
        assert!(!ns.contains('#'));
    }

    #[test]
    fn purls() {
        let d = doc(&input());
        let base_digest = Digest::of(b"base");
        let digest_hex = &base_digest.as_str()["sha256:".len()..];
        assert_eq!(
            purl_of(&d, "hello_elixir"),
            "pkg:generic/hello_elixir@0.1.0"
        );
        assert_eq!(purl_of(&d, "jason"), "pkg:hex/jason@1.4.1");
        assert_eq!(purl_of(&d, "tiny_dep"), "pkg:github/acme/tiny_dep@0123abc");
        assert_eq!(
            purl_of(&d, "gitlab_dep"),
            "pkg:generic/gitlab_dep@feed?vcs_url=git%2Bhttps%3A//gitlab.com/g/dep.git%40feed"
        );
        assert_eq!(purl_of(&d, "local"), "pkg:generic/local");
        assert_eq!(purl_of(&d, "erts"), "pkg:generic/erlang/erts@13.1.5");
        assert_eq!(purl_of(&d, "erlang-otp"), "pkg:generic/erlang/otp@25.2.3");
        assert_eq!(purl_of(&d, "kernel"), "pkg:generic/kernel@8.5.3");
        assert_eq!(
            purl_of(&d, "docker.io/library/debian:stable-slim"),
            format!("pkg:oci/debian@sha256%3A{digest_hex}?arch=amd64&repository_url=docker.io/library/debian&tag=stable-slim")
        );
        // No credentials from a git URL reach the document.
        assert!(!serde_json::to_string(&d).unwrap().contains("secret"));
    }

    #[test]
    fn ids_are_valid_unique_and_related() {
        let d = doc(&input());
        let ids: Vec<&str> = d["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        for id in &ids {
            let rest = id.strip_prefix("SPDXRef-").unwrap();
            assert!(
                rest.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "{id}"
            );
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
        let rels = d["relationships"].as_array().unwrap();
        assert_eq!(rels[0]["relationshipType"], "DESCRIBES");
        assert_eq!(rels[0]["relatedSpdxElement"], ids[0]);
        assert_eq!(rels.len(), ids.len());
        for (rel, id) in rels[1..].iter().zip(&ids[1..]) {
            assert_eq!(rel["spdxElementId"], ids[0]);
            assert_eq!(rel["relationshipType"], "DEPENDS_ON");
            assert_eq!(rel["relatedSpdxElement"], *id);
        }
    }

    #[test]
    fn same_input_same_bytes_other_input_other_namespace() {
        let a = spdx_json(&input()).unwrap();
        let mut shuffled = input();
        shuffled.dependencies.reverse();
        shuffled.otp_apps.reverse();
        assert_eq!(a, spdx_json(&shuffled).unwrap());
        let mut other = input();
        other.platform = Some("linux/arm64".into());
        let (da, db) = (doc(&input()), doc(&other));
        assert_ne!(da["documentNamespace"], db["documentNamespace"]);
    }

    #[test]
    fn minimal_input_and_local_base() {
        let d = doc(&SbomInput {
            name: "app".into(),
            version: "1".into(),
            tool: "ocibuild".into(),
            base: Some(BaseImage {
                reference: "tar:///tmp/base.tar.gz".into(),
                digest: Digest::of(b"b"),
            }),
            ..SbomInput::default()
        });
        assert_eq!(d["packages"].as_array().unwrap().len(), 2);
        assert!(purl_of(&d, "tar:///tmp/base.tar.gz").starts_with("pkg:oci/base.tar.gz@sha256%3A"));
    }
}
