//! Pushing images and indexes.
//!
//! Order matters: every blob (base layers, our layers, configs) is confirmed present first,
//! in parallel up to `max_concurrency`; only then are manifests put, and the tag last, so a
//! push that fails part way never leaves a tag pointing at a broken image. Extra tags re-put
//! the same manifest bytes: no blob traffic.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::attach::{Attached, Attacher, Attachments};
use super::client::{Access, Body, RegistryClient, Scopes};
use super::credentials::resolve;
use super::progress::{Phase, Progress, ProgressSink};
use super::pull::{fetch_blob, BlobRequest};
use super::reference::parse_target;
use super::upload::{self, LocalData, Outcome};
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
    /// Put an index (with each image's manifest by digest) even for one image.
    pub index: bool,
    /// SBOM referrers and a signature to add once the image is in (see `attach`).
    pub attach: Attachments,
}

pub const DEFAULT_CHUNK_SIZE: u64 = 5 * 1024 * 1024;
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

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
        if let BlobData::Base(src) = &blob.data {
            if src.registry == target.registry && src.repository != target.repository {
                scopes = scopes.with_pull(&src.repository);
            }
        }
        if seen.insert(blob.digest.clone()) {
            blobs.push(blob.clone());
        }
    }
    let access = Access {
        credentials: target.credentials.clone(),
        scopes,
    };

    let stats = Stats::default();
    let job = BlobJob {
        registries,
        env,
        client: &client,
        access: &access,
        target,
        opts,
        progress,
        stats: &stats,
    };
    // Collected first: a stream over a closure trips rustc's Send inference for the caller's
    // spawned future ("FnOnce is not general enough").
    let uploads: Vec<_> = blobs.iter().map(|b| job.push_blob(b)).collect();
    futures_util::stream::iter(uploads)
        .buffer_unordered(opts.max_concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;

    // Every blob is there: now the manifests, then the tags.
    let digest = if multi {
        let mut descriptors = Vec::new();
        for image in images {
            put_manifest(
                &client,
                &access,
                &target.repository,
                image.manifest_digest.as_str(),
                &image.manifest,
                &image.media_type,
                progress,
            )
            .await?;
            let mut d = Descriptor::new(
                &image.media_type,
                image.manifest_digest.clone(),
                image.manifest.len() as u64,
            );
            d.platform = image.platform.clone();
            descriptors.push(d);
        }
        let index = canonical(&index_json(&descriptors, &BTreeMap::new()));
        put_tags(&client, &access, target, &index, OCI_INDEX, progress).await?;
        Digest::of(&index)
    } else {
        let image = &images[0];
        put_tags(
            &client,
            &access,
            target,
            &image.manifest,
            &image.media_type,
            progress,
        )
        .await?;
        image.manifest_digest.clone()
    };
    let attached = attach(&job, images, &digest, &opts.attach).await?;
    Ok(PushReport {
        digest,
        uploaded_bytes: stats.bytes.load(Ordering::Relaxed),
        uploaded: stats.uploaded.load(Ordering::Relaxed),
        existing: stats.existing.load(Ordering::Relaxed),
        mounted: stats.mounted.load(Ordering::Relaxed),
        attached,
    })
}

/// Referrers for each image that has one, then the signature of what the tags point at.
async fn attach(
    job: &BlobJob<'_>,
    images: &[PushImage],
    digest: &Digest,
    attachments: &Attachments,
) -> Result<Attached> {
    let mut attached = Attached::default();
    if attachments.is_empty() {
        return Ok(attached);
    }
    let attacher = Attacher { job };
    for (image, artifact) in images.iter().zip(&attachments.referrers) {
        if let Some(artifact) = artifact {
            let subject = Descriptor::new(
                &image.media_type,
                image.manifest_digest.clone(),
                image.manifest.len() as u64,
            );
            attached
                .referrers
                .push(attacher.referrer(artifact, &subject).await?);
        }
    }
    if let Some(key) = &attachments.signature {
        attached.signature_tag = Some(attacher.signature(key, digest).await?);
    }
    Ok(attached)
}

#[derive(Default)]
struct Stats {
    bytes: AtomicU64,
    uploaded: AtomicUsize,
    existing: AtomicUsize,
    mounted: AtomicUsize,
}

