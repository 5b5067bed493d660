//! The read side the verifier needs: an image's manifests, its `.sig` and `.att` images,
//! its referrers (the referrers API, and the `sha256-<hex>` fallback tag), each with its
//! blobs, gathered into [`Evidence`] for the pure checks of [`crate::supply::verify`].
//!
//! Everything here is hostile input: every body is capped (a manifest at 4 MiB, a blob at the
//! size its descriptor gives and never more than its kind's cap), every blob is hashed against
//! its digest, manifests asked for by digest are checked against it, and a referrers list is
//! cut at [`MAX_REFERRERS`]. A blob that cannot be had becomes the reason a check fails, not
//! an error of the whole run: the other checks still report.

use std::collections::BTreeMap;

use reqwest::header::{HeaderValue, ACCEPT};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::client::{Access, RegistryClient, Request, Scopes};
use super::manifest::{get_manifest, Fetched as Served, MAX_MANIFEST};
use super::progress::ProgressSink;
use super::{Credentials, Environment, Reference, Registries};
use crate::digest::Digest;
use crate::error::shown;
use crate::media_types::{DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::supply::cosign::signature_tag;
use crate::supply::dsse::{IN_TOTO_PAYLOAD_TYPE, MAX_ENVELOPE_BYTES};
use crate::supply::referrers::referrers_tag;
use crate::supply::sbom::SPDX_MEDIA_TYPE;
use crate::supply::verify::embedded::{sbom_in_layer, MAX_SBOM_LAYER_BYTES};
use crate::supply::verify::spdx::MAX_SPDX_BYTES;
use crate::supply::verify::{Evidence, Fetched, Origin, Subject};
use crate::{Error, Result};

/// Referrers looked at per image; a registry listing more is cut here, and says so in a note.
pub const MAX_REFERRERS: usize = 64;
/// Platform manifests looked at in an index.
pub const MAX_PLATFORMS: usize = 64;
/// Referrer blobs held at once, per image: a registry listing many large ones must not make
/// the verifier hold gigabytes. Past it, a referrer's check fails saying so.
pub const MAX_REFERRER_BYTES: usize = 64 << 20;
/// Layers of a `.sig` or `.att` image fetched.
pub const MAX_SIGNED_LAYERS: usize = 64;

/// Gather what the verifier checks about `reference`.
pub async fn gather(
    registries: &Registries,
    env: &Environment,
    reference: &Reference,
    credentials: &Credentials,
    progress: &ProgressSink,
) -> Result<Evidence> {
    let client = registries.client(&reference.registry, reference.api_host(), env)?;
    let access = Access {
        credentials: credentials.clone(),
        scopes: Scopes::pull(&reference.repository),
    };
    let repo = Repo {
        client: &client,
        access: &access,
        name: &reference.repository,
        progress,
    };
    let top = repo.manifest(&reference.reference()).await?;
    if let Some(pinned) = &reference.digest {
        if &top.digest != pinned {
            return Err(Error::DigestMismatch {
                expected: pinned.to_string(),
                actual: top.digest.to_string(),
            });
        }
    }
    let mut notes = Vec::new();
    let platforms: Vec<(Served, Option<String>)> = if is_index(&top.media_type) {
        let mut out = Vec::new();
        for (digest, platform) in index_entries(&top.bytes, &mut notes)? {
            let m = repo.manifest(digest.as_str()).await?;
            if m.digest != digest {
                return Err(Error::DigestMismatch {
                    expected: digest.to_string(),
                    actual: m.digest.to_string(),
                });
            }
            out.push((m, platform));
        }
        out
    } else {
        vec![(top.clone(), None)]
    };
    let signatures = repo
        .signed_image(&signature_tag(&top.digest), MAX_ENVELOPE_BYTES)
        .await?;
    let mut subjects = Vec::new();
    for (manifest, platform) in platforms {
        let attestations = repo
            .signed_image(
                &format!("{}.att", referrers_tag(&manifest.digest)),
                MAX_ENVELOPE_BYTES,
            )
            .await?;
        let referrers = repo.referrers(&manifest.digest, &mut notes).await?;
        let embedded_sbom = repo.embedded_sbom(&manifest.bytes).await;
        subjects.push(Subject {
            digest: manifest.digest,
            platform,
            attestations,
            referrers,
            embedded_sbom,
        });
    }
    Ok(Evidence {
        origin: Origin::Registry,
        image: top.digest,
        signatures,
        subjects,
        notes,
    })
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The image manifests an index lists, with their platforms: attestation manifests
/// (buildx's `unknown/unknown`) and artifacts are not images to check.
fn index_entries(bytes: &[u8], notes: &mut Vec<String>) -> Result<Vec<(Digest, Option<String>)>> {
    let index: Value = serde_json::from_slice(bytes).map_err(|e| Error::InvalidJson {
        what: "image index".into(),
        why: e.to_string(),
    })?;
    let list = index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::InvalidJson {
            what: "image index".into(),
            why: "no manifests list".into(),
        })?;
    let mut out = Vec::new();
    for entry in list {
        let platform = entry.get("platform").map(|p| {
            let os = p.get("os").and_then(Value::as_str).unwrap_or("");
            let arch = p.get("architecture").and_then(Value::as_str).unwrap_or("");
            match p.get("variant").and_then(Value::as_str) {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            }
        });
        if platform.as_deref() == Some("unknown/unknown") || entry.get("artifactType").is_some() {
            continue;
        }
        if out.len() == MAX_PLATFORMS {
            notes.push(format!(
                "only the first {MAX_PLATFORMS} manifests of the index were checked"
            ));
            break;
        }
        let digest = entry.get("digest").and_then(Value::as_str).unwrap_or("");
        out.push((Digest::parse(digest)?, platform));
    }
    Ok(out)
}

/// One repository, read.
struct Repo<'a> {
    client: &'a RegistryClient,
    access: &'a Access,
    name: &'a str,
    progress: &'a ProgressSink,
}

