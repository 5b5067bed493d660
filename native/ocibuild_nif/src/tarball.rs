//! `tarball_load(Path, ExtractDir)`: read a tarball written by `image_save` back (for a later
//! push), extracting and verifying its blobs under `ExtractDir`. Dirty I/O.
//!
//! Returns `{ok, #{images => [Loaded], tag => binary() | undefined, is_multi_platform => boolean()}}`
//! where `Loaded = #{manifest, manifest_digest, config, config_digest, layers => [layer map],
//! platform => platform map | undefined, annotations => #{binary() => binary()}}`.

use ocibuild_core::layout::{self, LoadedImage, LoadedTarball};
use rustler::{Encoder, Env, Term};

use crate::terms::{self, map};
use crate::{atoms, reply};

#[rustler::nif(schedule = "DirtyIo")]
fn tarball_load<'a>(env: Env<'a>, path: Term<'a>, extract_dir: Term<'a>) -> Term<'a> {
    let result = terms::path(path, "path").and_then(|path| {
        let dir = terms::path(extract_dir, "extract_dir")?;
        layout::load_tarball(&path, &dir)
    });
    reply::value(env, result, encode_loaded)
}

fn encode_loaded<'a>(env: Env<'a>, loaded: LoadedTarball) -> Term<'a> {
    let images: Vec<Term> = loaded.images.iter().map(|i| encode_image(env, i)).collect();
    let tag = match &loaded.tag {
        Some(t) => t.encode(env),
        None => atoms::undefined().encode(env),
    };
    map(
        env,
        &[
            (atoms::images(), images.encode(env)),
            (atoms::tag(), tag),
            (
                atoms::is_multi_platform(),
                loaded.is_multi_platform.encode(env),
            ),
        ],
    )
}

fn encode_image<'a>(env: Env<'a>, image: &LoadedImage) -> Term<'a> {
    let layers: Vec<Term> = image
        .layers
        .iter()
        .map(|l| terms::encode_layer(env, l))
        .collect();
    let platform = match &image.platform {
        Some(p) => terms::encode_platform(env, p),
        None => atoms::undefined().encode(env),
    };
    map(
        env,
        &[
            (atoms::manifest(), terms::binary(env, &image.manifest)),
            (
                atoms::manifest_digest(),
                image.manifest_digest.as_str().encode(env),
            ),
            (atoms::config(), terms::binary(env, &image.config)),
            (
                atoms::config_digest(),
                image.config_digest.as_str().encode(env),
            ),
            (atoms::layers(), layers.encode(env)),
            (atoms::platform(), platform),
            (
                atoms::annotations(),
                terms::encode_string_map(env, &image.annotations),
            ),
        ],
    )
}
