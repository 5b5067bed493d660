//! The verifier end to end against the in-process registry: images pushed with the real push,
//! signed by the real signing code, with SBOM and in-toto referrers attached by the real
//! attach code and `.att` images crafted with `supply::dsse` (what the provenance work
//! writes), then gathered by `inspect::gather` and checked by `supply::verify`. Each way an
//! attachment can be wrong must make exactly the check it concerns fail, with its reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::attach::Attachments;
use super::inspect::gather;
use super::progress;
use super::push::{self, BlobData, PushBlob, PushImage, PushOptions, PushTarget};
use super::testing::fixtures::{env, noise, registries, store};
use super::testing::oci::{Config, Fault, Registry};
use super::{Credentials, Reference};
use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::image::Platform;
use crate::layer::{Compression, LayerOptions};
use crate::media_types::{OCI_CONFIG, OCI_MANIFEST};
use crate::supply::cosign::{signature_tag, SIGNATURE_ANNOTATION};
use crate::supply::dsse::{Envelope, ENVELOPE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE};
use crate::supply::referrers::{referrers_tag, Artifact};
use crate::supply::sbom::{spdx_json, Dependency, Sbom, SbomInput};
use crate::supply::signing::SigningKey;
use crate::supply::verify::{passed, verify, Check, Evidence, Kind, Outcome};

const REPO: &str = "acme/hello";

fn key(seed: u8) -> Arc<SigningKey> {
    Arc::new(crate::supply::signing::test_keys::key(seed))
}

fn sbom_document(packages: &[(&str, &str)]) -> Vec<u8> {
    spdx_json(&SbomInput {
        name: "hello".into(),
        version: "0.1.0".into(),
        tool: "ocibuild-test".into(),
        dependencies: packages
            .iter()
            .map(|(n, v)| Dependency {
                name: n.to_string(),
                version: v.to_string(),
                source: "hex".into(),
            })
            .collect(),
        ..Default::default()
    })
    .unwrap()
}

/// An image as ocibuild builds one: a release layer, then the SBOM layer carrying
/// `/sbom.spdx.json`.
struct Built {
    push: PushImage,
    digest: Digest,
    sbom: Vec<u8>,
}

fn build(seed: u64, sbom: &[u8], platform: Platform, store: &BlobStore) -> Built {
    let release = noise(3000, seed);
    let options = LayerOptions {
        compression: Compression::Gzip,
        ..LayerOptions::default()
    };
    let layer = Sbom::from_document(sbom.to_vec())
        .layer(&options, store)
        .unwrap();
    let sbom_blob = std::fs::read(store.path(&layer.digest)).unwrap();
    let config = json!({
        "architecture": platform.architecture, "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&release).as_str(), layer.diff_id.as_str()]},
    })
    .to_string()
    .into_bytes();
    let layers = [
        (&release, "application/vnd.oci.image.layer.v1.tar+gzip"),
        (&sbom_blob, layer.media_type.as_str()),
    ];
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(&config).as_str(), "size": config.len()},
        "layers": layers.iter().map(|(b, t)| json!({"mediaType": t, "digest": Digest::of(b).as_str(), "size": b.len()})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let blobs = [&config, &release, &sbom_blob]
        .into_iter()
        .map(|b| PushBlob {
            digest: Digest::of(b),
            size: b.len() as u64,
            data: BlobData::Bytes(bytes::Bytes::copy_from_slice(b)),
        })
        .collect();
    let digest = Digest::of(&manifest);
    Built {
        push: PushImage {
            manifest,
            manifest_digest: digest.clone(),
            media_type: OCI_MANIFEST.into(),
            platform: Some(platform),
            blobs,
        },
        digest,
        sbom: sbom.to_vec(),
    }
}

/// Push `images` as `hello:v1` with `attach`; the pushed digest (an index for several).
async fn push_with(registry: &Registry, images: &[&Built], attach: Attachments) -> Digest {
    let (_dir, cache) = store();
    let target = PushTarget::parse(
        registry.addr(),
        &format!("{REPO}:v1"),
        &[],
        Credentials::Anonymous,
    )
    .unwrap();
    let opts = PushOptions {
        chunk_size: 1 << 30,
        max_concurrency: 2,
        cache,
        index: false,
        attach,
    };
    let pushes: Vec<PushImage> = images.iter().map(|b| b.push.clone()).collect();
    push::push(
        &registries(),
        &env(),
        &pushes,
        &target,
        &opts,
        &progress::ignore(),
    )
    .await
    .unwrap()
    .digest
}

