//! Evidence from a saved tarball: the images it holds (their digests checked as the tarball
//! is read), each with the SBOM it carries. A tarball holds no `.sig`, `.att` or referrers,
//! so those checks are skipped (and say so): verify the pushed image for them.

use std::path::Path;

use crate::layout::load::load_tarball_to_temp;
use crate::supply::verify::embedded::{sbom_in_layer, MAX_SBOM_LAYER_BYTES};
use crate::supply::verify::{Evidence, Origin, Subject};
use crate::{Error, Result};

/// Read the tarball at `path` (extracted under a fresh directory of `scratch`, removed before
/// this returns) into [`Evidence`].
pub fn gather_tarball(path: &Path, scratch: &Path) -> Result<Evidence> {
    let (loaded, extraction) = load_tarball_to_temp(path, scratch, &|| false)?;
    let mut subjects = Vec::new();
    for image in &loaded.images {
        let embedded_sbom = match image.layers.last() {
            Some(layer) if layer.size <= MAX_SBOM_LAYER_BYTES => match &layer.blob {
                Some(blob) => match std::fs::read(blob) {
                    Ok(bytes) => sbom_in_layer(&layer.media_type, &bytes).transpose(),
                    Err(e) => return Err(Error::io("reading a layer of the tarball", e)),
                },
                None => None,
            },
            _ => None,
        };
        subjects.push(Subject {
            digest: image.manifest_digest.clone(),
            platform: image.platform.as_ref().map(ToString::to_string),
            attestations: None,
            referrers: Vec::new(),
            embedded_sbom,
        });
    }
    extraction.close()?;
    let image = subjects
        .first()
        .map(|s| s.digest.clone())
        .ok_or(Error::NoManifests)?;
    Ok(Evidence {
        origin: Origin::Tarball,
        image,
        signatures: None,
        subjects,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob_store::BlobStore;
    use crate::digest::Digest;
    use crate::image::{AddedLayer, Image};
    use crate::layer::{Layer, LayerOptions};
    use crate::layout::{save_tarball, SaveOptions};
    use crate::media_types::OCI_LAYER_GZIP;
    use crate::supply::dsse::PublicKey;
    use crate::supply::sbom::{spdx_json, Sbom, SbomInput};
    use crate::supply::verify::{passed, verify, Kind, Outcome};

    fn any_key() -> PublicKey {
        crate::supply::signing::test_keys::key(3).public_key()
    }

    #[test]
    fn a_missing_tarball_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            gather_tarball(&dir.path().join("nope.tar"), dir.path()),
            Err(Error::TarballNotFound(_))
        ));
    }

    /// Save one image whose last layer is `last` to `<dir>/image.tar`.
    fn saved(dir: &Path, last: Layer) -> std::path::PathBuf {
        let image = Image {
            layers: vec![AddedLayer {
                layer: last,
                layer_type: None,
            }],
            ..Default::default()
        };
        let path = dir.join("image.tar");
        save_tarball(&[image], &path, &SaveOptions::default()).unwrap();
        path
    }

    #[test]
    fn the_sbom_a_saved_image_carries_is_checked_and_the_rest_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let document = spdx_json(&SbomInput {
            name: "hello".into(),
            version: "0.1.0".into(),
            ..Default::default()
        })
        .unwrap();
        let layer = Sbom::from_document(document)
            .layer(&LayerOptions::default(), &store)
            .unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let evidence = gather_tarball(&saved(dir.path(), layer), &scratch).unwrap();
        let checks = verify(&evidence, &any_key(), "cosign.pub");
        let outcomes: Vec<(Kind, Outcome)> = checks.iter().map(|c| (c.kind, c.outcome)).collect();
        assert_eq!(
            outcomes,
            vec![
                (Kind::Signature, Outcome::Skip),
                (Kind::Attestation, Outcome::Skip),
                (Kind::Sbom, Outcome::Ok)
            ]
        );
        assert!(passed(&checks));
        assert!(checks[0]
            .line()
            .contains("a saved tarball holds no signatures"));
        assert_eq!(
            std::fs::read_dir(&scratch).unwrap().count(),
            0,
            "nothing left over"
        );
    }

    #[test]
    fn an_unreadable_last_layer_fails_the_sbom_check() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = b"not really gzip".to_vec();
        let blob = dir.path().join("blob");
        std::fs::write(&blob, &bytes).unwrap();
        let layer = Layer {
            media_type: OCI_LAYER_GZIP.into(),
            digest: Digest::of(&bytes),
            diff_id: Digest::of(b"tar"),
            size: bytes.len() as u64,
            blob: Some(blob),
        };
        let evidence = gather_tarball(&saved(dir.path(), layer), dir.path());
        // Not gzip: the layer is unreadable, which the SBOM check reports.
        let checks = verify(&evidence.unwrap(), &any_key(), "cosign.pub");
        assert!(!passed(&checks), "{checks:#?}");
        assert_eq!(checks[2].kind, Kind::Sbom);
        assert_eq!(checks[2].outcome, Outcome::Fail);
    }
}
