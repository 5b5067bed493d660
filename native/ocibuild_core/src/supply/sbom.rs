//! The SPDX 2.2 JSON SBOM of a release image.
//!
//! One package per component, each with a package URL (purl) as its external reference:
//!
//! - the app (the release): `pkg:generic/<name>@<version>`, since a release is not
//!   necessarily published anywhere, downloadable from its repository when the image's
//!   `org.opencontainers.image.source` and `.revision` name it (`git+<source>@<revision>`,
//!   the same URL as the annotation, so the two agree);
//! - every lock-file dependency: `pkg:hex/<name>@<version>`, `pkg:github/<org>/<repo>@<ref>`
//!   for git dependencies on GitHub, `pkg:generic/<name>@<ref>?vcs_url=git+...` for other git
//!   hosts, else `pkg:generic/<name>@<version>`;
//! - ERTS and the bundled applications (OTP's, Elixir's) as `pkg:otp/<app>@<vsn>`, and the OTP
//!   release as `pkg:github/erlang/otp@OTP-<vsn>`: the purls Erlang/OTP's own VEX statements
//!   name, so advisories match them;
//! - the base image: `pkg:oci/<name>@sha256%3A<hex>?arch=..&repository_url=..&tag=..`.
//!
//! The document DESCRIBES the app, which DEPENDS_ON every other package. The same input gives
//! the same bytes (packages sorted, keys sorted by canonical JSON), and the document namespace
//! is derived from a sha256 of the content, so it changes exactly when the content does.
//!
//! ```
//! use ocibuild_core::supply::sbom::{spdx_json, SbomInput};
//! let json = spdx_json(&SbomInput { name: "hello".into(), version: "0.1.0".into(),
//!                                   tool: "ocibuild-0.1.0".into(), ..Default::default() })?;
//! assert!(json.starts_with(b"{"));
//! # Ok::<(), ocibuild_core::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::image::json::canonical;
use crate::layer::{build_layer, Content, FileEntry, Layer, LayerOptions};
use crate::reference::Reference;
use crate::reproducible::rfc3339;
use crate::supply::referrers::Artifact;
use crate::supply::vcs_url::{redact, Remote};
use crate::{Error, Result};

pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
/// Where every image carries its SBOM.
pub const SBOM_PATH: &str = "/sbom.spdx.json";

const NOASSERTION: &str = "NOASSERTION";
const NAMESPACE_BASE: &str = "https://spdx.org/spdxdocs/ocibuild";

/// What the SBOM describes. `created` is unix seconds (the caller's `SOURCE_DATE_EPOCH`, else
/// now).
#[derive(Clone, Debug, Default)]
pub struct SbomInput {
    /// The release (app) name, e.g. `hello_elixir`.
    pub name: String,
    pub version: String,
    pub created: u64,
    /// The creator tool, e.g. `ocibuild-0.1.0`.
    pub tool: String,
    /// The ERTS version the release holds.
    pub erts_version: Option<String>,
    /// The OTP release (`25.3.2.8`), when known.
    pub otp_version: Option<String>,
    /// The release's other applications (`lib/NAME-VSN`): name, version.
    pub otp_apps: Vec<(String, String)>,
    pub dependencies: Vec<Dependency>,
    pub base: Option<BaseImage>,
    /// `linux/amd64`: platform images of one build differ by this and their base.
    pub platform: Option<String>,
    /// The project's repository as the image's `org.opencontainers.image.source` annotation
    /// gives it (`https://github.com/acme/hello`, already without user info or `.git`).
    pub source: Option<String>,
    /// The commit the release was built from (the `.revision` annotation).
    pub revision: Option<String>,
}

/// A lock-file entry: `source` is `hex`, a git URL (then `version` is the locked revision),
/// `hg+<url>` for Mercurial, or anything else (a path, another SCM's name).
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

/// The role of a package: its SPDXID prefix and its place in the document (derived `Ord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    App,
    Dependency,
    Runtime,
    Bundled,
    Base,
}

impl Kind {
    fn id_prefix(self) -> &'static str {
        match self {
            Kind::App => "App",
            Kind::Dependency => "Dep",
            Kind::Runtime => "Runtime",
            Kind::Bundled => "Bundled",
            Kind::Base => "Base",
        }
    }
}

/// One SPDX package before it gets its SPDXID. The field order is the sort order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Package {
    kind: Kind,
    name: String,
    /// Empty when unknown: the package then has no `versionInfo`.
    version: String,
    purl: String,
    /// `None` gives `NOASSERTION`.
    download: Option<String>,
    comment: Option<String>,
}

/// Anyone may read the SBOM inside an image.
const SBOM_MODE: u32 = 0o644;

/// A release image's SBOM, built once from its input; the layer that carries it, the file
/// `--sbom` writes and the referrer a push attaches are all made from this one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sbom {
    document: Vec<u8>,
}

impl Sbom {
    pub fn build(input: &SbomInput) -> Result<Sbom> {
        Ok(Sbom {
            document: spdx_json(input)?,
        })
    }

    /// A document made elsewhere, taken as it is (`ocibuild_registry:push/5`'s `sboms` accept
    /// SPDX JSON binaries).
    pub fn from_document(document: Vec<u8>) -> Sbom {
        Sbom { document }
    }

    /// The SPDX JSON bytes.
    pub fn document(&self) -> &[u8] {
        &self.document
    }

