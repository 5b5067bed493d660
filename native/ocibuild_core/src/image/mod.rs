//! The image model: an [`Image`] is a value; its config, manifest and digest are derived.
//!
//! - `config`: the config JSON derived from the base config, overrides and layers.
//! - `manifest`: manifest and index JSON.
//! - `json`: canonical JSON bytes (sorted keys) so digests are reproducible.
//! - `platform`: `os/arch[/variant]` values.

pub mod config;
pub mod json;
pub mod manifest;
pub mod platform;

use std::collections::BTreeMap;

pub use platform::Platform;

use crate::digest::Digest;
use crate::layer::Layer;

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

/// The blobs of an image once derived: what every sink (layout, tarball, registry) writes.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// Every layer, base layers first, in manifest order.
    pub layers: Vec<Layer>,
    pub platform: Platform,
}

/// Knobs for deriving the config: the `created` time (epoch seconds).
#[derive(Clone, Debug)]
pub struct RenderOptions {
    pub created: u64,
}
