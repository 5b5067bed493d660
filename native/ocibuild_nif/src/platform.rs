//! `platform_parse(Binary)`: `linux/arm64/v8` into a platform map, by the core's rules;
//! `platform_host()`: this machine's platform in OCI's names, the core's one table. Cheap, so
//! they run on a normal scheduler.

use ocibuild_core::image::Platform;
use rustler::{Env, Term};

use crate::{reply, terms};

#[rustler::nif]
fn platform_parse<'a>(env: Env<'a>, spec: Term<'a>) -> Term<'a> {
    let parsed = terms::string(spec, "platform").and_then(|s| Platform::parse(&s));
    reply::value(env, parsed, |env, p| terms::encode_platform(env, &p))
}

#[rustler::nif]
fn platform_host(env: Env) -> Term {
    terms::encode_platform(env, &Platform::host())
}