/// The SBOM referrer and a signature, as a signed `mix ocibuild --push` attaches them.
fn signed(images: &[&Built], key: &Arc<SigningKey>) -> Attachments {
    Attachments {
        referrers: images
            .iter()
            .map(|b| Some(Sbom::from_document(b.sbom.clone()).referrer(0)))
            .collect(),
        signature: Some(Arc::clone(key)),
        provenance: None,
    }
}

fn statement(subject: &Digest) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": format!("registry/{REPO}"), "digest": {"sha256": subject.hex()}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "test"}},
    }))
    .unwrap()
}

/// The in-toto referrer of `subject`, its statement signed by `key`.
fn in_toto_referrer(statement: Vec<u8>, key: &SigningKey) -> Artifact {
    Artifact {
        artifact_type: IN_TOTO_PAYLOAD_TYPE.into(),
        media_type: ENVELOPE_MEDIA_TYPE.into(),
        data: Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement, key).to_json(),
        annotations: BTreeMap::from([(
            "in-toto.io/predicate-type".into(),
            "https://slsa.dev/provenance/v1".into(),
        )]),
    }
}

/// Put `envelopes` as the `sha256-<hex>.att` image of `subject` (the agreed `.att` format).
fn put_att(registry: &Registry, subject: &Digest, envelopes: &[Vec<u8>]) {
    let layers: Vec<Value> = envelopes
        .iter()
        .map(|e| {
            registry.put_blob(REPO, e);
            json!({"mediaType": ENVELOPE_MEDIA_TYPE, "digest": Digest::of(e).as_str(), "size": e.len(),
                   "annotations": {SIGNATURE_ANNOTATION: "", "predicateType": "https://slsa.dev/provenance/v1"}})
        })
        .collect();
    let config =
        br#"{"architecture":"","config":{},"os":"","rootfs":{"diff_ids":[],"type":"layers"}}"#;
    registry.put_blob(REPO, config);
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(config).as_str(), "size": config.len()},
        "layers": layers});
    registry.put_manifest(
        REPO,
        &format!("{}.att", referrers_tag(subject)),
        OCI_MANIFEST,
        manifest.to_string().as_bytes(),
    );
}

async fn evidence(registry: &Registry, reference: &str) -> Evidence {
    let reference = Reference::parse(&format!("{}/{REPO}{reference}", registry.addr())).unwrap();
    gather(
        &registries(),
        &env(),
        &reference,
        &Credentials::Anonymous,
        &progress::ignore(),
    )
    .await
    .unwrap()
}

fn outcomes(checks: &[Check], kind: Kind) -> Vec<Outcome> {
    checks
        .iter()
        .filter(|c| c.kind == kind)
        .map(|c| c.outcome)
        .collect()
}

fn failure(checks: &[Check], kind: Kind) -> String {
    let lines: Vec<String> = checks
        .iter()
        .filter(|c| c.kind == kind && c.outcome == Outcome::Fail)
        .map(Check::line)
        .collect();
    assert_eq!(lines.len(), 1, "one failed {kind:?} check: {checks:#?}");
    lines[0].clone()
}

/// A signed image with its SBOM referrer, an in-toto referrer and a `.att` image: everything
/// a signed push with provenance attaches.
async fn fully_attached(registry: &Registry, key: &Arc<SigningKey>) -> (Built, Digest) {
    let (_dir, blobs) = store();
    let image = build(
        1,
        &sbom_document(&[("jason", "1.4.1")]),
        Platform::host(),
        &blobs,
    );
    let digest = push_with(registry, &[&image], signed(&[&image], key)).await;
    let referrer = Attachments {
        referrers: vec![Some(in_toto_referrer(statement(&digest), key))],
        signature: None,
        provenance: None,
    };
    push_with(registry, &[&image], referrer).await;
    put_att(
        registry,
        &digest,
        &[Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement(&digest), key).to_json()],
    );
    (image, digest)
}

