//! Each kind of image source through each sink: a built image on a pulled base (its layer
//! still in the registry until a sink needs it) and a loaded tarball, written as a tarball,
//! as a layout directory and planned for a push. The base registry is in-process and counts
//! what it serves, so "lazily, once" is checked exactly.

use std::path::Path;

use serde_json::json;

use super::{export_sources_while, load_tarball, render_all, save_sources_while};
use super::{SaveFormat, SaveOptions, Wanted};
use crate::blob_store::BlobStore;
use crate::digest::Digest;
use crate::image::{AddedLayer, Image, ImageSource};
use crate::layer::Layer;
use crate::media_types::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use crate::registry::pull::{self, fetch_remote_layers, PlatformChoice};
use crate::registry::push::{BlobData, PushImage};
use crate::registry::testing::{Reply, Server};
use crate::registry::{progress, Credentials, Environment, Reference, Registries};

/// A base image `base:1` with one layer, as a registry serves it.
struct Base {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layer: Vec<u8>,
}

impl Base {
    fn new() -> Base {
        let layer = b"base layer bytes, not really gzip".to_vec();
        let diff_id = Digest::of(b"base tar");
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id.as_str()]}
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": Digest::of(&config).as_str(), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": Digest::of(&layer).as_str(), "size": layer.len()}]
        }))
        .unwrap();
        Base {
            manifest,
            config,
            layer,
        }
    }

    fn layer_digest(&self) -> Digest {
        Digest::of(&self.layer)
    }

    async fn serve(&self) -> Server {
        let blobs = [
            (Digest::of(&self.config), self.config.clone()),
            (self.layer_digest(), self.layer.clone()),
        ];
        let manifest = self.manifest.clone();
        Server::start("127.0.0.1", move |req| {
            if req.method != "GET" {
                return Reply::status("405 Method Not Allowed");
            }
            if req.target == "/v2/base/manifests/1" {
                return Reply::status("200 OK")
                    .header("Content-Type", OCI_MANIFEST)
                    .body(manifest.clone());
            }
            for (digest, bytes) in &blobs {
                if req.target == format!("/v2/base/blobs/{digest}") {
                    return Reply::status("200 OK").body(bytes.clone());
                }
            }
            Reply::status("404 Not Found")
        })
        .await
    }
}

fn layer_gets(server: &Server, digest: &Digest) -> usize {
    let target = format!("/v2/base/blobs/{digest}");
    server.seen().iter().filter(|s| s.target == target).count()
}

/// Our layer on top of the base: a blob on disk.
fn added_layer(dir: &Path) -> AddedLayer {
    let bytes = b"our layer".to_vec();
    let digest = Digest::of(&bytes);
    let path = dir.join(digest.hex());
    std::fs::write(&path, &bytes).unwrap();
    AddedLayer {
        layer: Layer {
            media_type: OCI_LAYER_GZIP.into(),
            digest,
            diff_id: Digest::of(b"our tar"),
            size: bytes.len() as u64,
            blob: Some(path),
        },
        layer_type: Some("app".into()),
    }
}

fn blob_kinds(source: &ImageSource) -> Vec<&'static str> {
    PushImage::from_source(source)
        .unwrap()
        .blobs
        .iter()
        .map(|b| match b.data {
            BlobData::Bytes(_) => "bytes",
            BlobData::File(_) => "file",
            BlobData::Base(_) => "base",
        })
        .collect()
}

