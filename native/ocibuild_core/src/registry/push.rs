//! Pushing images and indexes.
//!
//! Order matters: every blob (base layers, our layers, configs) is confirmed present first,
//! in parallel up to `max_concurrency`; only then are manifests put, and the tag last, so a
//! push that fails part way never leaves a tag pointing at a broken image. Extra tags re-put
//! the same manifest bytes: no blob traffic.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use futures_util::{StreamExt, TryStreamExt};

use super::attach::{attach, Attached, Attachments};
use super::auth::{Access, Scopes};
use super::credentials::resolve;
use super::progress::ProgressSink;
use super::pull::{fetch_blob, BlobRequest};
use super::reference::parse_target;
use super::upload::LocalData;
use super::writer::RepositoryWriter;
use super::{Credentials, Environment, Reference, Registries};
use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::image::json::canonical;
use crate::image::manifest::{index_json, Descriptor};
use crate::image::{BaseSource, ImageSource, LayerBytes, Platform};
use crate::media_types::OCI_INDEX;
use crate::{Error, Result};

/// Where a blob's bytes come from.
#[derive(Clone, Debug)]
pub enum BlobData {
    Bytes(bytes::Bytes),
    File(PathBuf),
    /// A base layer: mounted when the base lives on the target registry, else taken from the
    /// cache or fetched from its registry into the cache.
    Base(BaseSource),
}

#[derive(Clone, Debug)]
pub struct PushBlob {
    pub digest: Digest,
    pub size: u64,
    pub data: BlobData,
}

/// One image to push: its exact manifest bytes and every blob it references.
#[derive(Clone, Debug)]
pub struct PushImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub media_type: String,
    pub platform: Option<Platform>,
    pub blobs: Vec<PushBlob>,
}

impl PushImage {
    /// Any image source (built, loaded from a tarball, pulled): its manifest and config bytes
    /// exactly as they are, local layers from disk, the others from their registry (mounted,
    /// found in the cache or fetched into it when the push needs them).
    pub fn from_source(source: &ImageSource) -> Result<PushImage> {
        let mut blobs = vec![PushBlob {
            digest: source.config_digest.clone(),
            size: source.config.len() as u64,
            data: BlobData::Bytes(bytes::Bytes::from(source.config.clone())),
        }];
        for layer in &source.layers {
            let data = match source.layer_bytes(layer)? {
                LayerBytes::Local(path) => BlobData::File(path),
                LayerBytes::Remote(base) => BlobData::Base(base),
            };
            blobs.push(PushBlob {
                digest: layer.digest.clone(),
                size: layer.size,
                data,
            });
        }
        Ok(PushImage {
            manifest: source.manifest.clone(),
            manifest_digest: source.manifest_digest.clone(),
            media_type: source.media_type.clone(),
            platform: source.platform.clone(),
            blobs,
        })
    }
}

/// Where to push: registry, repository, tags (the first is the main one) and credentials.
#[derive(Clone, Debug)]
pub struct PushTarget {
    pub registry: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub credentials: Credentials,
}

impl PushTarget {
    /// `repo_tag` (`org/app:v1`) resolved against `registry` (which may carry a namespace,
    /// `ghcr.io/org`), then `extra_tags`, each checked like a reference's tag; duplicates
    /// are dropped.
    pub fn parse(
        registry: &str,
        repo_tag: &str,
        extra_tags: &[String],
        credentials: Credentials,
    ) -> Result<PushTarget> {
        let reference = parse_target(registry, repo_tag)?;
        let mut tags = vec![reference.reference()];
        for tag in extra_tags {
            Reference::from_parts(&reference.registry, &reference.repository, tag)?;
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
        Ok(PushTarget {
            registry: reference.registry,
            repository: reference.repository,
            tags,
            credentials,
        })
    }
}

#[derive(Clone, Debug)]
pub struct PushOptions {
    /// Blobs at least this big are sent in chunks of this size.
    pub chunk_size: u64,
    pub max_concurrency: usize,
    /// Where base layers are cached when they must be fetched to be pushed.
    pub cache: BlobStore,
    /// Put an index (with each image's manifest by digest) even for one image, when a caller
    /// asks for it (0.10's `push_multi`, a tarball saved as an index). Several images always
    /// make an index: [`push`] decides that, and nothing else does.
    pub index: bool,
    /// SBOM referrers and a signature to add once the image is in (see `attach`).
    pub attach: Attachments,
}

pub use crate::options::{DEFAULT_CHUNK_SIZE, DEFAULT_MAX_CONCURRENCY};

/// What a push did, for callers and benchmarks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest digest (index digest for a multi-platform push).
    pub digest: Digest,
    pub uploaded_bytes: u64,
    pub uploaded: usize,
    pub existing: usize,
    pub mounted: usize,
    /// The referrers and signature attached after the image.
    pub attached: Attached,
}

