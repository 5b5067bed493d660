//! What a push attaches to the images it put: SBOM referrers, signed SLSA provenance (a
//! referrer and the `.att` tag per platform manifest) and cosign signatures.
//!
//! All come after the image and its tags are in place, so they always point at something
//! that exists. All add to what is already there: the referrers fallback index and the
//! `.sig` and `.att` manifests are read, extended and put back, never replaced, because other
//! tools (and earlier pushes) write to them too.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::writer::RepositoryWriter;
use crate::digest::Digest;
use crate::image::manifest::Descriptor;
use crate::media_types::{OCI_INDEX, OCI_MANIFEST};
use crate::reproducible::rfc3339;
use crate::supply::attestation::{add_attestation, attestation_tag};
use crate::supply::cosign::{add_signature, signature_tag};
use crate::supply::dsse::{Envelope, ENVELOPE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE};
use crate::supply::provenance::{statement, ProvenanceInput, PREDICATE_TYPE};
use crate::supply::referrers::{
    add_referrer, artifact_manifest, referrers_tag, Artifact, EMPTY_JSON,
};
use crate::supply::signing::{simple_signing_payload, SigningKey};
use crate::Result;

/// What to attach after a push. Empty by default: a plain push.
#[derive(Clone, Debug, Default)]
pub struct Attachments {
    /// One entry per pushed image, in the same order: the artifact to attach to that image
    /// manifest as a referrer (its SBOM), if any.
    pub referrers: Vec<Option<Artifact>>,
    /// Sign what the tags point at (the index of a multi-platform push).
    pub signature: Option<Arc<SigningKey>>,
    /// The facts of the build: a provenance statement for each pushed image, signed with
    /// `signature`'s key and attached when there is one (the statement is reported either
    /// way, for `--provenance PATH`).
    pub provenance: Option<Arc<ProvenanceInput>>,
}

impl Attachments {
    pub fn is_empty(&self) -> bool {
        self.signature.is_none()
            && self.provenance.is_none()
            && self.referrers.iter().all(Option::is_none)
    }
}

/// The provenance of one pushed image, and where it was attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedProvenance {
    pub subject: Digest,
    /// The in-toto statement (canonical JSON), the DSSE envelope's payload.
    pub statement: Vec<u8>,
    /// The referrer holding the signed envelope; `None` without a signing key.
    pub referrer: Option<AttachedReferrer>,
    /// The `sha256-<hex>.att` tag the envelope was added to; `None` without a signing key.
    pub attestation_tag: Option<String>,
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
    /// One per pushed image when the push carried provenance.
    pub provenance: Vec<AttachedProvenance>,
}

/// Referrers for each image that has one (`subjects[i]` describes the image
/// `attachments.referrers[i]` belongs to), then each image's provenance, then the signature of
/// `digest`, what the tags point at. Written with the push's own writer: its access, progress
/// and counts.
pub async fn attach(
    writer: &RepositoryWriter<'_>,
    subjects: &[Descriptor],
    digest: &Digest,
    attachments: &Attachments,
) -> Result<Attached> {
    let mut attached = Attached::default();
    if attachments.is_empty() {
        return Ok(attached);
    }
    let attacher = Attacher { writer };
    for (subject, artifact) in subjects.iter().zip(&attachments.referrers) {
        if let Some(artifact) = artifact {
            attached
                .referrers
                .push(attacher.referrer(artifact, subject).await?);
        }
    }
    if let Some(input) = &attachments.provenance {
        for (i, subject) in subjects.iter().enumerate() {
            let provenance = attacher
                .provenance(input, i, subject, attachments.signature.as_deref())
                .await?;
            attached.provenance.push(provenance);
        }
    }
    if let Some(key) = &attachments.signature {
        attached.signature_tag = Some(attacher.signature(key, digest).await?);
    }
    Ok(attached)
}

/// Attaches to the images of one push, into the push's repository.
struct Attacher<'a> {
    writer: &'a RepositoryWriter<'a>,
}

