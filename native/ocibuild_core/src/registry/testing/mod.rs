//! Registries in this process for the client's tests (go-containerregistry's `pkg/registry`
//! + `httptest`, rust-oci-client's chunk tests): fast, one process, exact assertions.
//!
//! - `server`: a raw HTTP/1.1 listener answering with a closure, able to misbehave at the
//!   byte level (hang, trickle, stall, reset), recording every request.
//! - `oci`: an OCI registry on that listener, blobs and manifests in memory, with Basic or
//!   token auth and faults switched on per request (status + `Retry-After`, resets, cut
//!   downloads, a missing `Location`, corrupt bytes).
//! - `fixtures`: images of known bytes and the push/pull plumbing the tests share.
//! - `*_tests`: the registry protocol through the public entry points (`push::push`,
//!   `pull::pull`, `pull::fetch_blob`): auth flows, uploads, mounts, retries, downloads,
//!   what a push attaches (`attach_tests`).

pub mod fixtures;
pub mod oci;
pub mod server;

mod attach_tests;
mod auth_tests;
mod download_tests;
mod upload_tests;

pub use server::{Bodies, Reply, Seen, Server};