#[tokio::test]
async fn a_fully_attached_image_passes_every_check() {
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_image, digest) = fully_attached(&registry, &key).await;
    for reference in [":v1".to_string(), format!("@{digest}")] {
        let checks = verify(
            &evidence(&registry, &reference).await,
            &key.public_key(),
            "cosign.pub",
        );
        assert!(passed(&checks), "{checks:#?}");
        assert_eq!(outcomes(&checks, Kind::Signature), vec![Outcome::Ok]);
        assert_eq!(
            outcomes(&checks, Kind::Attestation),
            vec![Outcome::Ok, Outcome::Ok]
        );
        assert_eq!(outcomes(&checks, Kind::Sbom), vec![Outcome::Ok]);
        let lines: Vec<String> = checks.iter().map(Check::line).collect();
        assert_eq!(
            lines[0],
            format!(
                "ok   signature {digest} (.sig layer 1): verified with cosign.pub, signs {}/{REPO}",
                registry.addr()
            )
        );
        assert!(
            lines[1].starts_with(&format!(
                "ok   attestation {digest} (.att layer 1): https://slsa.dev/provenance/v1"
            )),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with(&format!("ok   attestation {digest} (referrer sha256:")),
            "{lines:?}"
        );
        assert!(
            lines[3].contains("names all 2 packages of the image's /sbom.spdx.json"),
            "{lines:?}"
        );
    }
}

#[tokio::test]
async fn another_key_fails_every_signature_and_attestation() {
    let registry = Registry::start(Config::default()).await;
    let (_image, _digest) = fully_attached(&registry, &key(7)).await;
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key(9).public_key(),
        "other.pub",
    );
    assert!(!passed(&checks));
    assert_eq!(outcomes(&checks, Kind::Signature), vec![Outcome::Fail]);
    assert_eq!(
        outcomes(&checks, Kind::Attestation),
        vec![Outcome::Fail, Outcome::Fail]
    );
    for c in checks.iter().filter(|c| c.kind != Kind::Sbom) {
        assert!(
            c.line()
                .ends_with("signature does not verify with other.pub"),
            "{}",
            c.line()
        );
    }
    assert_eq!(
        outcomes(&checks, Kind::Sbom),
        vec![Outcome::Ok],
        "the SBOM is not signed"
    );
}

#[tokio::test]
async fn a_tampered_signature_payload_fails() {
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_image, digest) = fully_attached(&registry, &key).await;
    // What an attacker with push access does: a new payload blob, the old signature.
    let tag = signature_tag(&digest);
    let (_, sig) = registry.manifest(REPO, &tag).unwrap();
    let mut sig: Value = serde_json::from_slice(&sig).unwrap();
    let old = registry
        .blob(
            REPO,
            &Digest::parse(sig["layers"][0]["digest"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
    let forged = String::from_utf8(old)
        .unwrap()
        .replace("acme/hello", "acme/other")
        .into_bytes();
    registry.put_blob(REPO, &forged);
    sig["layers"][0]["digest"] = Digest::of(&forged).as_str().into();
    sig["layers"][0]["size"] = forged.len().into();
    registry.put_manifest(REPO, &tag, OCI_MANIFEST, sig.to_string().as_bytes());
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key.public_key(),
        "cosign.pub",
    );
    assert!(!passed(&checks));
    assert_eq!(
        failure(&checks, Kind::Signature),
        format!(
            "FAIL signature {digest} (.sig layer 1): signature does not verify with cosign.pub"
        )
    );
}

#[tokio::test]
async fn a_tampered_attestation_payload_fails() {
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_image, digest) = fully_attached(&registry, &key).await;
    let mut envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement(&digest), &key);
    envelope.payload = String::from_utf8(envelope.payload)
        .unwrap()
        .replace("test", "evil")
        .into_bytes();
    put_att(&registry, &digest, &[envelope.to_json()]);
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key.public_key(),
        "cosign.pub",
    );
    assert!(!passed(&checks));
    assert_eq!(
        failure(&checks, Kind::Attestation),
        format!(
            "FAIL attestation {digest} (.att layer 1): signature does not verify with cosign.pub"
        )
    );
}

