//! `reproducible_epoch(Raw | false)`: `{ok, Seconds | undefined}` or
//! `{error, {invalid_source_date_epoch, Raw}}`, the raw `SOURCE_DATE_EPOCH` as Erlang's
//! `os:getenv/1` sees it, judged by the core's one rule (`reproducible::source_date_epoch`).

use ocibuild_core::reproducible::source_date_epoch;
use ocibuild_core::Error;
use rustler::{Encoder, Env, Term};

use crate::{atoms, reply};

#[rustler::nif]
fn reproducible_epoch<'a>(env: Env<'a>, raw: Term<'a>) -> Term<'a> {
    let epoch = if raw.is_atom() {
        Ok(None)
    } else {
        match raw.decode::<String>() {
            Ok(text) => source_date_epoch(Some(&text)),
            // Not UTF-8 text: no epoch either, and the error names what was given.
            Err(_) => Err(Error::InvalidSourceDateEpoch(format!("{raw:?}"))),
        }
    };
    reply::value(env, epoch, |env, seconds| match seconds {
        Some(s) => s.encode(env),
        None => atoms::undefined().encode(env),
    })
}