    /// The layer holding the document at [`SBOM_PATH`], built into `store`.
    pub fn layer(&self, options: &LayerOptions, store: &BlobStore) -> Result<Layer> {
        let entry = FileEntry::new(SBOM_PATH, Content::Bytes(self.document.clone()), SBOM_MODE);
        build_layer(&[entry], options, store)
    }

    /// The OCI 1.1 referrer a push attaches to the image manifest, stamped with the image's
    /// `created` time (unix seconds).
    pub fn referrer(&self, created: u64) -> Artifact {
        Artifact {
            artifact_type: SPDX_MEDIA_TYPE.to_string(),
            media_type: SPDX_MEDIA_TYPE.to_string(),
            data: self.document.clone(),
            annotations: BTreeMap::from([(
                "org.opencontainers.image.created".to_string(),
                rfc3339(created),
            )]),
        }
    }
}

/// The SPDX 2.2 JSON document for `input`.
pub fn spdx_json(input: &SbomInput) -> Result<Vec<u8>> {
    if input.name.is_empty() {
        return Err(invalid("name", "the app name is empty".into()));
    }
    let app = Package {
        kind: Kind::App,
        name: input.name.clone(),
        version: input.version.clone(),
        purl: purl("generic", &[], &input.name, &input.version, &[]),
        download: app_location(input),
        comment: Some("the release the image runs".into()),
    };
    let mut others = Vec::new();
    for dep in &input.dependencies {
        others.push(dependency(dep)?);
    }
    if let Some(erts) = &input.erts_version {
        others.push(erts_package(erts));
    }
    if let Some(otp) = &input.otp_version {
        others.push(otp_package(otp));
    }
    for (name, version) in &input.otp_apps {
        others.push(bundled_app(name, version)?);
    }
    if let Some(base) = &input.base {
        others.push(base_image(base, input.platform.as_deref()));
    }
    others.sort();
    others.dedup();

    let mut ids = SpdxIds::default();
    let app_id = ids.assign(app.kind.id_prefix(), &app.name);
    let mut packages = vec![package_json(&app, &app_id)];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", &app_id)];
    for p in &others {
        let id = ids.assign(p.kind.id_prefix(), &p.name);
        packages.push(package_json(p, &id));
        relationships.push(relationship(&app_id, "DEPENDS_ON", &id));
    }

    let title = match &input.platform {
        Some(p) => format!("{}-{} ({p})", input.name, input.version),
        None => format!("{}-{}", input.name, input.version),
    };
    let tool = if input.tool.trim().is_empty() {
        "ocibuild"
    } else {
        input.tool.trim()
    };
    let mut doc = json!({
        "spdxVersion": "SPDX-2.2",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": title,
        "creationInfo": {
            "created": rfc3339(input.created),
            "creators": [format!("Tool: {tool}")],
        },
        // SPDX 2.2 JSON's own form of DESCRIBES; readers that only know the relationship
        // merge the two.
        "documentDescribes": [app_id],
        "packages": packages,
        "relationships": relationships,
    });
    // The namespace must be unique per document and stable for the same one: a digest of
    // everything else in it.
    let content = Digest::of(&canonical(&doc));
    doc["documentNamespace"] = json!(format!(
        "{NAMESPACE_BASE}/{}-{}-{}",
        uri_part(&input.name),
        uri_part(&input.version),
        content.hex()
    ));
    Ok(canonical(&doc))
}

fn invalid(field: &str, why: String) -> Error {
    Error::InvalidOption {
        name: "sbom",
        why: format!("{field}: {why}"),
    }
}

fn dependency(dep: &Dependency) -> Result<Package> {
    if dep.name.is_empty() {
        return Err(invalid(
            "dependencies",
            format!(
                "a dependency without a name (source {:?})",
                redact(&dep.source)
            ),
        ));
    }
    let (name, version) = (&dep.name, &dep.version);
    let package = |purl, download, comment| Package {
        kind: Kind::Dependency,
        name: name.clone(),
        version: version.clone(),
        purl,
        download,
        comment,
    };
    let source = dep.source.trim();
    if source == "hex" {
        // Hex package names are lowercase; the purl type requires it too.
        let download = (!version.is_empty()).then(|| {
            format!(
                "https://repo.hex.pm/tarballs/{}-{}.tar",
                uri_part(name),
                uri_part(version)
            )
        });
        return Ok(package(
            purl("hex", &[], &name.to_lowercase(), version, &[]),
            download.filter(|d| is_spdx_download_location(d)),
            None,
        ));
    }
    if let Some(remote) = Remote::parse(source) {
        let location = remote.vcs_location(version);
        let download = Some(location.clone()).filter(|d| is_spdx_download_location(d));
        if let Some((org, repo)) = remote.github_repo() {
            let ns = [org.to_lowercase()];
            return Ok(package(
                purl("github", &ns, &repo.to_lowercase(), version, &[]),
                download,
                None,
            ));
        }
        return Ok(package(
            purl("generic", &[], name, version, &[("vcs_url", &location)]),
            download,
            None,
        ));
    }
    let comment = (!source.is_empty()).then(|| format!("source: {}", redact(source)));
    Ok(package(
        purl("generic", &[], name, version, &[]),
        None,
        comment,
    ))
}

/// The purls this SBOM gives a lock-file dependency, the base image, ERTS and OTP: the
/// provenance (`supply::provenance`) names the same things the same way.
pub(crate) fn dependency_purl(dep: &Dependency) -> Result<String> {
    dependency(dep).map(|p| p.purl)
}
pub(crate) fn base_image_purl(base: &BaseImage, platform: Option<&str>) -> String {
    base_image(base, platform).purl
}
pub(crate) fn erts_purl(version: &str) -> String {
    erts_package(version).purl
}
pub(crate) fn otp_purl(version: &str) -> String {
    otp_package(version).purl
}

