//! What the protocol tests share: images of known bytes, and push/pull with retries that do
//! not wait (unless a server's `Retry-After` says so) and an environment of nothing, so no
//! config file or variable of the machine changes an outcome.
//!
//! Only the public entry points are called (`push::push`, `pull::pull`, `pull::fetch_blob`),
//! so the tests hold while the modules behind them change shape.

use std::time::Duration;

use serde_json::json;

use super::oci::Registry;
use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::image::{BaseSource, Platform};
use crate::registry::attach::Attachments;
use crate::registry::progress::{self, ProgressSink};
use crate::registry::pull::{self, BlobRequest, PlatformChoice, PulledImage};
use crate::registry::push::PushTarget;
use crate::registry::push::{self, BlobData, PushBlob, PushImage, PushOptions, PushReport};
use crate::registry::retry::RetryPolicy;
use crate::registry::{Credentials, Environment, Reference, Registries};
use crate::Result;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Five attempts, a few milliseconds apart.
pub fn registries() -> Registries {
    Registries::with_retry(RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    })
}

pub fn env() -> Environment {
    Environment::default()
}

/// `len` bytes that do not repeat (xorshift), different for each `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// An image's parts as a registry stores them.
#[derive(Clone, Debug)]
pub struct TestImage {
    pub layers: Vec<Vec<u8>>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl TestImage {
    /// An image with one layer per entry of `sizes`, of noise from `seed`, for this host's
    /// platform. (The "layers" are not tars: a registry never looks inside.)
    pub fn new(sizes: &[usize], seed: u64) -> TestImage {
        let layers: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| noise(*n, seed * 1000 + i as u64))
            .collect();
        let host = Platform::host();
        let config = json!({
            "architecture": host.architecture,
            "os": host.os,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| Digest::of(l).to_string()).collect::<Vec<_>>(),
            },
        })
        .to_string()
        .into_bytes();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": Digest::of(&config).to_string(),
                "size": config.len(),
            },
            "layers": layers.iter().map(|l| json!({
                "mediaType": LAYER,
                "digest": Digest::of(l).to_string(),
                "size": l.len(),
            })).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes();
        TestImage {
            layers,
            config,
            manifest,
        }
    }

    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    pub fn layer_digest(&self, i: usize) -> Digest {
        Digest::of(&self.layers[i])
    }

    /// To push, every blob from memory.
    pub fn push_image(&self) -> PushImage {
        self.push_image_with(|bytes| BlobData::Bytes(bytes::Bytes::copy_from_slice(bytes)))
    }

    /// To push, the layers as a derived image's base layers: mounted from `source`'s
    /// repository, or fetched from it.
    pub fn push_image_on_base(&self, source: &BaseSource) -> PushImage {
        let config = self.config.clone();
        self.push_image_with(|bytes| {
            if bytes == config.as_slice() {
                BlobData::Bytes(bytes::Bytes::copy_from_slice(bytes))
            } else {
                BlobData::Base(source.clone())
            }
        })
    }

    fn push_image_with(&self, data: impl Fn(&[u8]) -> BlobData) -> PushImage {
        let blobs = std::iter::once(&self.config)
            .chain(&self.layers)
            .map(|bytes| PushBlob {
                digest: Digest::of(bytes),
                size: bytes.len() as u64,
                data: data(bytes),
            })
            .collect();
        PushImage {
            manifest: self.manifest.clone(),
            manifest_digest: self.digest(),
            media_type: OCI_MANIFEST.to_string(),
            platform: Some(Platform::host()),
            blobs,
        }
    }

    /// Put the whole image into `registry` directly, as another tool would have pushed it.
    pub fn seed(&self, registry: &Registry, repo: &str, tag: &str) {
        registry.put_blob(repo, &self.config);
        for layer in &self.layers {
            registry.put_blob(repo, layer);
        }
        registry.put_manifest(repo, tag, OCI_MANIFEST, &self.manifest);
    }

    /// Is this image, every blob and the manifest under `tag`, in `repo` exactly?
    pub fn assert_in(&self, registry: &Registry, repo: &str, tag: &str) {
        let (media_type, manifest) = registry
            .manifest(repo, tag)
            .unwrap_or_else(|| panic!("no manifest {repo}:{tag}"));
        assert_eq!(media_type, OCI_MANIFEST);
        assert_eq!(manifest, self.manifest, "the manifest of {repo}:{tag}");
        for blob in std::iter::once(&self.config).chain(&self.layers) {
            let digest = Digest::of(blob);
            assert_eq!(
                registry.blob(repo, &digest).as_ref(),
                Some(blob),
                "blob {digest} in {repo}"
            );
        }
    }
}

