//! The verifier: what a push attached to an image, checked against a public key, with no
//! cosign installed. Pure: the inputs are the bytes [`crate::registry::inspect`] fetched (or a
//! saved tarball held), the output one [`Check`] per signature, attestation and SBOM.
//!
//! What is checked (the README's "Verifying" says the same for users):
//! 1. every layer of the `sha256-<hex>.sig` image (cosign simple signing) verifies against the
//!    key, and its payload names the image digest (what the tags point at; an index for a
//!    multi-platform push). No `.sig` is a failure.
//! 2. every layer of each platform manifest's `sha256-<hex>.att` image and every referrer with
//!    artifactType `application/vnd.in-toto+json` is a DSSE envelope of an in-toto Statement,
//!    signed by the key, whose subject names that platform manifest's digest. None is a
//!    skip (not a pass): a push without provenance has none.
//! 3. every referrer with artifactType `application/spdx+json` parses as SPDX 2.2/2.3 JSON
//!    and *names the image's packages*: each package (name and versionInfo) of the SBOM the
//!    image carries in its last layer at `/sbom.spdx.json` is a package of the referrer. No
//!    SBOM referrer fails when the image carries an SBOM (ocibuild pushed both), else skips.
//!
//! [`passed`] holds when no check failed and at least one succeeded.

pub mod embedded;
pub mod spdx;
pub mod tarball;

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::digest::Digest;
use crate::supply::cosign::{signature_tag, SIGNATURE_ANNOTATION};
use crate::supply::dsse::{Envelope, PublicKey, ENVELOPE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE};
use crate::supply::referrers::referrers_tag;
use crate::supply::sbom::SPDX_MEDIA_TYPE;

/// The in-toto Statement types read (v1, and v0.1 which cosign 1 wrote).
const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];
/// cosign's `critical.type` of an image signature.
const SIGNATURE_TYPE: &str = "cosign container image signature";

/// What a check concluded. `Skip`: nothing there to check, said so rather than passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    Skip,
}

/// What a check looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Signature,
    Attestation,
    Sbom,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Signature => "signature",
            Kind::Attestation => "attestation",
            Kind::Sbom => "sbom",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub outcome: Outcome,
    pub kind: Kind,
    /// The manifest digest the check is about.
    pub subject: String,
    /// Where the evidence was: `.sig layer 1`, `.att layer 2`, `referrer sha256:…`.
    pub source: String,
    /// Why it failed or was skipped; what it showed when it succeeded.
    pub detail: String,
}

impl Check {
    /// The line a user reads: `ok   signature sha256:… (.sig layer 1): …`.
    pub fn line(&self) -> String {
        let word = match self.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        };
        let mut line = format!("{word} {} {}", self.kind.name(), self.subject);
        if !self.source.is_empty() {
            line.push_str(&format!(" ({})", self.source));
        }
        if !self.detail.is_empty() {
            line.push_str(": ");
            line.push_str(&self.detail);
        }
        line
    }
}

/// No check failed and at least one succeeded.
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.outcome != Outcome::Fail)
        && checks.iter().any(|c| c.outcome == Outcome::Ok)
}

/// A manifest and the blobs it names, as fetched. A blob that could not be had (not there,
/// larger than its cap, bytes not matching its digest) is the reason why.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    pub manifest: Vec<u8>,
    pub blobs: BTreeMap<String, Result<Vec<u8>, String>>,
}

impl Fetched {
    fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.manifest).map_err(|e| format!("the manifest is not JSON: {e}"))
    }

    fn blob(&self, digest: &str) -> Result<&[u8], String> {
        match self.blobs.get(digest) {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!("blob {digest} was not fetched")),
        }
    }
}

/// One image manifest (a platform's, or the only one) and what hangs off it.
#[derive(Clone, Debug)]
pub struct Subject {
    pub digest: Digest,
    /// `linux/amd64`, when an index says so.
    pub platform: Option<String>,
    /// The `sha256-<hex>.att` image, when there is one.
    pub attestations: Option<Fetched>,
    /// Every referrer manifest listed for it (referrers API and fallback tag), with its blobs.
    pub referrers: Vec<Fetched>,
    /// `/sbom.spdx.json` from the image's last layer: `None` when it has none, `Err` when the
    /// layer could not be read.
    pub embedded_sbom: Option<Result<Vec<u8>, String>>,
}

