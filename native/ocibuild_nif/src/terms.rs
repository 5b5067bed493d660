//! Erlang terms <-> core types. The Erlang wrappers validate option types before calling a NIF,
//! so a shape error here means a hand-built or corrupted map: it becomes
//! `{invalid_option, Field, Why}` rather than a crash.
//!
//! Shapes (see `src/ocibuild.erl` for the documented types):
//! - file: `{Path :: binary(), binary() | {file, HostPath :: binary()}, Mode :: integer()}`
//! - layer: `#{media_type, digest, diff_id, size, blob => binary() | undefined, layer_type => atom()}`
//! - image: `#{base, layers, config, annotations, platform}`
//! - platform: `#{os, architecture, variant => binary()}` or `undefined`

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ocibuild_core::digest::Digest;
use ocibuild_core::image::{AddedLayer, BaseImage, BaseSource, ConfigOverrides, Image, Platform};
use ocibuild_core::layer::{Content, FileEntry, Layer};
use ocibuild_core::registry::{Credentials, Progress};
use ocibuild_core::{Error, Result};
use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Encoder, Env, MapIterator, NewBinary, ResourceArc, Term};

use crate::atoms;
use crate::base::BaseHandle;

// ----- decoding -----------------------------------------------------------------------------

pub fn invalid(name: &'static str, why: impl Into<String>) -> Error {
    Error::InvalidOption {
        name,
        why: why.into(),
    }
}

fn is_absent(term: Term) -> bool {
    term == atoms::undefined().encode(term.get_env())
        || term == atoms::none().encode(term.get_env())
}

/// A map field by atom key; `None` when missing, `undefined` or `none`.
pub fn field<'a>(map: Term<'a>, key: Atom) -> Option<Term<'a>> {
    map.map_get(key).ok().filter(|t| !is_absent(*t))
}

pub fn required<'a>(map: Term<'a>, key: Atom, name: &'static str) -> Result<Term<'a>> {
    field(map, key).ok_or_else(|| invalid(name, "missing"))
}

pub fn bytes<'a>(term: Term<'a>, name: &'static str) -> Result<&'a [u8]> {
    term.decode::<Binary>()
        .map(|b| b.as_slice())
        .map_err(|_| invalid(name, "expected a binary"))
}

pub fn string(term: Term, name: &'static str) -> Result<String> {
    let raw = bytes(term, name)?;
    String::from_utf8(raw.to_vec()).map_err(|_| invalid(name, "expected UTF-8 text"))
}

/// A host path: any bytes (Unix file names need not be UTF-8).
pub fn path(term: Term, name: &'static str) -> Result<PathBuf> {
    Ok(PathBuf::from(OsStr::from_bytes(bytes(term, name)?)))
}

pub fn u64_field(term: Term, name: &'static str) -> Result<u64> {
    term.decode::<u64>()
        .map_err(|_| invalid(name, "expected a non-negative integer"))
}

/// An atom's name, or a binary's text (options such as `compression` and `layer_type`).
pub fn word(term: Term, name: &'static str) -> Result<String> {
    match term.decode::<Atom>() {
        Ok(atom) => atom
            .to_term(term.get_env())
            .atom_to_string()
            .map_err(|_| invalid(name, "expected an atom")),
        Err(_) => string(term, name),
    }
}

/// A proper list's elements. rustler's list decoder panics on an improper list (`[a | b]`);
/// `enif_get_list_length` refuses one, so it is asked first.
pub fn list<'a>(term: Term<'a>, name: &'static str) -> Result<Vec<Term<'a>>> {
    term.list_length()
        .map_err(|_| invalid(name, "expected a proper list"))?;
    term.decode::<Vec<Term>>()
        .map_err(|_| invalid(name, "expected a list"))
}

fn tuple<'a>(term: Term<'a>, arity: usize, name: &'static str) -> Result<Vec<Term<'a>>> {
    match get_tuple(term) {
        Ok(elems) if elems.len() == arity => Ok(elems),
        _ => Err(invalid(
            name,
            format!("expected a tuple of {arity} elements"),
        )),
    }
}

