//! Every sink re-hashes the blobs it sends: a blob changed in place on disk (same size, so a
//! size check alone passes) must fail the sink with `DigestMismatch` and leave nothing behind.
//! Here: push to a registry (whole-blob and chunked uploads) and push of a saved tarball,
//! against a small registry on loopback that records every request it gets. The tarball and
//! layout sinks are tested beside their code in `src/layout/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocibuild_core::blob_store::BlobStore;
use ocibuild_core::digest::Digest;
use ocibuild_core::image::{render, AddedLayer, Image, RenderOptions};
use ocibuild_core::layer::Layer;
use ocibuild_core::layout::{load_tarball, save_tarball, SaveOptions};
use ocibuild_core::registry::push::{push, PushImage, PushOptions, PushTarget};
use ocibuild_core::registry::retry::RetryPolicy;
use ocibuild_core::registry::{progress, Credentials, Environment, Registries};
use ocibuild_core::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the registry saw and holds.
#[derive(Default)]
struct Seen {
    /// `METHOD path?query` of every request whose body arrived whole.
    requests: Vec<String>,
    /// Requests whose body ended before its Content-Length (the client gave up on it).
    cut_short: Vec<String>,
    /// Bytes received in PATCH bodies.
    patched: u64,
    uploads: HashMap<String, Vec<u8>>,
    blobs: HashMap<String, Vec<u8>>,
    manifests: Vec<String>,
}

struct TestRegistry {
    host: String,
    seen: Arc<Mutex<Seen>>,
}

impl TestRegistry {
    async fn start() -> TestRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, Arc::clone(&state)));
            }
        });
        TestRegistry { host, seen }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

/// One connection, requests in turn, until the client closes it or cuts a body short.
async fn serve(conn: TcpStream, seen: Arc<Mutex<Seen>>) {
    let mut conn = BufReader::new(conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match conn.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line),
            }
        }
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, target) = (
            first.next().unwrap_or_default().to_string(),
            first.next().unwrap_or_default().to_string(),
        );
        let length: usize = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if conn.read_exact(&mut body).await.is_err() {
            seen.lock()
                .unwrap()
                .cut_short
                .push(format!("{method} {target}"));
            return;
        }
        let response = answer(&method, &target, body, &seen);
        if conn.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The distribution API, as far as a push needs it.