/// Where the evidence came from: a registry holds everything; a saved tarball holds the
/// image only, so what it cannot hold is skipped, never failed or passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Registry,
    Tarball,
}

/// Everything fetched about one image.
#[derive(Clone, Debug)]
pub struct Evidence {
    pub origin: Origin,
    /// What the reference resolves to: the manifest, or the index of a multi-platform image.
    pub image: Digest,
    /// The `sha256-<hex>.sig` image of `image`, when there is one.
    pub signatures: Option<Fetched>,
    pub subjects: Vec<Subject>,
    /// Notes on what was not looked at (a referrers list cut at its cap).
    pub notes: Vec<String>,
}

/// Every check of `evidence` against `key`; `key_name` (the key file's name) is what the
/// failure lines say did not verify.
pub fn verify(evidence: &Evidence, key: &PublicKey, key_name: &str) -> Vec<Check> {
    let checker = Checker {
        key,
        key_name,
        origin: evidence.origin,
    };
    let mut checks = checker.signatures(&evidence.image, evidence.signatures.as_ref());
    for subject in &evidence.subjects {
        checks.extend(checker.attestations(subject));
        checks.extend(checker.sboms(subject));
    }
    checks
}

struct Checker<'a> {
    key: &'a PublicKey,
    key_name: &'a str,
    origin: Origin,
}

fn check(outcome: Outcome, kind: Kind, subject: &Digest, source: &str, detail: String) -> Check {
    Check {
        outcome,
        kind,
        subject: subject.to_string(),
        source: source.to_string(),
        detail,
    }
}

/// The layers of an image manifest (`.sig`, `.att`, a referrer).
fn layers(manifest: &Value) -> Result<&Vec<Value>, String> {
    manifest
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| "the manifest has no layers list".to_string())
}

fn text<'v>(value: &'v Value, field: &str) -> &'v str {
    value.get(field).and_then(Value::as_str).unwrap_or("")
}

