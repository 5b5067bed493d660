//! Registry jobs (see `jobs` for how they run and report):
//!
//! - `registry_pull(Ref, Auth, Opts)`: Ref is a binary or `{Registry, Repo, TagOrDigest}`;
//!   Opts `#{platforms => [Platform]}` (empty: the host's). Result: `[#{base, platform}]`.
//! - `registry_push(Images, Target, Opts)`: push image sources, built image maps or images
//!   read back from a saved tarball (`ocibuild_layout:load_tarball_for_push/1`). Target
//!   `#{registry, repo_tag, tags => [binary()], auth}`; Opts `#{created, chunk_size,
//!   max_concurrency, cache_dir, index => boolean()}`. Result: a report map with `digest`.
//!   Base layers are mounted, found in the cache or fetched by the push itself.
//! - `registry_check_push(Target, Opts)`: before a push builds anything, `GET /v2/` and a
//!   push-scoped upload start (cancelled) on the target (see `registry::preflight`). Target
//!   as for a push; Opts `#{env}`. Result: `#{registry, repository}`, or the error the push
//!   would have met.
//!
//! Auth: `#{username, password}` (both empty: anonymous), `#{token}` (a ready bearer token),
//! or `undefined` / `#{}`: look the registry up in docker/podman config files.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;

use ocibuild_core::blob_store::BlobStore;
use ocibuild_core::image::{self, ImageSource, RenderOptions};
use ocibuild_core::registry::attach::Attachments;
use ocibuild_core::registry::preflight;
use ocibuild_core::registry::pull::{self, PlatformChoice, PulledImage};
use ocibuild_core::registry::push::{self, PushImage, PushOptions, PushReport, PushTarget};
use ocibuild_core::registry::{credentials, Credentials, Environment, Reference};
use ocibuild_core::{Error, Result};
use rustler::types::tuple::get_tuple;
use rustler::{Encoder, Env, NifMap, ResourceArc, Term};

use crate::base::BaseHandle;
use crate::jobs::{self, registries};
use crate::terms::{self, field, invalid, map, required};
use crate::{atoms, reply, supply};

#[rustler::nif]
fn registry_pull<'a>(
    env: Env<'a>,
    reference: Term<'a>,
    auth: Term<'a>,
    opts: Term<'a>,
) -> Term<'a> {
    let args = (|| {
        let reference = decode_reference(reference)?;
        let auth = terms::decode_auth(auth)?;
        let wanted = match field(opts, atoms::platforms()) {
            Some(list) => terms::decode_platforms(list)?,
            None => Vec::new(),
        };
        Ok((
            reference,
            auth,
            PlatformChoice { wanted },
            decode_vars(opts)?,
        ))
    })();
    let (reference, auth, choice, vars) = match args {
        Ok(a) => a,
        Err(e) => return reply::error(env, &e),
    };
    jobs::start(
        env,
        move |progress| async move {
            let creds = credentials::resolve(auth, &reference.registry, &vars).await?;
            pull::pull(registries(), &vars, &reference, &creds, &choice, &progress).await
        },
        encode_pulled,
    )
}

/// `registry_push(Images, Target, Opts)`: the one push. Each element of `Images` is a source:
/// an image map (rendered here, with `created`) or an image read back from a saved tarball
/// (`ocibuild_layout:load_tarball_for_push/1`: it has a `manifest_digest`), pushed with its
/// bytes exactly as saved.
#[rustler::nif]
fn registry_push<'a>(env: Env<'a>, images: Term<'a>, target: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let args = (|| {
        let sources = decode_sources(images, opts)?;
        let created = match field(opts, atoms::created()) {
            Some(t) => terms::u64_field(t, "created")?,
            None => 0,
        };
        let mut job_opts = push_options(opts)?;
        job_opts.push.attach.referrers = supply::decode_sboms(opts, created)?;
        if !job_opts.push.attach.referrers.is_empty()
            && job_opts.push.attach.referrers.len() != sources.len()
        {
            return Err(invalid("sboms", "expected one entry per image"));
        }
        job_opts.push.attach.provenance = supply::decode_provenance(opts, sources.len())?;
        let push_images = sources
            .iter()
            .map(PushImage::from_source)
            .collect::<Result<Vec<_>>>()?;
        Ok((push_images, decode_target(target)?, job_opts))
    })();
    start_push(env, args)
}

/// `registry_check_push(Target, Opts)`: may we push to Target? Credentials are resolved as
/// the push resolves them, in the job.
#[rustler::nif]
fn registry_check_push<'a>(env: Env<'a>, target: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let args = (|| Ok((decode_target(target)?, decode_vars(opts)?)))();
    let ((mut target, auth), vars) = match args {
        Ok(a) => a,
        Err(e) => return reply::error(env, &e),
    };
    jobs::start(
        env,
        move |_progress| async move {
            target.credentials = credentials::resolve(auth, &target.registry, &vars).await?;
            preflight::check_push(registries(), &vars, &target).await?;
            Ok((target.registry, target.repository))
        },
        |env, (registry, repository): (String, String)| {
            map(
                env,
                &[
                    (atoms::registry(), registry.encode(env)),
                    (atoms::repository(), repository.encode(env)),
                ],
            )
        },
    )
}

