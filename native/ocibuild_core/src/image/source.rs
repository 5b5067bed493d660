//! One image source: the shape every sink (layout directory, tarball, registry push) reads,
//! whether the image was built here ([`super::render`]), read back from a saved tarball
//! (`layout::load`) or pulled from a registry (`registry::pull`). go-containerregistry's
//! `v1.Image`: exact manifest and config bytes, and layers that say where their bytes are.
//!
//! A layer with a local `blob` is read from disk; one without is fetched on demand from
//! [`ImageSource::remote`] (the registry the base came from) into the blob cache, by the sink
//! that needs it. So no caller ever fetches base layers for a sink.
//!
//! [`layers_of`] is the one parser of "manifest + config → layers": a pulled base and a loaded
//! tarball are read by it alike; each caller names its own error (a registry's bad JSON is
//! `InvalidJson`, a tarball's is `InvalidLayout`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::{BaseSource, Platform};
use crate::digest::Digest;
use crate::layer::Layer;
use crate::media_types::OCI_MANIFEST;
use crate::{Error, Result};

/// An image as a sink reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSource {
    /// The manifest bytes exactly as written or served (their digest is the image's identity).
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// The manifest's media type (OCI for what we build; a loaded tarball may hold Docker's).
    pub media_type: String,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    /// Every layer in manifest order; `blob` is `None` for a layer still in [`Self::remote`].
    pub layers: Vec<Layer>,
    /// The platform the image is for, when known (index descriptor, config or request).
    pub platform: Option<Platform>,
    /// The manifest's annotations (what a loaded tarball recorded; empty when not read).
    pub annotations: BTreeMap<String, String>,
    /// Where layers without a local blob are fetched from; `None` when every layer is local.
    pub remote: Option<BaseSource>,
}

/// Where a layer's bytes are, as a sink must open them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerBytes {
    /// A verified blob on this machine.
    Local(PathBuf),
    /// A base layer still in its registry: fetched (or found in the cache) when needed, or
    /// mounted by a push to the same registry.
    Remote(BaseSource),
}

impl ImageSource {
    /// Where `layer`'s bytes are, or `BlobMissing` when it is neither local nor remote.
    pub fn layer_bytes(&self, layer: &Layer) -> Result<LayerBytes> {
        match (&layer.blob, &self.remote) {
            (Some(path), _) => Ok(LayerBytes::Local(path.clone())),
            (None, Some(remote)) => Ok(LayerBytes::Remote(remote.clone())),
            (None, None) => Err(Error::BlobMissing(layer.digest.to_string())),
        }
    }

    /// The platform the source names, else the one its config declares (`None`: neither says).
    pub fn platform_or_config(&self) -> Option<Platform> {
        self.platform.clone().or_else(|| {
            serde_json::from_slice::<Value>(&self.config)
                .ok()
                .and_then(|c| Platform::from_json(&c))
        })
    }

    /// The layers whose bytes must be fetched before a sink can write them.
    pub fn remote_layers(&self) -> impl Iterator<Item = &Layer> {
        self.layers.iter().filter(|l| l.blob.is_none())
    }

    /// The manifest's media type as the manifest itself declares it, else OCI's (an OCI
    /// manifest may leave it out).
    pub fn declared_media_type(manifest: &[u8]) -> String {
        serde_json::from_slice::<Value>(manifest)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .unwrap_or_else(|| OCI_MANIFEST.to_string())
    }
}

