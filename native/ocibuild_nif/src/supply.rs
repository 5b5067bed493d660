//! Supply-chain NIFs and the push options that attach SBOMs and signatures. What Erlang
//! passes here crosses once: the SBOM and the signing key stay in the core as resources.
//!
//! - `sbom_build(Input)`: `{ok, Sbom}`, the SPDX 2.2 document of a release image, built once.
//!   Input `#{name, version, created, tool, dependencies => [#{name, version, source}],
//!   otp_apps => [{Name, Vsn}], erts_version, otp_version, base => #{reference, digest},
//!   platform, source, revision}` (the last six optional).
//! - `sbom_layer(Sbom, #{compression, mtime, store})`: `{ok, Layer}`, the layer carrying it at
//!   `/sbom.spdx.json`.
//! - `sbom_document(Sbom)`: `{ok, Json}`, for `--sbom PATH`.
//! - `sign_key_load(Pem, Password | undefined)`: `{ok, Key}`, the opened key.
//! - `vcs_url_normalize(Url)`: `{ok, WebUrl}` or `{error, not_public}`, the repository URL
//!   the source annotation publishes (`supply::vcs_url::web_url`, which the SBOM's cleaning
//!   shares).
//!
//! Push options (read by `registry`): `sboms => [Sbom | Json | undefined]`, one per image,
//! `sign => Key`, and `provenance => Input` (`ocibuild_provenance:input/1`'s map: the facts
//! of the build, one `images` entry per image; see `decode_provenance`).

use std::collections::BTreeMap;
use std::sync::Arc;

use ocibuild_core::digest::Digest;
use ocibuild_core::registry::attach::{Attached, AttachedProvenance, AttachedReferrer};
use ocibuild_core::supply::provenance::{
    ImageFacts, LockedDependency, ProvenanceInput, RunEnvironment,
};
use ocibuild_core::supply::referrers::Artifact;
use ocibuild_core::supply::sbom::{BaseImage, Dependency, Sbom, SbomInput};
use ocibuild_core::supply::signing::SigningKey;
use ocibuild_core::supply::vcs_url;
use ocibuild_core::{Error, Result};
use rustler::{Encoder, Env, NifMap, NifTuple, ResourceArc, Term};

use crate::terms::{self, field, invalid, map, required};
use crate::{atoms, layer, reply};

// ----- SBOM ---------------------------------------------------------------------------------

/// A built SBOM, held by the caller: the layer, the `--sbom` file and the push's referrer
/// are all made from it, so the document is never passed back in.
pub struct SbomHandle {
    sbom: Arc<Sbom>,
}

#[rustler::resource_impl]
impl rustler::Resource for SbomHandle {}

#[rustler::nif]
fn sbom_build<'a>(env: Env<'a>, input: Term<'a>) -> Term<'a> {
    let built = decode_sbom_input(input).and_then(|i| Sbom::build(&i));
    reply::value(env, built, |env, sbom| {
        ResourceArc::new(SbomHandle {
            sbom: Arc::new(sbom),
        })
        .encode(env)
    })
}

/// Compressing the layer: a dirty CPU scheduler, as `layer_create`.
#[rustler::nif(schedule = "DirtyCpu")]
fn sbom_layer<'a>(env: Env<'a>, sbom: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let built = (|| {
        let sbom = decode_sbom(sbom)?;
        let (options, store) = layer::decode_options(opts)?;
        sbom.layer(&options, &store)
    })();
    reply::value(env, built, |env, layer| terms::encode_layer(env, &layer))
}

#[rustler::nif]
fn sbom_document<'a>(env: Env<'a>, sbom: Term<'a>) -> Term<'a> {
    reply::value(env, decode_sbom(sbom), |env, sbom| {
        terms::binary(env, sbom.document())
    })
}

fn decode_sbom(term: Term) -> Result<Arc<Sbom>> {
    term.decode::<ResourceArc<SbomHandle>>()
        .map(|h| h.sbom.clone())
        .map_err(|_| invalid("sbom", "expected an SBOM from ocibuild_sbom:build/1"))
}

