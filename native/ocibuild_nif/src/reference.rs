//! `reference_parse(Binary)`: an image reference split and normalised by the core's parser,
//! the one judge of the grammar for Erlang too (tags given to `save` and to the tasks' `-t`).
//! Cheap, so it runs on a normal scheduler.
//!
//! `{ok, #{registry, repository, tag => binary() | undefined, digest => binary() | undefined}}`
//! or `{error, {Rule, Explanation}}`: `Rule` is `empty`, `name_too_long`, `registry`,
//! `repository`, `tag` or `digest`, `Explanation` the rule in one line.

use ocibuild_core::registry::reference::Rule;
use ocibuild_core::registry::Reference;
use rustler::{Atom, Encoder, Env, Term};

use crate::{atoms, reply, terms};

#[rustler::nif]
fn reference_parse<'a>(env: Env<'a>, text: Term<'a>) -> Term<'a> {
    let text = match terms::string(text, "reference") {
        Ok(t) => t,
        Err(e) => return reply::error(env, &e),
    };
    match Reference::check(&text) {
        Ok(r) => (atoms::ok(), encode(env, &r)).encode(env),
        Err(rule) => (atoms::error(), (rule_atom(env, rule), rule.explain())).encode(env),
    }
}

fn encode<'a>(env: Env<'a>, r: &Reference) -> Term<'a> {
    let optional = |v: Option<String>| match v {
        Some(s) => s.encode(env),
        None => atoms::undefined().encode(env),
    };
    terms::map(
        env,
        &[
            (atoms::registry(), r.registry.encode(env)),
            (atoms::repository(), r.repository.encode(env)),
            (atoms::tag(), optional(r.tag.clone())),
            (
                atoms::digest(),
                optional(r.digest.as_ref().map(|d| d.to_string())),
            ),
        ],
    )
}

fn rule_atom(env: Env, rule: Rule) -> Term {
    match Atom::from_str(env, rule.name()) {
        Ok(a) => a.encode(env),
        Err(_) => rule.name().encode(env),
    }
}
