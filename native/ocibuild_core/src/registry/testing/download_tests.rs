//! Pulling and downloading: a pull reads manifest and config only; a pinned digest is checked
//! against the bytes served; base layers go into the verified cache, a cut download resumes
//! with `Range`, wrong bytes are never cached, and a corrupt cache entry is fetched again.

use super::fixtures::{fetch, pull, registries, store, TestImage};
use super::oci::{Action, Config, Fault, Registry};
use crate::registry::Credentials;
use crate::Error;

#[tokio::test]
async fn a_pull_reads_the_manifest_and_config_only() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[200 * 1024, 1024], 30);
    image.seed(&registry, "base/img", "1");
    let pulled = pull(
        &registries(),
        &registry,
        "base/img:1",
        &Credentials::Anonymous,
    )
    .await
    .unwrap();
    let base = &pulled[0].base;
    assert_eq!(base.manifest, image.manifest);
    assert_eq!(base.manifest_digest, image.digest());
    assert_eq!(base.config, image.config);
    assert_eq!(base.layers.len(), 2);
    assert!(base.layers.iter().all(|l| l.blob.is_none()));
    let blob_gets = registry.requests("GET", "/blobs/");
    assert_eq!(blob_gets.len(), 1, "the config only");
    // By digest, and by tag and digest, the same image.
    let by_digest = pull(
        &registries(),
        &registry,
        &format!("base/img@{}", image.digest()),
        &Credentials::Anonymous,
    )
    .await
    .unwrap();
    assert_eq!(by_digest[0].base.manifest_digest, image.digest());
}

// A reference that pins a digest is checked against the bytes served, not the header.
#[tokio::test]
async fn a_pinned_digest_is_checked_against_the_bytes() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[1024], 31);
    image.seed(&registry, "base/img", "1");
    registry.inject(Fault::new(Action::Corrupt).on("GET", "/manifests/"));
    let result = pull(
        &registries(),
        &registry,
        &format!("base/img@{}", image.digest()),
        &Credentials::Anonymous,
    )
    .await;
    match result {
        Err(Error::DigestMismatch { expected, .. }) => {
            assert_eq!(expected, image.digest().to_string())
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
}

// A connection reset before the answer is retried like any connection failure.
#[tokio::test]
async fn a_reset_before_the_answer_is_retried() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[1024], 32);
    image.seed(&registry, "base/img", "1");
    registry.inject(
        Fault::new(Action::Reset)
            .on("GET", "/manifests/")
            .times(1..=2),
    );
    let pulled = pull(
        &registries(),
        &registry,
        "base/img:1",
        &Credentials::Anonymous,
    )
    .await
    .unwrap();
    assert_eq!(pulled[0].base.manifest_digest, image.digest());
    assert_eq!(registry.requests("GET", "/manifests/").len(), 3);
}

// Fetched once into the store, verified; a second fetch uses the cache.
#[tokio::test]
async fn a_fetched_blob_is_cached() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[300 * 1024], 33);
    image.seed(&registry, "base/img", "1");
    let (_dir, store) = store();
    let regs = registries();
    let path = fetch(&regs, &registry, "base/img", &image.layers[0], &store)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), image.layers[0]);
    let again = fetch(&regs, &registry, "base/img", &image.layers[0], &store)
        .await
        .unwrap();
    assert_eq!(again, path);
    assert_eq!(registry.requests("GET", "/blobs/").len(), 1);
}

// A download cut halfway continues with `Range: bytes=N-` from the byte it stopped at; the
// 206 answer carries only the rest.
#[tokio::test]
async fn a_cut_download_resumes_where_it_stopped() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[1024 * 1024], 34);
    image.seed(&registry, "base/img", "1");
    let layer = image.layer_digest(0);
    registry.inject(
        Fault::new(Action::CutBody)
            .on("GET", format!("/blobs/{layer}"))
            .times(1..=1),
    );
    let (_dir, store) = store();
    let path = fetch(
        &registries(),
        &registry,
        "base/img",
        &image.layers[0],
        &store,
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), image.layers[0]);
    let gets = registry.requests("GET", &format!("/blobs/{layer}"));
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(gets[1].header("range"), Some("bytes=524288-"));
}

// Bytes that do not hash to the digest: a digest mismatch, and nothing in the store, not
// even a temporary file.
#[tokio::test]
async fn wrong_bytes_are_never_cached() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[100 * 1024], 35);
    image.seed(&registry, "base/img", "1");
    registry.inject(Fault::new(Action::Corrupt).on("GET", "/blobs/"));
    let (dir, store) = store();
    let result = fetch(
        &registries(),
        &registry,
        "base/img",
        &image.layers[0],
        &store,
    )
    .await;
    assert!(
        matches!(result, Err(Error::DigestMismatch { .. })),
        "{result:?}"
    );
    assert!(!store.contains(&image.layer_digest(0)));
    let left: Vec<_> = walk(dir.path())
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

// A cache entry that no longer matches its digest is discarded and fetched again.
#[tokio::test]
async fn a_corrupt_cache_entry_is_fetched_again() {
    let registry = Registry::start(Config::default()).await;
    let image = TestImage::new(&[100 * 1024], 36);
    image.seed(&registry, "base/img", "1");
    let (_dir, store) = store();
    let regs = registries();
    let path = fetch(&regs, &registry, "base/img", &image.layers[0], &store)
        .await
        .unwrap();
    std::fs::write(&path, b"not the layer").unwrap();
    let path = fetch(&regs, &registry, "base/img", &image.layers[0], &store)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), image.layers[0]);
    assert_eq!(registry.requests("GET", "/blobs/").len(), 2);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