fn string_list(term: Term, name: &'static str) -> Result<Vec<String>> {
    list(term, name)?
        .into_iter()
        .map(|t| string(t, name))
        .collect()
}

fn string_map(term: Term, name: &'static str) -> Result<BTreeMap<String, String>> {
    let iter = MapIterator::new(term).ok_or_else(|| invalid(name, "expected a map"))?;
    iter.map(|(k, v)| Ok((string(k, name)?, string(v, name)?)))
        .collect()
}

/// `[{Path, Content, Mode}]` as core file entries. Content is a binary or `{file, HostPath}`.
pub fn decode_files(term: Term) -> Result<Vec<FileEntry>> {
    list(term, "files")?
        .into_iter()
        .map(|entry| {
            let elems = tuple(entry, 3, "files")?;
            let path = bytes(elems[0], "files")?.to_vec();
            let content = decode_content(elems[1])?;
            // Modes beyond u32 are clamped; the core rejects anything over 0o7777 anyway.
            let mode = elems[2]
                .decode::<u64>()
                .map(|m| u32::try_from(m).unwrap_or(u32::MAX))
                .map_err(|_| invalid("files", "mode must be a non-negative integer"))?;
            Ok(FileEntry::new(path, content, mode))
        })
        .collect()
}

fn decode_content(term: Term) -> Result<Content> {
    if let Ok(bin) = term.decode::<Binary>() {
        return Ok(Content::Bytes(bin.as_slice().to_vec()));
    }
    let elems = tuple(term, 2, "files")?;
    if elems[0].decode::<Atom>().ok() != Some(atoms::file()) {
        return Err(invalid(
            "files",
            "content must be a binary or {file, HostPath}",
        ));
    }
    Ok(Content::File(path(elems[1], "files")?))
}

pub fn decode_images(term: Term) -> Result<Vec<Image>> {
    list(term, "images")?
        .into_iter()
        .map(decode_image)
        .collect()
}

