//! Writing images out: `image_export(Images, Dir, Opts)` (an OCI layout directory) and
//! `image_save(Images, Path, Opts)` (a tarball). Both copy layer blobs and write files, so they
//! run on a dirty I/O scheduler. Each counts as a job (`job_count/0`) while it runs, and stops,
//! removing its temp output, when its caller dies: a killed caller leaves nothing behind.
//!
//! Opts: `#{tag := binary() | undefined, format := docker | oci, created := non_neg_integer()}`
//! (export always writes a pure OCI layout). One image writes a single manifest; several write an index.

use ocibuild_core::layout::{self, SaveFormat, SaveOptions, Wanted};
use ocibuild_core::Result;
use rustler::{Env, Term};

use crate::terms::{self, field, invalid, required};
use crate::{atoms, jobs, reply};

#[rustler::nif(schedule = "DirtyIo")]
fn image_export<'a>(env: Env<'a>, images: Term<'a>, dir: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let _job = jobs::Running::start();
    let caller_alive = || jobs::caller_alive(env);
    let result = (|| {
        let images = terms::decode_images(images)?;
        let dir = terms::path(dir, "dir")?;
        // A directory is read as an OCI layout; Docker's manifest.json belongs in tarballs.
        let opts = SaveOptions {
            format: SaveFormat::Oci,
            ..save_options(opts)?
        };
        layout::export_directory_while(&images, &dir, &opts, Wanted::while_(&caller_alive))
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
        let opts = save_options(opts)?;
        layout::save_tarball_while(&images, &path, &opts, Wanted::while_(&caller_alive))
    })();
    reply::unit(env, result)
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