#[tokio::test]
async fn no_signature_is_a_failure_and_no_attestation_a_skip() {
    let registry = Registry::start(Config::default()).await;
    let (_dir, blobs) = store();
    let image = build(1, &sbom_document(&[]), Platform::host(), &blobs);
    let attach = Attachments {
        referrers: vec![Some(Sbom::from_document(image.sbom.clone()).referrer(0))],
        signature: None,
        provenance: None,
    };
    let digest = push_with(&registry, &[&image], attach).await;
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key(7).public_key(),
        "cosign.pub",
    );
    assert!(!passed(&checks));
    assert_eq!(
        failure(&checks, Kind::Signature),
        format!(
            "FAIL signature {digest}: no signature: nothing at tag {}",
            signature_tag(&digest)
        )
    );
    assert_eq!(outcomes(&checks, Kind::Attestation), vec![Outcome::Skip]);
    assert_eq!(outcomes(&checks, Kind::Sbom), vec![Outcome::Ok]);
}

#[tokio::test]
async fn a_statement_about_another_image_fails() {
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_image, digest) = fully_attached(&registry, &key).await;
    let other = Digest::of(b"another image");
    put_att(
        &registry,
        &digest,
        &[Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement(&other), &key).to_json()],
    );
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key.public_key(),
        "cosign.pub",
    );
    assert_eq!(
        failure(&checks, Kind::Attestation),
        format!("FAIL attestation {digest} (.att layer 1): the statement's subject is {other}, not this image")
    );
}

#[tokio::test]
async fn a_broken_or_incomplete_sbom_referrer_fails() {
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_dir, blobs) = store();
    let image = build(
        1,
        &sbom_document(&[("jason", "1.4.1"), ("plug", "1.15.0")]),
        Platform::host(),
        &blobs,
    );
    // The referrer forgets a package the image carries.
    let mut attach = signed(&[&image], &key);
    attach.referrers = vec![Some(
        Sbom::from_document(sbom_document(&[("jason", "1.4.1")])).referrer(0),
    )];
    let digest = push_with(&registry, &[&image], attach).await;
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key.public_key(),
        "cosign.pub",
    );
    let line = failure(&checks, Kind::Sbom);
    assert!(
        line.starts_with(&format!("FAIL sbom {digest} (referrer sha256:")),
        "{line}"
    );
    assert!(
        line.ends_with("does not name 1 of the image's packages: plug@1.15.0"),
        "{line}"
    );

    // Not SPDX at all.
    let mut broken = Sbom::from_document(b"{\"spdxVersion\":\"SPDX-2.2\"}".to_vec()).referrer(0);
    broken.annotations.insert("n".into(), "2".into());
    push_with(
        &registry,
        &[&image],
        Attachments {
            referrers: vec![Some(broken)],
            signature: None,
            provenance: None,
        },
    )
    .await;
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key.public_key(),
        "cosign.pub",
    );
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .map(Check::line)
        .collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(
        failed.iter().any(|l| l.contains("not SPDX: no SPDXID")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_multi_platform_image_is_signed_as_an_index_and_attested_per_platform() {
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_dir, blobs) = store();
    let amd = build(
        1,
        &sbom_document(&[]),
        Platform::parse("linux/amd64").unwrap(),
        &blobs,
    );
    let arm = build(
        2,
        &sbom_document(&[]),
        Platform::parse("linux/arm64").unwrap(),
        &blobs,
    );
    let index = push_with(&registry, &[&amd, &arm], signed(&[&amd, &arm], &key)).await;
    put_att(
        &registry,
        &amd.digest,
        &[Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement(&amd.digest), &key).to_json()],
    );
    // arm64's attestation names amd64's manifest: wrong for arm64.
    put_att(
        &registry,
        &arm.digest,
        &[Envelope::sign(IN_TOTO_PAYLOAD_TYPE, statement(&amd.digest), &key).to_json()],
    );
    let evidence = evidence(&registry, ":v1").await;
    assert_eq!(evidence.image, index);
    let platforms: Vec<Option<String>> = evidence
        .subjects
        .iter()
        .map(|s| s.platform.clone())
        .collect();
    assert_eq!(
        platforms,
        vec![Some("linux/amd64".into()), Some("linux/arm64".into())]
    );
    let checks = verify(&evidence, &key.public_key(), "cosign.pub");
    assert_eq!(outcomes(&checks, Kind::Signature), vec![Outcome::Ok]);
    assert_eq!(checks[0].subject, index.to_string());
    assert_eq!(
        outcomes(&checks, Kind::Sbom),
        vec![Outcome::Ok, Outcome::Ok]
    );
    assert_eq!(
        failure(&checks, Kind::Attestation),
        format!(
            "FAIL attestation {} (.att layer 1): the statement's subject is {}, not this image",
            arm.digest, amd.digest
        )
    );
}