/// Built images and loaded tarball images alike, as sources.
fn decode_sources(images: Term, opts: Term) -> Result<Vec<ImageSource>> {
    let mut created = None;
    terms::list(images, "images")?
        .into_iter()
        .map(|term| {
            if field(term, atoms::manifest_digest()).is_some() {
                return decode_loaded(term);
            }
            let created = match created {
                Some(c) => c,
                None => *created.insert(terms::u64_field(
                    required(opts, atoms::created(), "created")?,
                    "created",
                )?),
            };
            image::render(&terms::decode_image(term)?, &RenderOptions { created })
        })
        .collect()
}

/// What a push NIF decoded from its arguments: images, target (with explicit credentials,
/// if any) and options.
type PushArgs = (
    Vec<PushImage>,
    (PushTarget, Option<Credentials>),
    JobOptions,
);

fn start_push<'a>(env: Env<'a>, args: Result<PushArgs>) -> Term<'a> {
    let (images, (mut target, auth), opts) = match args {
        Ok(a) => a,
        Err(e) => return reply::error(env, &e),
    };
    jobs::start(
        env,
        move |progress| async move {
            let vars = &opts.vars;
            target.credentials = credentials::resolve(auth, &target.registry, vars).await?;
            push::push(registries(), vars, &images, &target, &opts.push, &progress).await
        },
        encode_report,
    )
}

/// `#{env => #{Name => Value}}`: the variables the Erlang side read with `os:getenv/1` (so
/// `os:putenv/2` counts); without it, the process environment.
pub(crate) fn decode_vars(opts: Term) -> Result<Environment> {
    let Some(map) = field(opts, atoms::env()) else {
        return Ok(Environment::from_process());
    };
    let iter = rustler::MapIterator::new(map).ok_or_else(|| invalid("env", "expected a map"))?;
    let pairs = iter
        .map(|(k, v)| {
            let name = terms::string(k, "env")?;
            let value = std::ffi::OsStr::from_bytes(terms::bytes(v, "env")?).to_os_string();
            Ok((name, value))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Environment::from_pairs(pairs))
}

pub(crate) fn decode_reference(term: Term) -> Result<Reference> {
    if let Ok(elems) = get_tuple(term) {
        if elems.len() == 3 {
            let part = |t: Term| terms::string(t, "reference").map_err(|_| bad_reference(term));
            return Reference::from_parts(&part(elems[0])?, &part(elems[1])?, &part(elems[2])?);
        }
        return Err(bad_reference(term));
    }
    let text = terms::string(term, "reference").map_err(|_| bad_reference(term))?;
    Reference::parse(&text)
}

fn bad_reference(term: Term) -> Error {
    Error::InvalidReference(format!("{term:?}"))
}

/// `#{registry, repo_tag, tags => [Extra], auth}`: `repo_tag` (`org/app:v1`) is resolved
/// against `registry` (which may carry a path prefix, `ghcr.io/org`); extra tags follow.
fn decode_target(term: Term) -> Result<(PushTarget, Option<Credentials>)> {
    let registry = terms::string(required(term, atoms::registry(), "target")?, "registry")?;
    let repo_tag = terms::string(required(term, atoms::repo_tag(), "target")?, "repo_tag")?;
    let extra_tags = match field(term, atoms::tags()) {
        Some(extra) => terms::list(extra, "tags")?
            .into_iter()
            .map(|t| terms::string(t, "tags"))
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let auth = match field(term, atoms::auth()) {
        Some(a) => terms::decode_auth(a)?,
        None => None,
    };
    // Credentials are resolved in the job (a credential helper may take a while).
    let target = PushTarget::parse(&registry, &repo_tag, &extra_tags, Credentials::Anonymous)?;
    Ok((target, auth))
}

pub(crate) fn max_concurrency(opts: Term) -> Result<usize> {
    match field(opts, atoms::max_concurrency()) {
        Some(t) => {
            let n = terms::u64_field(t, "max_concurrency")?;
            ocibuild_core::options::check_max_concurrency(n)
                .map_err(|why| invalid("max_concurrency", why))
        }
        None => Ok(push::DEFAULT_MAX_CONCURRENCY),
    }
}

/// Push options plus the environment the job reads.
struct JobOptions {
    push: PushOptions,
    vars: Environment,
}

fn push_options(opts: Term) -> Result<JobOptions> {
    let mut push = core_push_options(opts)?;
    push.attach.signature = supply::decode_sign(opts)?;
    Ok(JobOptions {
        push,
        vars: decode_vars(opts)?,
    })
}

fn core_push_options(opts: Term) -> Result<PushOptions> {
    let chunk_size = match field(opts, atoms::chunk_size()) {
        Some(t) => terms::u64_field(t, "chunk_size")?.max(1),
        None => push::DEFAULT_CHUNK_SIZE,
    };
    let index = match field(opts, atoms::index()) {
        Some(t) => t
            .decode::<bool>()
            .map_err(|_| invalid("index", "expected a boolean"))?,
        None => false,
    };
    Ok(PushOptions {
        chunk_size,
        max_concurrency: max_concurrency(opts)?,
        cache: BlobStore::open(terms::path(
            required(opts, atoms::cache_dir(), "cache_dir")?,
            "cache_dir",
        )?)?,
        index,
        attach: Attachments::default(),
    })
}

/// A loaded tarball image: every layer a local blob (`path`, or `blob`).
fn decode_loaded(term: Term) -> Result<ImageSource> {
    let digest = |key, name| -> Result<ocibuild_core::digest::Digest> {
        ocibuild_core::digest::Digest::parse(&terms::string(required(term, key, name)?, name)?)
    };
    let manifest = terms::bytes(required(term, atoms::manifest(), "image")?, "manifest")?.to_vec();
    Ok(ImageSource {
        media_type: ImageSource::declared_media_type(&manifest),
        remote: None,
        manifest,
        manifest_digest: digest(atoms::manifest_digest(), "manifest_digest")?,
        config: terms::bytes(required(term, atoms::config(), "image")?, "config")?.to_vec(),
        config_digest: digest(atoms::config_digest(), "config_digest")?,
        layers: terms::list(required(term, atoms::layers(), "image")?, "layers")?
            .into_iter()
            .map(decode_loaded_layer)
            .collect::<Result<_>>()?,
        platform: match field(term, atoms::platform()) {
            Some(p) => Some(terms::decode_platform(p)?),
            None => None,
        },
        annotations: BTreeMap::new(),
    })
}

/// A loaded layer map names its blob `path` (0.10's key); `blob` is taken too.
fn decode_loaded_layer(term: Term) -> Result<ocibuild_core::layer::Layer> {
    let mut layer = terms::decode_layer(term)?;
    if let Some(path) = field(term, atoms::path()) {
        layer.blob = Some(terms::path(path, "path")?);
    }
    if layer.blob.is_none() {
        return Err(ocibuild_core::Error::BlobMissing(layer.digest.to_string()));
    }
    Ok(layer)
}

/// A pulled base as Erlang sees it: descriptors, where it came from (no credentials), a copy
/// of its manifest and config bytes to read, and the `handle` sinks take them from, so they
/// never go back into Rust.
#[derive(NifMap)]
struct BaseTerm<'a> {
    reference: String,
    manifest: Term<'a>,
    manifest_digest: String,
    config: Term<'a>,
    layers: Vec<Term<'a>>,
    source: Term<'a>,
    handle: ResourceArc<BaseHandle>,
}

#[derive(NifMap)]
struct PulledTerm<'a> {
    base: BaseTerm<'a>,
    platform: Term<'a>,
}

