//! cosign's signature manifest: the image at tag `sha256-<hex>.sig` whose layers are signed
//! simple-signing payloads, each carrying its signature in an annotation.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::image::json::{canonical, parse_object};
use crate::media_types::{OCI_CONFIG, OCI_MANIFEST};
use crate::supply::referrers::referrers_tag;
use crate::{Error, Result};

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// go-containerregistry's zero time, which cosign's signature images carry.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `sha256-<hex>.sig`: where cosign looks for the signatures of `digest`.
pub fn signature_tag(digest: &Digest) -> String {
    // cosign's tag is the referrers tag schema's, plus `.sig`.
    format!("{}.sig", referrers_tag(digest))
}

/// A signature manifest ready to put, with its config and the new payload's digest.
#[derive(Clone, Debug)]
pub struct SignatureManifest {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub payload_digest: Digest,
}

/// `existing` (the manifest now at the `.sig` tag, if any) plus a layer for `payload` signed
/// by `signature_der`. Existing layers are kept in order and as they are (cosign's may carry
/// bundle or certificate annotations); a layer with the same payload digest and signature is
/// not repeated.
pub fn add_signature(
    existing: Option<&[u8]>,
    payload: &[u8],
    signature_der: &[u8],
) -> Result<SignatureManifest> {
    let mut layers = match existing {
        Some(bytes) => existing_layers(bytes)?,
        None => Vec::new(),
    };
    let payload_digest = Digest::of(payload);
    let signature = STANDARD.encode(signature_der);
    let already_there = layers.iter().any(|l| {
        l["digest"] == payload_digest.as_str()
            && l["annotations"][SIGNATURE_ANNOTATION] == *signature
    });
    if !already_there {
        layers.push(json!({
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "digest": payload_digest.as_str(),
            "size": payload.len(),
            "annotations": {SIGNATURE_ANNOTATION: signature},
        }));
    }
    Ok(signature_image(&layers, payload_digest))
}

/// The image of `layers` (payloads stored as they are): its config and manifest, as
/// go-containerregistry writes them for cosign. The `.att` image (`supply::attestation`) is
/// the same image with envelope layers.
pub(crate) fn signature_image(layers: &[Value], payload_digest: Digest) -> SignatureManifest {
    // Payload layers are not compressed: each diff_id is the layer's digest.
    let diff_ids: Vec<Value> = layers.iter().map(|l| l["digest"].clone()).collect();
    let history: Vec<Value> = layers
        .iter()
        .map(|_| json!({"created": ZERO_TIME}))
        .collect();
    let config = canonical(&json!({
        "architecture": "",
        "os": "",
        "created": ZERO_TIME,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }));
    let config_digest = Digest::of(&config);
    let manifest = canonical(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.as_str(), "size": config.len()},
        "layers": layers,
    }));
    SignatureManifest {
        manifest,
        config,
        config_digest,
        payload_digest,
    }
}