/// What is wrong with a manifest/config pair, for the caller to name in its own error term.
#[derive(Debug)]
pub enum LayersError {
    /// The manifest has no `layers` array.
    NoLayersArray,
    /// A layer descriptor lacks this field (or it has the wrong type).
    MissingField(&'static str),
    /// The manifest and the config's `rootfs.diff_ids` disagree on the layer count.
    CountMismatch { layers: usize, diff_ids: usize },
    /// A malformed digest or diff_id.
    Digest(Error),
}

impl LayersError {
    /// A human sentence, for the caller's `InvalidJson` / `InvalidLayout`.
    pub fn describe(&self) -> String {
        match self {
            LayersError::NoLayersArray => "no layers array".into(),
            LayersError::MissingField(f) => format!("a layer descriptor has no valid {f}"),
            LayersError::CountMismatch { layers, diff_ids } => {
                format!("{layers} layers in the manifest but {diff_ids} diff_ids in the config")
            }
            LayersError::Digest(e) => e.to_string(),
        }
    }
}

/// The layers a manifest lists, each with the diff_id its config gives it, no bytes yet
/// (`blob: None`). The one parser of "manifest + config → layers".
pub fn layers_of(manifest: &Value, config: &Value) -> std::result::Result<Vec<Layer>, LayersError> {
    let descriptors = manifest
        .get("layers")
        .and_then(Value::as_array)
        .ok_or(LayersError::NoLayersArray)?;
    let diff_ids: Vec<&str> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if descriptors.len() != diff_ids.len() {
        return Err(LayersError::CountMismatch {
            layers: descriptors.len(),
            diff_ids: diff_ids.len(),
        });
    }
    descriptors
        .iter()
        .zip(diff_ids)
        .map(|(d, diff_id)| {
            let text = |field: &'static str| {
                d.get(field)
                    .and_then(Value::as_str)
                    .ok_or(LayersError::MissingField(field))
            };
            Ok(Layer {
                media_type: text("mediaType")?.to_string(),
                digest: Digest::parse(text("digest")?).map_err(LayersError::Digest)?,
                diff_id: Digest::parse(diff_id).map_err(LayersError::Digest)?,
                size: d
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or(LayersError::MissingField("size"))?,
                blob: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(n: u8) -> String {
        Digest::of(&[n]).to_string()
    }

    #[test]
    fn layers_pair_manifest_descriptors_with_config_diff_ids() {
        let manifest = json!({"layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(1), "size": 7}
        ]});
        let config = json!({"rootfs": {"type": "layers", "diff_ids": [digest(2)]}});
        let layers = layers_of(&manifest, &config).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].digest.to_string(), digest(1));
        assert_eq!(layers[0].diff_id.to_string(), digest(2));
        assert_eq!(layers[0].size, 7);
        assert_eq!(layers[0].blob, None);
    }

    #[test]
    fn each_malformation_is_named() {
        let config = json!({"rootfs": {"diff_ids": [digest(2)]}});
        let layer = |v: Value| json!({ "layers": [v] });
        let full = json!({"mediaType": "m", "digest": digest(1), "size": 1});
        assert!(matches!(
            layers_of(&json!({}), &config),
            Err(LayersError::NoLayersArray)
        ));
        assert!(matches!(
            layers_of(&json!({"layers": []}), &config),
            Err(LayersError::CountMismatch {
                layers: 0,
                diff_ids: 1
            })
        ));
        for field in ["mediaType", "digest", "size"] {
            let mut d = full.clone();
            d.as_object_mut().unwrap().remove(field);
            match layers_of(&layer(d), &config) {
                Err(LayersError::MissingField(f)) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let mut bad = full.clone();
        bad["digest"] = json!("sha256:nothex");
        assert!(matches!(
            layers_of(&layer(bad), &config),
            Err(LayersError::Digest(_))
        ));
    }

    #[test]
    fn a_layer_is_local_remote_or_missing() {
        let mut layer = layers_of(
            &json!({"layers": [{"mediaType": "m", "digest": digest(1), "size": 1}]}),
            &json!({"rootfs": {"diff_ids": [digest(2)]}}),
        )
        .unwrap()
        .remove(0);
        let mut source = ImageSource {
            manifest: b"{}".to_vec(),
            manifest_digest: Digest::of(b"{}"),
            media_type: OCI_MANIFEST.into(),
            config: b"{}".to_vec(),
            config_digest: Digest::of(b"{}"),
            layers: vec![layer.clone()],
            platform: None,
            annotations: BTreeMap::new(),
            remote: None,
        };
        assert!(matches!(
            source.layer_bytes(&layer),
            Err(Error::BlobMissing(_))
        ));
        let remote = BaseSource {
            registry: "localhost:5000".into(),
            repository: "base".into(),
            credentials: None,
        };
        source.remote = Some(remote.clone());
        assert_eq!(
            source.layer_bytes(&layer).unwrap(),
            LayerBytes::Remote(remote)
        );
        assert_eq!(source.remote_layers().count(), 1);
        layer.blob = Some(PathBuf::from("/blob"));
        assert_eq!(
            source.layer_bytes(&layer).unwrap(),
            LayerBytes::Local(PathBuf::from("/blob"))
        );
    }
}
