//! `layer_create(Files, Opts)`: build one layer into the blob store. Compression and hashing
//! take seconds for a release, so this runs on a dirty CPU scheduler.
//!
//! Opts: `#{compression := gzip | zstd | auto, mtime := non_neg_integer(), store := binary(),
//! layer_cache => on | content | off}`; the Erlang wrapper fills in defaults
//! (`SOURCE_DATE_EPOCH`, the blob store root, `OCIBUILD_LAYER_CACHE`).

use ocibuild_core::blob_store::BlobStore;
use ocibuild_core::layer::{self, CacheMode, Compression, LayerOptions};
use ocibuild_core::Result;
use rustler::{Env, Term};

use crate::terms::{self, field, required};
use crate::{atoms, reply};

#[rustler::nif(schedule = "DirtyCpu")]
fn layer_create<'a>(env: Env<'a>, files: Term<'a>, opts: Term<'a>) -> Term<'a> {
    reply::value(env, create(files, opts), |env, built| {
        terms::encode_layer(env, &built)
    })
}

fn create(files: Term, opts: Term) -> Result<layer::Layer> {
    let entries = terms::decode_files(files)?;
    let (options, store) = decode_options(opts)?;
    layer::build_layer(&entries, &options, &store)
}

/// `#{compression, mtime, store, layer_cache}`: how to build a layer and where it goes (also
/// read by `supply::sbom_layer`). Without `layer_cache` the cache is on.
pub fn decode_options(opts: Term) -> Result<(LayerOptions, BlobStore)> {
    let compression = Compression::parse(&terms::word(
        required(opts, atoms::compression(), "compression")?,
        "compression",
    )?)?;
    let mtime = terms::u64_field(required(opts, atoms::mtime(), "mtime")?, "mtime")?;
    let layer_cache = match field(opts, atoms::layer_cache()) {
        Some(mode) => CacheMode::parse(&terms::word(mode, "layer_cache")?)?,
        None => CacheMode::default(),
    };
    let store = BlobStore::open(terms::path(
        required(opts, atoms::store(), "store")?,
        "store",
    )?)?
    .with_layer_cache(layer_cache);
    let options = LayerOptions {
        compression,
        mtime,
        ..LayerOptions::default()
    };
    Ok((options, store))
}