impl Checker<'_> {
    fn signatures(&self, image: &Digest, sig: Option<&Fetched>) -> Vec<Check> {
        let tag = signature_tag(image);
        let Some(sig) = sig else {
            return vec![match self.origin {
                Origin::Registry => check(
                    Outcome::Fail,
                    Kind::Signature,
                    image,
                    "",
                    format!("no signature: nothing at tag {tag}"),
                ),
                Origin::Tarball => check(
                    Outcome::Skip,
                    Kind::Signature,
                    image,
                    "",
                    "a saved tarball holds no signatures: verify the pushed image".into(),
                ),
            }];
        };
        let list = match sig.json().and_then(|m| layers(&m).cloned()) {
            Ok(list) if !list.is_empty() => list,
            Ok(_) => {
                return vec![check(
                    Outcome::Fail,
                    Kind::Signature,
                    image,
                    &tag,
                    "no signature layers".into(),
                )]
            }
            Err(why) => return vec![check(Outcome::Fail, Kind::Signature, image, &tag, why)],
        };
        list.iter()
            .enumerate()
            .map(|(i, layer)| {
                let source = format!(".sig layer {}", i + 1);
                let (outcome, detail) = match self.signature_layer(image, sig, layer) {
                    Ok(detail) => (Outcome::Ok, detail),
                    Err(why) => (Outcome::Fail, why),
                };
                check(outcome, Kind::Signature, image, &source, detail)
            })
            .collect()
    }

    /// One simple-signing layer: the signature over the payload bytes, then what they say.
    fn signature_layer(
        &self,
        image: &Digest,
        sig: &Fetched,
        layer: &Value,
    ) -> Result<String, String> {
        let encoded = layer
            .get("annotations")
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no {SIGNATURE_ANNOTATION} annotation"))?;
        let signature = STANDARD
            .decode(encoded)
            .map_err(|_| "the signature annotation is not base64".to_string())?;
        let payload = sig.blob(text(layer, "digest"))?;
        if !self.key.verifies(payload, &signature) {
            return Err(format!("signature does not verify with {}", self.key_name));
        }
        let payload: Value = serde_json::from_slice(payload)
            .map_err(|_| "the signed payload is not JSON".to_string())?;
        let critical = &payload["critical"];
        if critical["type"] != SIGNATURE_TYPE {
            return Err(format!("the signed payload is not a {SIGNATURE_TYPE}"));
        }
        let named = critical["image"]["docker-manifest-digest"]
            .as_str()
            .unwrap_or("");
        if named != image.as_str() {
            return Err(format!(
                "the signed payload names {}, not this image",
                crate::error::shown(named)
            ));
        }
        let identity = critical["identity"]["docker-reference"]
            .as_str()
            .unwrap_or("");
        Ok(format!(
            "verified with {}, signs {}",
            self.key_name,
            crate::error::shown(identity)
        ))
    }

    fn attestations(&self, subject: &Subject) -> Vec<Check> {
        let digest = &subject.digest;
        let mut checks = Vec::new();
        if let Some(att) = &subject.attestations {
            let source = format!("{}.att", referrers_tag(digest));
            match att.json().and_then(|m| layers(&m).cloned()) {
                Err(why) => checks.push(check(
                    Outcome::Fail,
                    Kind::Attestation,
                    digest,
                    &source,
                    why,
                )),
                Ok(list) => {
                    for (i, layer) in list.iter().enumerate() {
                        let source = format!(".att layer {}", i + 1);
                        let result = if text(layer, "mediaType") != ENVELOPE_MEDIA_TYPE {
                            Err(format!(
                                "media type {}, not {ENVELOPE_MEDIA_TYPE}",
                                crate::error::shown(text(layer, "mediaType"))
                            ))
                        } else {
                            att.blob(text(layer, "digest"))
                                .and_then(|bytes| self.statement(digest, bytes))
                        };
                        checks.push(outcome_check(Kind::Attestation, digest, &source, result));
                    }
                }
            }
        }
        for referrer in typed(&subject.referrers, IN_TOTO_PAYLOAD_TYPE) {
            let source = format!("referrer {}", Digest::of(&referrer.manifest));
            let result =
                referrer_blob(referrer, digest).and_then(|bytes| self.statement(digest, bytes));
            checks.push(outcome_check(Kind::Attestation, digest, &source, result));
        }
        if checks.is_empty() {
            let why = match self.origin {
                Origin::Registry => format!(
                    "no attestation (no {}.att, no in-toto referrer)",
                    referrers_tag(digest)
                ),
                Origin::Tarball => "a saved tarball holds no attestations".into(),
            };
            checks.push(check(Outcome::Skip, Kind::Attestation, digest, "", why));
        }
        checks
    }

    /// A DSSE envelope whose in-toto Statement names `subject`, signed by the key.
    fn statement(&self, subject: &Digest, bytes: &[u8]) -> Result<String, String> {
        let envelope = Envelope::parse(bytes).map_err(|e| format!("not a DSSE envelope: {e}"))?;
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(format!(
                "payloadType {}, not {IN_TOTO_PAYLOAD_TYPE}",
                crate::error::shown(&envelope.payload_type)
            ));
        }
        if !envelope.verified_by(self.key) {
            return Err(format!("signature does not verify with {}", self.key_name));
        }
        let statement: Value = serde_json::from_slice(&envelope.payload)
            .map_err(|_| "the signed payload is not JSON".to_string())?;
        if !STATEMENT_TYPES.contains(&text(&statement, "_type")) {
            return Err("the signed payload is not an in-toto Statement".into());
        }
        let predicate = text(&statement, "predicateType");
        if predicate.is_empty() {
            return Err("the statement has no predicateType".into());
        }
        let hex = subject.hex();
        let subjects = statement["subject"].as_array().cloned().unwrap_or_default();
        if !subjects.iter().any(|s| s["digest"]["sha256"] == hex) {
            let named: Vec<String> = subjects
                .iter()
                .filter_map(|s| s["digest"]["sha256"].as_str())
                .map(|h| format!("sha256:{}", crate::error::shown(h)))
                .collect();
            return Err(format!(
                "the statement's subject is {}, not this image",
                if named.is_empty() {
                    "empty".to_string()
                } else {
                    named.join(", ")
                }
            ));
        }
        Ok(format!(
            "{}, verified with {}",
            crate::error::shown(predicate),
            self.key_name
        ))
    }

    fn sboms(&self, subject: &Subject) -> Vec<Check> {
        let digest = &subject.digest;
        let embedded = match &subject.embedded_sbom {
            None => None,
            Some(Err(why)) => {
                return vec![check(
                    Outcome::Fail,
                    Kind::Sbom,
                    digest,
                    "/sbom.spdx.json",
                    format!("the image's SBOM layer cannot be read: {why}"),
                )]
            }
            Some(Ok(bytes)) => match spdx::parse(bytes) {
                Ok(doc) => Some(doc),
                Err(why) => {
                    return vec![check(
                        Outcome::Fail,
                        Kind::Sbom,
                        digest,
                        "/sbom.spdx.json",
                        format!("the image's own SBOM is not SPDX: {why}"),
                    )]
                }
            },
        };
        let referrers: Vec<&Fetched> = typed(&subject.referrers, SPDX_MEDIA_TYPE).collect();
        if referrers.is_empty() {
            return vec![match (self.origin, &embedded) {
                (Origin::Tarball, Some(doc)) => check(
                    Outcome::Ok,
                    Kind::Sbom,
                    digest,
                    "/sbom.spdx.json",
                    format!(
                        "{}, {} packages (a saved tarball holds no SBOM referrer to compare)",
                        doc.version,
                        doc.packages.len()
                    ),
                ),
                (Origin::Tarball, None) => check(
                    Outcome::Skip,
                    Kind::Sbom,
                    digest,
                    "",
                    "the image carries no /sbom.spdx.json and a tarball holds no referrers".into(),
                ),
                (Origin::Registry, Some(_)) => check(
                    Outcome::Fail,
                    Kind::Sbom,
                    digest,
                    "",
                    format!("no SBOM referrer ({SPDX_MEDIA_TYPE}), though the image carries /sbom.spdx.json"),
                ),
                (Origin::Registry, None) => check(
                    Outcome::Skip,
                    Kind::Sbom,
                    digest,
                    "",
                    format!("no SBOM referrer ({SPDX_MEDIA_TYPE}) and no /sbom.spdx.json in the image"),
                ),
            }];
        }
        referrers
            .into_iter()
            .map(|referrer| {
                let source = format!("referrer {}", Digest::of(&referrer.manifest));
                let result = referrer_blob(referrer, digest)
                    .and_then(|bytes| spdx::parse(bytes).map_err(|why| format!("not SPDX: {why}")))
                    .and_then(|doc| names_packages(&doc, embedded.as_ref()));
                outcome_check(Kind::Sbom, digest, &source, result)
            })
            .collect()
    }
}

