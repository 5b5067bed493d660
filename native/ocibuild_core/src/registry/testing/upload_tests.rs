//! Pushing blobs: monolithic and chunked uploads (exact chunk sizes, the registry's minimum),
//! the 416 fallback, resuming after a connection reset, cross-repository mounts, retries
//! (5xx, 429 with `Retry-After`), and failures that must leave no tag.

use std::time::Duration;

use super::fixtures::{base_source, Push, TestImage};
use super::oci::{Action, Config, Fault, Registry};
use crate::registry::Credentials;
use crate::Error;

const KIB: usize = 1024;

/// The `Content-Range` of every PATCH the registry got, in order.
fn patch_ranges(registry: &Registry) -> Vec<String> {
    registry
        .requests("PATCH", "/blobs/uploads/")
        .iter()
        .map(|r| r.header("content-range").unwrap_or("-").to_string())
        .collect()
}

// A blob under the chunk size goes up in one PUT on the session the POST opened.
#[tokio::test]
async fn small_blobs_go_up_in_one_put_each() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[300 * KIB, 10 * KIB], 1);
    let report = Push::new()
        .run(&registry, "app/mono:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "app/mono", "1");
    assert_eq!(report.digest, image.digest());
    assert_eq!(
        (report.uploaded, report.existing, report.mounted),
        (3, 0, 0)
    );
    let total: usize = image.config.len() + 310 * KIB;
    assert_eq!(report.uploaded_bytes, total as u64);
    assert!(registry.requests("PATCH", "/").is_empty());
    let puts = registry.requests("PUT", "/blobs/uploads/");
    assert_eq!(puts.len(), 3);
    for put in puts {
        // The session's own query is kept, the digest appended.
        assert!(put.target.contains("?_state=s"), "{}", put.target);
        assert!(put.target.contains("&digest=sha256%3A"), "{}", put.target);
    }
    assert_eq!(registry.requests("POST", "/blobs/uploads/").len(), 3);
}

// A blob at or over the chunk size goes up in PATCHes of exactly that size (the last one
// shorter), each starting where the registry said the last ended, then an empty PUT.
#[tokio::test]
async fn large_blobs_go_up_in_chunks_of_the_chunk_size() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[4 * 256 * KIB + 5], 2);
    let report = Push::new()
        .chunked(256 * KIB as u64)
        .run(&registry, "app/chunks:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "app/chunks", "1");
    assert_eq!(
        patch_ranges(&registry),
        [
            "0-262143",
            "262144-524287",
            "524288-786431",
            "786432-1048575",
            "1048576-1048580"
        ]
    );
    let sizes: Vec<usize> = registry
        .requests("PATCH", "/blobs/uploads/")
        .iter()
        .map(|r| r.body.len())
        .collect();
    assert_eq!(sizes, [262144, 262144, 262144, 262144, 5]);
    let layer_put = registry
        .requests("PUT", "/blobs/uploads/")
        .into_iter()
        .find(|r| r.target.contains(image.layer_digest(0).hex()))
        .unwrap();
    assert!(layer_put.body.is_empty());
    assert_eq!(
        report.uploaded_bytes,
        (image.config.len() + image.layers[0].len()) as u64
    );
}