fn answer(method: &str, target: &str, body: Vec<u8>, seen: &Mutex<Seen>) -> String {
    let mut seen = seen.lock().unwrap();
    seen.requests.push(format!("{method} {target}"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let reply = |status: &str, headers: &[(&str, String)]| {
        let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n");
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out + "\r\n"
    };
    let parts: Vec<&str> = path.trim_start_matches("/v2/").split('/').collect();
    match (method, parts.as_slice()) {
        ("HEAD", [repo, "blobs", digest]) => {
            let _ = repo;
            if seen.blobs.contains_key(*digest) {
                reply("200 OK", &[])
            } else {
                reply("404 Not Found", &[])
            }
        }
        ("POST", [repo, "blobs", "uploads", ""]) => {
            let id = format!("u{}", seen.uploads.len());
            seen.uploads.insert(id.clone(), Vec::new());
            let location = format!("/v2/{repo}/blobs/uploads/{id}");
            reply("202 Accepted", &[("Location", location)])
        }
        ("PATCH", [repo, "blobs", "uploads", id]) => {
            seen.patched += body.len() as u64;
            let held = seen.uploads.entry(id.to_string()).or_default();
            held.extend_from_slice(&body);
            let range = format!("0-{}", held.len().saturating_sub(1));
            let location = format!("/v2/{repo}/blobs/uploads/{id}");
            reply("202 Accepted", &[("Location", location), ("Range", range)])
        }
        ("PUT", [_, "blobs", "uploads", id]) => {
            let mut data = seen.uploads.remove(*id).unwrap_or_default();
            data.extend_from_slice(&body);
            let named = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("digest="))
                .unwrap_or_default()
                .replace("%3A", ":");
            if Digest::of(&data).as_str() != named {
                return reply("400 Bad Request", &[]);
            }
            seen.blobs.insert(named.clone(), data);
            reply("201 Created", &[("Docker-Content-Digest", named)])
        }
        ("PUT", [_, "manifests", reference]) => {
            seen.manifests.push(reference.to_string());
            let digest = Digest::of(&body).to_string();
            reply("201 Created", &[("Docker-Content-Digest", digest)])
        }
        _ => reply("404 Not Found", &[]),
    }
}

/// Bytes that look random enough, so nothing on the way can shrink them.
fn blob_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// An image with one layer whose blob is a file in `dir`.
fn image_with_layer(dir: &Path, len: usize) -> (Image, PathBuf) {
    let bytes = blob_bytes(len);
    let digest = Digest::of(&bytes);
    let path = dir.join(digest.hex());
    std::fs::write(&path, &bytes).unwrap();
    let image = Image {
        layers: vec![AddedLayer {
            layer: Layer {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                digest,
                diff_id: Digest::of(b"tar"),
                size: len as u64,
                blob: Some(path.clone()),
            },
            layer_type: None,
        }],
        ..Default::default()
    };
    (image, path)
}

/// Change one byte of a file in place: same size, different digest.
fn damage(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

async fn push_to(
    registry: &TestRegistry,
    images: &[PushImage],
    chunk_size: u64,
    cache: &Path,
) -> ocibuild_core::Result<Digest> {
    let registries = Registries::with_retry(RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    });
    let target = PushTarget::parse(&registry.host, "app:1", &[], Credentials::Anonymous)?;
    let opts = PushOptions {
        chunk_size,
        max_concurrency: 2,
        cache: BlobStore::open(cache)?,
        index: false,
        attach: Default::default(),
    };
    let env = Environment::from_pairs(Vec::new());
    let report = push(
        &registries,
        &env,
        images,
        &target,
        &opts,
        &progress::ignore(),
    )
    .await?;
    Ok(report.digest)
}

fn push_image(image: &Image) -> PushImage {
    let rendered = render(image, &RenderOptions { created: 0 }).unwrap();
    PushImage::from_source(&rendered).unwrap()
}

fn assert_mismatch(result: ocibuild_core::Result<Digest>, expected: &Digest) {
    match result {
        Err(Error::DigestMismatch { expected: e, .. }) => assert_eq!(e, expected.to_string()),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
}

const LAYER_LEN: usize = 1024 * 1024 + 123;

#[tokio::test]
async fn an_intact_image_is_pushed_whole_and_in_chunks() {
    for chunk_size in [64 << 20, 256 << 10] {
        let tmp = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start().await;
        let (image, _) = image_with_layer(tmp.path(), LAYER_LEN);
        let layer = image.layers[0].layer.digest.clone();
        let pushed = push_to(&registry, &[push_image(&image)], chunk_size, tmp.path())
            .await
            .unwrap();
        let seen = registry.seen();
        assert_eq!(seen.manifests, ["1"]);
        assert_eq!(seen.blobs[layer.as_str()].len(), LAYER_LEN);
        assert!(seen.cut_short.is_empty());
        assert_eq!(
            pushed,
            render(&image, &RenderOptions { created: 0 })
                .unwrap()
                .manifest_digest
        );
    }
}

#[tokio::test]
async fn a_whole_blob_upload_of_a_changed_blob_is_cut_short_and_nothing_is_tagged() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().await;
    let (image, blob) = image_with_layer(tmp.path(), LAYER_LEN);
    damage(&blob, LAYER_LEN / 2);
    let layer = image.layers[0].layer.digest.clone();
    let result = push_to(&registry, &[push_image(&image)], 64 << 20, tmp.path()).await;
    assert_mismatch(result, &layer);
    let seen = registry.seen();
    assert!(seen.manifests.is_empty(), "no manifest after a bad blob");
    assert!(!seen.blobs.contains_key(layer.as_str()));
    // The PUT carrying the blob never arrived whole: its last piece was withheld.
    let puts = |r: &&String| r.starts_with("PUT ") && r.contains(&layer.hex()[..16]);
    assert!(!seen.requests.iter().any(|r| puts(&r)));
    assert!(seen.cut_short.iter().any(|r| puts(&r)));
}

#[tokio::test]
async fn a_chunked_upload_of_a_changed_blob_never_sends_the_commit() {
    for at in [0, LAYER_LEN - 1] {
        let tmp = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start().await;
        let (image, blob) = image_with_layer(tmp.path(), LAYER_LEN);
        damage(&blob, at);
        let layer = image.layers[0].layer.digest.clone();
        let result = push_to(&registry, &[push_image(&image)], 256 << 10, tmp.path()).await;
        assert_mismatch(result, &layer);
        let seen = registry.seen();
        assert!(seen.manifests.is_empty(), "no manifest after a bad blob");
        assert!(!seen.blobs.contains_key(layer.as_str()));
        let commits = seen
            .requests
            .iter()
            .filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/"))
            .filter(|r| r.contains(&layer.hex()[..16]))
            .count();
        assert_eq!(commits, 0, "the PUT that commits the blob was sent");
        // The last chunk is read, and the blob checked, before that chunk is sent.
        assert!(seen.patched < LAYER_LEN as u64);
    }
}

#[tokio::test]
async fn a_saved_tarball_whose_blob_changed_after_loading_is_not_pushed() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = TestRegistry::start().await;
    let (image, _) = image_with_layer(tmp.path(), LAYER_LEN);
    let saved = tmp.path().join("image.tar.gz");
    let opts = SaveOptions {
        tag: Some("app:1".into()),
        ..Default::default()
    };
    save_tarball(std::slice::from_ref(&image), &saved, &opts).unwrap();
    let extract = tmp.path().join("extract");
    std::fs::create_dir(&extract).unwrap();
    let loaded = load_tarball(&saved, &extract).unwrap();
    let loaded_image = &loaded.images[0];
    let layer = &loaded_image.layers[0];
    damage(layer.blob.as_ref().unwrap(), 7);
    let push_image = PushImage::from_source(loaded_image).unwrap();
    for chunk_size in [64 << 20, 256 << 10] {
        let result = push_to(
            &registry,
            std::slice::from_ref(&push_image),
            chunk_size,
            tmp.path(),
        )
        .await;
        assert_mismatch(result, &layer.digest);
    }
    let seen = registry.seen();
    assert!(seen.manifests.is_empty());
    assert!(!seen.blobs.contains_key(layer.digest.as_str()));
}
