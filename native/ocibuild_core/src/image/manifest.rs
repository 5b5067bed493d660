//! Manifest and index JSON, and the descriptors both are made of.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Platform;
use crate::digest::Digest;
use crate::layer::Layer;
use crate::media_types::{self, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};

/// A content descriptor: what a manifest or index says about a blob it points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub platform: Option<Platform>,
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "mediaType": self.media_type,
            "digest": self.digest.as_str(),
            "size": self.size,
        });
        if let Some(p) = &self.platform {
            v["platform"] = p.to_json();
        }
        if !self.annotations.is_empty() {
            v["annotations"] = json!(self.annotations);
        }
        v
    }
}

/// The OCI media type to write for a layer. Docker schema 2 layer types have OCI twins with
/// identical bytes; we write OCI manifests, so they are renamed (as `crane` and `skopeo` do).
pub fn oci_layer_media_type(media_type: &str) -> &str {
    match media_type {
        media_types::DOCKER_LAYER_GZIP => media_types::OCI_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => media_types::OCI_LAYER_TAR,
        other => other,
    }
}

/// An OCI image manifest for a config blob and layers, with optional annotations.
pub fn manifest_json(
    config: &Descriptor,
    layers: &[Layer],
    annotations: &BTreeMap<String, String>,
) -> Value {
    let layers: Vec<Value> = layers
        .iter()
        .map(|l| {
            Descriptor::new(
                oci_layer_media_type(&l.media_type),
                l.digest.clone(),
                l.size,
            )
            .to_json()
        })
        .collect();
    let mut v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": Descriptor { media_type: OCI_CONFIG.into(), ..config.clone() }.to_json(),
        "layers": layers,
    });
    if !annotations.is_empty() {
        v["annotations"] = json!(annotations);
    }
    v
}

/// An OCI image index listing `manifests`.
pub fn index_json(manifests: &[Descriptor], annotations: &BTreeMap<String, String>) -> Value {
    let mut v = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
    });
    if !annotations.is_empty() {
        v["annotations"] = json!(annotations);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::json::canonical;

    #[test]
    fn manifest_has_oci_shape_and_stable_bytes() {
        let layer = Layer {
            media_type: media_types::DOCKER_LAYER_GZIP.into(),
            digest: Digest::of(b"l"),
            diff_id: Digest::of(b"d"),
            size: 1,
            blob: None,
        };
        let config = Descriptor::new(OCI_CONFIG, Digest::of(b"{}"), 2);
        let ann: BTreeMap<String, String> =
            [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        let m = manifest_json(&config, &[layer], &ann);
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["layers"][0]["mediaType"], media_types::OCI_LAYER_GZIP);
        assert_eq!(m["config"]["size"], 2);
        let text = String::from_utf8(canonical(&m)).unwrap();
        assert!(text.starts_with(r#"{"annotations":{"a":"1","b":"2"},"config":{"digest":"sha256:"#));
        assert_eq!(
            canonical(&m),
            canonical(&manifest_json(&config, &[m_layer()], &ann))
        );
    }

    fn m_layer() -> Layer {
        Layer {
            media_type: media_types::OCI_LAYER_GZIP.into(),
            digest: Digest::of(b"l"),
            diff_id: Digest::of(b"d"),
            size: 1,
            blob: None,
        }
    }

    #[test]
    fn index_entries_carry_platforms() {
        let mut d = Descriptor::new(OCI_MANIFEST, Digest::of(b"m"), 5);
        d.platform = Some(Platform::new("linux", "arm64", Some("v8")));
        let idx = index_json(&[d], &BTreeMap::new());
        assert_eq!(idx["manifests"][0]["platform"]["variant"], "v8");
        assert!(idx.get("annotations").is_none());
    }
}
