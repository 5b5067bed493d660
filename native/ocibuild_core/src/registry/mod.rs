//! Talking to OCI registries (distribution spec v1.1): pulling base images and pushing images.
//!
//! - `reference`: the old path of [`crate::reference`] (image references), kept for callers.
//! - `credentials`: finding credentials: docker/podman config files and credential helpers
//!   (the value itself is [`crate::credentials::Credentials`]).
//! - `retry`: which failures are retried, and how long to wait.
//! - `transport`: TLS roots, plain HTTP for loopback/insecure hosts, one client per registry.
//! - `origin`: where credentials may go (redirects, upload locations, token realms).
//! - `timeouts`: the response-headers deadline and the minimum transfer rate.
//! - `auth`: scopes, `WWW-Authenticate` challenges, how to answer them, the token request
//!   and answer, and the negotiated headers cached per scope.
//! - `request`: one request as a value (method, URL, headers, body, retries, statuses).
//! - `errors`: what a failed exchange becomes (tagged errors, cleaned error bodies).
//! - `client`: a registry endpoint: the one request loop (auth, retries), redirects under
//!   the origin rule and the timeouts, response bodies under the transfer rate.
//! - `manifest`: manifests on the wire: GET (with every media type we read) and PUT.
//! - `pull`: platform choice, configs, and base layers into the verified cache.
//! - `upload`: one blob to one repository: HEAD, mount, monolithic or chunked with resume.
//! - `writer`: one repository as a push writes to it: blobs placed, then manifests put.
//! - `blob_source`: a local blob's bytes as an upload sends them: read once, hashed as sent.
//! - `push`: images and indexes: blobs in parallel, then manifests, then extra tags.
//! - `attach`: what a push adds after its tags: SBOM referrers and cosign signatures.
//! - `progress`: the events long jobs report.
//!
//! Everything here is async and runs on a tokio runtime the caller owns (the NIF owns one).

pub mod attach;
pub mod auth;
pub mod blob_source;
pub mod client;
pub mod credentials;
pub mod environment;
pub mod errors;
pub mod manifest;
pub mod origin;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod request;
pub mod retry;
pub mod timeouts;
pub mod transport;
pub mod upload;
pub mod writer;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
pub(crate) mod testing;

// Their old paths, kept for callers.
pub use crate::credentials::Credentials;
pub use crate::reference::Reference;
pub use auth::{challenge, token};
pub use client::{Registries, RegistryClient};
pub use credentials::CredentialSources;
pub use environment::Environment;
pub use progress::{Phase, Progress, ProgressSink};

/// The host that serves a registry's API: Docker Hub's is not `docker.io` itself.
pub fn api_host(registry: &str) -> &str {
    if registry == crate::reference::DOCKER_HUB {
        crate::reference::DOCKER_HUB_API_HOST
    } else {
        registry
    }
}
