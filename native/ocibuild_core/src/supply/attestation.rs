//! cosign's attestation manifest: the image at tag `sha256-<hex>.att` whose layers are DSSE
//! envelopes (`supply::dsse`), what `cosign verify-attestation` reads. The same image as the
//! `.sig` one (`supply::cosign`), with envelope layers.
//!
//! The tag belongs to everyone who attests the image (cosign, other builders, earlier
//! pushes): it is read, extended and put back; a layer is never dropped, and an envelope
//! already there is not added again.

use serde_json::json;

use crate::digest::Digest;
use crate::supply::cosign::{
    existing_layers, signature_image, SignatureManifest, SIGNATURE_ANNOTATION,
};
use crate::supply::dsse::ENVELOPE_MEDIA_TYPE;
use crate::supply::referrers::referrers_tag;
use crate::Result;

/// The annotation naming an envelope layer's predicate type (cosign's).
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";

/// `sha256-<hex>.att`: where cosign looks for the attestations of `digest`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("{}.att", referrers_tag(digest))
}

/// `existing` (the manifest now at the `.att` tag, if any) plus a layer for `envelope` (the
/// DSSE envelope JSON) of `predicate_type`. Existing layers are kept in order and as they
/// are; an envelope whose digest is listed already is not repeated.
pub fn add_attestation(
    existing: Option<&[u8]>,
    envelope: &[u8],
    predicate_type: &str,
) -> Result<SignatureManifest> {
    let mut layers = match existing {
        Some(bytes) => existing_layers(bytes)?,
        None => Vec::new(),
    };
    let digest = Digest::of(envelope);
    if !layers.iter().any(|l| l["digest"] == digest.as_str()) {
        layers.push(json!({
            "mediaType": ENVELOPE_MEDIA_TYPE,
            "digest": digest.as_str(),
            "size": envelope.len(),
            // cosign's attestation layers carry an empty signature annotation: the
            // signature is inside the envelope.
            "annotations": {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: predicate_type},
        }));
    }
    Ok(signature_image(&layers, digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::json::canonical;
    use crate::media_types::{OCI_CONFIG, OCI_MANIFEST};
    use crate::Error;
    use serde_json::Value;

    const SLSA: &str = "https://slsa.dev/provenance/v1";

    fn layers(manifest: &[u8]) -> Vec<Value> {
        let m: Value = serde_json::from_slice(manifest).unwrap();
        m["layers"].as_array().unwrap().clone()
    }

    #[test]
    fn attestation_tag_is_cosigns() {
        let d = Digest::of(b"x");
        assert_eq!(attestation_tag(&d), format!("sha256-{}.att", d.hex()));
    }

    #[test]
    fn first_attestation_is_an_image_of_one_envelope_layer() {
        let a = add_attestation(None, b"{\"envelope\":1}", SLSA).unwrap();
        let m: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(m["config"]["digest"], Digest::of(&a.config).as_str());
        let layer = &m["layers"][0];
        assert_eq!(layer["mediaType"], ENVELOPE_MEDIA_TYPE);
        assert_eq!(layer["digest"], Digest::of(b"{\"envelope\":1}").as_str());
        assert_eq!(layer["size"], 14);
        assert_eq!(layer["annotations"][SIGNATURE_ANNOTATION], "");
        assert_eq!(layer["annotations"][PREDICATE_TYPE_ANNOTATION], SLSA);
        assert_eq!(a.payload_digest, Digest::of(b"{\"envelope\":1}"));
        let c: Value = serde_json::from_slice(&a.config).unwrap();
        assert_eq!(
            c["rootfs"]["diff_ids"],
            json!([Digest::of(b"{\"envelope\":1}").as_str()])
        );
    }

    #[test]
    fn a_second_envelope_is_appended_and_a_repeat_is_not() {
        let first = add_attestation(None, b"one", SLSA).unwrap();
        let second = add_attestation(Some(&first.manifest), b"two", SLSA).unwrap();
        let digests: Vec<Value> = layers(&second.manifest)
            .iter()
            .map(|l| l["digest"].clone())
            .collect();
        assert_eq!(
            digests,
            vec![
                json!(Digest::of(b"one").as_str()),
                json!(Digest::of(b"two").as_str())
            ]
        );
        let again = add_attestation(Some(&second.manifest), b"one", SLSA).unwrap();
        assert_eq!(again.manifest, second.manifest);
        assert_eq!(again.config, second.config);
    }

    #[test]
    fn foreign_layers_are_kept_as_they_are() {
        // Another tool's attestation, of another predicate type and with its own annotations.
        let theirs = json!({
            "mediaType": ENVELOPE_MEDIA_TYPE,
            "digest": Digest::of(b"theirs").as_str(),
            "size": 6,
            "annotations": {SIGNATURE_ANNOTATION: "", PREDICATE_TYPE_ANNOTATION: "https://spdx.dev/Document",
                            "dev.sigstore.cosign/bundle": "{}"},
        });
        let existing = canonical(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(b"c").as_str(), "size": 1},
            "layers": [theirs],
        }));
        let ours = add_attestation(Some(&existing), b"ours", SLSA).unwrap();
        let l = layers(&ours.manifest);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0], theirs);
        assert_eq!(l[1]["digest"], Digest::of(b"ours").as_str());
    }

    proptest::proptest! {
        // The `.att` manifest comes from the registry: any bytes are an error or an image
        // that ends with our envelope, never a panic.
        #[test]
        fn prop_any_existing_manifest_is_refused_or_extended(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            if let Ok(image) = add_attestation(Some(&bytes), b"ours", SLSA) {
                let all = layers(&image.manifest);
                let last = all.last().unwrap();
                let ours = Digest::of(b"ours");
                proptest::prop_assert_eq!(&last["digest"], ours.as_str());
            }
        }

        // Appending envelopes one push at a time keeps every earlier one, in order, once.
        #[test]
        fn prop_appends_keep_order_and_never_repeat(
            picks in proptest::collection::vec(0u8..6, 1..12),
        ) {
            let mut manifest: Option<Vec<u8>> = None;
            let mut expected: Vec<String> = Vec::new();
            for pick in picks {
                let envelope = [pick];
                let digest = Digest::of(&envelope).as_str().to_string();
                if !expected.contains(&digest) {
                    expected.push(digest);
                }
                manifest = Some(add_attestation(manifest.as_deref(), &envelope, SLSA).unwrap().manifest);
            }
            let got: Vec<String> = layers(manifest.as_deref().unwrap())
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
                .collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn what_is_not_an_attestation_image_is_refused() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(
            add_attestation(Some(index), b"e", SLSA),
            Err(Error::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            add_attestation(Some(b"["), b"e", SLSA),
            Err(Error::InvalidJson { .. })
        ));
        let bad_digest = br#"{"schemaVersion":2,"layers":[{"digest":"md5:00"}]}"#;
        assert!(matches!(
            add_attestation(Some(bad_digest), b"e", SLSA),
            Err(Error::InvalidJson { .. })
        ));
    }
}