fn erts_package(version: &str) -> Package {
    Package {
        kind: Kind::Runtime,
        name: "erts".into(),
        version: version.into(),
        purl: purl("otp", &[], "erts", version, &[]),
        download: None,
        comment: Some("the Erlang runtime system the release holds".into()),
    }
}

/// Erlang/OTP's VEX statements name releases `pkg:github/erlang/otp@OTP-<vsn>`. A bare major
/// (`25`, what a system without an OTP_VERSION file reports) names no tag, so it stays generic.
fn otp_package(version: &str) -> Package {
    let (purl, download) = if version.contains('.') {
        let tag = format!("OTP-{version}");
        let download = format!("git+https://github.com/erlang/otp.git@{}", uri_part(&tag));
        (
            purl("github", &["erlang".into()], "otp", &tag, &[]),
            Some(download).filter(|d| is_spdx_download_location(d)),
        )
    } else {
        (
            purl("generic", &["erlang".into()], "otp", version, &[]),
            None,
        )
    };
    Package {
        kind: Kind::Runtime,
        name: "erlang-otp".into(),
        version: version.into(),
        purl,
        download,
        comment: Some("the Erlang/OTP release that built the release".into()),
    }
}

fn bundled_app(name: &str, version: &str) -> Result<Package> {
    if name.is_empty() {
        return Err(invalid(
            "otp_apps",
            format!("an application without a name (version {version:?})"),
        ));
    }
    Ok(Package {
        kind: Kind::Bundled,
        name: name.into(),
        version: version.into(),
        // The otp type's names are lowercase.
        purl: purl("otp", &[], &name.to_lowercase(), version, &[]),
        download: None,
        comment: Some("an application the release bundles".into()),
    })
}

fn base_image(base: &BaseImage, platform: Option<&str>) -> Package {
    let parsed = Reference::parse(&base.reference).ok();
    let (name, repository_url, tag) = match &parsed {
        Some(r) => (
            last_segment(&r.repository),
            Some(format!("{}/{}", r.registry, r.repository)),
            r.tag.clone(),
        ),
        // A tarball or layout base: its file name is all the name there is.
        None => (last_segment(&base.reference), None, None),
    };
    let mut qualifiers: Vec<(&str, &str)> = Vec::new();
    if let Some(arch) = platform.and_then(|p| p.split('/').nth(1)) {
        qualifiers.push(("arch", arch));
    }
    if let Some(url) = &repository_url {
        qualifiers.push(("repository_url", url));
    }
    if let Some(tag) = &tag {
        qualifiers.push(("tag", tag));
    }
    Package {
        kind: Kind::Base,
        name: base.reference.clone(),
        version: base.digest.to_string(),
        // The oci type: no namespace, a lowercase name, the digest as the version.
        purl: purl(
            "oci",
            &[],
            &name.to_lowercase(),
            base.digest.as_str(),
            &qualifiers,
        ),
        download: None,
        comment: Some("the base image".into()),
    }
}

/// The last path segment of a reference, without its `:tag` or `@digest`.
fn last_segment(s: &str) -> String {
    let without_digest = s.split('@').next().unwrap_or(s).trim_end_matches('/');
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split(':').next() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => "base".to_string(),
    }
}

/// What a purl component leaves as is: letters, digits and `.-_~`. Everything else is
/// percent-encoded, `:` in a version too (the oci type writes `sha256%3A...`).
const PURL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');
/// Qualifier values keep `/` and `:` readable, as the type definitions' examples do
/// (`repository_url=docker.io/library/debian`, `download_url=https://...`).
const PURL_QUALIFIER: &AsciiSet = &PURL_COMPONENT.remove(b'/').remove(b':');

