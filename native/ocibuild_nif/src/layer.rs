//! `layer_create(Files, Opts)`: build one layer into the blob store. Compression and hashing
//! take seconds for a release, so this runs on a dirty CPU scheduler.
//!
//! Opts: `#{compression := gzip | zstd | auto, mtime := non_neg_integer(), store := binary()}`;
//! the Erlang wrapper fills in defaults (`SOURCE_DATE_EPOCH`, the blob store root).

use ocibuild_core::blob_store::BlobStore;
use ocibuild_core::layer::{self, Compression, LayerOptions};
use ocibuild_core::Result;
use rustler::{Env, Term};

use crate::terms::{self, required};
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

/// `#{compression, mtime, store}`: how to build a layer and where it goes (also read by
/// `supply::sbom_layer`).
pub fn decode_options(opts: Term) -> Result<(LayerOptions, BlobStore)> {
    let compression = Compression::parse(&terms::word(
        required(opts, atoms::compression(), "compression")?,
        "compression",
    )?)?;
    let mtime = terms::u64_field(required(opts, atoms::mtime(), "mtime")?, "mtime")?;
    let store = BlobStore::open(terms::path(
        required(opts, atoms::store(), "store")?,
        "store",
    )?)?;
    let options = LayerOptions {
        compression,
        mtime,
        ..LayerOptions::default()
    };
    Ok((options, store))
}
