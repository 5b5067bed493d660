//! OCI 1.1 referrers: an artifact manifest whose `subject` is the image it describes, and the
//! referrers tag schema for registries without the referrers API.
//!
//! A registry that indexes `subject` answers the manifest PUT with an `OCI-Subject` header and
//! lists the artifact under `GET /v2/<name>/referrers/<digest>`. One that does not (distribution
//! 2.8) gets the fallback the distribution spec defines: an image index at tag
//! `sha256-<hex of the subject digest>` listing every referrer. That index belongs to everyone
//! who attaches to the image (cosign, oras, ...), so it is read, extended and put back; an
//! entry is never dropped.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::image::json::{canonical, parse_object};
use crate::image::manifest::Descriptor;
use crate::media_types::{OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};
use crate::{Error, Result};

/// The empty JSON object: the config blob of an artifact that has no config.
pub const EMPTY_JSON: &[u8] = b"{}";

/// An artifact to attach: one blob of `media_type`, typed `artifact_type`.
#[derive(Clone, Debug)]
pub struct Artifact {
    pub artifact_type: String,
    pub media_type: String,
    pub data: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

/// An artifact manifest, ready to put by digest.
#[derive(Clone, Debug)]
pub struct ArtifactManifest {
    pub manifest: Vec<u8>,
    pub digest: Digest,
    /// What the referrers list (API or fallback index) says about this manifest.
    pub descriptor: Value,
}

/// The manifest of `artifact` with `subject` as its subject and the empty config.
pub fn artifact_manifest(artifact: &Artifact, subject: &Descriptor) -> ArtifactManifest {
    let empty = Descriptor::new(OCI_EMPTY, Digest::of(EMPTY_JSON), EMPTY_JSON.len() as u64);
    let blob = Descriptor::new(
        &artifact.media_type,
        Digest::of(&artifact.data),
        artifact.data.len() as u64,
    );
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact.artifact_type,
        "config": empty.to_json(),
        "layers": [blob.to_json()],
        "subject": Descriptor {
            platform: None,
            annotations: BTreeMap::new(),
            ..subject.clone()
        }
        .to_json(),
    });
    if !artifact.annotations.is_empty() {
        manifest["annotations"] = json!(artifact.annotations);
    }
    let bytes = canonical(&manifest);
    let digest = Digest::of(&bytes);
    let mut descriptor = json!({
        "mediaType": OCI_MANIFEST,
        "digest": digest.as_str(),
        "size": bytes.len(),
        "artifactType": artifact.artifact_type,
    });
    if !artifact.annotations.is_empty() {
        descriptor["annotations"] = json!(artifact.annotations);
    }
    ArtifactManifest {
        manifest: bytes,
        digest,
        descriptor,
    }
}

/// The fallback tag for the referrers of `subject`: `sha256-<hex>`.
pub fn referrers_tag(subject: &Digest) -> String {
    subject.as_str().replacen(':', "-", 1)
}

/// The fallback index with `descriptor` added to `existing` (the index now at the tag, if
/// any). `None` when the descriptor is listed already: nothing to put.
pub fn add_referrer(existing: Option<&[u8]>, descriptor: &Value) -> Result<Option<Vec<u8>>> {
    let mut index = match existing {
        Some(bytes) => {
            let index = parse_object(bytes, "referrers index")?;
            let media_type = index.get("mediaType").and_then(Value::as_str);
            if media_type.is_some_and(|m| m != OCI_INDEX) {
                return Err(Error::UnsupportedMediaType(
                    media_type.unwrap_or_default().to_string(),
                ));
            }
            index
        }
        None => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
    };
    let manifests = match index.get_mut("manifests") {
        Some(Value::Array(list)) => list,
        _ => {
            return Err(Error::InvalidJson {
                what: "referrers index".into(),
                why: "no manifests list".into(),
            })
        }
    };
    let digest = descriptor.get("digest");
    if manifests.iter().any(|m| m.get("digest") == digest) {
        return Ok(None);
    }
    manifests.push(descriptor.clone());
    Ok(Some(canonical(&index)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Descriptor {
        let mut d = Descriptor::new(OCI_MANIFEST, Digest::of(b"image"), 5);
        d.platform = Some(crate::image::Platform::host());
        d
    }

    fn sbom() -> Artifact {
        Artifact {
            artifact_type: "application/spdx+json".into(),
            media_type: "application/spdx+json".into(),
            data: br#"{"spdxVersion":"SPDX-2.2"}"#.to_vec(),
            annotations: BTreeMap::from([(
                "org.opencontainers.image.created".to_string(),
                "2024-01-01T00:00:00Z".to_string(),
            )]),
        }
    }

    #[test]
    fn artifact_manifest_has_subject_empty_config_and_the_blob() {
        let a = artifact_manifest(&sbom(), &subject());
        let m: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["artifactType"], "application/spdx+json");
        assert_eq!(m["config"]["mediaType"], OCI_EMPTY);
        assert_eq!(
            m["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(m["config"]["size"], 2);
        assert_eq!(m["layers"][0]["mediaType"], "application/spdx+json");
        assert_eq!(m["layers"][0]["digest"], Digest::of(&sbom().data).as_str());
        assert_eq!(m["subject"]["digest"], Digest::of(b"image").as_str());
        assert_eq!(m["subject"]["size"], 5);
        // A subject is a plain descriptor: no platform.
        assert!(m["subject"].get("platform").is_none());
        assert_eq!(a.digest, Digest::of(&a.manifest));
        assert_eq!(a.descriptor["digest"], a.digest.as_str());
        assert_eq!(a.descriptor["size"], a.manifest.len());
        assert_eq!(a.descriptor["artifactType"], "application/spdx+json");
        assert_eq!(
            a.descriptor["annotations"]["org.opencontainers.image.created"],
            "2024-01-01T00:00:00Z"
        );
    }

    #[test]
    fn referrers_tag_is_the_digest_with_a_dash() {
        let d = Digest::of(b"x");
        assert_eq!(
            referrers_tag(&d),
            format!("sha256-{}", &d.as_str()["sha256:".len()..])
        );
    }

    #[test]
    fn add_referrer_creates_extends_and_does_not_repeat() {
        let a = artifact_manifest(&sbom(), &subject());
        let first = add_referrer(None, &a.descriptor).unwrap().unwrap();
        let v: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);

        // Someone else's referrer is kept when ours is added.
        let other = json!({"mediaType": OCI_MANIFEST, "digest": Digest::of(b"sig").as_str(),
                           "size": 3, "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"});
        let theirs = add_referrer(None, &other).unwrap().unwrap();
        let both = add_referrer(Some(&theirs), &a.descriptor).unwrap().unwrap();
        let v: Value = serde_json::from_slice(&both).unwrap();
        let digests: Vec<&str> = v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap())
            .collect();
        assert_eq!(
            digests,
            vec![Digest::of(b"sig").as_str(), a.digest.as_str()]
        );

        assert!(add_referrer(Some(&both), &a.descriptor).unwrap().is_none());
    }

    #[test]
    fn add_referrer_refuses_what_is_not_an_index() {
        let manifest =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#;
        assert!(matches!(
            add_referrer(Some(manifest), &json!({"digest": "x"})),
            Err(Error::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            add_referrer(Some(b"not json"), &json!({"digest": "x"})),
            Err(Error::InvalidJson { .. })
        ));
        assert!(matches!(
            add_referrer(Some(br#"{"schemaVersion":2}"#), &json!({"digest": "x"})),
            Err(Error::InvalidJson { .. })
        ));
    }
}