impl Attacher<'_> {
    /// Attach `artifact` to the manifest `subject` describes.
    pub async fn referrer(
        &self,
        artifact: &Artifact,
        subject: &Descriptor,
    ) -> Result<AttachedReferrer> {
        let writer = self.writer;
        let built = artifact_manifest(artifact, subject);
        writer.put_bytes(EMPTY_JSON.to_vec()).await?;
        writer.put_bytes(artifact.data.clone()).await?;
        let headers = writer
            .put_manifest(built.digest.as_str(), &built.manifest, OCI_MANIFEST)
            .await?;
        // The distribution spec: a registry that indexed the subject says so with
        // OCI-Subject; without it, the client keeps the fallback tag up to date.
        let api = headers.contains_key("OCI-Subject");
        if !api {
            let tag = referrers_tag(&subject.digest);
            let existing = writer.manifest_at(&tag).await?;
            if let Some(index) = add_referrer(existing.as_deref(), &built.descriptor)? {
                writer.put_manifest(&tag, &index, OCI_INDEX).await?;
            }
        }
        Ok(AttachedReferrer {
            subject: subject.digest.clone(),
            digest: built.digest,
            api,
        })
    }

    /// The provenance of image `index` (described by `subject`); with a key, signed as a DSSE
    /// envelope and attached twice: as an OCI 1.1 referrer and in the `.att` image cosign
    /// reads.
    pub async fn provenance(
        &self,
        input: &ProvenanceInput,
        index: usize,
        subject: &Descriptor,
        key: Option<&SigningKey>,
    ) -> Result<AttachedProvenance> {
        let statement = statement(input, index, &self.docker_reference(), &subject.digest)?;
        let mut attached = AttachedProvenance {
            subject: subject.digest.clone(),
            statement,
            referrer: None,
            attestation_tag: None,
        };
        let Some(key) = key else {
            return Ok(attached);
        };
        let envelope =
            Envelope::sign(IN_TOTO_PAYLOAD_TYPE, attached.statement.clone(), key).to_json();
        let artifact = Artifact {
            artifact_type: IN_TOTO_PAYLOAD_TYPE.into(),
            media_type: ENVELOPE_MEDIA_TYPE.into(),
            data: envelope.clone(),
            annotations: BTreeMap::from([
                (
                    "in-toto.io/predicate-type".to_string(),
                    PREDICATE_TYPE.to_string(),
                ),
                (
                    "org.opencontainers.image.created".to_string(),
                    rfc3339(input.finished_on()),
                ),
            ]),
        };
        attached.referrer = Some(self.referrer(&artifact, subject).await?);
        let tag = attestation_tag(&subject.digest);
        let writer = self.writer;
        let existing = writer.manifest_at(&tag).await?;
        let image = add_attestation(existing.as_deref(), &envelope, PREDICATE_TYPE)?;
        writer.put_bytes(image.config.clone()).await?;
        writer.put_bytes(envelope).await?;
        writer
            .put_manifest(&tag, &image.manifest, OCI_MANIFEST)
            .await?;
        attached.attestation_tag = Some(tag);
        Ok(attached)
    }

    /// Sign `digest` (what the tags point at) and add the signature to its `.sig` manifest.
    pub async fn signature(&self, key: &SigningKey, digest: &Digest) -> Result<String> {
        let payload = simple_signing_payload(&self.docker_reference(), digest);
        let signature = key.sign(&payload);
        let tag = signature_tag(digest);
        let writer = self.writer;
        let existing = writer.manifest_at(&tag).await?;
        let signed = add_signature(existing.as_deref(), &payload, &signature)?;
        writer.put_bytes(signed.config.clone()).await?;
        writer.put_bytes(payload).await?;
        writer
            .put_manifest(&tag, &signed.manifest, OCI_MANIFEST)
            .await?;
        Ok(tag)
    }

    /// The repository as cosign names it in a signature: `registry/repository`, Docker Hub
    /// as `index.docker.io` (what go-containerregistry calls it).
    fn docker_reference(&self) -> String {
        let registry = match self.writer.registry {
            crate::reference::DOCKER_HUB => "index.docker.io",
            other => other,
        };
        format!("{registry}/{}", self.writer.repository)
    }
}
