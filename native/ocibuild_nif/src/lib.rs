//! Erlang NIF glue for `ocibuild_core`: term conversion and dirty-scheduler placement only.
//!
//! Every NIF is named `<noun>_<verb>` and returns `{ok, _}` / `ok` or `{error, Reason}` with a
//! tagged reason from [`errors`]; the Erlang module `ocibuild_nif` loads this library and the
//! modules `ocibuild`, `ocibuild_layer` and `ocibuild_layout` give the functions friendly names.

mod atoms;
mod base;
mod blob_store;
mod errors;
mod image;
mod jobs;
mod layer;
mod options;
mod platform;
mod reference;
mod registry;
mod reply;
mod reproducible;
mod supply;
mod tarball;
mod terms;
mod verify;

rustler::init!("ocibuild_nif");
