//! Talking to OCI registries (distribution spec v1.1): pulling base images and pushing images.
//!
//! From the wire up (each module uses only those above it):
//! - `environment`: the variables a job sees (the VM's view inside the BEAM).
//! - `retry`, `timeouts`, `origin`, `transport`: the rules of every exchange: which failures
//!   are retried and how long to wait; the headers deadline and minimum transfer rate; where
//!   credentials may go (redirects, upload locations, token realms); TLS roots and plain HTTP
//!   for loopback/insecure hosts.
//! - `errors`: what a failed exchange becomes (tagged errors, cleaned error bodies).
//! - `request`: one request as a value (method, URL, headers, body, retries, statuses).
//! - `auth`: scopes, `WWW-Authenticate` challenges, how to answer them, the token request and
//!   answer, and the negotiated headers cached per scope.
//! - `client`: a registry endpoint: the one request loop (auth, retries) for every request,
//!   token fetches included; redirects under the origin rule; bodies under the transfer rate.
//! - `credentials`: finding credentials: docker/podman config files and credential helpers
//!   (the value itself is [`crate::credentials::Credentials`]).
//! - `manifest`: manifests on the wire: GET (with every media type we read) and PUT.
//! - `local_data`, `blob_source`, `upload`: one blob into one repository: HEAD, mount,
//!   monolithic or chunked with resume, its bytes read once and hashed as sent.
//! - `writer`: one repository as a push writes to it: blobs placed, then manifests put.
//! - `pull`: platform choice, configs, and base layers into the verified cache.
//! - `push`: images and indexes: blobs in parallel, then manifests, then extra tags.
//! - `attach`: what a push adds after its tags: SBOM referrers and cosign signatures.
//! - `preflight`: before a push builds anything, the registry answers and takes our push.
//! - `inspect`: what the verifier reads: an image, its `.sig`/`.att` images and referrers.
//! - `progress`: the events long jobs report.
//! - `reference`: the old path of [`crate::reference`], kept for callers.
//!
//! Everything here is async and runs on a tokio runtime the caller owns (the NIF owns one).

pub mod attach;
pub mod auth;
pub mod blob_source;
pub mod client;
pub mod credentials;
pub mod environment;
pub mod errors;
pub mod inspect;
pub mod local_data;
pub mod manifest;
pub mod origin;
pub mod preflight;
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
mod inspect_tests;
#[cfg(test)]
pub(crate) mod testing;

pub use client::{Registries, RegistryClient};
pub use credentials::CredentialSources;
pub use environment::Environment;
pub use progress::{Phase, Progress, ProgressSink};

// Old paths, kept so callers compile unchanged: the value types moved below image/ and
// supply/, `challenge` and `token` into auth/.
pub use crate::credentials::Credentials;
pub use crate::reference::Reference;
pub use auth::{challenge, token};

/// The host that serves a registry's API: Docker Hub's is not `docker.io` itself.
pub fn api_host(registry: &str) -> &str {
    if registry == crate::reference::DOCKER_HUB {
        crate::reference::DOCKER_HUB_API_HOST
    } else {
        registry
    }
}