pub fn decode_image(term: Term) -> Result<Image> {
    let base = match field(term, atoms::base()) {
        Some(b) => Some(decode_base(b)?),
        None => None,
    };
    let layers = match field(term, atoms::layers()) {
        Some(ls) => list(ls, "layers")?
            .into_iter()
            .map(decode_added_layer)
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let config = match field(term, atoms::config()) {
        Some(c) => decode_config(c)?,
        None => ConfigOverrides::default(),
    };
    let annotations = match field(term, atoms::annotations()) {
        Some(a) => string_map(a, "annotations")?,
        None => BTreeMap::new(),
    };
    let platform = match field(term, atoms::platform()) {
        Some(p) => Some(decode_platform(p)?),
        None => None,
    };
    Ok(Image {
        base,
        layers,
        config,
        annotations,
        platform,
    })
}

/// A base map: `reference` and `layers` from the map; manifest, config and source from its
/// `handle` (what `registry_pull` and `tarball_load` give), else from `manifest`,
/// `manifest_digest`, `config` and `source` in the map (a base built by hand).
fn decode_base(term: Term) -> Result<BaseImage> {
    let reference = string(required(term, atoms::reference(), "base")?, "base")?;
    let layers = list(required(term, atoms::layers(), "base")?, "base")?
        .into_iter()
        .map(decode_layer)
        .collect::<Result<_>>()?;
    if let Some(handle) = field(term, atoms::handle()) {
        let handle: ResourceArc<BaseHandle> = handle
            .decode()
            .map_err(|_| invalid("base", "handle is not a base image handle"))?;
        return Ok(BaseImage {
            reference,
            manifest: handle.manifest.clone(),
            manifest_digest: handle.manifest_digest.clone(),
            config: handle.config.clone(),
            layers,
            source: handle.source.clone(),
        });
    }
    Ok(BaseImage {
        reference,
        manifest: bytes(required(term, atoms::manifest(), "base")?, "base")?.to_vec(),
        manifest_digest: digest(required(term, atoms::manifest_digest(), "base")?)?,
        config: bytes(required(term, atoms::config(), "base")?, "base")?.to_vec(),
        layers,
        source: match field(term, atoms::source()) {
            Some(src) => Some(decode_source(src)?),
            None => None,
        },
    })
}

/// `#{registry, repository, auth => Auth | undefined}`: where a pulled base came from.
fn decode_source(term: Term) -> Result<BaseSource> {
    Ok(BaseSource {
        registry: string(required(term, atoms::registry(), "source")?, "registry")?,
        repository: string(required(term, atoms::repository(), "source")?, "repository")?,
        credentials: match field(term, atoms::auth()) {
            Some(a) => decode_auth(a)?,
            None => None,
        },
    })
}

/// `#{username, password}` → Basic (both empty: anonymous), `#{token}` → a ready bearer
/// token, `#{}` → `None` (look the registry up in docker/podman config files).
pub fn decode_auth(term: Term) -> Result<Option<Credentials>> {
    if is_absent(term) {
        return Ok(None);
    }
    if MapIterator::new(term).is_none() {
        return Err(invalid("auth", "expected a map"));
    }
    if let Some(token) = field(term, atoms::token()) {
        let token = string(token, "auth")?;
        return Ok(Some(if token.is_empty() {
            Credentials::Anonymous
        } else {
            Credentials::Bearer(token)
        }));
    }
    match (
        field(term, atoms::username()),
        field(term, atoms::password()),
    ) {
        (None, None) => Ok(None),
        (Some(u), Some(p)) => Ok(Some(Credentials::basic(
            &string(u, "auth")?,
            &string(p, "auth")?,
        ))),
        _ => Err(invalid("auth", "username and password go together")),
    }
}

fn digest(term: Term) -> Result<Digest> {
    Digest::parse(&string(term, "digest")?)
}

fn decode_added_layer(term: Term) -> Result<AddedLayer> {
    let layer_type = match field(term, atoms::layer_type()) {
        Some(t) => Some(word(t, "layer_type")?),
        None => None,
    };
    Ok(AddedLayer {
        layer: decode_layer(term)?,
        layer_type,
    })
}

pub fn decode_layer(term: Term) -> Result<Layer> {
    Ok(Layer {
        media_type: string(required(term, atoms::media_type(), "layer")?, "media_type")?,
        digest: digest(required(term, atoms::digest(), "layer")?)?,
        diff_id: digest(required(term, atoms::diff_id(), "layer")?)?,
        size: u64_field(required(term, atoms::size(), "layer")?, "size")?,
        blob: match field(term, atoms::blob()) {
            Some(b) => Some(path(b, "blob")?),
            None => None,
        },
    })
}

fn decode_config(term: Term) -> Result<ConfigOverrides> {
    let opt_string = |key, name| field(term, key).map(|t| string(t, name)).transpose();
    let opt_list = |key, name| field(term, key).map(|t| string_list(t, name)).transpose();
    let env = match field(term, atoms::env()) {
        Some(e) => list(e, "env")?
            .into_iter()
            .map(|pair| {
                let kv = tuple(pair, 2, "env")?;
                Ok((string(kv[0], "env")?, string(kv[1], "env")?))
            })
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    Ok(ConfigOverrides {
        entrypoint: opt_list(atoms::entrypoint(), "entrypoint")?,
        cmd: opt_list(atoms::cmd(), "cmd")?,
        env,
        workdir: opt_string(atoms::workdir(), "workdir")?,
        exposed_ports: opt_list(atoms::exposed_ports(), "exposed_ports")?.unwrap_or_default(),
        labels: match field(term, atoms::labels()) {
            Some(l) => string_map(l, "labels")?,
            None => BTreeMap::new(),
        },
        user: opt_string(atoms::user(), "user")?,
    })
}

/// A platform map, validated by the core's parser so a map and a string obey the same rules.
/// A list of platform maps (`platforms` of a pull or a `tar://` base).
pub fn decode_platforms(term: Term) -> Result<Vec<Platform>> {
    list(term, "platforms")?
        .into_iter()
        .map(decode_platform)
        .collect()
}

pub fn decode_platform(term: Term) -> Result<Platform> {
    let os = string(required(term, atoms::os(), "platform")?, "platform")?;
    let arch = string(
        required(term, atoms::architecture(), "platform")?,
        "platform",
    )?;
    let spelled = match field(term, atoms::variant()) {
        Some(v) => format!("{os}/{arch}/{}", string(v, "platform")?),
        None => format!("{os}/{arch}"),
    };
    Platform::parse(&spelled)
}

// ----- encoding -----------------------------------------------------------------------------

pub fn binary<'a>(env: Env<'a>, data: &[u8]) -> Term<'a> {
    let mut bin = NewBinary::new(env, data.len());
    bin.as_mut_slice().copy_from_slice(data);
    Binary::from(bin).to_term(env)
}

