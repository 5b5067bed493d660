//! Writing images out: `image_export(Images, Dir, Opts)` (an OCI layout directory) and
//! `image_save(Images, Path, Opts)` (a tarball). Both copy layer blobs and write files, so they
//! run on a dirty I/O scheduler. Each counts as a job (`job_count/0`) while it runs, and stops,
//! removing its temp output, when its caller dies: a killed caller leaves nothing behind.
//!
//! Opts: `#{tag := binary() | undefined, format := docker | oci, created := non_neg_integer(),
//! cache_dir := Path, env => #{Name => Value}, max_concurrency => 1..64, layer_cache => on |
//! content | off}` (export always writes a pure OCI layout; a save with `layer_cache => on`
//! skips writing an output that is already there, unchanged: `layout::save_record`). One image writes a single manifest; several write an index.
//!
//! Each sink takes its images as sources and fetches the base layers that are not local yet
//! itself (into the blob cache at `cache_dir`, on the NIF's runtime), so no caller ever does.

use ocibuild_core::blob_store::BlobStore;
use ocibuild_core::image::{Image, ImageSource};
use ocibuild_core::layer::CacheMode;
use ocibuild_core::layout::{self, SaveFormat, SaveOptions, SaveRecords, Wanted};
use ocibuild_core::registry::{progress, pull};
use ocibuild_core::Result;
use rustler::{Env, Term};

use crate::terms::{self, field, invalid, required};
use crate::{atoms, jobs, registry, reply};

/// The images as sources with every layer local: remote base layers are fetched now, while
/// the caller lives.
fn local_sources(
    env: Env,
    images: &[Image],
    opts: Term,
    save: &SaveOptions,
) -> Result<Vec<ImageSource>> {
    let mut sources = layout::render_all(images, save)?;
    if sources.iter().all(|s| s.remote_layers().next().is_none()) {
        return Ok(sources);
    }
    let store = BlobStore::open(terms::path(
        required(opts, atoms::cache_dir(), "cache_dir")?,
        "cache_dir",
    )?)?;
    let concurrency = registry::max_concurrency(opts)?;
    let vars = registry::decode_vars(opts)?;
    jobs::block_on_while_caller_lives(env, async {
        pull::fetch_remote_layers(
            jobs::registries(),
            &vars,
            &mut sources,
            &store,
            concurrency,
            &progress::ignore(),
        )
        .await
    })?;
    Ok(sources)
}

#[rustler::nif(schedule = "DirtyIo")]
fn image_export<'a>(env: Env<'a>, images: Term<'a>, dir: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let _job = jobs::Running::start();
    let caller_alive = || jobs::caller_alive(env);
    let result = (|| {
        let images = terms::decode_images(images)?;
        let dir = terms::path(dir, "dir")?;
        // A directory is read as an OCI layout; Docker's manifest.json belongs in tarballs.
        let save = SaveOptions {
            format: SaveFormat::Oci,
            ..save_options(opts)?
        };
        let sources = local_sources(env, &images, opts, &save)?;
        layout::export_sources_while(&sources, &dir, &save, Wanted::while_(&caller_alive))
    })();
    reply::unit(env, result)
}

#[rustler::nif(schedule = "DirtyIo")]
fn image_save<'a>(env: Env<'a>, images: Term<'a>, path: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let _job = jobs::Running::start();
    let caller_alive = || jobs::caller_alive(env);
    let result = (|| {
        let images = terms::decode_images(images)?;
        let path = terms::path(path, "path")?;
        let save = save_options(opts)?;
        let sources = local_sources(env, &images, opts, &save)?;
        let store = records_store(opts)?;
        let records = store.as_ref().map_or(SaveRecords::none(), SaveRecords::of);
        layout::save_sources_recorded(
            &sources,
            &path,
            &save,
            records,
            Wanted::while_(&caller_alive),
        )
        .map(|_| ())
    })();
    reply::unit(env, result)
}

/// The store whose save records a save consults (`layout::save_record`): only with
/// `cache_dir` and `layer_cache => on`, the cache mode the Erlang side reads from
/// `OCIBUILD_LAYER_CACHE`.
fn records_store(opts: Term) -> Result<Option<BlobStore>> {
    let (Some(dir), Some(mode)) = (
        field(opts, atoms::cache_dir()),
        field(opts, atoms::layer_cache()),
    ) else {
        return Ok(None);
    };
    let mode = CacheMode::parse(&terms::word(mode, "layer_cache")?)?;
    let store = BlobStore::open(terms::path(dir, "cache_dir")?)?.with_layer_cache(mode);
    Ok(Some(store))
}

fn save_options(opts: Term) -> Result<SaveOptions> {
    let tag = field(opts, atoms::tag())
        .map(|t| terms::string(t, "tag"))
        .transpose()?;
    let format = match field(opts, atoms::format()) {
        None => SaveFormat::Docker,
        Some(f) => match terms::word(f, "format")?.as_str() {
            "docker" => SaveFormat::Docker,
            "oci" => SaveFormat::Oci,
            other => {
                return Err(invalid(
                    "format",
                    format!("expected docker or oci, got {other:?}"),
                ))
            }
        },
    };
    let created = terms::u64_field(required(opts, atoms::created(), "created")?, "created")?;
    Ok(SaveOptions {
        tag,
        format,
        created,
    })
}