pub(crate) fn existing_layers(bytes: &[u8]) -> Result<Vec<Value>> {
    let manifest = parse_object(bytes, "signature manifest")?;
    match manifest.get("mediaType").and_then(Value::as_str) {
        None
        | Some(OCI_MANIFEST)
        | Some("application/vnd.docker.distribution.manifest.v2+json") => {}
        Some(other) => return Err(Error::UnsupportedMediaType(other.to_string())),
    }
    let invalid = |why: &str| Error::InvalidJson {
        what: "signature manifest".into(),
        why: why.into(),
    };
    let Some(Value::Array(layers)) = manifest.get("layers") else {
        return Err(invalid("no layers"));
    };
    // Each layer's digest becomes a diff_id of the rebuilt config: it must be one.
    for layer in layers {
        let digest = layer.get("digest").and_then(Value::as_str);
        if digest.is_none_or(|d| Digest::parse(d).is_err()) {
            return Err(invalid("a layer without a sha256 digest"));
        }
    }
    Ok(layers.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn signature_tag_is_cosigns() {
        let d = Digest::of(b"x");
        assert_eq!(
            signature_tag(&d),
            format!("sha256-{}.sig", &d.as_str()["sha256:".len()..])
        );
    }

    #[test]
    fn first_signature_makes_a_manifest_and_config() {
        let s = add_signature(None, b"payload", b"\x30\x01").unwrap();
        let m = parsed(&s.manifest);
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(m["config"]["digest"], s.config_digest.as_str());
        assert_eq!(m["config"]["size"], s.config.len());
        assert_eq!(s.config_digest, Digest::of(&s.config));
        let layer = &m["layers"][0];
        assert_eq!(layer["mediaType"], SIMPLE_SIGNING_MEDIA_TYPE);
        assert_eq!(layer["digest"], Digest::of(b"payload").as_str());
        assert_eq!(layer["size"], 7);
        assert_eq!(layer["annotations"][SIGNATURE_ANNOTATION], "MAE=");
        assert_eq!(s.payload_digest, Digest::of(b"payload"));
        let c = parsed(&s.config);
        assert_eq!(c["rootfs"]["diff_ids"][0], Digest::of(b"payload").as_str());
        assert_eq!(c["history"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_second_signature_is_appended_and_a_repeat_is_not() {
        let first = add_signature(None, b"payload", b"sig-one").unwrap();
        let second = add_signature(Some(&first.manifest), b"payload", b"sig-two").unwrap();
        let m = parsed(&second.manifest);
        let sigs: Vec<&str> = m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["annotations"][SIGNATURE_ANNOTATION].as_str().unwrap())
            .collect();
        assert_eq!(
            sigs,
            vec![STANDARD.encode("sig-one"), STANDARD.encode("sig-two")]
        );
        assert_eq!(
            parsed(&second.config)["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let again = add_signature(Some(&second.manifest), b"payload", b"sig-two").unwrap();
        assert_eq!(again.manifest, second.manifest);
    }

    #[test]
    fn config_is_what_go_containerregistry_writes_for_cosign() {
        let s = add_signature(None, b"payload", b"sig").unwrap();
        let d = Digest::of(b"payload");
        assert_eq!(
            String::from_utf8(s.config).unwrap(),
            format!(
                r#"{{"architecture":"","config":{{}},"created":"{ZERO_TIME}","history":[{{"created":"{ZERO_TIME}"}}],"os":"","rootfs":{{"diff_ids":["{d}"],"type":"layers"}}}}"#
            )
        );
    }

    #[test]
    fn a_layer_cosign_wrote_is_kept_as_it_is_and_not_repeated() {
        // cosign adds a Rekor bundle (and with keyless signing, a certificate) next to the
        // signature; the same payload and signature is still the same signature.
        let d = Digest::of(b"payload");
        let sig = STANDARD.encode(b"sig");
        let cosign_layer = json!({
            "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
            "digest": d.as_str(),
            "size": 7,
            "annotations": {SIGNATURE_ANNOTATION: sig, "dev.sigstore.cosign/bundle": "{}"},
        });
        let existing = canonical(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(b"c").as_str(), "size": 1},
            "layers": [cosign_layer],
        }));
        let same = add_signature(Some(&existing), b"payload", b"sig").unwrap();
        assert_eq!(parsed(&same.manifest)["layers"], json!([cosign_layer]));
        let other = add_signature(Some(&existing), b"payload", b"other-sig").unwrap();
        let layers = parsed(&other.manifest)["layers"].clone();
        assert_eq!(layers.as_array().unwrap().len(), 2);
        assert_eq!(layers[0], cosign_layer);
        assert_eq!(
            layers[1]["annotations"][SIGNATURE_ANNOTATION],
            STANDARD.encode("other-sig")
        );
    }

    #[test]
    fn what_is_not_a_signature_manifest_is_refused() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(matches!(
            add_signature(Some(index), b"p", b"s"),
            Err(Error::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            add_signature(Some(b"{"), b"p", b"s"),
            Err(Error::InvalidJson { .. })
        ));
        for manifest in [
            &br#"{"schemaVersion":2}"#[..],
            br#"{"schemaVersion":2,"layers":[{"mediaType":"x","size":1}]}"#,
            br#"{"schemaVersion":2,"layers":[{"digest":"sha256:nothex"}]}"#,
            br#"{"schemaVersion":2,"layers":["sha256:abc"]}"#,
        ] {
            assert!(
                matches!(
                    add_signature(Some(manifest), b"p", b"s"),
                    Err(Error::InvalidJson { .. })
                ),
                "{}",
                String::from_utf8_lossy(manifest)
            );
        }
    }
}