pub(super) struct BlobJob<'a> {
    registries: &'a Registries,
    env: &'a Environment,
    pub(super) client: &'a RegistryClient,
    pub(super) access: &'a Access,
    pub(super) target: &'a PushTarget,
    opts: &'a PushOptions,
    pub(super) progress: &'a ProgressSink,
    stats: &'a Stats,
}

impl BlobJob<'_> {
    pub(super) async fn push_blob(&self, blob: &PushBlob) -> Result<()> {
        let repo = &self.target.repository;
        let outcome = self.place(blob, repo).await?;
        let phase = match outcome {
            Outcome::Existed => {
                self.stats.existing.fetch_add(1, Ordering::Relaxed);
                Phase::Exists
            }
            Outcome::Mounted => {
                self.stats.mounted.fetch_add(1, Ordering::Relaxed);
                Phase::Mounted
            }
            Outcome::Uploaded(n) => {
                self.stats.uploaded.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(n, Ordering::Relaxed);
                Phase::Upload
            }
        };
        if phase != Phase::Upload {
            (self.progress)(Progress {
                phase,
                digest: Some(blob.digest.clone()),
                bytes: 0,
                total: Some(blob.size),
            });
        }
        Ok(())
    }

    async fn place(&self, blob: &PushBlob, repo: &str) -> Result<Outcome> {
        let (client, access) = (self.client, self.access);
        if upload::exists(client, access, repo, &blob.digest).await? {
            return Ok(Outcome::Existed);
        }
        let mut session = None;
        if let BlobData::Base(src) = &blob.data {
            if src.registry == self.target.registry && src.repository != *repo {
                match upload::mount(client, access, repo, &blob.digest, &src.repository).await {
                    Ok(None) => return Ok(Outcome::Mounted),
                    Ok(Some(url)) => session = Some(url),
                    // A registry that refuses mounts outright still takes uploads.
                    Err(Error::Registry { .. }) | Err(Error::Unauthorized { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let local = self.local_data(blob).await?;
        let upload = upload::BlobUpload {
            client,
            access,
            repo,
            digest: &blob.digest,
            size: blob.size,
            data: &local,
            progress: self.progress,
        };
        let sent = upload.run(session, self.opts.chunk_size).await?;
        Ok(Outcome::Uploaded(sent))
    }

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
                    &self.opts.cache,
                    self.progress,
                )
                .await?;
                LocalData::File(path)
            }
        })
    }
}

/// PUT the same manifest (or index) under every tag of the target, main tag first.
async fn put_tags(
    client: &RegistryClient,
    access: &Access,
    target: &PushTarget,
    bytes: &[u8],
    media_type: &str,
    progress: &ProgressSink,
) -> Result<()> {
    for tag in &target.tags {
        put_manifest(
            client,
            access,
            &target.repository,
            tag,
            bytes,
            media_type,
            progress,
        )
        .await?;
    }
    Ok(())
}

/// PUT a manifest or index under a tag or digest, and check the digest the registry reports.
pub async fn put_manifest(
    client: &RegistryClient,
    access: &Access,
    repo: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
    progress: &ProgressSink,
) -> Result<()> {
    put_manifest_headers(client, access, repo, reference, bytes, media_type, progress).await?;
    Ok(())
}

/// `put_manifest`, returning the answer's headers (`OCI-Subject` says whether the registry
/// indexed a referrer).
pub async fn put_manifest_headers(
    client: &RegistryClient,
    access: &Access,
    repo: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
    progress: &ProgressSink,
) -> Result<HeaderMap> {
    let url = client.url(repo, &format!("manifests/{reference}"));
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(media_type)
            .map_err(|_| Error::UnsupportedMediaType(crate::error::shown(media_type)))?,
    );
    let action = format!("PUT manifest {repo}:{reference}");
    let body = Body::Bytes(bytes::Bytes::copy_from_slice(bytes));
    let response = client
        .send(access, Method::PUT, &url, &headers, &body, &action)
        .await?;
    let response = client
        .expect(
            response,
            &[StatusCode::CREATED, StatusCode::OK],
            access,
            &action,
        )
        .await?;
    let ours = Digest::of(bytes);
    if let Some(theirs) = response
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
    {
        if theirs != ours.as_str() {
            return Err(Error::DigestMismatch {
                expected: ours.to_string(),
                actual: theirs.to_string(),
            });
        }
    }
    progress(Progress {
        phase: Phase::ManifestPut,
        digest: Some(ours),
        bytes: bytes.len() as u64,
        total: Some(bytes.len() as u64),
    });
    Ok(response.headers().clone())
}
