//! What a push attaches to the images it put: SBOM referrers and cosign signatures.
//!
//! Both come after the image and its tags are in place, so they always point at something
//! that exists. Both add to what is already there: the referrers fallback index and the
//! `.sig` manifest are read, extended and put back, never replaced, because other tools
//! (and earlier pushes) write to them too.

use std::sync::Arc;

use super::pull::get_manifest;
use super::push::{put_manifest_headers, BlobData, BlobJob, PushBlob};
use crate::digest::Digest;
use crate::image::manifest::Descriptor;
use crate::media_types::{OCI_INDEX, OCI_MANIFEST};
use crate::supply::cosign::{add_signature, signature_tag};
use crate::supply::referrers::{
    add_referrer, artifact_manifest, referrers_tag, Artifact, EMPTY_JSON,
};
use crate::supply::signing::{simple_signing_payload, SigningKey};
use crate::{Error, Result};

/// What to attach after a push. Empty by default: a plain push.
#[derive(Clone, Debug, Default)]
pub struct Attachments {
    /// One entry per pushed image, in the same order: the artifact to attach to that image
    /// manifest as a referrer (its SBOM), if any.
    pub referrers: Vec<Option<Artifact>>,
    /// Sign what the tags point at (the index of a multi-platform push).
    pub signature: Option<Arc<SigningKey>>,
}

impl Attachments {
    pub fn is_empty(&self) -> bool {
        self.signature.is_none() && self.referrers.iter().all(Option::is_none)
    }
}

/// How one referrer was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedReferrer {
    pub subject: Digest,
    pub digest: Digest,
    /// `true` when the registry indexes subjects itself (the referrers API); `false` when
    /// the `sha256-<hex>` fallback tag was updated.
    pub api: bool,
}

/// What a push attached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attached {
    pub referrers: Vec<AttachedReferrer>,
    /// The tag the signature manifest went to (`sha256-<hex>.sig`).
    pub signature_tag: Option<String>,
}

/// Attaches to the images of one push: its client, access, target repository, progress and
/// blob uploads are the push's own.
pub(super) struct Attacher<'a> {
    pub job: &'a BlobJob<'a>,
}

impl Attacher<'_> {
    /// Attach `artifact` to the manifest `subject` describes.
    pub async fn referrer(
        &self,
        artifact: &Artifact,
        subject: &Descriptor,
    ) -> Result<AttachedReferrer> {
        let built = artifact_manifest(artifact, subject);
        self.blob(EMPTY_JSON.to_vec()).await?;
        self.blob(artifact.data.clone()).await?;
        let headers = self
            .put(built.digest.as_str(), &built.manifest, OCI_MANIFEST)
            .await?;
        // The distribution spec: a registry that indexed the subject says so with
        // OCI-Subject; without it, the client keeps the fallback tag up to date.
        let api = headers.contains_key("OCI-Subject");
        if !api {
            let tag = referrers_tag(&subject.digest);
            let existing = self.existing_manifest(&tag).await?;
            if let Some(index) = add_referrer(existing.as_deref(), &built.descriptor)? {
                self.put(&tag, &index, OCI_INDEX).await?;
            }
        }
        Ok(AttachedReferrer {
            subject: subject.digest.clone(),
            digest: built.digest,
            api,
        })
    }

    /// Sign `digest` (what the tags point at) and add the signature to its `.sig` manifest.
    pub async fn signature(&self, key: &SigningKey, digest: &Digest) -> Result<String> {
        let payload = simple_signing_payload(&self.docker_reference(), digest);
        let signature = key.sign(&payload);
        let tag = signature_tag(digest);
        let existing = self.existing_manifest(&tag).await?;
        let signed = add_signature(existing.as_deref(), &payload, &signature)?;
        self.blob(signed.config.clone()).await?;
        self.blob(payload).await?;
        self.put(&tag, &signed.manifest, OCI_MANIFEST).await?;
        Ok(tag)
    }

    /// The repository as cosign names it in a signature: `registry/repository`, Docker Hub
    /// as `index.docker.io` (what go-containerregistry calls it).
    fn docker_reference(&self) -> String {
        let target = self.job.target;
        let registry = match target.registry.as_str() {
            crate::reference::DOCKER_HUB => "index.docker.io",
            other => other,
        };
        format!("{registry}/{}", target.repository)
    }

    /// PUT a manifest or index into the target repository under `reference`.
    async fn put(
        &self,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<reqwest::header::HeaderMap> {
        let job = self.job;
        put_manifest_headers(
            job.client,
            job.access,
            &job.target.repository,
            reference,
            bytes,
            media_type,
            job.progress,
        )
        .await
    }

    async fn blob(&self, data: Vec<u8>) -> Result<()> {
        let blob = PushBlob {
            digest: Digest::of(&data),
            size: data.len() as u64,
            data: BlobData::Bytes(bytes::Bytes::from(data)),
        };
        self.job.push_blob(&blob).await
    }

    /// The manifest at `tag`, or `None` when the tag does not exist yet.
    async fn existing_manifest(&self, tag: &str) -> Result<Option<Vec<u8>>> {
        let quiet = super::progress::ignore();
        let job = self.job;
        match get_manifest(job.client, job.access, &job.target.repository, tag, &quiet).await {
            Ok(fetched) => Ok(Some(fetched.bytes)),
            Err(Error::Registry { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
