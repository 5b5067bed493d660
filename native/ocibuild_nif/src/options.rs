//! `options_defaults()`: the core's option defaults and bounds (`ocibuild_core::options`), so
//! the Erlang side (the API's checks, `mix help ocibuild`, `rebar3 help ocibuild`) shows and
//! enforces the values the core uses instead of keeping copies. Cheap: a normal scheduler.
//!
//! `#{chunk_size, min_chunk_size, max_chunk_size, max_concurrency, max_concurrency_limit}`,
//! sizes in bytes.

use ocibuild_core::options;
use rustler::NifMap;

#[derive(NifMap)]
struct Defaults {
    chunk_size: u64,
    min_chunk_size: u64,
    max_chunk_size: u64,
    max_concurrency: usize,
    max_concurrency_limit: usize,
}

#[rustler::nif]
fn options_defaults() -> Defaults {
    Defaults {
        chunk_size: options::DEFAULT_CHUNK_SIZE,
        min_chunk_size: options::MIN_CHUNK_SIZE,
        max_chunk_size: options::MAX_CHUNK_SIZE,
        max_concurrency: options::DEFAULT_MAX_CONCURRENCY,
        max_concurrency_limit: options::MAX_CONCURRENCY,
    }
}
