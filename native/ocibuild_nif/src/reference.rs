//! `reference_parse(Binary)`: an image reference split and normalised by the core's parser,
//! the one judge of the grammar for Erlang too (tags given to `save` and to the tasks' `-t`).
//! Cheap, so it runs on a normal scheduler.
//!
//! `{ok, #{registry, repository, tag => binary() | undefined, digest => binary() | undefined}}`
//! or `{error, {Rule, Explanation}}`: `Rule` is `empty`, `name_too_long`, `registry`,
//! `repository`, `tag` or `digest`, `Explanation` the rule in one line.
//!
//! `reference_tags([Text])`: image tags as the user gave them (`-t`, a project file's `tag`),
//! `;`-lists expanded, checked and grouped by repository as written
//! (`ocibuild_core::tag_list`): `{ok, #{tags => [Tag], groups => [#{name, tags, versions}]}}`
//! (`tags` every tag in the order given) or `{error, {invalid_tag, Tag, Explanation}}` for
//! the first tag the grammar refuses.
//!
//! `reference_tags_expand([Text])`: the same expansion alone (`;`-lists split, trimmed,
//! empties dropped), unchecked, for ocibuild 0.10's `expand_semicolon_tags/1`.

use ocibuild_core::registry::reference::Rule;
use ocibuild_core::registry::Reference;
use ocibuild_core::tag_list;
use rustler::{Atom, Encoder, Env, NifMap, Term};

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

/// Every tag in the order given, and the same tags by repository.
#[derive(NifMap)]
struct TagList {
    tags: Vec<String>,
    groups: Vec<TagGroup>,
}

/// One repository's tags, as `ocibuild_core::tag_list::Group`.
#[derive(NifMap)]
struct TagGroup {
    name: String,
    tags: Vec<String>,
    versions: Vec<String>,
}

fn texts(term: Term) -> ocibuild_core::Result<Vec<String>> {
    terms::list(term, "tags")?
        .into_iter()
        .map(|t| terms::string(t, "tags"))
        .collect()
}

#[rustler::nif]
fn reference_tags_expand<'a>(env: Env<'a>, texts: Term<'a>) -> Term<'a> {
    match self::texts(texts) {
        Ok(t) => (atoms::ok(), tag_list::expand(&t)).encode(env),
        Err(e) => reply::error(env, &e),
    }
}

#[rustler::nif]
fn reference_tags<'a>(env: Env<'a>, texts: Term<'a>) -> Term<'a> {
    let texts = match self::texts(texts) {
        Ok(t) => t,
        Err(e) => return reply::error(env, &e),
    };
    match tag_list::parse(&texts) {
        Ok(groups) => {
            let groups: Vec<TagGroup> = groups
                .into_iter()
                .map(|g| TagGroup {
                    name: g.name,
                    tags: g.tags,
                    versions: g.versions,
                })
                .collect();
            let tags = tag_list::expand(&texts);
            (atoms::ok(), TagList { tags, groups }).encode(env)
        }
        Err(invalid) => (
            atoms::error(),
            (atoms::invalid_tag(), invalid.tag, invalid.why),
        )
            .encode(env),
    }
}
