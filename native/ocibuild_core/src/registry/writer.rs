//! One repository on one registry, as a push writes to it: each blob placed (already there,
//! mounted from another repository of the same registry, or uploaded, chunked or whole),
//! then manifests put under tags or digests.
//!
//! What a blob is and where its bytes come from is the caller's business: the writer asks for
//! the bytes ([`LocalData`]) only when the blob is neither there nor mountable, so a base layer
//! is fetched only when it must really be uploaded.
//!
//! ```no_run
//! # async fn f(w: &ocibuild_core::registry::writer::RepositoryWriter<'_>) -> ocibuild_core::Result<()> {
//! let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
//! w.put_bytes(config).await?;
//! // ... every blob first, then the manifest that names them:
//! # let manifest = Vec::new();
//! w.put_manifest("v1", &manifest, ocibuild_core::media_types::OCI_MANIFEST).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use reqwest::header::HeaderMap;

use super::auth::Access;
use super::client::RegistryClient;
use super::manifest::{get_manifest, put_manifest};
use super::progress::{self, Phase, Progress, ProgressSink};
use super::upload::{self, LocalData, Outcome};
use crate::digest::Digest;
use crate::{Error, Result};

/// What the blobs placed so far took, for a push report.
#[derive(Debug, Default)]
pub struct Placed {
    bytes: AtomicU64,
    uploaded: AtomicUsize,
    existing: AtomicUsize,
    mounted: AtomicUsize,
}

impl Placed {
    /// Bytes sent over the wire (resumed chunks count once).
    pub fn uploaded_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn uploaded(&self) -> usize {
        self.uploaded.load(Ordering::Relaxed)
    }

    pub fn existing(&self) -> usize {
        self.existing.load(Ordering::Relaxed)
    }

    pub fn mounted(&self) -> usize {
        self.mounted.load(Ordering::Relaxed)
    }

    fn count(&self, outcome: Outcome) {
        match outcome {
            Outcome::Existed => self.existing.fetch_add(1, Ordering::Relaxed),
            Outcome::Mounted => self.mounted.fetch_add(1, Ordering::Relaxed),
            Outcome::Uploaded(n) => {
                self.bytes.fetch_add(n, Ordering::Relaxed);
                self.uploaded.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Writes into `repository` on the registry `client` talks to, with `access` (push scope,
/// plus pull on any repository blobs are mounted from).
pub struct RepositoryWriter<'a> {
    pub client: &'a RegistryClient,
    pub access: &'a Access,
    /// The registry as the user names it (`docker.io`), as a signature names it.
    pub registry: &'a str,
    pub repository: &'a str,
    /// Blobs at least this big are sent in chunks of this size.
    pub chunk_size: u64,
    pub progress: &'a ProgressSink,
    pub placed: Placed,
}

impl<'a> RepositoryWriter<'a> {
    pub fn new(
        client: &'a RegistryClient,
        access: &'a Access,
        registry: &'a str,
        repository: &'a str,
        chunk_size: u64,
        progress: &'a ProgressSink,
    ) -> RepositoryWriter<'a> {
        RepositoryWriter {
            client,
            access,
            registry,
            repository,
            chunk_size,
            progress,
            placed: Placed::default(),
        }
    }

    /// Make sure the repository has `digest`: nothing to do if it is there; mounted from
    /// `mount_from` (another repository of this registry) when given and the registry agrees;
    /// else uploaded from the bytes `local` produces, asked for only then.
    pub async fn place<F, Fut>(
        &self,
        digest: &Digest,
        size: u64,
        mount_from: Option<&str>,
        local: F,
    ) -> Result<Outcome>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<LocalData>>,
    {
        let outcome = self.place_quietly(digest, size, mount_from, local).await?;
        self.placed.count(outcome);
        // An upload reports its own progress as the bytes go.
        let phase = match outcome {
            Outcome::Existed => Some(Phase::Exists),
            Outcome::Mounted => Some(Phase::Mounted),
            Outcome::Uploaded(_) => None,
        };
        if let Some(phase) = phase {
            (self.progress)(Progress {
                phase,
                digest: Some(digest.clone()),
                bytes: 0,
                total: Some(size),
            });
        }
        Ok(outcome)
    }

    async fn place_quietly<F, Fut>(
        &self,
        digest: &Digest,
        size: u64,
        mount_from: Option<&str>,
        local: F,
    ) -> Result<Outcome>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<LocalData>>,
    {
        let (client, access, repo) = (self.client, self.access, self.repository);
        if upload::exists(client, access, repo, digest).await? {
            return Ok(Outcome::Existed);
        }
        let mut session = None;
        if let Some(from) = mount_from.filter(|from| *from != repo) {
            match upload::mount(client, access, repo, digest, from).await {
                Ok(None) => return Ok(Outcome::Mounted),
                Ok(Some(url)) => session = Some(url),
                // A registry that refuses mounts outright still takes uploads.
                Err(Error::Registry { .. }) | Err(Error::Unauthorized { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let data = local().await?;
        let upload = upload::BlobUpload {
            client,
            access,
            repo,
            digest,
            size,
            data: &data,
            progress: self.progress,
        };
        let sent = upload.run(session, self.chunk_size).await?;
        Ok(Outcome::Uploaded(sent))
    }

    /// A small blob from memory (a config, an SBOM, a signature payload).
    pub async fn put_bytes(&self, data: Vec<u8>) -> Result<Outcome> {
        let digest = Digest::of(&data);
        let size = data.len() as u64;
        let data = LocalData::Bytes(bytes::Bytes::from(data));
        self.place(&digest, size, None, || async move { Ok(data) })
            .await
    }

    /// PUT a manifest or index under `reference` (a tag or its digest), checking the digest
    /// the registry reports. Returns the answer's headers (`OCI-Subject`).
    pub async fn put_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<HeaderMap> {
        put_manifest(
            self.client,
            self.access,
            self.repository,
            reference,
            bytes,
            media_type,
            self.progress,
        )
        .await
    }

    /// The manifest at `tag`, or `None` when the tag does not exist yet (what a push extends
    /// rather than replaces: the referrers fallback index, a `.sig` manifest).
    pub async fn manifest_at(&self, tag: &str) -> Result<Option<Vec<u8>>> {
        let quiet = progress::ignore();
        match get_manifest(self.client, self.access, self.repository, tag, &quiet).await {
            Ok(fetched) => Ok(Some(fetched.bytes)),
            Err(Error::Registry { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
