//! The two return shapes every NIF uses: `ok` / `{ok, Value}` or `{error, Reason}`.

use ocibuild_core::Result;
use rustler::{Encoder, Env, Term};

use crate::{atoms, errors};

/// `{ok, encode(Value)}` or `{error, Reason}`.
pub fn value<'a, T>(
    env: Env<'a>,
    result: Result<T>,
    encode: impl FnOnce(Env<'a>, T) -> Term<'a>,
) -> Term<'a> {
    match result {
        Ok(v) => (atoms::ok(), encode(env, v)).encode(env),
        Err(e) => error(env, &e),
    }
}

/// `ok` or `{error, Reason}`.
pub fn unit<'a>(env: Env<'a>, result: Result<()>) -> Term<'a> {
    match result {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => error(env, &e),
    }
}

/// `{error, Reason}`.
pub fn error<'a>(env: Env<'a>, err: &ocibuild_core::Error) -> Term<'a> {
    (atoms::error(), errors::reason(env, err)).encode(env)
}
