//! Pulling: resolve a reference to one manifest per wanted platform, read its config, and
//! (only when a sink needs the bytes) fetch base layers into the verified blob cache.
//!
//! The manifest bytes are kept exactly as served and digested as such: that digest is the
//! base's real identity (re-encoding the JSON would change it). A reference that pins a
//! digest is checked against those bytes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures_util::{StreamExt, TryStreamExt};
use std::sync::Arc;

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::client::{Access, RegistryClient, Request, Scopes};
use super::credentials::resolve;
pub use super::manifest::{get_manifest, Fetched};
use super::progress::{Phase, ProgressSink, Throttled};
use super::{Credentials, Environment, Reference, Registries};
use crate::blob_store::BlobStore;
use crate::digest::{Digest, Hasher};
use crate::error::shown;
use crate::image::platform::{choose, platform_matches};
use crate::image::source::{layers_of, LayersError};
use crate::image::{BaseImage, BaseSource, ImageSource, LayerBytes, Platform};
use crate::media_types::{DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::{Error, Result};

/// Configs are small; a registry serving more is misbehaving.
const MAX_CONFIG: usize = 16 << 20;

/// One pulled image: the base (manifest, config, layer descriptors) and its platform.
#[derive(Clone, Debug)]
pub struct PulledImage {
    pub base: BaseImage,
    pub platform: Platform,
}

/// Which platforms to pull. `Default`: the host's, without insisting when the reference is
/// a single-platform manifest (as `docker pull` does).
#[derive(Clone, Debug, Default)]
pub struct PlatformChoice {
    /// Explicitly asked for: every one must be found.
    pub wanted: Vec<Platform>,
}

pub async fn pull(
    registries: &Registries,
    env: &Environment,
    reference: &Reference,
    credentials: &Credentials,
    choice: &PlatformChoice,
    progress: &ProgressSink,
) -> Result<Vec<PulledImage>> {
    let client = registries.client(&reference.registry, reference.api_host(), env)?;
    let access = Access {
        credentials: credentials.clone(),
        scopes: Scopes::pull(&reference.repository),
    };
    let repo = &reference.repository;
    let top = get_manifest(&client, &access, repo, &reference.reference(), progress).await?;
    if let Some(pinned) = &reference.digest {
        if &top.digest != pinned {
            return Err(Error::DigestMismatch {
                expected: pinned.to_string(),
                actual: top.digest.to_string(),
            });
        }
    }
    let explicit = !choice.wanted.is_empty();
    let wanted = if explicit {
        choice.wanted.clone()
    } else {
        vec![Platform::host()]
    };

    let manifests: Vec<Fetched> = if is_index(&top.media_type) {
        let index = parse_json(&top.bytes, "image index")?;
        let mut chosen = Vec::new();
        for platform in &wanted {
            let descriptor = choose(&index, platform)?;
            let digest = Digest::parse(
                descriptor
                    .get("digest")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )?;
            let m = get_manifest(&client, &access, repo, digest.as_str(), progress).await?;
            if m.digest != digest {
                return Err(Error::DigestMismatch {
                    expected: digest.to_string(),
                    actual: m.digest.to_string(),
                });
            }
            chosen.push(m);
        }
        chosen
    } else {
        vec![top]
    };

    let mut images = Vec::new();
    for (i, m) in manifests.into_iter().enumerate() {
        if is_index(&m.media_type) {
            return Err(Error::UnsupportedMediaType(format!(
                "{} (an index inside an index)",
                shown(&m.media_type)
            )));
        }
        let image = image_from_manifest(&client, &access, reference, m, progress).await?;
        if explicit && !platform_matches(&wanted[i], &image.platform) {
            return Err(Error::NoMatchingPlatform {
                wanted: wanted[i].to_string(),
                available: vec![image.platform.to_string()],
            });
        }
        images.push(image);
    }
    Ok(images)
}

async fn image_from_manifest(
    client: &RegistryClient,
    access: &Access,
    reference: &Reference,
    m: Fetched,
    progress: &ProgressSink,
) -> Result<PulledImage> {
    let manifest = parse_json(&m.bytes, "image manifest")?;
    let config_desc = manifest
        .get("config")
        .ok_or_else(|| invalid_json("image manifest", "no config descriptor"))?;
    let config_digest = descriptor_digest(config_desc, "image manifest")?;
    let config = fetch_small_blob(
        client,
        access,
        &reference.repository,
        &config_digest,
        progress,
    )
    .await?;
    let config_json = parse_json(&config, "base image config")?;
    let layers = layers_of(&manifest, &config_json).map_err(|e| match e {
        LayersError::Digest(e) => e,
        LayersError::CountMismatch { .. } => invalid_json("base image config", &e.describe()),
        LayersError::NoLayersArray => invalid_json("image manifest", "no layers array"),
        LayersError::MissingField(f) => {
            invalid_json("image manifest", &format!("layer without {f}"))
        }
    })?;
    let platform = Platform::from_json(&config_json).unwrap_or_else(Platform::host);
    Ok(PulledImage {
        base: BaseImage {
            reference: reference.to_string(),
            manifest: m.bytes,
            manifest_digest: m.digest,
            config,
            layers,
            source: Some(BaseSource {
                registry: reference.registry.clone(),
                repository: reference.repository.clone(),
                credentials: Some(access.credentials.clone()),
            }),
        },
        platform,
    })
}

fn progress_done(progress: &ProgressSink, phase: Phase, digest: &Digest, len: usize) {
    progress(super::Progress {
        phase,
        digest: Some(digest.clone()),
        bytes: len as u64,
        total: Some(len as u64),
    });
}

/// A config-sized blob into memory, verified.
async fn fetch_small_blob(
    client: &RegistryClient,
    access: &Access,
    repository: &str,
    digest: &Digest,
    progress: &ProgressSink,
) -> Result<Vec<u8>> {
    let url = client.url(repository, &format!("blobs/{digest}"));
    let action = format!("GET config {digest}");
    let get = Request::new(Method::GET, url, &action).expect(&[StatusCode::OK]);
    let response = client.execute(access, &get).await?;
    let bytes = client.read_body(response, MAX_CONFIG, &action).await?;
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(Error::DigestMismatch {
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    progress_done(progress, Phase::Config, digest, bytes.len());
    Ok(bytes)
}

/// A blob to fetch into the cache: which repository serves it, and what it should be.
#[derive(Clone, Debug)]
pub struct BlobRequest {
    pub source: BaseSource,
    pub digest: Digest,
    pub size: Option<u64>,
}

/// Make sure `digest` is in `store`, verified, and return its path. A cached copy is
/// re-hashed before use; a corrupt one is deleted and fetched again. A download is hashed
/// as it is written and only committed when digest (and size, if known) match, so a bad
/// download leaves nothing behind.
pub async fn fetch_blob(
    registries: &Registries,
    env: &Environment,
    request: &BlobRequest,
    credentials: &Credentials,
    store: &BlobStore,
    progress: &ProgressSink,
) -> Result<PathBuf> {
    let digest = &request.digest;
    if store.contains(digest) {
        let (s, d) = (store.clone(), digest.clone());
        let verified = tokio::task::spawn_blocking(move || s.verify(&d))
            .await
            .map_err(|e| Error::io("verifying a cached blob", std::io::Error::other(e)))?;
        match verified {
            Ok(_) => return Ok(store.path(digest)),
            Err(Error::DigestMismatch { .. })
            | Err(Error::FileRead { .. })
            | Err(Error::SpecialFile { .. }) => {
                // Corrupt cache entry: discard it and download again.
                let _ = std::fs::remove_file(store.path(digest));
            }
            Err(e) => return Err(e),
        }
    }
    let source = &request.source;
    let client = registries.client(&source.registry, super::api_host(&source.registry), env)?;
    let access = Access {
        credentials: credentials.clone(),
        scopes: Scopes::pull(&source.repository),
    };
    let url = client.url(&source.repository, &format!("blobs/{digest}"));
    let action = format!("GET blob {digest}");
    let mut download = Download::start(store, digest, request.size, progress)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match download.attempt(&client, &access, &url, &action).await {
            Ok(()) => break,
            // The connection dropped or stalled mid-body: ask for the rest (bounded).
            Err(Error::Http { .. } | Error::Timeout { .. })
                if attempt < client.retry.max_attempts =>
            {
                tokio::time::sleep(client.retry.delay(attempt, None)).await;
            }
            Err(e) => return Err(e),
        }
    }
    download.finish(store).await
}

/// A blob being downloaded into a temp file of the store, hashed as it arrives. After a
/// dropped connection the next attempt asks for the remaining bytes (`Range`); a registry
/// that answers with the whole blob again (200) simply starts it over.
struct Download {
    tmp: tempfile::NamedTempFile,
    file: tokio::fs::File,
    hasher: Hasher,
    digest: Digest,
    size: Option<u64>,
    progress: Throttled,
}

impl Download {
    fn start(
        store: &BlobStore,
        digest: &Digest,
        size: Option<u64>,
        progress: &ProgressSink,
    ) -> Result<Download> {
        let tmp = store.temp_file()?;
        let file = tmp
            .reopen()
            .map_err(|e| Error::io("opening a download temp file", e))?;
        let mut progress = Throttled::new(
            Arc::clone(progress),
            Phase::Layer,
            Some(digest.clone()),
            size,
        );
        progress.update(0);
        Ok(Download {
            tmp,
            file: tokio::fs::File::from_std(file),
            hasher: Hasher::new(),
            digest: digest.clone(),
            size,
            progress,
        })
    }

    async fn attempt(
        &mut self,
        client: &RegistryClient,
        access: &Access,
        url: &url::Url,
        action: &str,
    ) -> Result<()> {
        let have = self.hasher.len();
        let mut get = Request::new(Method::GET, url.clone(), action);
        if have > 0 {
            let range = HeaderValue::from_str(&format!("bytes={have}-")).expect("digits");
            get = get.header(reqwest::header::RANGE, range);
        }
        // No `expect`: a 200 to a ranged GET means "from the start", judged below.
        let response = client.execute(access, &get).await?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT if have > 0 && range_start(&response) == Some(have) => {}
            StatusCode::OK => self.restart().await?,
            _ => return Err(client.error_from(response, access, action).await),
        }
        let mut body = client.reader(response, action);
        while let Some(chunk) = body.chunk().await? {
            self.hasher.update(&chunk);
            self.file
                .write_all(&chunk)
                .await
                .map_err(|e| Error::io("writing a downloaded blob", e))?;
            self.progress.update(self.hasher.len());
            if let Some(expected) = self.size {
                if self.hasher.len() > expected {
                    return Err(Error::DigestMismatch {
                        expected: self.digest.to_string(),
                        actual: format!("more than the {expected} bytes announced"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Throw away what was received and start from byte 0.
    async fn restart(&mut self) -> Result<()> {
        if !self.hasher.is_empty() {
            self.file
                .set_len(0)
                .await
                .map_err(|e| Error::io("restarting a download", e))?;
            self.file
                .seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(|e| Error::io("restarting a download", e))?;
            self.hasher = Hasher::new();
        }
        Ok(())
    }

    /// Check digest and size, then move the blob into place. On a mismatch the temp file is
    /// dropped, so nothing of it is cached.
    async fn finish(self, store: &BlobStore) -> Result<PathBuf> {
        let Download {
            tmp,
            mut file,
            hasher,
            digest,
            size: expected_size,
            ..
        } = self;
        file.flush()
            .await
            .map_err(|e| Error::io("writing a downloaded blob", e))?;
        drop(file);
        let size = hasher.len();
        let actual = hasher.finish();
        if actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        if let Some(expected) = expected_size {
            if size != expected {
                return Err(Error::DigestMismatch {
                    expected: format!("{digest} ({expected} bytes)"),
                    actual: format!("{actual} ({size} bytes)"),
                });
            }
        }
        store.commit(tmp, &digest)
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL` answer.
fn range_start(response: &reqwest::Response) -> Option<u64> {
    let value = response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// The layers of `sources` with no local blob yet, once each: what a sink must fetch.
pub fn missing_layers(sources: &[ImageSource]) -> Result<Vec<BlobRequest>> {
    let mut requests: BTreeMap<String, BlobRequest> = BTreeMap::new();
    for source in sources {
        for layer in source.remote_layers() {
            let LayerBytes::Remote(remote) = source.layer_bytes(layer)? else {
                continue;
            };
            requests
                .entry(layer.digest.to_string())
                .or_insert(BlobRequest {
                    source: remote,
                    digest: layer.digest.clone(),
                    size: Some(layer.size),
                });
        }
    }
    Ok(requests.into_values().collect())
}

/// Make every layer of `sources` local: the remote ones are found in `store` or fetched into
/// it (verified), `concurrency` at a time, and pointed at their blobs. What a layout sink does
/// before it writes, so base layers are fetched only when a sink needs their bytes.
pub async fn fetch_remote_layers(
    registries: &Registries,
    env: &Environment,
    sources: &mut [ImageSource],
    store: &BlobStore,
    concurrency: usize,
    progress: &ProgressSink,
) -> Result<()> {
    let requests = missing_layers(sources)?;
    if requests.is_empty() {
        return Ok(());
    }
    let fetched: BTreeMap<Digest, PathBuf> =
        fetch_blobs(registries, env, &requests, store, concurrency, progress)
            .await?
            .into_iter()
            .collect();
    for layer in sources.iter_mut().flat_map(|s| s.layers.iter_mut()) {
        if layer.blob.is_none() {
            layer.blob = fetched.get(&layer.digest).cloned();
        }
    }
    Ok(())
}

/// [`fetch_blob`] for many blobs, `concurrency` at a time; each source's credentials are
/// the ones it was pulled with, else the config files'.
pub async fn fetch_blobs(
    registries: &Registries,
    env: &Environment,
    requests: &[BlobRequest],
    store: &BlobStore,
    concurrency: usize,
    progress: &ProgressSink,
) -> Result<Vec<(Digest, PathBuf)>> {
    // Collected first: a stream over a closure trips rustc's Send inference for a spawned
    // caller ("FnOnce is not general enough").
    let fetches: Vec<_> = requests
        .iter()
        .map(|r| fetch_one(registries, env, r, store, progress))
        .collect();
    futures_util::stream::iter(fetches)
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

async fn fetch_one(
    registries: &Registries,
    env: &Environment,
    request: &BlobRequest,
    store: &BlobStore,
    progress: &ProgressSink,
) -> Result<(Digest, PathBuf)> {
    let creds = resolve(
        request.source.credentials.clone(),
        &request.source.registry,
        env,
    )
    .await?;
    let path = fetch_blob(registries, env, request, &creds, store, progress).await?;
    Ok((request.digest.clone(), path))
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

fn parse_json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| invalid_json(what, &e.to_string()))
}

fn invalid_json(what: &str, why: &str) -> Error {
    Error::InvalidJson {
        what: what.to_string(),
        why: why.to_string(),
    }
}

fn descriptor_digest(desc: &Value, what: &str) -> Result<Digest> {
    let d = desc
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_json(what, "descriptor without digest"))?;
    Digest::parse(d)
}
