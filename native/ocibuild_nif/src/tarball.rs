//! Reading a tarball written by `image_save` (or any OCI layout tarball) back. Dirty I/O.
//!
//! - `tarball_load(Path, StoreDir, Platforms)`: blobs go into the blob store at `StoreDir` and
//!   stay there (`tar://` bases). Result: `{ok, #{images => [#{manifest, manifest_digest,
//!   config, layers, platform, handle}]}}`, the images chosen for `Platforms` (empty: the only image, else the
//!   host's), each with the platform it was chosen for, its bytes behind a `base` handle.
//! - `tarball_load_temp(Path, ParentDir)`: blobs go into a fresh directory under
//!   `ParentDir`, owned by the `handle` returned with the result and kept while the caller
//!   lives; `tarball_cleanup(Handle)` removes it at once
//!   (`ocibuild_layout:load_tarball_for_push/1,2`).
//!
//! `tarball_load_temp` returns `{ok, #{images => [Loaded], tag => binary() | undefined, is_multi_platform =>
//! boolean()}}` (plus `extract_dir` and `handle` for the temp form), where `Loaded =
//! #{manifest, manifest_digest, config, config_digest, layers => [layer map], platform =>
//! platform map | undefined, annotations => #{binary() => binary()}}`. Both stop early when
//! the calling process exits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use ocibuild_core::image::platform::choose_among;
use ocibuild_core::image::Platform;
use ocibuild_core::layout::load::{load_tarball_to_temp, load_tarball_unless, Extraction};
use ocibuild_core::layout::{LoadedImage, LoadedTarball};
use ocibuild_core::Result;
use rustler::{Atom, Encoder, Env, LocalPid, Monitor, NifMap, ResourceArc, Term};

use crate::base::BaseHandle;
use crate::terms::{self, map};
use crate::{atoms, reply};

/// The extraction directory of one `tarball_load_temp`. It lives while the calling process
/// lives (until `tarball_cleanup`), and after that while any term still refers to it.
///
/// Why a resource and not an Erlang process that monitors the caller: the directory must go
/// however the caller ends (killed mid-load, exiting with the result unreleased, or
/// forgetting `cleanup`), and a guard process can itself be killed, or outlive a dirty NIF
/// that is still writing into the directory it just removed. While a load runs the directory
/// is a local of the NIF, which stops early once the caller is gone; afterwards the VM's own
/// process monitor (`down`) and the resource's destructor remove it, whatever killed the
/// caller. Nothing can skip them short of the whole OS process dying. Holding it while the
/// caller lives, not only while a term refers to it, keeps it from vanishing under a push
/// that was handed only the layers' paths.
pub struct ExtractDir {
    id: u64,
    extraction: Mutex<Option<Extraction>>,
}

/// Directories held for their (live) callers, by id; `down` or `tarball_cleanup` let go.
static HELD: Mutex<BTreeMap<u64, ResourceArc<ExtractDir>>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn held() -> MutexGuard<'static, BTreeMap<u64, ResourceArc<ExtractDir>>> {
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

#[rustler::resource_impl]
impl rustler::Resource for ExtractDir {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        if let Some(arc) = held().remove(&self.id) {
            // Possibly the last reference: let it go off this callback, whose resource it is.
            release_elsewhere(arc);
        }
    }
}

impl ExtractDir {
    /// A handle for `extraction`, held until `caller` exits (if it still lives).
    fn hold_for(env: Env, caller: LocalPid, extraction: Extraction) -> ResourceArc<ExtractDir> {
        let handle = ResourceArc::new(ExtractDir {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            extraction: Mutex::new(Some(extraction)),
        });
        // Held before the monitor is set, so a `down` that fires at once finds it.
        held().insert(handle.id, handle.clone());
        if env.monitor(&handle, &caller).is_none() {
            held().remove(&handle.id);
        }
        handle
    }

    fn take(&self) -> Option<Extraction> {
        self.extraction
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl Drop for ExtractDir {
    fn drop(&mut self) {
        if let Some(extraction) = self.take() {
            // Removing gigabytes of blobs takes a while, and the resource may be freed on a
            // normal scheduler; if no thread can be started the closure, and with it the
            // directory, is dropped here instead.
            let _ = std::thread::Builder::new()
                .name("ocibuild-cleanup".into())
                .spawn(move || drop(extraction));
        }
    }
}

fn release_elsewhere(arc: ResourceArc<ExtractDir>) {
    let _ = std::thread::Builder::new()
        .name("ocibuild-cleanup".into())
        .spawn(move || drop(arc));
}

#[rustler::nif(schedule = "DirtyIo")]
fn tarball_load<'a>(
    env: Env<'a>,
    path: Term<'a>,
    store_dir: Term<'a>,
    platforms: Term<'a>,
) -> Term<'a> {
    let caller = env.pid();
    let result = terms::path(path, "path").and_then(|path| {
        let dir = terms::path(store_dir, "extract_dir")?;
        let wanted = terms::decode_platforms(platforms)?;
        let loaded = load_tarball_unless(&path, &dir, &|| !env.is_process_alive(caller))?;
        chosen(loaded, &wanted)
    });
    reply::value(env, result, |env, loaded| encode_bases(env, loaded))
}

