//! Build one layer from every regular file under a directory, with gzip and with zstd, and
//! print how long each took.
//!
//! ```text
//! cargo run --release -p ocibuild_core --example bench_layer -- [DIR] [--threads N] [--runs N]
//! ```
//!
//! DIR defaults to /usr/lib/erlang (an Erlang install: ~100 MB in a few thousand files, close to
//! a real release). Each codec runs `--runs` times (default 3) into a fresh blob store; the
//! table shows the best run, so a cold page cache on the first run does not skew it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ocibuild_core::blob_store::BlobStore;
use ocibuild_core::layer::{self, Compression, Content, FileEntry, LayerOptions};

fn main() {
    let mut dir = PathBuf::from("/usr/lib/erlang");
    let mut threads = layer::default_threads();
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = number(args.next(), "--threads"),
            "--runs" => runs = number(args.next(), "--runs").max(1),
            _ => dir = PathBuf::from(arg),
        }
    }

    let mut files = Vec::new();
    collect(&dir, &mut files);
    let input_bytes: u64 = files
        .iter()
        .map(|f| match &f.content {
            Content::File(p) => std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Content::Bytes(b) => b.len() as u64,
        })
        .sum();
    let input_mb = input_bytes as f64 / 1e6;
    println!(
        "{} files, {input_mb:.1} MB under {}, {threads} threads",
        files.len(),
        dir.display()
    );
    println!(
        "{:<6} {:>8} {:>10} {:>11} {:>8}",
        "codec", "seconds", "input MB", "output MB", "MB/s"
    );

    for compression in [Compression::Gzip, Compression::Zstd] {
        let opts = LayerOptions {
            compression,
            mtime: 0,
            threads,
            ..LayerOptions::default()
        };
        let mut best = f64::INFINITY;
        let mut size = 0;
        for _ in 0..runs {
            let root = tempfile::tempdir().expect("temp dir for the blob store");
            let store = BlobStore::open(root.path()).expect("blob store");
            let start = Instant::now();
            let built = layer::build_layer(&files, &opts, &store).expect("building the layer");
            best = best.min(start.elapsed().as_secs_f64());
            size = built.size;
        }
        println!(
            "{:<6} {best:>8.3} {input_mb:>10.1} {:>11.1} {:>8.1}",
            compression.as_str(),
            size as f64 / 1e6,
            input_mb / best
        );
    }
}

fn number(value: Option<String>, flag: &str) -> usize {
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{flag} needs a number"))
}

/// Every regular file under `dir` (symlinks skipped), at the same absolute path in the image.
fn collect(dir: &Path, files: &mut Vec<FileEntry>) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            collect(&path, files);
        } else if kind.is_file() {
            let mode = entry.metadata().expect("metadata").permissions().mode() & 0o7777;
            let image_path = path.as_os_str().as_bytes().to_vec();
            files.push(FileEntry::new(image_path, Content::File(path), mode));
        }
    }
}