/// `sboms => [Sbom | Json | undefined]` from the push options: one SBOM referrer per image,
/// stamped with the image's `created` time. A JSON binary (a document made elsewhere) is
/// attached as it is.
pub fn decode_sboms(opts: Term, created: u64) -> Result<Vec<Option<Artifact>>> {
    let Some(list) = field(opts, atoms::sboms()) else {
        return Ok(Vec::new());
    };
    terms::list(list, "sboms")?
        .into_iter()
        .map(|t| {
            if t.is_atom() {
                return Ok(None);
            }
            let sbom = match decode_sbom(t) {
                Ok(sbom) => sbom,
                Err(_) => Arc::new(Sbom::from_document(terms::bytes(t, "sboms")?.to_vec())),
            };
            Ok(Some(sbom.referrer(created)))
        })
        .collect()
}

/// A lock-file dependency as Erlang gives it.
#[derive(NifMap)]
struct DependencyTerm {
    name: String,
    version: String,
    source: String,
}

/// The base image as pulled: its reference and the manifest digest the registry served.
#[derive(NifMap)]
struct BaseTerm {
    reference: String,
    digest: String,
}

/// `{Name, Vsn}` of a bundled application.
#[derive(NifTuple)]
struct AppTerm(String, String);

fn decode_sbom_input(term: Term) -> Result<SbomInput> {
    let text = |key, name| -> Result<String> { terms::string(required(term, key, name)?, name) };
    let optional = |key, name| -> Result<Option<String>> {
        match field(term, key) {
            Some(t) if t.is_atom() => Ok(None),
            Some(t) => Ok(Some(terms::string(t, name)?)),
            None => Ok(None),
        }
    };
    // Lists are checked by `terms::list` first: rustler panics on an improper list.
    let dependencies = match field(term, atoms::dependencies()) {
        Some(list) => terms::list(list, "dependencies")?
            .into_iter()
            .map(|d| {
                let DependencyTerm {
                    name,
                    version,
                    source,
                } = d.decode().map_err(|_| {
                    invalid(
                        "dependencies",
                        "expected #{name, version, source} maps of UTF-8 binaries",
                    )
                })?;
                Ok(Dependency {
                    name,
                    version,
                    source,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let otp_apps = match field(term, atoms::otp_apps()) {
        Some(list) => terms::list(list, "otp_apps")?
            .into_iter()
            .map(|t| {
                let AppTerm(name, vsn) = t.decode().map_err(|_| {
                    invalid("otp_apps", "expected {Name, Vsn} tuples of UTF-8 binaries")
                })?;
                Ok((name, vsn))
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let base = match field(term, atoms::base()) {
        Some(b) if b.is_map() => {
            let BaseTerm { reference, digest } = b
                .decode()
                .map_err(|_| invalid("base", "expected #{reference, digest} of UTF-8 binaries"))?;
            Some(BaseImage {
                reference,
                digest: Digest::parse(&digest)?,
            })
        }
        _ => None,
    };
    Ok(SbomInput {
        name: text(atoms::name(), "name")?,
        version: text(atoms::version(), "version")?,
        created: terms::u64_field(required(term, atoms::created(), "created")?, "created")?,
        tool: text(atoms::tool(), "tool")?,
        erts_version: optional(atoms::erts_version(), "erts_version")?,
        otp_version: optional(atoms::otp_version(), "otp_version")?,
        otp_apps,
        dependencies,
        base,
        platform: optional(atoms::platform(), "platform")?,
        source: optional(atoms::source(), "source")?,
        revision: optional(atoms::revision(), "revision")?,
    })
}

// ----- signing ------------------------------------------------------------------------------

/// A signing key opened once, by `sign_key_load`, and held by the caller as a resource: the
/// push that signs uses it as it is, so neither the PEM nor the password crosses the boundary
/// again and no secret ever goes back to Erlang (a resource prints as `#Ref<...>`).
pub struct SignKey {
    key: Arc<SigningKey>,
}

#[rustler::resource_impl]
impl rustler::Resource for SignKey {}

/// Opening a cosign key runs scrypt (a deliberate ~0.1 s of CPU): a dirty CPU scheduler.
#[rustler::nif(schedule = "DirtyCpu")]
fn sign_key_load<'a>(env: Env<'a>, pem: Term<'a>, password: Term<'a>) -> Term<'a> {
    let opened = (|| {
        let pem = terms::bytes(pem, "pem")?;
        let password = optional_bytes(password, "password")?;
        SigningKey::from_pem(pem, password)
    })();
    reply::value(env, opened, |env, key| {
        ResourceArc::new(SignKey { key: Arc::new(key) }).encode(env)
    })
}

/// `sign => Key` (a `sign_key_load` resource) from the push options, if present.
pub fn decode_sign(opts: Term) -> Result<Option<Arc<SigningKey>>> {
    let Some(sign) = field(opts, atoms::sign()) else {
        return Ok(None);
    };
    let handle: ResourceArc<SignKey> = sign
        .decode()
        .map_err(|_| invalid("sign", "expected a key from ocibuild_signing:load/1,2"))?;
    Ok(Some(handle.key.clone()))
}

// ----- repository URLs ----------------------------------------------------------------------

#[rustler::nif]
fn vcs_url_normalize<'a>(env: Env<'a>, url: Term<'a>) -> Term<'a> {
    let cleaned = terms::string(url, "url")
        .ok()
        .and_then(|u| vcs_url::web_url(&u));
    match cleaned {
        Some(web) => (atoms::ok(), web).encode(env),
        None => (atoms::error(), atoms::not_public()).encode(env),
    }
}

// ----- provenance ---------------------------------------------------------------------------

/// `provenance => #{name, version, tags, platforms, base_image, compression, tool_version,
/// internal_parameters => #{Key => Value}, dependencies => [#{name, version, source, sha256}],
/// erts_version, otp_version, source, revision, images => [#{platform, base => #{reference,
/// digest}}], started_on, source_date_epoch, ci => #{Var => Value}}` from the push options:
/// one `images` entry per pushed image. Optional keys may be missing or `undefined`.
pub fn decode_provenance(opts: Term, images: usize) -> Result<Option<Arc<ProvenanceInput>>> {
    let Some(term) = field(opts, atoms::provenance()) else {
        return Ok(None);
    };
    // Every refusal is `{invalid_option, provenance, <<"FIELD: why">>}`.
    decode_provenance_input(term, images)
        .map(|input| Some(Arc::new(input)))
        .map_err(|e| match e {
            Error::InvalidOption { name, why } if name.starts_with("provenance ") => {
                Error::InvalidOption {
                    name: "provenance",
                    why: format!("{}: {why}", &name["provenance ".len()..]),
                }
            }
            other => other,
        })
}

fn decode_provenance_input(term: Term, images: usize) -> Result<ProvenanceInput> {
    if !term.is_map() {
        return Err(invalid(
            "provenance",
            "expected a map from ocibuild_provenance:input/1",
        ));
    }
    let text = |key, name| -> Result<String> { terms::string(required(term, key, name)?, name) };
    let optional = |t: Term, key, name| -> Result<Option<String>> {
        field(t, key).map(|v| terms::string(v, name)).transpose()
    };
    let texts = |key, name| -> Result<Vec<String>> {
        match field(term, key) {
            Some(list) => terms::list(list, name)?
                .into_iter()
                .map(|t| terms::string(t, name))
                .collect(),
            None => Ok(Vec::new()),
        }
    };
    let text_map = |key, name| -> Result<BTreeMap<String, String>> {
        let Some(m) = field(term, key) else {
            return Ok(BTreeMap::new());
        };
        let iter = rustler::types::map::MapIterator::new(m)
            .ok_or_else(|| invalid(name, "expected a map of UTF-8 binaries"))?;
        iter.map(|(k, v)| Ok((terms::string(k, name)?, terms::string(v, name)?)))
            .collect()
    };
    let dependencies = match field(term, atoms::dependencies()) {
        Some(list) => terms::list(list, "provenance dependencies")?
            .into_iter()
            .map(|d| {
                let name = "provenance dependencies";
                let get = |key| -> Result<String> { terms::string(required(d, key, name)?, name) };
                Ok(LockedDependency {
                    name: get(atoms::name())?,
                    version: get(atoms::version())?,
                    source: get(atoms::source())?,
                    sha256: optional(d, atoms::sha256(), name)?,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let facts = terms::list(
        required(term, atoms::images(), "provenance images")?,
        "provenance images",
    )?
    .into_iter()
    .map(|i| {
        if !i.is_map() {
            return Err(invalid(
                "provenance images",
                "expected #{platform, base} maps",
            ));
        }
        let base = match field(i, atoms::base()) {
            Some(b) => {
                let BaseTerm { reference, digest } = b.decode().map_err(|_| {
                    invalid("provenance images", "expected base => #{reference, digest}")
                })?;
                Some(BaseImage {
                    reference,
                    digest: Digest::parse(&digest)?,
                })
            }
            None => None,
        };
        Ok(ImageFacts {
            platform: optional(i, atoms::platform(), "provenance images")?,
            base,
        })
    })
    .collect::<Result<Vec<_>>>()?;
    if facts.len() != images {
        return Err(invalid("provenance images", "expected one entry per image"));
    }
    let ci = text_map(atoms::ci(), "provenance ci")?;
    Ok(ProvenanceInput {
        release_name: text(atoms::name(), "provenance name")?,
        release_version: text(atoms::version(), "provenance version")?,
        tags: texts(atoms::tags(), "provenance tags")?,
        platforms: texts(atoms::platforms(), "provenance platforms")?,
        base: text(atoms::base_image(), "provenance base_image")?,
        compression: terms::word(
            required(term, atoms::compression(), "provenance compression")?,
            "provenance compression",
        )?,
        builder_version: optional(term, atoms::tool_version(), "provenance tool_version")?
            .unwrap_or_default(),
        internal: text_map(
            atoms::internal_parameters(),
            "provenance internal_parameters",
        )?,
        dependencies,
        erts_version: optional(term, atoms::erts_version(), "provenance erts_version")?,
        otp_version: optional(term, atoms::otp_version(), "provenance otp_version")?,
        source: optional(term, atoms::source(), "provenance source")?,
        revision: optional(term, atoms::revision(), "provenance revision")?,
        images: facts,
        started_on: terms::u64_field(
            required(term, atoms::started_on(), "provenance started_on")?,
            "provenance started_on",
        )?,
        source_date_epoch: field(term, atoms::source_date_epoch())
            .map(|t| terms::u64_field(t, "provenance source_date_epoch"))
            .transpose()?,
        // The VM's view of the CI variables (os:putenv/2 is not seen by native code).
        run: RunEnvironment::detect(|name| ci.get(name).cloned()),
    })
}

// ----- push report --------------------------------------------------------------------------

/// One referrer a push recorded, as the report lists it.
#[derive(NifMap)]
struct ReferrerTerm {
    subject: String,
    digest: String,
    api: bool,
}

fn referrer_term(r: &AttachedReferrer) -> ReferrerTerm {
    ReferrerTerm {
        subject: r.subject.as_str().to_string(),
        digest: r.digest.as_str().to_string(),
        api: r.api,
    }
}

/// `#{subject, statement, referrer => #{subject, digest, api} | undefined, attestation_tag =>
/// Tag | undefined}`: one image's provenance in the push report.
fn encode_provenance<'a>(env: Env<'a>, p: &AttachedProvenance) -> Term<'a> {
    let undefined = || atoms::undefined().encode(env);
    map(
        env,
        &[
            (atoms::subject(), p.subject.as_str().encode(env)),
            (atoms::statement(), terms::binary(env, &p.statement)),
            (
                atoms::referrer(),
                p.referrer
                    .as_ref()
                    .map_or_else(undefined, |r| referrer_term(r).encode(env)),
            ),
            (
                atoms::attestation_tag(),
                p.attestation_tag
                    .as_ref()
                    .map_or_else(undefined, |t| t.encode(env)),
            ),
        ],
    )
}

/// `attached => #{referrers => [#{subject, digest, api}], signature_tag, provenance =>
/// [...]}` of a push report (`provenance` as `encode_provenance`, one per image, empty
/// without the option).
pub fn encode_attached<'a>(env: Env<'a>, attached: &Attached) -> Term<'a> {
    let referrers: Vec<ReferrerTerm> = attached.referrers.iter().map(referrer_term).collect();
    let provenance: Vec<Term> = attached
        .provenance
        .iter()
        .map(|p| encode_provenance(env, p))
        .collect();
    let signature = match &attached.signature_tag {
        Some(tag) => tag.encode(env),
        None => atoms::undefined().encode(env),
    };
    map(
        env,
        &[
            (atoms::referrers(), referrers.encode(env)),
            (atoms::signature_tag(), signature),
            (atoms::provenance(), provenance.encode(env)),
        ],
    )
}

/// A binary, or `undefined` for none.
fn optional_bytes<'a>(term: Term<'a>, name: &'static str) -> Result<Option<&'a [u8]>> {
    if term.is_atom() {
        return Ok(None);
    }
    terms::bytes(term, name).map(Some)
}
