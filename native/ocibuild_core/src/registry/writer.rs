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

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use super::auth::Access;
use super::client::RegistryClient;
use super::manifest::get_manifest;
use super::progress::{self, Phase, Progress, ProgressSink};
use super::request::{Body, Request};
use super::upload::{self, LocalData, Outcome};
use crate::digest::Digest;
use crate::error::shown;
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
        let repo = self.repository;
        let url = self.client.url(repo, &format!("manifests/{reference}"));
        let content_type = HeaderValue::from_str(media_type)
            .map_err(|_| Error::UnsupportedMediaType(shown(media_type)))?;
        let put = Request::new(Method::PUT, url, format!("PUT manifest {repo}:{reference}"))
            .header(CONTENT_TYPE, content_type)
            .body(Body::Bytes(bytes::Bytes::copy_from_slice(bytes)))
            .expect(&[StatusCode::CREATED, StatusCode::OK]);
        let response = self.client.execute(self.access, &put).await?;
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
        (self.progress)(Progress {
            phase: Phase::ManifestPut,
            digest: Some(ours),
            bytes: bytes.len() as u64,
            total: Some(bytes.len() as u64),
        });
        Ok(response.headers().clone())
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::credentials::Credentials;
    use crate::registry::auth::Scopes;
    use crate::registry::testing::{Reply, Seen, Server};
    use crate::registry::{Environment, Registries};

    const BLOB: &[u8] = b"layer bytes";

    /// A registry that has `present` in every repository, mounts from `mountable` (as the
    /// query spells it, `base%2Fimg`: 201) or
    /// else opens a session (202) on a mount, takes monolithic uploads, and answers manifest
    /// PUTs with `manifest_digest` and GETs with 404.
    fn registry(
        present: bool,
        mountable: Option<&'static str>,
        manifest_digest: Option<String>,
    ) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
        move |req| {
            let (method, target) = (req.method.as_str(), req.target.as_str());
            match method {
                "HEAD" if present => Reply::status("200 OK"),
                "HEAD" => Reply::status("404 Not Found"),
                "POST"
                    if mountable.is_some_and(|from| target.contains(&format!("from={from}"))) =>
                {
                    Reply::status("201 Created")
                }
                "POST" => {
                    Reply::status("202 Accepted").header("Location", "/v2/a/b/blobs/uploads/s1")
                }
                "PUT" if target.starts_with("/v2/a/b/blobs/uploads/s1?digest=") => {
                    Reply::status("201 Created")
                }
                "PUT" if target.starts_with("/v2/a/b/manifests/") => match &manifest_digest {
                    Some(d) => {
                        Reply::status("201 Created").header("Docker-Content-Digest", d.clone())
                    }
                    None => Reply::status("201 Created"),
                },
                "GET" => Reply::status("404 Not Found"),
                _ => Reply::status("400 Bad Request"),
            }
        }
    }

    struct Fixture {
        server: Server,
        client: Arc<RegistryClient>,
        access: Access,
        events: Arc<Mutex<Vec<Phase>>>,
        progress: ProgressSink,
    }

    async fn fixture(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Fixture {
        let server = Server::start("127.0.0.1", handler).await;
        let client = Registries::new()
            .client(&server.addr, &server.addr, &Environment::default())
            .unwrap();
        let access = Access {
            credentials: Credentials::Anonymous,
            scopes: Scopes::push("a/b").with_pull("base/img"),
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let progress: ProgressSink =
            Arc::new(move |p: Progress| sink.lock().unwrap().push(p.phase));
        Fixture {
            server,
            client,
            access,
            events,
            progress,
        }
    }

    impl Fixture {
        fn writer(&self) -> RepositoryWriter<'_> {
            RepositoryWriter::new(
                &self.client,
                &self.access,
                "r",
                "a/b",
                1 << 20,
                &self.progress,
            )
        }

        fn methods(&self) -> Vec<String> {
            self.server
                .seen()
                .iter()
                .map(|s| s.method.clone())
                .collect()
        }
    }

    /// Bytes for `place`, recording that they were asked for.
    async fn local(asked: &AtomicBool) -> Result<LocalData> {
        asked.store(true, Ordering::SeqCst);
        Ok(LocalData::Bytes(bytes::Bytes::from_static(BLOB)))
    }

    #[tokio::test]
    async fn a_blob_already_there_is_neither_read_nor_sent() {
        let f = fixture(registry(true, None, None)).await;
        let w = f.writer();
        let asked = AtomicBool::new(false);
        let digest = Digest::of(BLOB);
        let outcome = w.place(&digest, BLOB.len() as u64, Some("base/img"), || {
            local(&asked)
        });
        assert_eq!(outcome.await.unwrap(), Outcome::Existed);
        assert!(!asked.load(Ordering::SeqCst));
        assert_eq!(f.methods(), ["HEAD"]);
        assert_eq!((w.placed.existing(), w.placed.uploaded()), (1, 0));
        assert_eq!(*f.events.lock().unwrap(), [Phase::Exists]);
    }

    #[tokio::test]
    async fn a_mountable_blob_is_mounted_without_its_bytes() {
        let f = fixture(registry(false, Some("base%2Fimg"), None)).await;
        let w = f.writer();
        let asked = AtomicBool::new(false);
        let digest = Digest::of(BLOB);
        let outcome = w.place(&digest, BLOB.len() as u64, Some("base/img"), || {
            local(&asked)
        });
        assert_eq!(outcome.await.unwrap(), Outcome::Mounted);
        assert!(!asked.load(Ordering::SeqCst));
        assert_eq!(f.methods(), ["HEAD", "POST"]);
        assert_eq!(w.placed.mounted(), 1);
        assert_eq!(*f.events.lock().unwrap(), [Phase::Mounted]);
    }

    // A declined mount opens a session: the upload goes there, with no second POST.
    #[tokio::test]
    async fn a_declined_mount_uploads_into_the_session_it_opened() {
        let f = fixture(registry(false, None, None)).await;
        let w = f.writer();
        let asked = AtomicBool::new(false);
        let digest = Digest::of(BLOB);
        let outcome = w.place(&digest, BLOB.len() as u64, Some("base/img"), || {
            local(&asked)
        });
        assert_eq!(outcome.await.unwrap(), Outcome::Uploaded(BLOB.len() as u64));
        assert!(asked.load(Ordering::SeqCst));
        assert_eq!(f.methods(), ["HEAD", "POST", "PUT"]);
        assert_eq!(f.server.seen()[2].body, BLOB);
        assert_eq!(
            (w.placed.uploaded(), w.placed.uploaded_bytes()),
            (1, BLOB.len() as u64)
        );
    }

    // No mount is tried from the repository being written to.
    #[tokio::test]
    async fn put_bytes_uploads_without_a_mount() {
        let f = fixture(registry(false, None, None)).await;
        let w = f.writer();
        let outcome = w.put_bytes(BLOB.to_vec()).await.unwrap();
        assert_eq!(outcome, Outcome::Uploaded(BLOB.len() as u64));
        let seen = f.server.seen();
        assert!(
            seen.iter().all(|s| !s.target.contains("mount=")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_manifest_digest_the_registry_disagrees_with_is_an_error() {
        let wrong = Digest::of(b"other").to_string();
        let f = fixture(registry(false, None, Some(wrong.clone()))).await;
        let err = f
            .writer()
            .put_manifest("v1", b"{}", crate::media_types::OCI_MANIFEST)
            .await
            .unwrap_err();
        match err {
            Error::DigestMismatch { expected, actual } => {
                assert_eq!((expected, actual), (Digest::of(b"{}").to_string(), wrong))
            }
            other => panic!("unexpected {other:?}"),
        }
        let right = Digest::of(b"{}").to_string();
        let f = fixture(registry(false, None, Some(right))).await;
        f.writer()
            .put_manifest("v1", b"{}", crate::media_types::OCI_MANIFEST)
            .await
            .unwrap();
        assert_eq!(*f.events.lock().unwrap(), [Phase::ManifestPut]);
        assert_eq!(
            f.server.seen()[0].header("content-type"),
            Some(crate::media_types::OCI_MANIFEST)
        );
    }

    #[tokio::test]
    async fn a_missing_tag_has_no_manifest() {
        let f = fixture(registry(false, None, None)).await;
        assert_eq!(f.writer().manifest_at("sha256-00.sig").await.unwrap(), None);
    }
}
