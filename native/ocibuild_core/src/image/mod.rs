//! The image model: an [`Image`] is a value; its config, manifest and digest are derived.
//!
//! - `config`: the config JSON derived from the base config, overrides and layers.
//! - `manifest`: manifest and index JSON.
//! - `json`: canonical JSON bytes (sorted keys) so digests are reproducible.
//! - `platform`: `os/arch[/variant]` values, the host's, and the one platform matcher.
//! - `source`: [`ImageSource`], what every sink reads, and the one "manifest + config → layers"
//!   parser.
//! - `validate`: values refused before anything is derived (NUL bytes, `=` in env names).

pub mod config;
pub mod json;
pub mod manifest;
pub mod platform;
pub mod source;
pub mod validate;

use std::collections::BTreeMap;

pub use platform::Platform;
pub use source::{ImageSource, LayerBytes};

use crate::digest::Digest;
use crate::layer::Layer;
use crate::media_types::{OCI_CONFIG, OCI_MANIFEST};
use crate::Result;

/// The base an image was built on. `None` in [`Image::base`] means `scratch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseImage {
    /// The reference the user gave, e.g. `docker.io/library/alpine:3.19`.
    pub reference: String,
    /// The exact manifest bytes the registry served, and their digest.
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// The exact config bytes of the base.
    pub config: Vec<u8>,
    /// The base's layers, from its manifest, with `blob` set once the bytes are local.
    pub layers: Vec<Layer>,
    /// Where the base was pulled from, so its layers can be fetched or mounted later.
    /// `None` for bases that did not come from a registry.
    pub source: Option<BaseSource>,
}

/// The registry repository a base image was pulled from, and the credentials to read it
/// (`None`: look them up in docker/podman config files when needed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseSource {
    /// Canonical registry name (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub registry: String,
    pub repository: String,
    pub credentials: Option<crate::credentials::Credentials>,
}

/// A layer added by us, with the label shown in history and progress (`app`, `deps`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedLayer {
    pub layer: Layer,
    pub layer_type: Option<String>,
}

/// What the user set on top of the base config. `None`/empty means "keep the base's value".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// Ordered `(name, value)` pairs, merged into the base `Env` like Docker's `ENV`: a name
    /// already present keeps its position and takes the new value; new names are appended.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// `8080/tcp` style keys, added to the base's `ExposedPorts`.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
}

/// An image value: base (or scratch), our layers, config overrides, manifest annotations and
/// platform. Cheap to clone; sinks derive the config and manifest from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Image {
    pub base: Option<BaseImage>,
    pub layers: Vec<AddedLayer>,
    pub config: ConfigOverrides,
    pub annotations: BTreeMap<String, String>,
    /// `None` means the host's platform (`linux/<host arch>`).
    pub platform: Option<Platform>,
}

/// The blobs of an image once derived: an [`ImageSource`] whose platform is always set.
pub type Rendered = ImageSource;

/// Knobs for deriving the config: the `created` time (epoch seconds).
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub created: u64,
}

/// Annotations ko and buildkit put on a manifest to say what it was built on.
const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

impl Image {
    /// Every layer in manifest order: the base's, then ours.
    pub fn all_layers(&self) -> Vec<Layer> {
        let base = self.base.iter().flat_map(|b| b.layers.iter().cloned());
        base.chain(self.layers.iter().map(|a| a.layer.clone()))
            .collect()
    }
}

/// Derive the config and manifest of `image`: the blobs every sink writes.
pub fn render(image: &Image, opts: &RenderOptions) -> Result<Rendered> {
    validate::check(image)?;
    // The base config is parsed once: it gives the default platform and the config to extend.
    let base_config = match &image.base {
        Some(base) => Some(json::parse_object(&base.config, "base image config")?),
        None => None,
    };
    // The platform set on the image, else its base's, else the host's.
    let platform = image
        .platform
        .clone()
        .or_else(|| base_config.as_ref().and_then(Platform::from_json))
        .unwrap_or_else(Platform::host);
    let config_value = config::derive(
        base_config,
        &image.config,
        &image.layers,
        &platform,
        opts.created,
    )?;
    let config = json::canonical(&config_value);
    let config_digest = Digest::of(&config);
    let layers = image.all_layers();

    let mut annotations = BTreeMap::new();
    if let Some(base) = &image.base {
        annotations.insert(ANNOTATION_BASE_NAME.to_string(), base.reference.clone());
        annotations.insert(
            ANNOTATION_BASE_DIGEST.to_string(),
            base.manifest_digest.to_string(),
        );
    }
    annotations.extend(
        image
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );

    let config_descriptor =
        manifest::Descriptor::new(OCI_CONFIG, config_digest.clone(), config.len() as u64);
    let manifest = json::canonical(&manifest::manifest_json(
        &config_descriptor,
        &layers,
        &annotations,
    ));
    let manifest_digest = Digest::of(&manifest);
    Ok(ImageSource {
        config,
        config_digest,
        manifest,
        manifest_digest,
        media_type: OCI_MANIFEST.to_string(),
        layers,
        platform: Some(platform),
        annotations,
        remote: image.base.as_ref().and_then(|b| b.source.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_types::OCI_LAYER_ZSTD;

    fn layer(n: u8) -> Layer {
        Layer {
            media_type: OCI_LAYER_ZSTD.into(),
            digest: Digest::of(&[n, 1]),
            diff_id: Digest::of(&[n, 2]),
            size: 100 + n as u64,
            blob: None,
        }
    }

    #[test]
    fn render_is_deterministic_and_digests_match_bytes() {
        let mut image = Image::default();
        image.layers.push(AddedLayer {
            layer: layer(1),
            layer_type: Some("app".into()),
        });
        image
            .annotations
            .insert("org.opencontainers.image.version".into(), "1.0".into());
        let opts = RenderOptions { created: 42 };
        let a = render(&image, &opts).unwrap();
        let b = render(&image.clone(), &opts).unwrap();
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.manifest_digest, Digest::of(&a.manifest));
        assert_eq!(a.config_digest, Digest::of(&a.config));
        assert_eq!(a.platform, Some(Platform::host()));
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["config"]["digest"], a.config_digest.as_str());
        assert_eq!(m["layers"][0]["size"], 101);
        assert_eq!(m["annotations"]["org.opencontainers.image.version"], "1.0");
    }

    #[test]
    fn base_layers_come_first_and_base_platform_is_inherited() {
        let base = BaseImage {
            reference: "localhost:5000/base:1".into(),
            manifest: b"{}".to_vec(),
            manifest_digest: Digest::of(b"{}"),
            config: br#"{"os":"linux","architecture":"arm64","rootfs":{"type":"layers","diff_ids":["x"]}}"#.to_vec(),
            layers: vec![layer(0)],
            source: None,
        };
        let image = Image {
            base: Some(base),
            layers: vec![AddedLayer {
                layer: layer(1),
                layer_type: None,
            }],
            ..Default::default()
        };
        let r = render(&image, &RenderOptions { created: 0 }).unwrap();
        assert_eq!(r.layers, vec![layer(0), layer(1)]);
        assert_eq!(r.platform, Some(Platform::new("linux", "arm64", None)));
        let m: serde_json::Value = serde_json::from_slice(&r.manifest).unwrap();
        assert_eq!(
            m["annotations"][ANNOTATION_BASE_NAME],
            "localhost:5000/base:1"
        );
    }
}