impl Repo<'_> {
    async fn manifest(&self, reference: &str) -> Result<Served> {
        get_manifest(
            self.client,
            self.access,
            self.name,
            reference,
            self.progress,
        )
        .await
    }

    /// The manifest at `reference`, `None` when there is none.
    async fn manifest_if_any(&self, reference: &str) -> Result<Option<Served>> {
        match self.manifest(reference).await {
            Ok(m) => Ok(Some(m)),
            Err(Error::Registry { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The `.sig` or `.att` image at `tag` with its layers' blobs (each at most `cap`).
    async fn signed_image(&self, tag: &str, cap: usize) -> Result<Option<Fetched>> {
        let Some(served) = self.manifest_if_any(tag).await? else {
            return Ok(None);
        };
        Ok(Some(
            self.with_blobs(served.bytes, cap, MAX_SIGNED_LAYERS).await,
        ))
    }

    /// `manifest` and the blobs of its first `max_layers` layers.
    async fn with_blobs(&self, manifest: Vec<u8>, cap: usize, max_layers: usize) -> Fetched {
        let mut blobs = BTreeMap::new();
        let layers = serde_json::from_slice::<Value>(&manifest)
            .ok()
            .and_then(|m| m.get("layers").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        for layer in layers.iter().take(max_layers) {
            let Some(digest) = layer.get("digest").and_then(Value::as_str) else {
                continue;
            };
            let size = layer.get("size").and_then(Value::as_u64);
            let blob = self.blob(digest, size, cap).await;
            blobs.insert(digest.to_string(), blob);
        }
        Fetched { manifest, blobs }
    }

    /// A blob, read no further than its descriptor's size and `cap`, checked against its
    /// digest. The error is the reason a check reports.
    async fn blob(
        &self,
        digest: &str,
        size: Option<u64>,
        cap: usize,
    ) -> std::result::Result<Vec<u8>, String> {
        let digest =
            Digest::parse(digest).map_err(|_| format!("invalid digest {}", shown(digest)))?;
        let limit = match size {
            Some(n) if n > cap as u64 => {
                return Err(format!(
                    "blob {digest} is {n} bytes, more than the {cap} allowed"
                ))
            }
            Some(n) => n as usize,
            None => cap,
        };
        let url = self.client.url(self.name, &format!("blobs/{digest}"));
        let action = format!("GET blob {digest}");
        let get = Request::new(Method::GET, url, &action).expect(&[StatusCode::OK]);
        let fetched = async {
            let response = self.client.execute(self.access, &get).await?;
            self.client.read_body(response, limit, &action).await
        };
        let bytes = fetched.await.map_err(|e| e.to_string())?;
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(format!(
                "blob {digest} does not match its digest (got {actual})"
            ));
        }
        Ok(bytes)
    }

    /// Every referrer of `subject`: the referrers API's list and the fallback tag's index,
    /// both (a registry may have gained the API after earlier pushes used the tag), each
    /// manifest once.
    async fn referrers(&self, subject: &Digest, notes: &mut Vec<String>) -> Result<Vec<Fetched>> {
        let mut descriptors = self.referrers_api(subject).await?;
        if let Some(index) = self.manifest_if_any(&referrers_tag(subject)).await? {
            if is_index(&index.media_type) {
                descriptors.extend(listed(&index.bytes));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        descriptors.retain(|(d, _)| seen.insert(d.clone()));
        if descriptors.len() > MAX_REFERRERS {
            notes.push(format!(
                "{subject} lists {} referrers: only the first {MAX_REFERRERS} were checked",
                descriptors.len()
            ));
            descriptors.truncate(MAX_REFERRERS);
        }
        let mut out = Vec::new();
        let mut budget = MAX_REFERRER_BYTES;
        for (digest, listed_type) in descriptors {
            // Only what a check reads; a listing without a type is told by its manifest.
            if !listed_type.is_empty() && blob_cap(&listed_type).is_none() {
                continue;
            }
            let Some(m) = self.manifest_if_any(digest.as_str()).await? else {
                continue;
            };
            if m.digest != digest {
                return Err(Error::DigestMismatch {
                    expected: digest.to_string(),
                    actual: m.digest.to_string(),
                });
            }
            let Some(cap) = blob_cap(&artifact_type(&m.bytes)) else {
                continue;
            };
            let fetched = if budget == 0 {
                let blobs = first_layer(&m.bytes)
                    .map(|d| (d, Err(format!("not fetched: the referrers of {subject} exceed {MAX_REFERRER_BYTES} bytes"))))
                    .into_iter()
                    .collect();
                Fetched {
                    manifest: m.bytes,
                    blobs,
                }
            } else {
                self.with_blobs(m.bytes, cap.min(budget), 1).await
            };
            let used: usize = fetched
                .blobs
                .values()
                .filter_map(|b| b.as_ref().ok())
                .map(Vec::len)
                .sum();
            budget = budget.saturating_sub(used);
            out.push(fetched);
        }
        Ok(out)
    }

    /// `GET /v2/<name>/referrers/<digest>`: `[]` when the registry has no such API (404, or
    /// 405 from registries that route the path but not the method).
    async fn referrers_api(&self, subject: &Digest) -> Result<Vec<(Digest, String)>> {
        let url = self.client.url(self.name, &format!("referrers/{subject}"));
        let action = format!("GET referrers of {subject}");
        let get = Request::new(Method::GET, url, &action)
            .header(ACCEPT, HeaderValue::from_static(OCI_INDEX))
            .expect(&[
                StatusCode::OK,
                StatusCode::NOT_FOUND,
                StatusCode::METHOD_NOT_ALLOWED,
            ]);
        let response = self.client.execute(self.access, &get).await?;
        if response.status() != StatusCode::OK {
            return Ok(Vec::new());
        }
        let bytes = self
            .client
            .read_body(response, MAX_MANIFEST, &action)
            .await?;
        Ok(listed(&bytes))
    }

    /// `/sbom.spdx.json` from the image's last layer, when that layer is small enough to be
    /// the SBOM layer and holds it.
    async fn embedded_sbom(&self, manifest: &[u8]) -> Option<std::result::Result<Vec<u8>, String>> {
        let manifest: Value = serde_json::from_slice(manifest).ok()?;
        let last = manifest.get("layers")?.as_array()?.last()?.clone();
        let size = last.get("size").and_then(Value::as_u64)?;
        if size > MAX_SBOM_LAYER_BYTES {
            return None;
        }
        let digest = last.get("digest").and_then(Value::as_str)?;
        let media_type = last.get("mediaType").and_then(Value::as_str).unwrap_or("");
        match self
            .blob(digest, Some(size), MAX_SBOM_LAYER_BYTES as usize)
            .await
        {
            Ok(bytes) => sbom_in_layer(media_type, &bytes).transpose(),
            Err(why) => Some(Err(why)),
        }
    }
}

/// The largest blob a referrer of `artifact_type` may have; `None` for types no check reads.
fn blob_cap(artifact_type: &str) -> Option<usize> {
    match artifact_type {
        IN_TOTO_PAYLOAD_TYPE => Some(MAX_ENVELOPE_BYTES),
        SPDX_MEDIA_TYPE => Some(MAX_SPDX_BYTES),
        _ => None,
    }
}

/// A referrer manifest's type: its artifactType, else its config's media type (the OCI 1.1
/// rule for artifacts without artifactType).
fn artifact_type(manifest: &[u8]) -> String {
    let Ok(m) = serde_json::from_slice::<Value>(manifest) else {
        return String::new();
    };
    m.get("artifactType")
        .and_then(Value::as_str)
        .or_else(|| m.get("config")?.get("mediaType")?.as_str())
        .unwrap_or("")
        .to_string()
}

fn first_layer(manifest: &[u8]) -> Option<String> {
    let m = serde_json::from_slice::<Value>(manifest).ok()?;
    Some(
        m.get("layers")?
            .get(0)?
            .get("digest")?
            .as_str()?
            .to_string(),
    )
}

/// The `(digest, artifactType)` entries of a referrers list; malformed entries are ignored
/// (they name nothing that could be checked).
fn listed(index: &[u8]) -> Vec<(Digest, String)> {
    let Ok(index) = serde_json::from_slice::<Value>(index) else {
        return Vec::new();
    };
    index
        .get("manifests")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| {
                    let digest = Digest::parse(m.get("digest")?.as_str()?).ok()?;
                    let kind = m.get("artifactType").and_then(Value::as_str).unwrap_or("");
                    Some((digest, kind.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}