/// `pkg:type/namespace/name@version?k=v&...`: qualifiers sorted by key and empty ones dropped,
/// as the spec's canonical form wants.
fn purl(
    kind: &str,
    namespace: &[String],
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let enc = |s: &str| utf8_percent_encode(s, PURL_COMPONENT).to_string();
    let mut out = format!("pkg:{kind}/");
    for segment in namespace.iter().filter(|s| !s.is_empty()) {
        out.push_str(&enc(segment));
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

/// One URI path segment (document namespace, hex tarball name): everything but unreserved
/// characters encoded.
fn uri_part(s: &str) -> String {
    utf8_percent_encode(s, PURL_COMPONENT).to_string()
}

/// The app's SPDX VCS download location: the image's source annotation as a git location, at
/// its revision. The URL is the annotation's own, `.git`-less form (git clones either), so
/// the SBOM and the manifest name the repository alike; lock-file dependencies keep their
/// clone URLs as the lock file gives them (`vcs_location`). `None` (`NOASSERTION`) without a
/// source or when SPDX tools would refuse the location.
fn app_location(input: &SbomInput) -> Option<String> {
    let source = input.source.as_deref()?;
    let location = match input.revision.as_deref() {
        Some(revision) => format!("git+{source}@{revision}"),
        None => format!("git+{source}"),
    };
    is_spdx_download_location(&location).then_some(location)
}

/// Whether SPDX tools accept `location` as a download location: an optional `git+`/`hg+`, a
/// scheme, and a host that is a domain name with a 2 to 5 letter top-level label (what the
/// SPDX tools' pattern requires: `localhost` or a bare IP address is refused), an optional
/// port and a path without spaces. Locations that fail become `NOASSERTION`.
fn is_spdx_download_location(location: &str) -> bool {
    let rest = location
        .strip_prefix("git+")
        .or_else(|| location.strip_prefix("hg+"))
        .unwrap_or(location);
    let Some((scheme, after)) = rest.split_once("://") else {
        return false;
    };
    if !matches!(scheme, "https" | "http" | "ssh" | "git") {
        return false;
    }
    let (authority, path) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_graphic() && c != '#' && c != '\\');
    port_ok && path_ok && is_domain_name(host)
}

/// `label(.label)+` of ASCII letters, digits and inner single hyphens, the last label 2 to 5
/// letters.
fn is_domain_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let Some((tld, rest)) = labels.split_last() else {
        return false;
    };
    let label_ok = |l: &&str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && !l.contains("--")
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    !rest.is_empty()
        && rest.iter().all(label_ok)
        && (2..=5).contains(&tld.len())
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// SPDXIDs: `SPDXRef-<Prefix>-<name>` with the name reduced to the letters SPDX allows
/// (`[A-Za-z0-9.-]`), and `-2`, `-3`, ... when two names reduce alike.
#[derive(Default)]
struct SpdxIds {
    used: BTreeSet<String>,
}

impl SpdxIds {
    fn assign(&mut self, prefix: &str, name: &str) -> String {
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
        let base = format!("SPDXRef-{prefix}-{cleaned}");
        let mut id = base.clone();
        let mut n = 2;
        while self.used.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.used.insert(id.clone());
        id
    }
}

fn package_json(p: &Package, id: &str) -> Value {
    let mut v = json!({
        "SPDXID": id,
        "name": p.name,
        "downloadLocation": p.download.as_deref().unwrap_or(NOASSERTION),
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        // SPDX 2.2's spelling; 2.3 added PACKAGE_MANAGER as an alias.
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": p.purl,
        }],
    });
    if !p.version.is_empty() {
        v["versionInfo"] = json!(p.version);
    }
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

    fn dep(name: &str, version: &str, source: &str) -> Dependency {
        Dependency {
            name: name.into(),
            version: version.into(),
            source: source.into(),
        }
    }

    fn base_digest() -> Digest {
        Digest::of(b"base")
    }

    fn input() -> SbomInput {
        SbomInput {
            name: "hello_elixir".into(),
            version: "0.1.0".into(),
            created: 1_700_000_000,
            tool: "ocibuild-0.1.0".into(),
            erts_version: Some("13.1.5".into()),
            otp_version: Some("25.3.2.8".into()),
            otp_apps: vec![
                ("kernel".into(), "8.5.3".into()),
                ("elixir".into(), "1.14.0".into()),
            ],
            dependencies: vec![
                dep("jason", "1.4.1", "hex"),
                dep("tiny_dep", "0123abc", "git@github.com:Acme/Tiny_Dep.git"),
                dep(
                    "gitlab_dep",
                    "feed",
                    "https://user:secret@gitlab.example.org/g/dep.git",
                ),
                dep("local", "", "path"),
            ],
            base: Some(BaseImage {
                reference: "docker.io/library/debian:stable-slim".into(),
                digest: base_digest(),
            }),
            platform: Some("linux/amd64".into()),
            source: None,
            revision: None,
        }
    }

    fn doc(input: &SbomInput) -> Value {
        serde_json::from_slice(&spdx_json(input).unwrap()).unwrap()
    }

    fn packages(doc: &Value) -> &Vec<Value> {
        doc["packages"].as_array().unwrap()
    }

    fn package<'a>(doc: &'a Value, name: &str) -> &'a Value {
        packages(doc)
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no package {name}"))
    }

    fn purl_of<'a>(doc: &'a Value, name: &str) -> &'a str {
        let refs = package(doc, name)["externalRefs"].as_array().unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0]["referenceCategory"], "PACKAGE-MANAGER");
        assert_eq!(refs[0]["referenceType"], "purl");
        refs[0]["referenceLocator"].as_str().unwrap()
    }

    fn download_of<'a>(doc: &'a Value, name: &str) -> &'a str {
        package(doc, name)["downloadLocation"].as_str().unwrap()
    }

    /// `^SPDXRef-[A-Za-z0-9.-]+$`, what the SPDX schema requires of an element ID.
    fn is_spdx_id(id: &str) -> bool {
        id.strip_prefix("SPDXRef-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        })
    }

    #[test]
    fn document_fields() {
        let d = doc(&input());
        assert_eq!(d["spdxVersion"], "SPDX-2.2");
        assert_eq!(d["dataLicense"], "CC0-1.0");
        assert_eq!(d["SPDXID"], "SPDXRef-DOCUMENT");
        assert_eq!(d["name"], "hello_elixir-0.1.0 (linux/amd64)");
        assert_eq!(d["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(
            d["creationInfo"]["creators"],
            json!(["Tool: ocibuild-0.1.0"])
        );
        let ns = d["documentNamespace"].as_str().unwrap();
        let hash = ns
            .strip_prefix("https://spdx.org/spdxdocs/ocibuild/hello_elixir-0.1.0-")
            .unwrap_or_else(|| panic!("{ns}"));
        assert_eq!(hash.len(), 64);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()));
        // Nothing 2.3-only.
        for p in packages(&d) {
            assert!(p.get("primaryPackagePurpose").is_none());
            assert_eq!(p["filesAnalyzed"], false);
            for field in ["licenseConcluded", "licenseDeclared", "copyrightText"] {
                assert_eq!(p[field], NOASSERTION, "{field}");
            }
        }
    }

    #[test]
    fn app_download_is_the_source_annotation_at_its_revision() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let with = |source: Option<&str>, revision: Option<&str>| {
            let d = doc(&SbomInput {
                source: source.map(Into::into),
                revision: revision.map(Into::into),
                ..input()
            });
            download_of(&d, "hello_elixir").to_string()
        };
        assert_eq!(
            with(Some("https://github.com/acme/hello"), Some(sha)),
            format!("git+https://github.com/acme/hello@{sha}")
        );
        assert_eq!(
            with(Some("https://github.com/acme/hello"), None),
            "git+https://github.com/acme/hello"
        );
        assert_eq!(
            with(Some("git://git.example.org/hello"), Some(sha)),
            format!("git+git://git.example.org/hello@{sha}")
        );
        assert_eq!(with(None, Some(sha)), NOASSERTION);
        // What SPDX tools refuse (a loopback host, user info) is left unasserted.
        assert_eq!(with(Some("https://localhost/hello"), None), NOASSERTION);
        assert_eq!(with(Some("https://u:p@github.com/a/b"), None), NOASSERTION);
        // Lock-file dependencies keep their clone URLs, `.git` included.
        let d = doc(&SbomInput {
            source: Some("https://github.com/acme/hello".into()),
            ..input()
        });
        assert_eq!(
            download_of(&d, "gitlab_dep"),
            "git+https://gitlab.example.org/g/dep.git@feed"
        );
    }

    #[test]
    fn created_is_iso_8601_utc_seconds() {
        for (epoch, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
        ] {
            let d = doc(&SbomInput {
                created: epoch,
                ..input()
            });
            assert_eq!(d["creationInfo"]["created"], text);
        }
    }

    #[test]
    fn one_package_per_component() {
        let d = doc(&input());
        let mut names: Vec<&str> = packages(&d)
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        // The app comes first, the rest in a stable order.
        assert_eq!(names[0], "hello_elixir");
        names.sort();
        assert_eq!(
            names,
            [
                "docker.io/library/debian:stable-slim",
                "elixir",
                "erlang-otp",
                "erts",
                "gitlab_dep",
                "hello_elixir",
                "jason",
                "kernel",
                "local",
                "tiny_dep",
            ]
        );
        assert_eq!(package(&d, "erts")["versionInfo"], "13.1.5");
        assert_eq!(package(&d, "erlang-otp")["versionInfo"], "25.3.2.8");
        assert_eq!(package(&d, "tiny_dep")["versionInfo"], "0123abc");
        assert_eq!(
            package(&d, "docker.io/library/debian:stable-slim")["versionInfo"],
            base_digest().as_str()
        );
        // An unknown version is left out, not made up.
        assert!(package(&d, "local").get("versionInfo").is_none());
    }

    #[test]
    fn purls() {
        let d = doc(&input());
        let hex = base_digest().hex().to_string();
        assert_eq!(
            purl_of(&d, "hello_elixir"),
            "pkg:generic/hello_elixir@0.1.0"
        );
        assert_eq!(purl_of(&d, "jason"), "pkg:hex/jason@1.4.1");
        assert_eq!(purl_of(&d, "tiny_dep"), "pkg:github/acme/tiny_dep@0123abc");
        assert_eq!(
            purl_of(&d, "gitlab_dep"),
            "pkg:generic/gitlab_dep@feed?vcs_url=git%2Bhttps://gitlab.example.org/g/dep.git%40feed"
        );
        assert_eq!(purl_of(&d, "local"), "pkg:generic/local");
        assert_eq!(purl_of(&d, "erts"), "pkg:otp/erts@13.1.5");
        assert_eq!(
            purl_of(&d, "erlang-otp"),
            "pkg:github/erlang/otp@OTP-25.3.2.8"
        );
        assert_eq!(purl_of(&d, "kernel"), "pkg:otp/kernel@8.5.3");
        assert_eq!(purl_of(&d, "elixir"), "pkg:otp/elixir@1.14.0");
        assert_eq!(
            purl_of(&d, "docker.io/library/debian:stable-slim"),
            format!(
                "pkg:oci/debian@sha256%3A{hex}?arch=amd64\
                 &repository_url=docker.io/library/debian&tag=stable-slim"
            )
        );
    }

    #[test]
    fn download_locations() {
        let d = doc(&input());
        assert_eq!(
            download_of(&d, "jason"),
            "https://repo.hex.pm/tarballs/jason-1.4.1.tar"
        );
        assert_eq!(
            download_of(&d, "tiny_dep"),
            "git+https://github.com/Acme/Tiny_Dep.git@0123abc"
        );
        assert_eq!(
            download_of(&d, "gitlab_dep"),
            "git+https://gitlab.example.org/g/dep.git@feed"
        );
        assert_eq!(
            download_of(&d, "erlang-otp"),
            "git+https://github.com/erlang/otp.git@OTP-25.3.2.8"
        );
        for unknown in ["hello_elixir", "local", "erts", "kernel"] {
            assert_eq!(download_of(&d, unknown), NOASSERTION, "{unknown}");
        }
        assert_eq!(
            package(&d, "local")["comment"],
            "source: path",
            "the source we could not name is still told"
        );
    }

    #[test]
    fn git_sources() {
        let cases = [
            // source, purl, download location
            (
                "https://github.com/elixir-lang/Plug.git",
                "pkg:github/elixir-lang/plug@v1.0",
                "git+https://github.com/elixir-lang/Plug.git@v1.0",
            ),
            (
                "https://github.com/org/repo",
                "pkg:github/org/repo@v1.0",
                "git+https://github.com/org/repo.git@v1.0",
            ),
            (
                "git://github.com/org/repo.git",
                "pkg:github/org/repo@v1.0",
                "git+https://github.com/org/repo.git@v1.0",
            ),
            (
                "ssh://git@github.com/org/repo.git",
                "pkg:github/org/repo@v1.0",
                "git+https://github.com/org/repo.git@v1.0",
            ),
            (
                "https://x-access-token:ghp_SECRET@github.com/org/repo.git",
                "pkg:github/org/repo@v1.0",
                "git+https://github.com/org/repo.git@v1.0",
            ),
            (
                "git@gitlab.com:group/sub/repo.git",
                "pkg:generic/d@v1.0?vcs_url=git%2Bssh://gitlab.com/group/sub/repo.git%40v1.0",
                "git+ssh://gitlab.com/group/sub/repo.git@v1.0",
            ),
            (
                "git://git.example.org/repo.git",
                "pkg:generic/d@v1.0?vcs_url=git%2Bgit://git.example.org/repo.git%40v1.0",
                "git+git://git.example.org/repo.git@v1.0",
            ),
            (
                "hg+https://hg.example.org/repo",
                "pkg:generic/d@v1.0?vcs_url=hg%2Bhttps://hg.example.org/repo%40v1.0",
                "hg+https://hg.example.org/repo@v1.0",
            ),
            // Valid git, but SPDX tools refuse a host without a domain: NOASSERTION, while
            // the purl still says where it came from.
            (
                "http://localhost:3000/org/repo.git",
                "pkg:generic/d@v1.0?vcs_url=git%2Bhttp://localhost:3000/org/repo.git%40v1.0",
                NOASSERTION,
            ),
            // An https URL that says nothing of git (hg, a tarball): no repository named.
            (
                "https://hg.example.org/repo",
                "pkg:generic/d@v1.0",
                NOASSERTION,
            ),
            ("file:///src/repo.git", "pkg:generic/d@v1.0", NOASSERTION),
            ("hexpm:acme", "pkg:generic/d@v1.0", NOASSERTION),
            (
                "deploy@git.example.org:repo",
                "pkg:generic/d@v1.0?vcs_url=git%2Bssh://git.example.org/repo%40v1.0",
                "git+ssh://git.example.org/repo@v1.0",
            ),
            ("hg", "pkg:generic/d@v1.0", NOASSERTION),
            ("", "pkg:generic/d@v1.0", NOASSERTION),
        ];
        for (source, purl, download) in cases {
            let d = doc(&SbomInput {
                dependencies: vec![dep("d", "v1.0", source)],
                ..input()
            });
            assert_eq!(purl_of(&d, "d"), purl, "{source}");
            assert_eq!(download_of(&d, "d"), download, "{source}");
            let text = String::from_utf8(
                spdx_json(&SbomInput {
                    dependencies: vec![dep("d", "v1.0", source)],
                    ..input()
                })
                .unwrap(),
            )
            .unwrap();
            assert!(!text.contains("SECRET"), "credentials leaked from {source}");
        }
    }

    #[test]
    fn credentials_never_reach_the_document() {
        let text = String::from_utf8(spdx_json(&input()).unwrap()).unwrap();
        assert!(!text.contains("secret"));
        assert!(!text.contains("user:"));
        let d = doc(&SbomInput {
            dependencies: vec![dep("x", "1", "svn+https://bob:hunter2@svn.example.org/x")],
            ..input()
        });
        assert_eq!(
            package(&d, "x")["comment"],
            "source: svn+https://svn.example.org/x"
        );
    }

    #[test]
    fn base_images() {
        let digest = Digest::of(b"b");
        let cases = [
            (
                "localhost:5000/base:1",
                Some("linux/arm64/v8"),
                "pkg:oci/base@sha256%3A{}?arch=arm64&repository_url=localhost:5000/base&tag=1",
            ),
            (
                "ghcr.io/org/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                None,
                "pkg:oci/app@sha256%3A{}?repository_url=ghcr.io/org/team/app",
            ),
            // Not a valid reference (uppercase repository): the name alone, lowercased.
            (
                "ghcr.io/Org/App:v1@sha256:00",
                None,
                "pkg:oci/app@sha256%3A{}",
            ),
            (
                "debian",
                None,
                "pkg:oci/debian@sha256%3A{}?repository_url=docker.io/library/debian&tag=latest",
            ),
            ("tar:///tmp/Base.tar.gz", None, "pkg:oci/base.tar.gz@sha256%3A{}"),
        ];
        for (reference, platform, want) in cases {
            let d = doc(&SbomInput {
                name: "app".into(),
                version: "1".into(),
                base: Some(BaseImage {
                    reference: reference.into(),
                    digest: digest.clone(),
                }),
                platform: platform.map(String::from),
                ..SbomInput::default()
            });
            assert_eq!(
                purl_of(&d, reference),
                want.replace("{}", digest.hex()),
                "{reference}"
            );
        }
    }

    #[test]
    fn odd_names_are_encoded_and_ids_stay_valid_and_unique() {
        let d = doc(&SbomInput {
            name: "My App/ü".into(),
            version: "1.0.0+build 7".into(),
            dependencies: vec![
                dep("a_b", "1", "hex"),
                dep("a-b", "1", "hex"),
                dep("a.b", "1", "path"),
                dep("a_b-2", "1", "path"),
                dep("Weird Name?&=#", "1:2", "other"),
                dep("JSON", "1.0.0", "hex"),
            ],
            otp_apps: vec![("a_b".into(), "1".into())],
            ..input()
        });
        assert_eq!(
            purl_of(&d, "My App/ü"),
            "pkg:generic/My%20App%2F%C3%BC@1.0.0%2Bbuild%207"
        );
        assert_eq!(
            purl_of(&d, "Weird Name?&=#"),
            "pkg:generic/Weird%20Name%3F%26%3D%23@1%3A2"
        );
        assert_eq!(purl_of(&d, "JSON"), "pkg:hex/json@1.0.0");
        let ns = d["documentNamespace"].as_str().unwrap();
        assert!(
            ns.starts_with(
                "https://spdx.org/spdxdocs/ocibuild/My%20App%2F%C3%BC-1.0.0%2Bbuild%207-"
            ),
            "{ns}"
        );

        let ids: Vec<&str> = packages(&d)
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        for id in &ids {
            assert!(is_spdx_id(id), "{id}");
        }
        let unique: BTreeSet<&&str> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        assert_eq!(ids[0], "SPDXRef-App-My-App--");
        // `a-b` and `a_b` reduce alike, so the second gets `-2`; `a_b-2` then reduces to
        // that suffixed ID and gets one more.
        assert!(ids.contains(&"SPDXRef-Dep-a-b"));
        assert!(ids.contains(&"SPDXRef-Dep-a-b-2"));
        assert!(ids.contains(&"SPDXRef-Dep-a-b-2-2"));
        assert!(ids.contains(&"SPDXRef-Bundled-a-b"));
    }

    #[test]
    fn relationships_describe_the_app_and_its_dependencies() {
        let d = doc(&input());
        let ids: Vec<&str> = packages(&d)
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        let app = ids[0];
        assert_eq!(package(&d, "hello_elixir")["SPDXID"], app);
        assert_eq!(d["documentDescribes"], json!([app]));
        let rels = d["relationships"].as_array().unwrap();
        assert_eq!(rels.len(), ids.len());
        assert_eq!(
            rels[0],
            json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                   "relatedSpdxElement": app})
        );
        let depends: BTreeSet<&str> = rels[1..]
            .iter()
            .map(|r| {
                assert_eq!(r["spdxElementId"], app);
                assert_eq!(r["relationshipType"], "DEPENDS_ON");
                r["relatedSpdxElement"].as_str().unwrap()
            })
            .collect();
        let others: BTreeSet<&str> = ids[1..].iter().copied().collect();
        assert_eq!(depends, others);
    }

    #[test]
    fn one_sbom_gives_the_layer_the_file_and_the_referrer() {
        let sbom = Sbom::build(&input()).unwrap();
        assert_eq!(sbom.document(), spdx_json(&input()).unwrap());

        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let options = LayerOptions {
            compression: crate::layer::Compression::Gzip,
            mtime: 1_700_000_000,
            ..LayerOptions::default()
        };
        let layer = sbom.layer(&options, &store).unwrap();
        let blob = std::fs::read(layer.blob.as_ref().unwrap()).unwrap();
        assert_eq!(Digest::of(&blob), layer.digest);
        let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(&blob[..]));
        let mut files = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                files.push((path, entry.header().mode().unwrap(), data));
            }
        }
        assert_eq!(
            files,
            vec![(
                SBOM_PATH.trim_start_matches('/').to_string(),
                0o644,
                sbom.document().to_vec()
            )]
        );
        // The same SBOM gives the same layer: a rebuild uploads nothing new.
        assert_eq!(sbom.layer(&options, &store).unwrap().digest, layer.digest);

        let referrer = sbom.referrer(86_400);
        assert_eq!(referrer.artifact_type, SPDX_MEDIA_TYPE);
        assert_eq!(referrer.media_type, SPDX_MEDIA_TYPE);
        assert_eq!(referrer.data, sbom.document());
        assert_eq!(
            referrer.annotations,
            BTreeMap::from([(
                "org.opencontainers.image.created".to_string(),
                "1970-01-02T00:00:00Z".to_string()
            )])
        );
    }

    #[test]
    fn same_input_same_bytes() {
        let a = spdx_json(&input()).unwrap();
        assert_eq!(a, spdx_json(&input()).unwrap());
        let mut shuffled = input();
        shuffled.dependencies.reverse();
        shuffled.otp_apps.reverse();
        assert_eq!(a, spdx_json(&shuffled).unwrap());
        // A dependency listed twice is one package.
        let mut twice = input();
        twice.dependencies.push(dep("jason", "1.4.1", "hex"));
        assert_eq!(a, spdx_json(&twice).unwrap());
        // Canonical JSON: compact, keys sorted.
        let text = String::from_utf8(a).unwrap();
        assert!(text.starts_with(r#"{"SPDXID":"SPDXRef-DOCUMENT","creationInfo":"#));
        assert!(!text.contains('\n'));
    }

    #[test]
    fn namespace_follows_the_content() {
        let ns = |i: &SbomInput| doc(i)["documentNamespace"].as_str().unwrap().to_string();
        let base = ns(&input());
        let changes: [fn(&mut SbomInput); 5] = [
            |i| i.platform = Some("linux/arm64".into()),
            |i| i.created += 1,
            |i| i.dependencies[0].version = "1.4.2".into(),
            |i| i.otp_apps.push(("ssl".into(), "10.9".into())),
            |i| {
                if let Some(b) = &mut i.base {
                    b.digest = Digest::of(b"other base");
                }
            },
        ];
        let mut seen = BTreeSet::from([base]);
        for change in changes {
            let mut i = input();
            change(&mut i);
            assert!(seen.insert(ns(&i)), "a change kept the namespace");
        }
    }

    #[test]
    fn minimal_input() {
        let d = doc(&SbomInput {
            name: "app".into(),
            version: "1".into(),
            ..SbomInput::default()
        });
        assert_eq!(packages(&d).len(), 1);
        assert_eq!(d["relationships"].as_array().unwrap().len(), 1);
        assert_eq!(d["creationInfo"]["creators"], json!(["Tool: ocibuild"]));
        assert_eq!(d["name"], "app-1");
    }

    #[test]
    fn bare_otp_major_is_not_a_tag() {
        let d = doc(&SbomInput {
            otp_version: Some("25".into()),
            ..input()
        });
        assert_eq!(purl_of(&d, "erlang-otp"), "pkg:generic/erlang/otp@25");
        assert_eq!(download_of(&d, "erlang-otp"), NOASSERTION);
    }

    #[test]
    fn nameless_components_are_errors() {
        let no_name = spdx_json(&SbomInput {
            name: String::new(),
            ..input()
        });
        assert!(matches!(
            no_name,
            Err(Error::InvalidOption { name: "sbom", .. })
        ));
        let nameless_dep = spdx_json(&SbomInput {
            dependencies: vec![dep("", "1", "https://u:pw@example.org/x.git")],
            ..input()
        });
        match nameless_dep {
            Err(Error::InvalidOption { why, .. }) => {
                assert!(why.contains("dependencies"), "{why}");
                assert!(!why.contains("pw"), "{why}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        let nameless_app = spdx_json(&SbomInput {
            otp_apps: vec![(String::new(), "1".into())],
            ..input()
        });
        assert!(nameless_app.is_err());
    }

    #[test]
    fn download_locations_the_spdx_tools_accept() {
        for ok in [
            "https://repo.hex.pm/tarballs/jason-1.4.1.tar",
            "git+https://github.com/org/repo.git@abc",
            "git+ssh://gitlab.com/a/b.git@v1",
            "hg+https://hg.example.org/repo@1",
            "git+https://git.example.org:8443/a.git",
        ] {
            assert!(is_spdx_download_location(ok), "{ok}");
        }
        for bad in [
            "git+https://localhost/a.git",
            "https://10.0.0.1/a.git",
            "https://host.example.123/a",
            "https://example.org/a b",
            "https://example.org/a#frag",
            "https://example.org:123456/a",
            "file:///a.git",
            "NOASSERTION",
        ] {
            assert!(!is_spdx_download_location(bad), "{bad}");
        }
    }

    /// Writes sample documents (odd names, every source kind) for the SPDX project's own
    /// validator: test/supply/run.sh runs
    /// `OCIBUILD_SBOM_SAMPLES=DIR cargo test -p ocibuild_core sbom -- --ignored`, then
    /// `pyspdxtools -i FILE` on each. Ignored here: it needs that directory.
    #[test]
    #[ignore]
    fn write_samples() {
        let dir = std::env::var("OCIBUILD_SBOM_SAMPLES").expect("OCIBUILD_SBOM_SAMPLES");
        std::fs::create_dir_all(&dir).unwrap();
        let samples = [
            ("full", input()),
            (
                "with-source",
                SbomInput {
                    source: Some("https://github.com/acme/hello".into()),
                    revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
                    ..input()
                },
            ),
            (
                "no-deps",
                SbomInput {
                    dependencies: vec![],
                    ..input()
                },
            ),
            (
                "minimal",
                SbomInput {
                    name: "app".into(),
                    version: "1".into(),
                    ..SbomInput::default()
                },
            ),
            (
                "no-base",
                SbomInput {
                    base: None,
                    platform: None,
                    ..input()
                },
            ),
            (
                "local-base",
                SbomInput {
                    base: Some(BaseImage {
                        reference: "localhost:5000/base:1".into(),
                        digest: base_digest(),
                    }),
                    platform: Some("linux/arm/v7".into()),
                    ..input()
                },
            ),
            (
                "odd-names",
                SbomInput {
                    name: "My App/ü".into(),
                    version: "1.0.0+build 7".into(),
                    erts_version: Some("14.2.5.4".into()),
                    otp_version: Some("26".into()),
                    otp_apps: vec![("My_App".into(), "".into()), ("a_b".into(), "1".into())],
                    dependencies: vec![
                        dep("a_b", "1", "hex"),
                        dep("a-b", "1", "hex"),
                        dep("a.b", "1", "path"),
                        dep("Weird Name?&=#\"", "1:2", "other"),
                        dep("nover", "", "hex"),
                        dep("lh", "abc", "http://localhost:3000/org/repo.git"),
                        dep("hg_dep", "42", "hg+https://hg.example.org/repo"),
                        dep("scp", "v1", "git@gitlab.com:group/sub/repo.git"),
                        dep("gh_nogit", "main", "https://github.com/Org/Repo"),
                        dep("tokened", "v2", "https://tok:en@github.com/o/r.git"),
                        dep("spaces", "v 1", "https://git.example.org/a b/c d.git"),
                    ],
                    base: Some(BaseImage {
                        reference: "tar:///tmp/My Base.tar.gz".into(),
                        digest: base_digest(),
                    }),
                    ..input()
                },
            ),
        ];
        for (name, sample) in samples {
            let path = format!("{dir}/{name}.spdx.json");
            std::fs::write(&path, spdx_json(&sample).unwrap()).unwrap();
        }
    }
}