/// A blob store in a fresh temporary directory (kept as long as the returned guard).
pub fn store() -> (tempfile::TempDir, BlobStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = BlobStore::open(dir.path().join("cache")).expect("blob store");
    (dir, store)
}

/// Push options: chunks of `chunk_size`, four blobs at once, a fresh cache.
pub struct Push {
    pub credentials: Credentials,
    pub chunk_size: u64,
    pub registries: Registries,
    pub progress: ProgressSink,
    /// `PushOptions::index`: an index even for one image.
    pub index: bool,
    /// `PushOptions::attach`: what to attach after the push.
    pub attach: Attachments,
    _cache_dir: tempfile::TempDir,
    cache: BlobStore,
}

impl Push {
    pub fn new() -> Push {
        let (dir, cache) = store();
        Push {
            credentials: Credentials::Anonymous,
            chunk_size: 1 << 30,
            registries: registries(),
            progress: progress::ignore(),
            index: false,
            attach: Attachments::default(),
            _cache_dir: dir,
            cache,
        }
    }

    pub fn chunked(mut self, chunk_size: u64) -> Push {
        self.chunk_size = chunk_size;
        self
    }

    /// Ask for an index whatever the number of images (0.10's `push_multi`).
    pub fn index(mut self) -> Push {
        self.index = true;
        self
    }

    pub fn attach(mut self, attach: Attachments) -> Push {
        self.attach = attach;
        self
    }

    pub fn credentials(mut self, credentials: Credentials) -> Push {
        self.credentials = credentials;
        self
    }

    pub fn cache(&self) -> &BlobStore {
        &self.cache
    }

    /// Push `images` to `registry` as `repo_tag`.
    pub async fn run(
        &self,
        registry: &Registry,
        repo_tag: &str,
        images: &[PushImage],
    ) -> Result<PushReport> {
        let target = PushTarget::parse(registry.addr(), repo_tag, &[], self.credentials.clone())?;
        let opts = PushOptions {
            chunk_size: self.chunk_size,
            max_concurrency: 4,
            cache: self.cache.clone(),
            index: self.index,
            attach: self.attach.clone(),
        };
        push::push(
            &self.registries,
            &env(),
            images,
            &target,
            &opts,
            &self.progress,
        )
        .await
    }
}

/// Pull `reference` (`repo:tag` on `registry`) for the host's platform.
pub async fn pull(
    registries: &Registries,
    registry: &Registry,
    reference: &str,
    credentials: &Credentials,
) -> Result<Vec<PulledImage>> {
    let reference = Reference::parse(&format!("{}/{reference}", registry.addr()))?;
    pull::pull(
        registries,
        &env(),
        &reference,
        credentials,
        &PlatformChoice::default(),
        &progress::ignore(),
    )
    .await
}

/// Where a base image lives, as a pull records it.
pub fn base_source(registry: &Registry, repo: &str, credentials: Credentials) -> BaseSource {
    BaseSource {
        registry: registry.addr().to_string(),
        repository: repo.to_string(),
        credentials: Some(credentials),
    }
}

/// Fetch one blob of `repo` into `store`.
pub async fn fetch(
    registries: &Registries,
    registry: &Registry,
    repo: &str,
    blob: &[u8],
    store: &BlobStore,
) -> Result<std::path::PathBuf> {
    let request = BlobRequest {
        source: base_source(registry, repo, Credentials::Anonymous),
        digest: Digest::of(blob),
        size: Some(blob.len() as u64),
    };
    pull::fetch_blob(
        registries,
        &env(),
        &request,
        &Credentials::Anonymous,
        store,
        &progress::ignore(),
    )
    .await
}
