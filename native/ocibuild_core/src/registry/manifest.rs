//! Manifests on the wire: GET one by tag or digest (with every media type we read) and tell
//! what it is. Putting one is a push's business: `RepositoryWriter::put_manifest`.
//!
//! A manifest is kept exactly as served and digested as such: re-encoding the JSON would
//! change its identity.

use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::auth::Access;
use super::client::RegistryClient;
use super::progress::{Phase, Progress, ProgressSink};
use super::request::Request;
use crate::digest::Digest;
use crate::error::shown;
use crate::media_types::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::{Error, Result};

/// Manifests are small (distribution caps them at 4 MiB); a registry serving more is
/// misbehaving.
pub const MAX_MANIFEST: usize = 4 << 20;

const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const DOCKER_SCHEMA1_UNSIGNED: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Every manifest media type we read, for `Accept`.
const ACCEPTED: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A manifest as served: bytes, digest and media type.
#[derive(Clone, Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

/// GET a manifest by tag or digest with every media type we read in `Accept`.
pub async fn get_manifest(
    client: &RegistryClient,
    access: &Access,
    repository: &str,
    reference: &str,
    progress: &ProgressSink,
) -> Result<Fetched> {
    let url = client.url(repository, &format!("manifests/{reference}"));
    let action = format!("GET manifest {repository}:{reference}");
    let get = Request::new(Method::GET, url, &action)
        .header(ACCEPT, HeaderValue::from_static(ACCEPTED))
        .expect(&[StatusCode::OK]);
    let response = client.execute(access, &get).await?;
    let header_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    let bytes = client.read_body(response, MAX_MANIFEST, &action).await?;
    let digest = Digest::of(&bytes);
    let media_type = media_type(&bytes, header_type)?;
    progress(Progress {
        phase: Phase::Manifest,
        digest: Some(digest.clone()),
        bytes: bytes.len() as u64,
        total: Some(bytes.len() as u64),
    });
    Ok(Fetched {
        bytes,
        digest,
        media_type,
    })
}

/// What a served manifest is. The body's own mediaType wins: some registries serve
/// manifests as application/json.
fn media_type(bytes: &[u8], header_type: Option<String>) -> Result<String> {
    let json = serde_json::from_slice::<Value>(bytes);
    let body_type = json
        .as_ref()
        .ok()
        .and_then(|v| v.get("mediaType").and_then(Value::as_str));
    let declared = body_type
        .map(str::to_string)
        .or(header_type)
        .unwrap_or_default();
    Ok(match declared.as_str() {
        OCI_MANIFEST | OCI_INDEX | DOCKER_MANIFEST | DOCKER_MANIFEST_LIST => declared,
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_UNSIGNED => {
            return Err(Error::UnsupportedMediaType(format!(
                "{} (Docker schema 1 is obsolete; re-push the base image)",
                shown(&declared)
            )))
        }
        // An OCI manifest may omit mediaType; tell manifest from index by its fields.
        _ => match &json {
            Ok(v) if v.get("manifests").is_some() => OCI_INDEX.to_string(),
            Ok(v) if v.get("config").is_some() => OCI_MANIFEST.to_string(),
            Ok(_) => return Err(Error::UnsupportedMediaType(shown(&declared))),
            Err(e) => {
                return Err(Error::InvalidJson {
                    what: "manifest".into(),
                    why: e.to_string(),
                })
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_names_the_media_type_before_the_header() {
        let body = format!(r#"{{"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        let t = media_type(body.as_bytes(), Some("application/json".into())).unwrap();
        assert_eq!(t, OCI_INDEX);
    }

    #[test]
    fn an_untyped_oci_manifest_is_told_by_its_fields() {
        assert_eq!(media_type(br#"{"config":{}}"#, None).unwrap(), OCI_MANIFEST);
        assert_eq!(media_type(br#"{"manifests":[]}"#, None).unwrap(), OCI_INDEX);
        assert!(matches!(
            media_type(br#"{"layers":[]}"#, None),
            Err(Error::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            media_type(b"not json", None),
            Err(Error::InvalidJson { .. })
        ));
    }

    #[test]
    fn schema1_is_refused_with_a_reason() {
        let err = media_type(b"{}", Some(DOCKER_SCHEMA1.into())).unwrap_err();
        match err {
            Error::UnsupportedMediaType(why) => assert!(why.contains("schema 1"), "{why}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
