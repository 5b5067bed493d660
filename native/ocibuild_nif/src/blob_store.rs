//! `blob_store_gc(Root, Opts)`: collect the blob store at `Root` (blobs and layer-cache
//! records), on a dirty I/O scheduler: it reads a directory and removes files.
//!
//! Opts: `#{max_age := Seconds, max_size := Bytes, grace := Seconds, interval := Seconds}`.
//! With `interval` 0 it collects now; otherwise only when the last collection is at least
//! that old (`{ok, not_due}` if not). Returns `{ok, #{removed, freed_bytes, kept,
//! kept_bytes}}`.

use std::time::Duration;

use ocibuild_core::blob_store::{gc, BlobStore};
use ocibuild_core::Result;
use rustler::{Encoder, Env, Term};

use crate::terms::{self, required};
use crate::{atoms, reply};

#[rustler::nif(schedule = "DirtyIo")]
fn blob_store_gc<'a>(env: Env<'a>, root: Term<'a>, opts: Term<'a>) -> Term<'a> {
    reply::value(env, collect(root, opts), |env, report| match report {
        None => atoms::not_due().encode(env),
        Some(r) => terms::map(
            env,
            &[
                (atoms::removed(), r.removed.encode(env)),
                (atoms::freed_bytes(), r.freed_bytes.encode(env)),
                (atoms::kept(), r.kept.encode(env)),
                (atoms::kept_bytes(), r.kept_bytes.encode(env)),
            ],
        ),
    })
}

fn collect(root: Term, opts: Term) -> Result<Option<gc::Report>> {
    let store = BlobStore::open(terms::path(root, "root")?)?;
    let seconds = |key, name| -> Result<Duration> {
        Ok(Duration::from_secs(terms::u64_field(
            required(opts, key, name)?,
            name,
        )?))
    };
    let limits = gc::Limits {
        max_age: seconds(atoms::max_age(), "max_age")?,
        max_size: terms::u64_field(required(opts, atoms::max_size(), "max_size")?, "max_size")?,
        grace: seconds(atoms::grace(), "grace")?,
    };
    let interval = seconds(atoms::interval(), "interval")?;
    if interval.is_zero() {
        gc::collect(&store, &limits).map(Some)
    } else {
        gc::collect_if_due(&store, &limits, interval)
    }
}
