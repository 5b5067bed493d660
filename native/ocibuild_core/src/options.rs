//! Defaults and bounds of the options every caller shares: the Erlang API, the Mix task, the
//! rebar3 provider and the push itself read them from here (Erlang through the NIF's
//! `options_defaults/0`), so "5 MiB" and "at most 64 at once" are written once.
//!
//! ```
//! use ocibuild_core::options;
//! assert_eq!(options::DEFAULT_CHUNK_SIZE, 5 * options::MIB);
//! assert!(options::check_max_concurrency(64).is_ok());
//! ```

/// One mebibyte: `--chunk-size` is given in these.
pub const MIB: u64 = 1024 * 1024;

/// Blobs larger than this are uploaded in chunks of this size when no chunk size is given.
pub const DEFAULT_CHUNK_SIZE: u64 = 5 * MIB;

/// The smallest chunk size the tasks accept (`--chunk-size 1`).
pub const MIN_CHUNK_SIZE: u64 = MIB;

/// The largest chunk size the tasks accept (`--chunk-size 4096`): a chunk is read into one
/// request body, so this bounds the memory one upload may take.
pub const MAX_CHUNK_SIZE: u64 = 4096 * MIB;

/// Blobs moved at once when no `max_concurrency` is given.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;

/// The most blobs moved at once: each holds a connection and a chunk buffer.
pub const MAX_CONCURRENCY: usize = 64;

/// `n` as a concurrency, or the rule it breaks.
pub fn check_max_concurrency(n: u64) -> std::result::Result<usize, String> {
    if n == 0 || n > MAX_CONCURRENCY as u64 {
        return Err(format!("expected an integer from 1 to {MAX_CONCURRENCY}"));
    }
    Ok(n as usize)
}

/// Whether `bytes` is a chunk size the tasks accept.
pub fn is_valid_chunk_size(bytes: u64) -> bool {
    (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_bounds_are_inclusive() {
        assert!(check_max_concurrency(0).is_err());
        assert_eq!(check_max_concurrency(1), Ok(1));
        assert_eq!(check_max_concurrency(64), Ok(64));
        assert_eq!(
            check_max_concurrency(65),
            Err("expected an integer from 1 to 64".to_string())
        );
    }

    #[test]
    fn chunk_size_bounds_are_whole_mebibytes() {
        assert!(!is_valid_chunk_size(MIB - 1));
        assert!(is_valid_chunk_size(MIB));
        assert!(is_valid_chunk_size(DEFAULT_CHUNK_SIZE));
        assert!(is_valid_chunk_size(4096 * MIB));
        assert!(!is_valid_chunk_size(4096 * MIB + 1));
    }
}
