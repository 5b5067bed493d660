//! The verifier's NIFs (`ocibuild_verify` gives them their friendly name). Both are jobs (see
//! `jobs`): the fetching and hashing never run on a BEAM scheduler.
//!
//! - `verify_image(Ref, Auth, Opts)`: Ref and Auth as `registry_pull`'s; Opts `#{key => Pem,
//!   key_name => Name, env => Vars}`.
//! - `verify_tarball(Path, Opts)`: a saved tarball; Opts `#{key, key_name, scratch => Dir}`
//!   (where it is extracted, then removed).
//!
//! Result: `#{image => Digest, passed => boolean(), notes => [binary()], checks => [#{outcome
//! => ok | fail | skip, kind => signature | attestation | sbom, subject => Digest, source =>
//! binary(), detail => binary(), line => binary()}]}`. A bad key is `{error,
//! {public_key_error, Why}}` before any network work.

use std::path::PathBuf;

use ocibuild_core::registry::credentials;
use ocibuild_core::registry::inspect::gather;
use ocibuild_core::supply::dsse::PublicKey;
use ocibuild_core::supply::verify::tarball::gather_tarball;
use ocibuild_core::supply::verify::{passed, verify, Check, Evidence, Kind, Outcome};
use ocibuild_core::{Error, Result};
use rustler::{Atom, Encoder, Env, Term};

use crate::jobs::{self, registries};
use crate::registry::{decode_reference, decode_vars};
use crate::reply;
use crate::terms::{self, field, required};

mod verify_atoms {
    rustler::atoms! {
        key, key_name, scratch, image, passed, notes, checks, outcome, kind, subject, source,
        detail, line, ok, fail, skip, signature, attestation, sbom,
    }
}
use verify_atoms as va;

/// The key and the name the check lines give it.
fn decode_key(opts: Term) -> Result<(PublicKey, String)> {
    let pem = terms::bytes(required(opts, va::key(), "key")?, "key")?;
    let name = match field(opts, va::key_name()) {
        Some(n) => terms::string(n, "key_name")?,
        None => "the key".to_string(),
    };
    Ok((PublicKey::from_pem(pem)?, name))
}

#[rustler::nif]
fn verify_image<'a>(env: Env<'a>, reference: Term<'a>, auth: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let args = (|| {
        let (key, key_name) = decode_key(opts)?;
        Ok((
            decode_reference(reference)?,
            terms::decode_auth(auth)?,
            decode_vars(opts)?,
            key,
            key_name,
        ))
    })();
    let (reference, auth, vars, key, key_name) = match args {
        Ok(a) => a,
        Err(e) => return reply::error(env, &e),
    };
    jobs::start(
        env,
        move |progress| async move {
            let creds = credentials::resolve(auth, &reference.registry, &vars).await?;
            let evidence = gather(registries(), &vars, &reference, &creds, &progress).await?;
            Ok(verified(evidence, &key, &key_name))
        },
        encode,
    )
}

#[rustler::nif]
fn verify_tarball<'a>(env: Env<'a>, path: Term<'a>, opts: Term<'a>) -> Term<'a> {
    let args = (|| {
        let (key, key_name) = decode_key(opts)?;
        let path = PathBuf::from(terms::string(path, "path")?);
        let scratch = match field(opts, va::scratch()) {
            Some(d) => PathBuf::from(terms::string(d, "scratch")?),
            None => std::env::temp_dir(),
        };
        Ok((path, scratch, key, key_name))
    })();
    let (path, scratch, key, key_name) = match args {
        Ok(a) => a,
        Err(e) => return reply::error(env, &e),
    };
    jobs::start(
        env,
        move |_progress| async move {
            // Reading and hashing the tarball is blocking file work: off the runtime's
            // async threads.
            let evidence = tokio::task::spawn_blocking(move || gather_tarball(&path, &scratch))
                .await
                .map_err(|e| Error::io("reading the tarball", std::io::Error::other(e)))??;
            Ok(verified(evidence, &key, &key_name))
        },
        encode,
    )
}

struct Verified {
    evidence: Evidence,
    checks: Vec<Check>,
}

fn verified(evidence: Evidence, key: &PublicKey, key_name: &str) -> Verified {
    let checks = verify(&evidence, key, key_name);
    Verified { evidence, checks }
}

fn encode(env: Env, v: Verified) -> Term {
    let checks: Vec<Term> = v.checks.iter().map(|c| encode_check(env, c)).collect();
    let notes: Vec<Term> = v.evidence.notes.iter().map(|n| text(env, n)).collect();
    terms::map(
        env,
        &[
            (va::image(), text(env, v.evidence.image.as_str())),
            (va::passed(), passed(&v.checks).encode(env)),
            (va::notes(), notes.encode(env)),
            (va::checks(), checks.encode(env)),
        ],
    )
}

fn encode_check<'a>(env: Env<'a>, c: &Check) -> Term<'a> {
    let outcome: Atom = match c.outcome {
        Outcome::Ok => va::ok(),
        Outcome::Fail => va::fail(),
        Outcome::Skip => va::skip(),
    };
    let kind: Atom = match c.kind {
        Kind::Signature => va::signature(),
        Kind::Attestation => va::attestation(),
        Kind::Sbom => va::sbom(),
    };
    terms::map(
        env,
        &[
            (va::outcome(), outcome.encode(env)),
            (va::kind(), kind.encode(env)),
            (va::subject(), text(env, &c.subject)),
            (va::source(), text(env, &c.source)),
            (va::detail(), text(env, &c.detail)),
            (va::line(), text(env, &c.line())),
        ],
    )
}

fn text<'a>(env: Env<'a>, s: &str) -> Term<'a> {
    terms::binary(env, s.as_bytes())
}