/// One image of a `tar://` base: a base map but for its `reference`; sinks take the manifest
/// and config bytes from the handle (the map's copy is for reading).
#[derive(NifMap)]
struct LocalBaseTerm<'a> {
    manifest: Term<'a>,
    manifest_digest: String,
    config: Term<'a>,
    layers: Vec<Term<'a>>,
    platform: Term<'a>,
    handle: ResourceArc<BaseHandle>,
}

#[derive(NifMap)]
struct LocalBasesTerm<'a> {
    images: Vec<LocalBaseTerm<'a>>,
}

fn encode_bases(env: Env, loaded: LoadedTarball) -> Term {
    let images = loaded
        .images
        .into_iter()
        .map(|image| LocalBaseTerm {
            manifest: terms::binary(env, &image.manifest),
            manifest_digest: image.manifest_digest.to_string(),
            config: terms::binary(env, &image.config),
            layers: image
                .layers
                .iter()
                .map(|l| terms::encode_layer(env, l))
                .collect(),
            platform: match &image.platform {
                Some(p) => terms::encode_platform(env, p),
                None => atoms::undefined().encode(env),
            },
            handle: ResourceArc::new(BaseHandle {
                manifest: image.manifest,
                manifest_digest: image.manifest_digest,
                config: image.config,
                source: None,
            }),
        })
        .collect();
    LocalBasesTerm { images }.encode(env)
}

/// The tarball's image for each wanted platform (the core's one matcher), each with the
/// platform it was chosen for (`None`: the only image, which does not say).
fn chosen(loaded: LoadedTarball, wanted: &[Platform]) -> Result<LoadedTarball> {
    let have: Vec<Option<Platform>> = loaded
        .images
        .iter()
        .map(LoadedImage::platform_or_config)
        .collect();
    let images = choose_among(&have, wanted)?
        .into_iter()
        .map(|(i, platform)| LoadedImage {
            platform,
            ..loaded.images[i].clone()
        })
        .collect();
    Ok(LoadedTarball { images, ..loaded })
}

#[rustler::nif(schedule = "DirtyIo")]
fn tarball_load_temp<'a>(env: Env<'a>, path: Term<'a>, parent_dir: Term<'a>) -> Term<'a> {
    let caller = env.pid();
    let result = terms::path(path, "path").and_then(|path| {
        let parent = terms::path(parent_dir, "extract_dir")?;
        load_tarball_to_temp(&path, &parent, &|| !env.is_process_alive(caller))
    });
    reply::value(env, result, |env, (loaded, extraction)| {
        let dir = terms::encode_path(env, extraction.path());
        let handle = ExtractDir::hold_for(env, caller, extraction);
        encode_loaded(
            env,
            &loaded,
            &[
                (atoms::extract_dir(), dir),
                (atoms::handle(), handle.encode(env)),
            ],
        )
    })
}

/// Remove a `tarball_load_temp` directory now; `ok` again if it is already gone.
#[rustler::nif(schedule = "DirtyIo")]
fn tarball_cleanup<'a>(env: Env<'a>, handle: ResourceArc<ExtractDir>) -> Term<'a> {
    // Not the last reference (the caller passed one in), so dropping it here frees nothing.
    drop(held().remove(&handle.id));
    match handle.take() {
        Some(extraction) => reply::unit(env, extraction.close()),
        None => Atom::encode(&atoms::ok(), env),
    }
}

fn encode_loaded<'a>(env: Env<'a>, loaded: &LoadedTarball, extra: &[(Atom, Term<'a>)]) -> Term<'a> {
    // Images that share a manifest or config share one binary in the VM too.
    let mut binaries = HashMap::new();
    let images: Vec<Term> = loaded
        .images
        .iter()
        .map(|i| encode_image(env, i, &mut binaries))
        .collect();
    let tag = match &loaded.tag {
        Some(t) => t.encode(env),
        None => atoms::undefined().encode(env),
    };
    let mut pairs = vec![
        (atoms::images(), images.encode(env)),
        (atoms::tag(), tag),
        (
            atoms::is_multi_platform(),
            loaded.is_multi_platform.encode(env),
        ),
    ];
    pairs.extend_from_slice(extra);
    map(env, &pairs)
}

fn encode_image<'a>(
    env: Env<'a>,
    image: &LoadedImage,
    binaries: &mut HashMap<String, Term<'a>>,
) -> Term<'a> {
    let layers: Vec<Term> = image
        .layers
        .iter()
        .map(|l| terms::encode_layer(env, l))
        .collect();
    let platform = match &image.platform {
        Some(p) => terms::encode_platform(env, p),
        None => atoms::undefined().encode(env),
    };
    let mut shared = |digest: &str, bytes: &[u8]| {
        *binaries
            .entry(digest.to_string())
            .or_insert_with(|| terms::binary(env, bytes))
    };
    let manifest = shared(image.manifest_digest.as_str(), &image.manifest);
    let config = shared(image.config_digest.as_str(), &image.config);
    map(
        env,
        &[
            (atoms::manifest(), manifest),
            (
                atoms::manifest_digest(),
                image.manifest_digest.as_str().encode(env),
            ),
            (atoms::config(), config),
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