// `OCI-Chunk-Min-Length` raises a smaller chunk size to the registry's minimum.
#[tokio::test]
async fn chunks_are_at_least_the_registry_minimum() {
    let registry = Registry::start(Config {
        chunk_min: Some(300_000),
        ..Config::default()
    })
    .await;
    let image = TestImage::new(&[700_000], 3);
    Push::new()
        .chunked(100_000)
        .run(&registry, "app/min:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "app/min", "1");
    assert_eq!(
        patch_ranges(&registry),
        ["0-299999", "300000-599999", "600000-699999"]
    );
}

// A registry that refuses a chunk with 416 gets the blob again in one PUT on a new session.
#[tokio::test]
async fn a_416_on_a_chunk_falls_back_to_one_put() {
    let registry = Registry::start(Config::default()).await;
    registry.inject(
        Fault::status("416 Range Not Satisfiable")
            .on("PATCH", "/blobs/uploads/")
            .times(2..=2),
    );
    let image = TestImage::new(&[600 * KIB], 4);
    Push::new()
        .chunked(256 * KIB as u64)
        .run(&registry, "app/range:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "app/range", "1");
    assert_eq!(registry.fired(), 1);
    assert_eq!(patch_ranges(&registry), ["0-262143", "262144-524287"]);
    let whole = registry
        .requests("PUT", "/blobs/uploads/")
        .into_iter()
        .filter(|r| r.body == image.layers[0])
        .count();
    assert_eq!(whole, 1, "one monolithic PUT of the whole layer");
}

// A connection reset halfway through a chunk: the client asks the session where it stands
// (GET on the upload URL) and carries on from the last acknowledged byte, not from zero.
#[tokio::test]
async fn a_reset_mid_chunk_resumes_from_the_registry_offset() {
    let registry = Registry::start(Config::default()).await;
    registry.inject(
        Fault::new(Action::ResetMidBody)
            .on("PATCH", "/blobs/uploads/")
            .times(2..=2),
    );
    let image = TestImage::new(&[3 * 256 * KIB], 5);
    Push::new()
        .chunked(256 * KIB as u64)
        .run(&registry, "app/reset:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "app/reset", "1");
    assert_eq!(registry.fired(), 1);
    assert_eq!(
        patch_ranges(&registry),
        [
            "0-262143",
            "262144-524287",
            "262144-524287",
            "524288-786431"
        ]
    );
    // Half of the reset chunk arrived before the reset.
    let reset = &registry.requests("PATCH", "/blobs/uploads/")[1];
    assert_eq!(reset.body.len(), 128 * KIB);
    assert_eq!(registry.requests("GET", "/blobs/uploads/").len(), 1);
}

// A reset of the very first chunk: distribution's `Range: 0-0` then means "nothing yet",
// and the upload starts again at byte 0.
#[tokio::test]
async fn a_reset_first_chunk_starts_again_at_zero() {
    let registry = Registry::start(Config::default()).await;
    registry.inject(
        Fault::new(Action::ResetMidBody)
            .on("PATCH", "/blobs/uploads/")
            .times(1..=1),
    );
    let image = TestImage::new(&[2 * 256 * KIB], 6);
    Push::new()
        .chunked(256 * KIB as u64)
        .run(&registry, "app/reset0:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "app/reset0", "1");
    assert_eq!(
        patch_ranges(&registry),
        ["0-262143", "0-262143", "262144-524287"]
    );
}

// 503 on HEADs, 502 on a chunk, 500 on the manifest PUT: each is retried (quickly, as no
// Retry-After was sent) and the push ends with the same digest.
#[tokio::test]
async fn server_errors_are_retried() {
    let registry = Registry::start(Config::default()).await;
    registry.inject(
        Fault::status("503 Service Unavailable")
            .on("HEAD", "/blobs/")
            .times(1..=2),
    );
    registry.inject(
        Fault::status("502 Bad Gateway")
            .on("PATCH", "/blobs/uploads/")
            .times(1..=1),
    );
    registry.inject(
        Fault::status("500 Internal Server Error")
            .on("PUT", "/manifests/")
            .times(1..=1),
    );
    let image = TestImage::new(&[600 * KIB], 7);
    let started = std::time::Instant::now();
    let report = Push::new()
        .chunked(256 * KIB as u64)
        .run(&registry, "app/five:1", &[image.push_image()])
        .await
        .unwrap();
    assert_eq!(report.digest, image.digest());
    image.assert_in(&registry, "app/five", "1");
    assert_eq!(registry.fired(), 4);
    // The policy waits milliseconds; a wait of seconds would mean a Retry-After was made up.
    assert!(started.elapsed() < Duration::from_secs(10));
}

// A 429 with `Retry-After: 1`: the same request comes back no sooner than a second later.
#[tokio::test]
async fn a_429_waits_as_long_as_retry_after_says() {
    let registry = Registry::start(Config::default()).await;
    registry.inject(
        Fault::status("429 Too Many Requests")
            .retry_after("1")
            .on("PUT", "/manifests/")
            .times(1..=1),
    );
    let image = TestImage::new(&[KIB], 8);
    Push::new()
        .run(&registry, "app/busy:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "app/busy", "1");
    let puts = registry.requests("PUT", "/manifests/");
    assert_eq!(puts.len(), 2);
    let waited = puts[1].when.duration_since(puts[0].when);
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
}

// Every blob upload fails: the push is an error, and no manifest is put, so no tag points at
// a broken image.
#[tokio::test]
async fn a_failed_upload_leaves_no_tag() {
    let registry = Registry::start(Config::default()).await;
    registry.inject(Fault::status("500 Internal Server Error").on("PUT", "/blobs/uploads/"));
    registry.inject(Fault::status("500 Internal Server Error").on("PATCH", "/blobs/uploads/"));
    let image = TestImage::new(&[600 * KIB], 9);
    let result = Push::new()
        .chunked(256 * KIB as u64)
        .run(&registry, "app/failed:1", &[image.push_image()])
        .await;
    assert!(
        matches!(result, Err(Error::Registry { status: 500, .. })),
        "{result:?}"
    );
    assert!(registry.requests("PUT", "/manifests/").is_empty());
    assert!(registry.manifest("app/failed", "1").is_none());
}

// An upload session answer without `Location` is a tagged error naming what is missing,
// not a hang or a panic.
#[tokio::test]
async fn an_upload_without_location_is_a_tagged_error() {
    let registry = Registry::start(Config::default()).await;
    registry.inject(Fault::new(Action::NoLocation).on("POST", "/blobs/uploads/"));
    let image = TestImage::new(&[KIB], 10);
    let result = Push::new()
        .run(&registry, "app/noloc:1", &[image.push_image()])
        .await;
    match result {
        Err(Error::Registry {
            status: 202,
            message,
            ..
        }) => assert!(message.contains("Location"), "{message}"),
        other => panic!("expected a registry error, got {other:?}"),
    }
    assert!(registry.manifest("app/noloc", "1").is_none());
}

// The same image again: every blob is there (HEAD), nothing is sent but the manifest.
#[tokio::test]
async fn a_re_push_sends_no_blob() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[300 * KIB, 10 * KIB], 11);
    let push = Push::new();
    push.run(&registry, "app/again:1", &[image.push_image()])
        .await
        .unwrap();
    let before = registry.seen().len();
    let report = push
        .run(&registry, "app/again:2", &[image.push_image()])
        .await
        .unwrap();
    assert_eq!(
        (report.uploaded, report.existing, report.uploaded_bytes),
        (0, 3, 0)
    );
    let methods: Vec<String> = registry.seen()[before..]
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["HEAD", "HEAD", "HEAD", "PUT"]);
    image.assert_in(&registry, "app/again", "2");
}

// Base layers in another repository of the same registry are mounted: no bytes sent.
#[tokio::test]
async fn base_layers_are_mounted_from_their_repository() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[300 * KIB, 200 * KIB], 12);
    image.seed(&registry, "base/img", "1");
    let source = base_source(&registry, "base/img", Credentials::Anonymous);
    let report = Push::new()
        .run(
            &registry,
            "app/derived:1",
            &[image.push_image_on_base(&source)],
        )
        .await
        .unwrap();
    image.assert_in(&registry, "app/derived", "1");
    assert_eq!((report.mounted, report.uploaded), (2, 1));
    assert_eq!(report.uploaded_bytes, image.config.len() as u64);
    let mounts = registry
        .requests("POST", "/v2/app/derived/blobs/uploads/")
        .into_iter()
        .filter(|r| r.target.contains("mount=") && r.target.contains("from=base%2Fimg"))
        .count();
    assert_eq!(mounts, 2);
    assert!(registry.requests("GET", "/blobs/").is_empty());
}

