//! What a push attaches, through `push::push` on a registry without the referrers API (the
//! fallback tag): signed provenance as a referrer and in the `.att` image, appended on a
//! second push, not repeated on a third; without a key, the statement only.

use std::sync::Arc;

use serde_json::Value;

use super::fixtures::{Push, TestImage};
use super::oci::{Config, Registry};
use crate::digest::Digest;
use crate::registry::attach::Attachments;
use crate::supply::attestation::attestation_tag;
use crate::supply::dsse::{Envelope, IN_TOTO_PAYLOAD_TYPE};
use crate::supply::provenance::{ImageFacts, ProvenanceInput};
use crate::supply::referrers::referrers_tag;
use crate::supply::signing::SigningKey;

fn key() -> Arc<SigningKey> {
    Arc::new(crate::supply::signing::test_keys::key(9))
}

fn input(tags: &[&str]) -> Arc<ProvenanceInput> {
    Arc::new(ProvenanceInput {
        release_name: "mono".into(),
        release_version: "1".into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        images: vec![ImageFacts::default()],
        source_date_epoch: Some(0),
        ..Default::default()
    })
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The envelopes in the `.att` image of `subject`, each verified with `key`.
fn attestations(registry: &Registry, subject: &Digest, key: &SigningKey) -> Vec<Envelope> {
    let (_, manifest) = registry
        .manifest("app/mono", &attestation_tag(subject))
        .expect("an .att manifest");
    json(&manifest)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let digest = Digest::parse(layer["digest"].as_str().unwrap()).unwrap();
            let envelope = Envelope::parse(&registry.blob("app/mono", &digest).unwrap()).unwrap();
            assert!(envelope.verified_by(&key.public_key()));
            assert_eq!(envelope.payload_type, IN_TOTO_PAYLOAD_TYPE);
            envelope
        })
        .collect()
}

#[tokio::test]
async fn signed_provenance_goes_to_a_referrer_and_the_att_image_appended_once() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[1024], 3);
    let key = key();
    let attach = |tags: &[&str]| Attachments {
        referrers: Vec::new(),
        signature: Some(key.clone()),
        provenance: Some(input(tags)),
    };
    let first = Push::new()
        .attach(attach(&["mono:1"]))
        .run(&registry, "app/mono:1", &[image.push_image()])
        .await
        .unwrap();
    let subject = image.digest();
    let attached = &first.attached.provenance;
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].subject, subject);
    assert_eq!(
        attached[0].attestation_tag.as_deref(),
        Some(attestation_tag(&subject).as_str())
    );
    let referrer = attached[0].referrer.clone().expect("a referrer");
    assert!(!referrer.api, "this registry has no referrers API");
    let statement = json(&attached[0].statement);
    assert_eq!(
        statement["subject"][0]["name"],
        format!("{}/app/mono", registry.addr())
    );
    assert_eq!(statement["subject"][0]["digest"]["sha256"], subject.hex());

    // The .att image: one envelope, whose payload is the reported statement.
    let envelopes = attestations(&registry, &subject, &key);
    assert_eq!(envelopes.len(), 1);
    assert_eq!(envelopes[0].payload, attached[0].statement);
    // The referrer: listed in the fallback index, carrying the same envelope.
    let (_, index) = registry
        .manifest("app/mono", &referrers_tag(&subject))
        .unwrap();
    let listed = json(&index)["manifests"].clone();
    assert_eq!(listed[0]["artifactType"], IN_TOTO_PAYLOAD_TYPE);
    assert_eq!(listed[0]["digest"], referrer.digest.as_str());
    let (_, artifact) = registry
        .manifest("app/mono", referrer.digest.as_str())
        .unwrap();
    let artifact = json(&artifact);
    assert_eq!(artifact["subject"]["digest"], subject.as_str());
    assert_eq!(
        artifact["annotations"]["in-toto.io/predicate-type"],
        "https://slsa.dev/provenance/v1"
    );
    let blob = Digest::parse(artifact["layers"][0]["digest"].as_str().unwrap()).unwrap();
    assert_eq!(
        Envelope::parse(&registry.blob("app/mono", &blob).unwrap()).unwrap(),
        envelopes[0]
    );
    // The image signature is there too, on its own tag.
    assert!(registry
        .manifest("app/mono", &format!("{}.sig", referrers_tag(&subject)))
        .is_some());

    // Another statement for the same image is appended; the first stays first.
    Push::new()
        .attach(attach(&["mono:1", "mono:latest"]))
        .run(&registry, "app/mono:1", &[image.push_image()])
        .await
        .unwrap();
    let two = attestations(&registry, &subject, &key);
    assert_eq!(two.len(), 2);
    assert_eq!(two[0], envelopes[0]);
    assert_eq!(
        json(&two[1].payload)["predicate"]["buildDefinition"]["externalParameters"]["tags"],
        serde_json::json!(["mono:1", "mono:latest"])
    );
    // The same statement again (reproducible, deterministic signature) adds nothing.
    Push::new()
        .attach(attach(&["mono:1", "mono:latest"]))
        .run(&registry, "app/mono:1", &[image.push_image()])
        .await
        .unwrap();
    assert_eq!(attestations(&registry, &subject, &key).len(), 2);
    let (_, index) = registry
        .manifest("app/mono", &referrers_tag(&subject))
        .unwrap();
    assert_eq!(json(&index)["manifests"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn without_a_key_the_statement_is_reported_and_nothing_attached() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[512], 4);
    let report = Push::new()
        .attach(Attachments {
            provenance: Some(input(&["mono:1"])),
            ..Default::default()
        })
        .run(&registry, "app/mono:1", &[image.push_image()])
        .await
        .unwrap();
    let p = &report.attached.provenance;
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].referrer, None);
    assert_eq!(p[0].attestation_tag, None);
    assert_eq!(
        json(&p[0].statement)["subject"][0]["digest"]["sha256"],
        image.digest().hex()
    );
    assert!(registry
        .manifest("app/mono", &attestation_tag(&image.digest()))
        .is_none());
    assert!(registry
        .manifest("app/mono", &referrers_tag(&image.digest()))
        .is_none());
}
