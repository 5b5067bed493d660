//! `layer_create(Files, Opts)`: build one layer into the blob store. Compression and hashing
//! take seconds for a release, so this runs on a dirty CPU scheduler.
//!
//! Opts: `#{compression := gzip | zstd | auto, mtime := non_neg_integer(), store := binary(),
//! layer_cache => on | content | off}`; the Erlang wrapper fills in defaults
//! (`SOURCE_DATE_EPOCH`, the blob store root, `OCIBUILD_LAYER_CACHE`).
//!
//! With `progress => Pid`, `Pid` gets `{ocibuild_layer_progress, Builder, #{bytes_read,
//! total_bytes}}` while the files are read (`Builder`: the process running this NIF, so the
//! receiver can tell builds apart). The calling process is busy in this NIF, so `Pid` is
//! another one (`ocibuild_layer_progress` runs the NIF in a helper and receives them itself).

use ocibuild_core::blob_store::BlobStore;
use ocibuild_core::layer::progress::{BuildProgress, BuildProgressFn};
use ocibuild_core::layer::{self, CacheMode, Compression, LayerOptions};
use ocibuild_core::Result;
use rustler::{Encoder, Env, LocalPid, NifMap, OwnedEnv, Term};

use crate::terms::{self, field, invalid, required};
use crate::{atoms, reply};

#[rustler::nif(schedule = "DirtyCpu")]
fn layer_create<'a>(env: Env<'a>, files: Term<'a>, opts: Term<'a>) -> Term<'a> {
    reply::value(env, create(files, opts, env.pid()), |env, built| {
        terms::encode_layer(env, &built)
    })
}

fn create(files: Term, opts: Term, builder: LocalPid) -> Result<layer::Layer> {
    let entries = terms::decode_files(files)?;
    let (mut options, store) = decode_options(opts)?;
    options.progress = progress_messages(opts, builder)?;
    layer::build_layer(&entries, &options, &store)
}

#[derive(NifMap)]
struct ProgressTerm {
    bytes_read: u64,
    total_bytes: u64,
}

/// `progress => Pid` (or `undefined`): each report as a message to `Pid`. The core reports
/// from its producer thread, which the VM does not manage, so `enif_send` may be used there
/// and never blocks; a report on a VM thread (which `send_and_clear` refuses with a panic)
/// is dropped instead.
fn progress_messages(opts: Term, builder: LocalPid) -> Result<Option<BuildProgressFn>> {
    let Some(term) = field(opts, atoms::progress()) else {
        return Ok(None);
    };
    if term == atoms::undefined().encode(term.get_env()) {
        return Ok(None);
    }
    let pid: LocalPid = term
        .decode()
        .map_err(|_| invalid("progress", "expected a pid"))?;
    Ok(Some(BuildProgressFn::new(move |p: BuildProgress| {
        if rustler::thread::is_scheduler_thread() {
            return;
        }
        let mut env = OwnedEnv::new();
        let _ = env.send_and_clear(&pid, |env| {
            let info = ProgressTerm {
                bytes_read: p.bytes_read,
                total_bytes: p.total_bytes,
            };
            (atoms::ocibuild_layer_progress(), builder, info).encode(env)
        });
    })))
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