// A registry that declines the mount opens an upload session instead: the base layer is
// fetched from its repository and sent into that session, with no second POST.
#[tokio::test]
async fn a_declined_mount_uploads_into_the_session_it_opened() {
    let registry = Registry::start(Config {
        no_mounts: true,
        ..Config::default()
    })
    .await;
    let image = TestImage::new(&[300 * KIB], 13);
    image.seed(&registry, "base/img", "1");
    let source = base_source(&registry, "base/img", Credentials::Anonymous);
    let push = Push::new();
    let report = push
        .run(
            &registry,
            "app/declined:1",
            &[image.push_image_on_base(&source)],
        )
        .await
        .unwrap();
    image.assert_in(&registry, "app/declined", "1");
    assert_eq!((report.mounted, report.uploaded), (0, 2));
    // One POST per blob: the layer's mount attempt, the config's session.
    assert_eq!(registry.requests("POST", "/blobs/uploads/").len(), 2);
    let layer = image.layer_digest(0);
    let fetched = registry.requests("GET", &format!("/v2/base/img/blobs/{layer}"));
    assert_eq!(fetched.len(), 1);
    assert!(push.cache().contains(&layer), "the base layer is cached");
}

// A registry that lost a monolithic upload's session (404 on the PUT) gets a fresh session
// and the blob again.
#[tokio::test]
async fn a_lost_upload_session_is_opened_again() {
    let registry = Registry::start(Config::default()).await;
    registry.inject(
        Fault::status("404 Not Found")
            .on("PUT", "/blobs/uploads/")
            .times(1..=1),
    );
    let image = TestImage::new(&[100 * KIB], 14);
    Push::new()
        .run(&registry, "app/lost:1", &[image.push_image()])
        .await
        .unwrap();
    image.assert_in(&registry, "app/lost", "1");
    assert_eq!(registry.fired(), 1);
    // Two blobs, and one of them needed a second session.
    assert_eq!(registry.requests("POST", "/blobs/uploads/").len(), 3);
}