/// Whether the referrer names every package of the SBOM the image carries.
fn names_packages(doc: &spdx::Spdx, embedded: Option<&spdx::Spdx>) -> Result<String, String> {
    let Some(embedded) = embedded else {
        return Ok(format!(
            "{}, {} packages (the image carries no /sbom.spdx.json to compare with)",
            doc.version,
            doc.packages.len()
        ));
    };
    let missing: Vec<String> = embedded
        .packages
        .difference(&doc.packages)
        .map(|p| crate::error::shown(&p.to_string()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "does not name {} of the image's packages: {}",
            missing.len(),
            missing.join(", ")
        ));
    }
    Ok(format!(
        "{}, names all {} packages of the image's /sbom.spdx.json",
        doc.version,
        embedded.packages.len()
    ))
}

fn outcome_check(
    kind: Kind,
    subject: &Digest,
    source: &str,
    result: Result<String, String>,
) -> Check {
    match result {
        Ok(detail) => check(Outcome::Ok, kind, subject, source, detail),
        Err(why) => check(Outcome::Fail, kind, subject, source, why),
    }
}

/// The referrers whose manifest says it is an artifact of `artifact_type`.
fn typed<'a>(
    referrers: &'a [Fetched],
    artifact_type: &'a str,
) -> impl Iterator<Item = &'a Fetched> {
    referrers.iter().filter(move |r| {
        r.json().is_ok_and(|m| {
            text(&m, "artifactType") == artifact_type
                || text(&m["config"], "mediaType") == artifact_type
        })
    })
}

