//! The layer cache, timed: one layer of every regular file under a directory, built cold,
//! again with nothing changed (a stat hit), after every file was written again with the same
//! bytes (what `mix release` does: a content hit), and with the cache off. Prints a table.
//!
//! ```text
//! cargo run --release -p ocibuild_core --example bench_layer_cache -- [DIR] [--runs N]
//! ```
//!
//! DIR defaults to /usr/lib/erlang (an Erlang install, the ERTS layer of a release). It is
//! copied to a temp dir first, so the rewrite touches only the copy. Each row is the best of
//! `--runs` (default 3); cold and off runs use a fresh blob store each time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ocibuild_core::blob_store::BlobStore;
use ocibuild_core::layer::{self, CacheMode, Compression, Content, FileEntry, LayerOptions};

fn main() {
    let mut dir = PathBuf::from("/usr/lib/erlang");
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--runs needs a number")
            }
            _ => dir = PathBuf::from(arg),
        }
    }
    let runs: usize = runs.max(1);

    let copy = tempfile::tempdir().expect("temp dir for the copy");
    let mut files = Vec::new();
    copy_tree(&dir, copy.path(), copy.path(), &mut files);
    let input_mb = files
        .iter()
        .map(|f| match &f.content {
            Content::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Content::Bytes(b) => b.len() as u64,
        })
        .sum::<u64>() as f64
        / 1e6;
    println!(
        "{} files, {input_mb:.1} MB from {}, {} threads, best of {runs}",
        files.len(),
        dir.display(),
        layer::default_threads()
    );
    println!(
        "{:<6} {:<34} {:>8} {:>9}",
        "codec", "build", "seconds", "vs cold"
    );

    for compression in [Compression::Gzip, Compression::Zstd] {
        let opts = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let fresh = |mode| {
            let root = tempfile::tempdir().expect("temp dir for the blob store");
            let store = BlobStore::open(root.path())
                .expect("blob store")
                .with_layer_cache(mode);
            (root, store)
        };
        let time = |store: &BlobStore| {
            let start = Instant::now();
            layer::build_layer(&files, &opts, store).expect("building the layer");
            start.elapsed().as_secs_f64()
        };
        let best =
            |f: &mut dyn FnMut() -> f64| (0..runs).map(|_| f()).fold(f64::INFINITY, f64::min);

        let cold = best(&mut || time(&fresh(CacheMode::On).1));
        let off = best(&mut || time(&fresh(CacheMode::Off).1));
        let (_root, store) = fresh(CacheMode::On);
        time(&store);
        let warm = best(&mut || time(&store));
        let rewritten = best(&mut || {
            rewrite(&files);
            time(&store)
        });
        let content_mode = best(&mut || time(&store.clone().with_layer_cache(CacheMode::Content)));
        for (name, secs) in [
            ("cold (empty cache)", cold),
            ("cache off", off),
            ("warm, nothing changed (stat hit)", warm),
            ("files rewritten (content hit)", rewritten),
            ("OCIBUILD_LAYER_CACHE=content", content_mode),
        ] {
            println!(
                "{:<6} {name:<34} {secs:>8.3} {:>8.0}%",
                compression.as_str(),
                100.0 * secs / cold
            );
        }
    }
}

/// Copy every regular file under `from` into `to` (symlinks skipped), listing each at its path
/// under `root` in the image.
fn copy_tree(from: &Path, to: &Path, root: &Path, files: &mut Vec<FileEntry>) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).expect("creating the copy");
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("reading {}: {e}", from.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let kind = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target, root, files);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copying a file");
            let mode = entry.metadata().expect("metadata").permissions().mode() & 0o7777;
            let image_path = target.strip_prefix(root).expect("under the copy");
            let image_path = [b"/app/".as_slice(), image_path.as_os_str().as_bytes()].concat();
            files.push(FileEntry::new(image_path, Content::File(target), mode));
        }
    }
}

/// Write every file again with the same bytes, as a new file renamed into place: a new inode,
/// mtime and ctime, as `mix release` leaves them.
fn rewrite(files: &[FileEntry]) {
    for f in files {
        if let Content::File(path) = &f.content {
            let bytes = std::fs::read(path).expect("reading a file");
            let tmp = path.with_extension("rewrite-tmp");
            std::fs::write(&tmp, bytes).expect("writing a file");
            std::fs::rename(&tmp, path).expect("renaming a file");
        }
    }
}