pub fn encode_path<'a>(env: Env<'a>, path: &Path) -> Term<'a> {
    binary(env, path.as_os_str().as_bytes())
}

/// A map with atom keys. Keys are distinct by construction, so building cannot fail; should it
/// ever, an empty map is returned rather than a panic crossing into the VM.
pub fn map<'a>(env: Env<'a>, pairs: &[(Atom, Term<'a>)]) -> Term<'a> {
    let keys: Vec<Term> = pairs.iter().map(|(k, _)| k.encode(env)).collect();
    let values: Vec<Term> = pairs.iter().map(|(_, v)| *v).collect();
    Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| Term::map_new(env))
}

pub fn encode_string_map<'a>(env: Env<'a>, m: &BTreeMap<String, String>) -> Term<'a> {
    let keys: Vec<Term> = m.keys().map(|k| k.encode(env)).collect();
    let values: Vec<Term> = m.values().map(|v| v.encode(env)).collect();
    Term::map_from_term_arrays(env, &keys, &values).unwrap_or_else(|_| Term::map_new(env))
}

pub fn encode_layer<'a>(env: Env<'a>, layer: &Layer) -> Term<'a> {
    let blob = match &layer.blob {
        Some(p) => encode_path(env, p),
        None => atoms::undefined().encode(env),
    };
    map(
        env,
        &[
            (atoms::media_type(), layer.media_type.encode(env)),
            (atoms::digest(), layer.digest.as_str().encode(env)),
            (atoms::diff_id(), layer.diff_id.as_str().encode(env)),
            (atoms::size(), layer.size.encode(env)),
            (atoms::blob(), blob),
        ],
    )
}

pub fn encode_platform<'a>(env: Env<'a>, p: &Platform) -> Term<'a> {
    let mut pairs = vec![
        (atoms::os(), p.os.encode(env)),
        (atoms::architecture(), p.architecture.encode(env)),
    ];
    if let Some(v) = &p.variant {
        pairs.push((atoms::variant(), v.encode(env)));
    }
    map(env, &pairs)
}

/// `#{phase, digest, bytes_received, total_bytes}` (push events add `bytes_sent`, the same
/// count: `bytes_received` is kept on every event so one progress fun serves pulls and pushes).
pub fn encode_progress<'a>(env: Env<'a>, p: &Progress) -> Term<'a> {
    let phase = Atom::from_str(env, p.phase.name())
        .map(|a| a.encode(env))
        .unwrap_or_else(|_| p.phase.name().encode(env));
    let digest = match &p.digest {
        Some(d) => d.as_str().encode(env),
        None => atoms::undefined().encode(env),
    };
    let total = match p.total {
        Some(t) => t.encode(env),
        None => atoms::undefined().encode(env),
    };
    let mut pairs = vec![
        (atoms::phase(), phase),
        (atoms::digest(), digest),
        (atoms::bytes_received(), p.bytes.encode(env)),
        (atoms::total_bytes(), total),
    ];
    if p.phase.is_push() {
        pairs.push((atoms::bytes_sent(), p.bytes.encode(env)));
    }
    map(env, &pairs)
}
