//! A base image's bytes stay in the core: a pulled base (`registry_pull`) or a `tar://` base
//! (`tarball_load`) reaches Erlang as a map with descriptors, a read-only copy of its manifest
//! and config, and a `handle`, a [`BaseHandle`] resource that holds the exact bytes and where
//! (with which credentials) its layers can be fetched. A sink given the image reads them from
//! the handle, never from the map, so they never go Rust → Erlang → Rust, and the pull
//! credentials never reach Erlang.

use ocibuild_core::digest::Digest;
use ocibuild_core::image::BaseSource;

/// What a base map's `handle` holds.
pub struct BaseHandle {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    /// The registry repository and credentials a pulled base's layers come from; `None` for a
    /// `tar://` base, whose layers are local.
    pub source: Option<BaseSource>,
}

#[rustler::resource_impl]
impl rustler::Resource for BaseHandle {}