/// A referrer's one blob, once its subject is checked: a fallback index is writable by
/// anyone who can push, so an entry hanging off another image must not count for this one.
fn referrer_blob<'a>(referrer: &'a Fetched, subject: &Digest) -> Result<&'a [u8], String> {
    let manifest = referrer.json()?;
    let named = text(&manifest["subject"], "digest");
    if named != subject.as_str() {
        return Err(format!(
            "its subject is {}, not this image",
            if named.is_empty() {
                "missing".to_string()
            } else {
                crate::error::shown(named)
            }
        ));
    }
    let list = layers(&manifest)?;
    let first = list.first().ok_or("the referrer has no layer")?;
    referrer.blob(text(first, "digest"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::num::u8::ANY;

    fn key() -> PublicKey {
        crate::supply::signing::test_keys::key(5).public_key()
    }

    fn fetched(manifest: Vec<u8>, blob: Vec<u8>) -> Fetched {
        // Whatever digest the manifest names, the junk blob is served under it.
        let digests: Vec<String> = serde_json::from_slice::<Value>(&manifest)
            .ok()
            .and_then(|m| m.get("layers").and_then(Value::as_array).cloned())
            .unwrap_or_default()
            .iter()
            .map(|l| text(l, "digest").to_string())
            .collect();
        let blobs = digests.into_iter().map(|d| (d, Ok(blob.clone()))).collect();
        Fetched { manifest, blobs }
    }

    #[test]
    fn nothing_checked_is_not_a_pass() {
        assert!(!passed(&[]));
        let skip = check(
            Outcome::Skip,
            Kind::Sbom,
            &Digest::of(b"x"),
            "",
            "none".into(),
        );
        assert!(!passed(std::slice::from_ref(&skip)));
        let ok = Check {
            outcome: Outcome::Ok,
            ..skip.clone()
        };
        assert!(passed(&[skip.clone(), ok.clone()]));
        let fail = Check {
            outcome: Outcome::Fail,
            ..skip
        };
        assert!(!passed(&[ok, fail]));
    }

    proptest::proptest! {
        /// Manifests and blobs from a hostile registry: every check reports, none panics,
        /// nothing junk passes.
        #[test]
        fn prop_verify_never_panics(
            manifest in vec(ANY, 0..256),
            blob in vec(ANY, 0..256),
            layer_json in "[ -~]{0,64}",
        ) {
            let shaped = format!(
                r#"{{"layers":[{{"mediaType":"{ENVELOPE_MEDIA_TYPE}","digest":"sha256:{}","annotations":{{"{SIGNATURE_ANNOTATION}":"{}"}}}}],"subject":{{"digest":"x"}},"artifactType":"{IN_TOTO_PAYLOAD_TYPE}"}}"#,
                "0".repeat(64),
                layer_json.replace('"', ""),
            );
            let image = Digest::of(b"image");
            for m in [manifest.clone(), shaped.into_bytes()] {
                let evidence = Evidence {
                    origin: Origin::Registry,
                    image: image.clone(),
                    signatures: Some(fetched(m.clone(), blob.clone())),
                    subjects: vec![Subject {
                        digest: image.clone(),
                        platform: None,
                        attestations: Some(fetched(m.clone(), blob.clone())),
                        referrers: vec![fetched(m.clone(), blob.clone())],
                        embedded_sbom: Some(Ok(blob.clone())),
                    }],
                    notes: Vec::new(),
                };
                let checks = verify(&evidence, &key(), "k.pub");
                // Junk never passes: no junk verifies with the key, and the image's own SBOM
                // is junk too. Every check says why.
                proptest::prop_assert!(!passed(&checks), "{checks:#?}");
                proptest::prop_assert!(checks.iter().all(|c| !c.detail.is_empty()));
            }
        }
    }
}