/// Push `images` to `target`: one image under its tags, or (with `opts.index`, or several
/// images) each manifest by digest and an index under the tags. Blobs first, in parallel;
/// manifests only once every blob is in.
pub async fn push(
    registries: &Registries,
    env: &Environment,
    images: &[PushImage],
    target: &PushTarget,
    opts: &PushOptions,
    progress: &ProgressSink,
) -> Result<PushReport> {
    if images.is_empty() {
        return Err(Error::InvalidOption {
            name: "images",
            why: "nothing to push".into(),
        });
    }
    if target.tags.is_empty() {
        return Err(Error::InvalidOption {
            name: "tag",
            why: "a push needs a tag".into(),
        });
    }
    let multi = opts.index || images.len() > 1;
    if multi && images.iter().any(|i| i.platform.is_none()) {
        return Err(Error::InvalidOption {
            name: "platform",
            why: "every image of a multi-platform push needs its platform set".into(),
        });
    }
    let client = registries.client(&target.registry, super::api_host(&target.registry), env)?;

    // Unique blobs, and the repositories on this registry we may mount from.
    let mut seen = HashSet::new();
    let mut blobs = Vec::new();
    let mut scopes = Scopes::push(&target.repository);
    for blob in images.iter().flat_map(|i| i.blobs.iter()) {
        if let Some(from) = mount_source(blob, target) {
            scopes = scopes.with_pull(from);
        }
        if seen.insert(blob.digest.clone()) {
            blobs.push(blob.clone());
        }
    }
    let access = Access {
        credentials: target.credentials.clone(),
        scopes,
    };
    let writer = RepositoryWriter::new(
        &client,
        &access,
        &target.registry,
        &target.repository,
        opts.chunk_size,
        progress,
    );
    let sources = BlobSources {
        registries,
        env,
        cache: &opts.cache,
        progress,
    };
    // Collected first: a stream over a closure trips rustc's Send inference for the caller's
    // spawned future ("FnOnce is not general enough").
    let uploads: Vec<_> = blobs
        .iter()
        .map(|b| place_blob(&writer, &sources, target, b))
        .collect();
    futures_util::stream::iter(uploads)
        .buffer_unordered(opts.max_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    // Every blob is there: now the manifests, then the tags.
    let digest = if multi {
        let mut descriptors = Vec::new();
        for image in images {
            writer
                .put_manifest(
                    image.manifest_digest.as_str(),
                    &image.manifest,
                    &image.media_type,
                )
                .await?;
            let mut d = subject(image);
            d.platform = image.platform.clone();
            descriptors.push(d);
        }
        let index = canonical(&index_json(&descriptors, &BTreeMap::new()));
        put_tags(&writer, &target.tags, &index, OCI_INDEX).await?;
        Digest::of(&index)
    } else {
        let image = &images[0];
        put_tags(&writer, &target.tags, &image.manifest, &image.media_type).await?;
        image.manifest_digest.clone()
    };
    let subjects: Vec<Descriptor> = images.iter().map(subject).collect();
    let attached = attach(&writer, &subjects, &digest, &opts.attach).await?;
    let placed = &writer.placed;
    Ok(PushReport {
        digest,
        uploaded_bytes: placed.uploaded_bytes(),
        uploaded: placed.uploaded(),
        existing: placed.existing(),
        mounted: placed.mounted(),
        attached,
    })
}

/// The descriptor of an image's manifest, as an index or a referrer names it.
fn subject(image: &PushImage) -> Descriptor {
    Descriptor::new(
        &image.media_type,
        image.manifest_digest.clone(),
        image.manifest.len() as u64,
    )
}

/// The repository of the target's registry a base layer can be mounted from, if any.
fn mount_source<'b>(blob: &'b PushBlob, target: &PushTarget) -> Option<&'b str> {
    match &blob.data {
        BlobData::Base(src) if src.registry == target.registry => Some(&src.repository),
        _ => None,
    }
}

/// Where blobs not held locally (base layers) are fetched from when they must be uploaded.
struct BlobSources<'a> {
    registries: &'a Registries,
    env: &'a Environment,
    cache: &'a BlobStore,
    progress: &'a ProgressSink,
}

async fn place_blob(
    writer: &RepositoryWriter<'_>,
    sources: &BlobSources<'_>,
    target: &PushTarget,
    blob: &PushBlob,
) -> Result<()> {
    let mount_from = mount_source(blob, target);
    writer
        .place(&blob.digest, blob.size, mount_from, || {
            sources.local_data(blob)
        })
        .await?;
    Ok(())
}

impl BlobSources<'_> {
    async fn local_data(&self, blob: &PushBlob) -> Result<LocalData> {
        Ok(match &blob.data {
            BlobData::Bytes(b) => LocalData::Bytes(b.clone()),
            BlobData::File(p) => LocalData::File(p.clone()),
            BlobData::Base(src) => {
                // The credentials the base was pulled with, else the config files'.
                let creds = resolve(src.credentials.clone(), &src.registry, self.env).await?;
                let request = BlobRequest {
                    source: src.clone(),
                    digest: blob.digest.clone(),
                    size: Some(blob.size),
                };
                let path = fetch_blob(
                    self.registries,
                    self.env,
                    &request,
                    &creds,
                    self.cache,
                    self.progress,
                )
                .await?;
                LocalData::File(path)
            }
        })
    }
}

/// PUT the same manifest (or index) under every tag, main tag first.
async fn put_tags(
    writer: &RepositoryWriter<'_>,
    tags: &[String],
    bytes: &[u8],
    media_type: &str,
) -> Result<()> {
    for tag in tags {
        writer.put_manifest(tag, bytes, media_type).await?;
    }
    Ok(())
}
