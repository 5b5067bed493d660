//! The SBOM an ocibuild image carries inside itself: `/sbom.spdx.json`, alone in the image's
//! last layer (`supply::sbom::SBOM_PATH`). The verifier compares the SBOM referrer with it,
//! so this reads that one file out of a layer blob (tar, gzip or zstd), with every size
//! bounded: the layer is untrusted.

use std::io::Read;

use crate::media_types::{DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use crate::supply::verify::spdx::MAX_SPDX_BYTES;

/// The SBOM layer holds one small file; a last layer larger than this is not one (a release
/// layer), and is not fetched.
pub const MAX_SBOM_LAYER_BYTES: u64 = 16 << 20;

/// The path of the SBOM inside the layer, as tar spells it (no leading `/`).
const SBOM_MEMBER: &str = "sbom.spdx.json";
/// A tar of a single small file has few entries; more means this is not the SBOM layer.
const MAX_ENTRIES: usize = 64;

/// `/sbom.spdx.json` from a layer blob of `media_type`: `Ok(None)` when the layer does not
/// hold it (or is of a media type that is not a tar), `Err` when the layer is corrupt.
pub fn sbom_in_layer(media_type: &str, blob: &[u8]) -> Result<Option<Vec<u8>>, String> {
    // At most the document's cap plus tar's headers come out of a decoder: a small
    // compressed layer must not expand without bound.
    let bound = MAX_SPDX_BYTES as u64 + (1 << 20);
    let reader: Box<dyn Read + '_> = match media_type {
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => {
            Box::new(flate2::read::GzDecoder::new(blob).take(bound))
        }
        OCI_LAYER_ZSTD => Box::new(
            zstd::stream::read::Decoder::new(blob)
                .map_err(|e| format!("zstd: {e}"))?
                .take(bound),
        ),
        OCI_LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar" => {
            Box::new(blob.take(bound))
        }
        _ => return Ok(None),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| format!("not a tar: {e}"))?;
    for (i, entry) in entries.enumerate() {
        if i >= MAX_ENTRIES {
            return Ok(None);
        }
        let entry = entry.map_err(|e| format!("not a tar: {e}"))?;
        let path = entry.path().map_err(|e| format!("not a tar: {e}"))?;
        let name = path.to_string_lossy();
        let name = name.trim_start_matches("./").trim_start_matches('/');
        if name != SBOM_MEMBER || !entry.header().entry_type().is_file() {
            continue;
        }
        let mut out = Vec::new();
        entry
            .take(MAX_SPDX_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("reading {SBOM_MEMBER}: {e}"))?;
        if out.len() > MAX_SPDX_BYTES {
            return Err(format!(
                "{SBOM_MEMBER} is larger than {MAX_SPDX_BYTES} bytes"
            ));
        }
        return Ok(Some(out));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob_store::BlobStore;
    use crate::layer::{Compression, LayerOptions};
    use crate::supply::sbom::Sbom;

    fn layer_of(document: &[u8], compression: Compression) -> (String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let options = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let layer = Sbom::from_document(document.to_vec())
            .layer(&options, &store)
            .unwrap();
        let blob = std::fs::read(store.path(&layer.digest)).unwrap();
        (layer.media_type.to_string(), blob)
    }

    #[test]
    fn the_sbom_layer_ocibuild_builds_is_read_back() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let (media_type, blob) = layer_of(b"{\"spdx\":1}", compression);
            assert_eq!(
                sbom_in_layer(&media_type, &blob).unwrap().as_deref(),
                Some(&b"{\"spdx\":1}"[..])
            );
        }
    }

    #[test]
    fn other_layers_and_types_hold_no_sbom() {
        assert_eq!(sbom_in_layer("application/json", b"{}").unwrap(), None);
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "app/x", &b"hi"[..])
            .unwrap();
        let tar = builder.into_inner().unwrap();
        assert_eq!(sbom_in_layer(OCI_LAYER_TAR, &tar).unwrap(), None);
        assert!(sbom_in_layer(OCI_LAYER_GZIP, b"not gzip").is_err());
    }

    proptest::proptest! {
        #[test]
        fn prop_corrupt_layers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            for media_type in [OCI_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_ZSTD] {
                let _ = sbom_in_layer(media_type, &bytes);
            }
        }
    }
}