// One image or an index is decided by the push alone: one image is put as a manifest under
// its tag unless the caller asked for an index (0.10's push_multi), which lists it alone.
#[tokio::test]
async fn one_image_is_a_manifest_unless_an_index_is_asked_for() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[20 * KIB], 17);
    let mut push = image.push_image();
    push.platform = Some(crate::image::Platform {
        os: "linux".into(),
        architecture: "arm64".into(),
        variant: None,
    });
    let plain = Push::new()
        .run(&registry, "app/one:1", std::slice::from_ref(&push))
        .await
        .unwrap();
    image.assert_in(&registry, "app/one", "1");
    assert_eq!(plain.digest, image.digest());

    let report = Push::new()
        .index()
        .run(&registry, "app/one:2", &[push])
        .await
        .unwrap();
    let (media_type, index) = registry.manifest("app/one", "2").unwrap();
    assert_eq!(media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(report.digest, crate::digest::Digest::of(&index));
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let listed: Vec<(&str, &str)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(image.digest().as_str(), "arm64")]);
    image.assert_in(&registry, "app/one", image.digest().as_str());
}

// Several platforms: every blob first, then each manifest by digest, then the index under
// the tag, so the tag never names an index whose manifests are missing.
#[tokio::test]
async fn a_multi_platform_push_puts_the_index_last() {
    let registry = Registry::start(Config::default()).await;
    let amd64 = TestImage::new(&[50 * KIB], 15);
    let arm64 = TestImage::new(&[60 * KIB], 16);
    let images: Vec<_> = [(&amd64, "amd64"), (&arm64, "arm64")]
        .into_iter()
        .map(|(image, arch)| {
            let mut push = image.push_image();
            push.platform = Some(crate::image::Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: None,
            });
            push
        })
        .collect();
    let report = Push::new()
        .run(&registry, "app/multi:1", &images)
        .await
        .unwrap();
    let (media_type, index) = registry.manifest("app/multi", "1").unwrap();
    assert_eq!(media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(report.digest, crate::digest::Digest::of(&index));
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let listed: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["digest"].as_str().unwrap().to_string(),
                m["platform"]["architecture"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (amd64.digest().to_string(), "amd64".to_string()),
            (arm64.digest().to_string(), "arm64".to_string())
        ]
    );
    amd64.assert_in(&registry, "app/multi", amd64.digest().as_str());
    arm64.assert_in(&registry, "app/multi", arm64.digest().as_str());
    let order: Vec<String> = registry
        .seen()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.target.rsplit('/').next().unwrap().to_string())
        .collect();
    let tag_at = order.iter().position(|t| t == "1").unwrap();
    assert_eq!(tag_at, order.len() - 1, "{order:?}");
    assert!(
        order[..tag_at]
            .iter()
            .filter(|t| t.starts_with("sha256:"))
            .count()
            >= 2
    );
}