#[tokio::test]
async fn a_registry_serving_corrupt_blobs_fails_the_checks_not_the_run() {
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_image, digest) = fully_attached(&registry, &key).await;
    registry.inject(Fault::new(super::testing::oci::Action::Corrupt).on("GET", "/blobs/"));
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key.public_key(),
        "cosign.pub",
    );
    assert!(!passed(&checks));
    let line = failure(&checks, Kind::Signature);
    assert!(
        line.starts_with(&format!(
            "FAIL signature {digest} (.sig layer 1): blob sha256:"
        )),
        "{line}"
    );
    assert!(line.contains("does not match its digest"), "{line}");
    assert!(
        checks.iter().all(|c| c.outcome == Outcome::Fail),
        "{checks:#?}"
    );
}

#[tokio::test]
async fn a_pinned_digest_that_does_not_match_is_an_error() {
    let registry = Registry::start(Config::default()).await;
    let (_image, _digest) = fully_attached(&registry, &key(7)).await;
    let wrong = Digest::of(b"x");
    registry.put_manifest(
        REPO,
        wrong.as_str(),
        OCI_MANIFEST,
        &registry.manifest(REPO, "v1").unwrap().1,
    );
    let reference = Reference::parse(&format!("{}/{REPO}@{wrong}", registry.addr())).unwrap();
    let result = gather(
        &registries(),
        &env(),
        &reference,
        &Credentials::Anonymous,
        &progress::ignore(),
    )
    .await;
    assert!(
        matches!(result, Err(crate::Error::DigestMismatch { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn referrers_of_types_no_check_reads_are_not_fetched() {
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_image, _digest) = fully_attached(&registry, &key).await;
    let other = Artifact {
        artifact_type: "application/vnd.example.other".into(),
        media_type: "application/octet-stream".into(),
        data: noise(5000, 9),
        annotations: BTreeMap::new(),
    };
    let blob = Digest::of(&other.data);
    let (_dir, blobs) = store();
    let image = build(
        1,
        &sbom_document(&[("jason", "1.4.1")]),
        Platform::host(),
        &blobs,
    );
    push_with(
        &registry,
        &[&image],
        Attachments {
            referrers: vec![Some(other)],
            signature: None,
            provenance: None,
        },
    )
    .await;
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key.public_key(),
        "cosign.pub",
    );
    assert!(passed(&checks), "{checks:#?}");
    assert_eq!(
        checks.len(),
        4,
        "the other referrer is no check: {checks:#?}"
    );
    assert!(registry
        .requests("GET", &format!("/blobs/{blob}"))
        .is_empty());
}

/// The fallback index is writable by anyone who can push: a referrer listed there whose own
/// subject is another image counts for nothing here, and says so.
#[tokio::test]
async fn a_listed_referrer_about_another_image_fails() {
    use crate::supply::referrers::{add_referrer, artifact_manifest};
    let registry = Registry::start(Config::default()).await;
    let key = key(7);
    let (_image, digest) = fully_attached(&registry, &key).await;
    let elsewhere =
        crate::image::manifest::Descriptor::new(OCI_MANIFEST, Digest::of(b"elsewhere"), 9);
    let artifact = in_toto_referrer(statement(&digest), &key);
    let built = artifact_manifest(&artifact, &elsewhere);
    registry.put_blob(REPO, &artifact.data);
    registry.put_blob(REPO, b"{}");
    registry.put_manifest(REPO, built.digest.as_str(), OCI_MANIFEST, &built.manifest);
    let tag = referrers_tag(&digest);
    let (_, index) = registry.manifest(REPO, &tag).unwrap();
    let index = add_referrer(Some(&index), &built.descriptor)
        .unwrap()
        .unwrap();
    registry.put_manifest(REPO, &tag, crate::media_types::OCI_INDEX, &index);
    let checks = verify(
        &evidence(&registry, ":v1").await,
        &key.public_key(),
        "cosign.pub",
    );
    assert_eq!(
        failure(&checks, Kind::Attestation),
        format!(
            "FAIL attestation {digest} (referrer {}): its subject is {}, not this image",
            built.digest,
            Digest::of(b"elsewhere")
        )
    );
}
