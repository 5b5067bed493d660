//! Supply-chain NIFs and the push options that attach SBOMs and signatures:
//!
//! - `sbom_spdx(Input)`: the SPDX 2.2 JSON of a release image. Input `#{name, version,
//!   created, tool, dependencies => [#{name, version, source}], otp_apps => [{Name, Vsn}],
//!   erts_version, otp_version, base => #{reference, digest}, platform, source, revision}` (the
//!   last six optional). Result `{ok, Json}`.
//! - `sign_key_check(Pem, Password | undefined)`: `ok` when the key can sign. Opening a cosign
//!   key runs scrypt (a deliberate ~0.1 s of CPU), so this runs on a dirty CPU scheduler.
//!
//! Push options (read by `registry`): `sboms => [Json | undefined]`, one per image, and
//! `sign => #{pem, password}`.

use std::collections::BTreeMap;

use ocibuild_core::digest::Digest;
use ocibuild_core::registry::attach::Attached;
use ocibuild_core::reproducible::rfc3339;
use ocibuild_core::supply::referrers::Artifact;
use ocibuild_core::supply::sbom::{self, BaseImage, Dependency, SbomInput};
use ocibuild_core::supply::signing::SigningKey;
use ocibuild_core::Result;
use rustler::types::tuple::get_tuple;
use rustler::{Encoder, Env, Term};

use crate::terms::{self, field, invalid, map, required};
use crate::{atoms, reply};

#[rustler::nif]
fn sbom_spdx<'a>(env: Env<'a>, input: Term<'a>) -> Term<'a> {
    let document = decode_sbom_input(input).and_then(|i| sbom::spdx_json(&i));
    reply::value(env, document, |env, json| terms::binary(env, &json))
}

#[rustler::nif(schedule = "DirtyCpu")]
fn sign_key_check<'a>(env: Env<'a>, pem: Term<'a>, password: Term<'a>) -> Term<'a> {
    let checked = (|| {
        let pem = terms::bytes(pem, "pem")?;
        let password = optional_bytes(password, "password")?;
        SigningKey::from_pem(pem, password).map(|_| ())
    })();
    reply::unit(env, checked)
}

/// A signing key still to be opened: the PEM and its password. Opening runs in the push job,
/// off the scheduler.
pub struct SignSecret {
    pub pem: Vec<u8>,
    pub password: Option<Vec<u8>>,
}

impl SignSecret {
    pub fn open(&self) -> Result<SigningKey> {
        SigningKey::from_pem(&self.pem, self.password.as_deref())
    }
}

/// `sign => #{pem, password}` from the push options, if present.
pub fn decode_sign(opts: Term) -> Result<Option<SignSecret>> {
    let Some(sign) = field(opts, atoms::sign()) else {
        return Ok(None);
    };
    Ok(Some(SignSecret {
        pem: terms::bytes(required(sign, atoms::pem(), "sign")?, "pem")?.to_vec(),
        // `undefined` (no COSIGN_PASSWORD) reads as a missing field.
        password: match field(sign, atoms::password()) {
            Some(p) => Some(terms::bytes(p, "password")?.to_vec()),
            None => None,
        },
    }))
}

/// `sboms => [Json | undefined]` from the push options: one SBOM referrer per image, stamped
/// with the image's `created` time.
pub fn decode_sboms(opts: Term, created: u64) -> Result<Vec<Option<Artifact>>> {
    let Some(list) = field(opts, atoms::sboms()) else {
        return Ok(Vec::new());
    };
    terms::list(list, "sboms")?
        .into_iter()
        .map(|t| {
            Ok(optional_bytes(t, "sboms")?.map(|json| Artifact {
                artifact_type: sbom::SPDX_MEDIA_TYPE.to_string(),
                media_type: sbom::SPDX_MEDIA_TYPE.to_string(),
                data: json.to_vec(),
                annotations: BTreeMap::from([(
                    "org.opencontainers.image.created".to_string(),
                    rfc3339(created),
                )]),
            }))
        })
        .collect()
}

/// `attached => #{referrers => [#{subject, digest, api}], signature_tag}` of a push report.
pub fn encode_attached<'a>(env: Env<'a>, attached: &Attached) -> Term<'a> {
    let referrers: Vec<Term> = attached
        .referrers
        .iter()
        .map(|r| {
            map(
                env,
                &[
                    (atoms::subject(), r.subject.as_str().encode(env)),
                    (atoms::digest(), r.digest.as_str().encode(env)),
                    (atoms::api(), r.api.encode(env)),
                ],
            )
        })
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
        ],
    )
}

fn decode_sbom_input(term: Term) -> Result<SbomInput> {
    let text = |key, name| -> Result<String> { terms::string(required(term, key, name)?, name) };
    let optional = |key, name| -> Result<Option<String>> {
        match field(term, key) {
            Some(t) if t.is_atom() => Ok(None),
            Some(t) => Ok(Some(terms::string(t, name)?)),
            None => Ok(None),
        }
    };
    let dependencies = match field(term, atoms::dependencies()) {
        Some(list) => terms::list(list, "dependencies")?
            .into_iter()
            .map(|d| {
                Ok(Dependency {
                    name: terms::string(required(d, atoms::name(), "dependency")?, "name")?,
                    version: terms::string(
                        required(d, atoms::version(), "dependency")?,
                        "version",
                    )?,
                    source: terms::string(required(d, atoms::source(), "dependency")?, "source")?,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let otp_apps = match field(term, atoms::otp_apps()) {
        Some(list) => terms::list(list, "otp_apps")?
            .into_iter()
            .map(|t| {
                let pair = get_tuple(t)
                    .ok()
                    .filter(|p| p.len() == 2)
                    .ok_or_else(|| invalid("otp_apps", "expected {Name, Vsn} tuples"))?;
                Ok((
                    terms::string(pair[0], "otp_apps")?,
                    terms::string(pair[1], "otp_apps")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    let base = match field(term, atoms::base()) {
        Some(b) if b.is_map() => Some(BaseImage {
            reference: terms::string(required(b, atoms::reference(), "base")?, "reference")?,
            digest: Digest::parse(&terms::string(
                required(b, atoms::digest(), "base")?,
                "digest",
            )?)?,
        }),
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

/// A binary, or `undefined` for none.
fn optional_bytes<'a>(term: Term<'a>, name: &'static str) -> Result<Option<&'a [u8]>> {
    if term.is_atom() {
        return Ok(None);
    }
    terms::bytes(term, name).map(Some)
}