#[tokio::test]
async fn every_source_goes_through_every_sink_and_base_layers_are_fetched_once_when_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let base = Base::new();
    let server = base.serve().await;
    let registries = Registries::new();
    let env = Environment::from_pairs(Vec::new());
    let reference = Reference::parse(&format!("{}/base:1", server.addr)).unwrap();
    let pulled = pull::pull(
        &registries,
        &env,
        &reference,
        &Credentials::Anonymous,
        &PlatformChoice::default(),
        &progress::ignore(),
    )
    .await
    .unwrap();
    let image = Image {
        base: Some(pulled[0].base.clone()),
        layers: vec![added_layer(tmp.path())],
        ..Default::default()
    };
    let opts = SaveOptions {
        tag: Some("app:1".into()),
        format: SaveFormat::Docker,
        created: 0,
    };

    // A built image: its base layer is remote until a sink asks for it.
    let mut built = render_all(std::slice::from_ref(&image), &opts).unwrap();
    assert_eq!(built[0].remote_layers().count(), 1);
    assert_eq!(blob_kinds(&built[0]), ["bytes", "base", "file"]);
    assert_eq!(
        layer_gets(&server, &base.layer_digest()),
        0,
        "pulled lazily"
    );

    let cache = BlobStore::open(tmp.path().join("cache")).unwrap();
    let ignore = progress::ignore();
    fetch_remote_layers(&registries, &env, &mut built, &cache, 2, &ignore)
        .await
        .unwrap();
    assert_eq!(built[0].remote_layers().count(), 0);
    assert_eq!(layer_gets(&server, &base.layer_digest()), 1);

    // Built → tarball, read back: the same manifest, every layer's bytes as they were.
    let saved = tmp.path().join("built.tar.gz");
    save_sources_while(&built, &saved, &opts, Wanted::always()).unwrap();
    let extract = tmp.path().join("extract");
    std::fs::create_dir(&extract).unwrap();
    let loaded = load_tarball(&saved, &extract).unwrap();
    let from_tarball = &loaded.images[0];
    assert_eq!(from_tarball.manifest_digest, built[0].manifest_digest);
    assert_eq!(from_tarball.media_type, OCI_MANIFEST);
    let base_blob = from_tarball.layers[0].blob.as_ref().unwrap();
    assert_eq!(std::fs::read(base_blob).unwrap(), base.layer);

    // Built again → directory: the base layer comes from the cache, not the registry.
    let mut again = render_all(std::slice::from_ref(&image), &opts).unwrap();
    fetch_remote_layers(&registries, &env, &mut again, &cache, 2, &ignore)
        .await
        .unwrap();
    assert_eq!(layer_gets(&server, &base.layer_digest()), 1, "fetched once");
    let dir = tmp.path().join("layout");
    export_sources_while(&again, &dir, &opts, Wanted::always()).unwrap();
    let blob = dir.join("blobs/sha256").join(base.layer_digest().hex());
    assert_eq!(std::fs::read(blob).unwrap(), base.layer);

    // A loaded tarball is a source like any other: pushed and re-saved with its bytes as saved.
    assert_eq!(blob_kinds(from_tarball), ["bytes", "file", "file"]);
    let resaved = tmp.path().join("resaved.tar");
    let oci = SaveOptions {
        format: SaveFormat::Oci,
        ..opts.clone()
    };
    save_sources_while(
        std::slice::from_ref(from_tarball),
        &resaved,
        &oci,
        Wanted::always(),
    )
    .unwrap();
    let extract2 = tmp.path().join("extract2");
    std::fs::create_dir(&extract2).unwrap();
    let reloaded = load_tarball(&resaved, &extract2).unwrap();
    assert_eq!(reloaded.images[0].manifest, from_tarball.manifest);
    assert_eq!(reloaded.tag.as_deref(), Some("app:1"));
}

#[test]
fn a_sink_given_a_remote_layer_it_was_not_allowed_to_fetch_reports_it_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = Base::new();
    let mut source = ImageSource {
        manifest: base.manifest.clone(),
        manifest_digest: Digest::of(&base.manifest),
        media_type: OCI_MANIFEST.into(),
        config: base.config.clone(),
        config_digest: Digest::of(&base.config),
        layers: vec![Layer {
            media_type: OCI_LAYER_GZIP.into(),
            digest: base.layer_digest(),
            diff_id: Digest::of(b"base tar"),
            size: base.layer.len() as u64,
            blob: None,
        }],
        platform: None,
        annotations: Default::default(),
        remote: None,
    };
    let out = tmp.path().join("out.tar");
    let result = save_sources_while(
        std::slice::from_ref(&source),
        &out,
        &SaveOptions::default(),
        Wanted::always(),
    );
    assert!(matches!(result, Err(crate::Error::BlobMissing(_))));
    assert!(!out.exists());
    source.remote = None;
    assert!(PushImage::from_source(&source).is_err());
}