/// `[#{base, platform}]`, one per platform pulled.
fn encode_pulled<'a>(env: Env<'a>, images: Vec<PulledImage>) -> Term<'a> {
    let list: Vec<PulledTerm> = images
        .into_iter()
        .map(|p| {
            let base = p.base;
            let source = match &base.source {
                Some(s) => map(
                    env,
                    &[
                        (atoms::registry(), s.registry.encode(env)),
                        (atoms::repository(), s.repository.encode(env)),
                    ],
                ),
                None => atoms::undefined().encode(env),
            };
            PulledTerm {
                base: BaseTerm {
                    reference: base.reference,
                    manifest: terms::binary(env, &base.manifest),
                    manifest_digest: base.manifest_digest.to_string(),
                    config: terms::binary(env, &base.config),
                    layers: base
                        .layers
                        .iter()
                        .map(|l| terms::encode_layer(env, l))
                        .collect(),
                    source,
                    handle: ResourceArc::new(BaseHandle {
                        manifest: base.manifest,
                        manifest_digest: base.manifest_digest,
                        config: base.config,
                        source: base.source,
                    }),
                },
                platform: terms::encode_platform(env, &p.platform),
            }
        })
        .collect();
    list.encode(env)
}

/// What a push did, as `registry_push` answers it.
#[derive(NifMap)]
struct ReportTerm<'a> {
    digest: String,
    uploaded_bytes: u64,
    uploaded: usize,
    existing: usize,
    mounted: usize,
    attached: Term<'a>,
}

fn encode_report<'a>(env: Env<'a>, report: PushReport) -> Term<'a> {
    ReportTerm {
        digest: report.digest.to_string(),
        uploaded_bytes: report.uploaded_bytes,
        uploaded: report.uploaded,
        existing: report.existing,
        mounted: report.mounted,
        attached: supply::encode_attached(env, &report.attached),
    }
    .encode(env)
}
