//! An OCI registry (the parts of distribution spec v1.1 a client pushes and pulls with) held
//! in memory, on the in-process [`Server`]:
//!
//! - blobs: `HEAD`/`GET` (with `Range: bytes=N-` for a resumed download), uploads opened by
//!   `POST` (or a cross-repository mount), fed by `PATCH` (a `Content-Range` that does not
//!   start where the session stands is answered 416), finished by `PUT ?digest=` (checked),
//!   cancelled by `DELETE`;
//!   `GET` on a session says how far it got (`Range: 0-N`, `0-0` when empty, as
//!   distribution does);
//! - manifests: `PUT` (every blob it names must be in the repository), `GET`/`HEAD` by tag or
//!   digest, bytes and media type exactly as put;
//! - auth: none, Basic, or Bearer tokens from its own token endpoint (`/token`), scoped per
//!   repository and action, optionally used up after a number of requests (a token that
//!   expires mid-push);
//! - faults, matched on method and path, each firing on chosen occurrences: a status (429,
//!   503, ... with `Retry-After`), a reset before the answer or halfway through the request
//!   body, a download cut halfway, an answer without `Location`, a body with a byte flipped.
//!
//! ```ignore
//! let registry = Registry::start(Config::default()).await;
//! registry.inject(Fault::status("503 Service Unavailable").on("HEAD", "/blobs/").times(1..=2));
//! // ... push to registry.addr() ...
//! assert_eq!(registry.fired(), 2);
//! ```

mod api;
mod auth;
mod faults;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::server::{Bodies, Head, Reply, Seen, Server};
use crate::digest::Digest;

use api::{answer, error};
pub use auth::Auth;
use auth::Grant;
use faults::Armed;
pub use faults::{Action, Fault};

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub auth: Auth,
    /// Sent as `OCI-Chunk-Min-Length` when an upload is opened.
    pub chunk_min: Option<u64>,
    /// Answer mount requests with a plain upload session, as registries without
    /// cross-repository mounts do.
    pub no_mounts: bool,
    /// The token endpoint's `expires_in`, as JSON text (default 300): a test may send 0,
    /// -1, 1e300 or 2^64-1.
    pub token_expires_in: Option<&'static str>,
}

struct Upload {
    repo: String,
    data: Vec<u8>,
}

#[derive(Default)]
struct State {
    blobs: HashMap<String, Arc<Vec<u8>>>,
    /// `(repository, digest)`: which repositories hold which blobs.
    links: HashSet<(String, String)>,
    /// `(repository, tag or digest)` to `(media type, bytes)`.
    manifests: HashMap<(String, String), (String, Vec<u8>)>,
    uploads: HashMap<u64, Upload>,
    tokens: HashMap<String, Grant>,
    next_id: u64,
    faults: Vec<Armed>,
}

/// The registry: its listener and what it holds.
#[derive(Clone)]
pub struct Registry {
    pub server: Server,
    state: Arc<Mutex<State>>,
}

impl Registry {
    pub async fn start(config: Config) -> Registry {
        let state = Arc::new(Mutex::new(State::default()));
        let config = Arc::new(config);
        let shared = state.clone();
        let server = Server::start_routed("127.0.0.1", Bodies::Read, move |head| {
            route(&shared, &config, head)
        })
        .await;
        Registry { server, state }
    }

    /// `127.0.0.1:PORT`, the registry name to push to and pull from.
    pub fn addr(&self) -> &str {
        &self.server.addr
    }

    pub fn inject(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(Armed {
            fault,
            matched: 0,
            fired: 0,
        });
    }

    /// How many times the injected faults fired, in all.
    pub fn fired(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .faults
            .iter()
            .map(|a| a.fired)
            .sum()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.server.seen()
    }

    /// The requests with this method whose path contains `path`.
    pub fn requests(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|r| r.method == method && r.target.contains(path))
            .collect()
    }

    /// A blob of `repo`, if the repository holds it.
    pub fn blob(&self, repo: &str, digest: &Digest) -> Option<Vec<u8>> {
        let state = self.state.lock().unwrap();
        let key = (repo.to_string(), digest.to_string());
        state
            .links
            .contains(&key)
            .then(|| state.blobs[digest.as_str()].to_vec())
    }

    /// A manifest's media type and bytes, by tag or digest.
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        let state = self.state.lock().unwrap();
        state
            .manifests
            .get(&(repo.to_string(), reference.to_string()))
            .cloned()
    }

    /// Put a blob into `repo` directly (a base image pushed by another tool).
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let mut state = self.state.lock().unwrap();
        state
            .blobs
            .insert(digest.to_string(), Arc::new(bytes.to_vec()));
        state.links.insert((repo.to_string(), digest.to_string()));
        digest
    }

    /// Put a manifest under `tag` and its digest directly.
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let mut state = self.state.lock().unwrap();
        for reference in [tag.to_string(), digest.to_string()] {
            state.manifests.insert(
                (repo.to_string(), reference),
                (media_type.to_string(), bytes.to_vec()),
            );
        }
        digest
    }

    /// Upload sessions opened and neither finished nor cancelled.
    pub fn open_uploads(&self) -> usize {
        self.state.lock().unwrap().uploads.len()
    }

    /// How many tokens `/token` has handed out.
    pub fn tokens_issued(&self) -> usize {
        self.requests("GET", "/token?").len() + self.requests("POST", "/token").len()
    }
}

/// Decide on a request's head: a fault, or the registry's own answer once the body is in.
fn route(state: &Arc<Mutex<State>>, config: &Arc<Config>, head: &Seen) -> Head {
    let path = head.target.split('?').next().unwrap_or("").to_string();
    let action = {
        let mut state = state.lock().unwrap();
        let mut chosen = None;
        for armed in state.faults.iter_mut() {
            if !armed.fault.matches(&head.method, &path) {
                continue;
            }
            armed.matched += 1;
            if chosen.is_none() && armed.fault.times.contains(&armed.matched) {
                armed.fired += 1;
                chosen = Some(armed.fault.action.clone());
            }
        }
        chosen
    };
    if let Some(Action::ResetMidBody) = action {
        return Head::ResetMidBody;
    }
    let (state, config) = (state.clone(), config.clone());
    Head::ReadBody(Box::new(move |request| match action {
        Some(Action::Status {
            status,
            retry_after,
        }) => {
            let reply = error(status, "INJECTED", "an injected fault");
            match retry_after {
                Some(secs) => reply.header("Retry-After", secs),
                None => reply,
            }
        }
        Some(Action::Reset) => Reply::Reset,
        Some(Action::CutBody) => {
            let reply = answer(&state, &config, request);
            let keep = match &reply {
                Reply::Send { body, .. } => body.len() / 2,
                _ => 0,
            };
            Reply::Cut {
                reply: Box::new(reply),
                keep,
            }
        }
        Some(Action::NoLocation) => match answer(&state, &config, request) {
            Reply::Send {
                status,
                headers,
                body,
            } => Reply::Send {
                status,
                headers: headers
                    .into_iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("location"))
                    .collect(),
                body,
            },
            other => other,
        },
        Some(Action::Corrupt) => match answer(&state, &config, request) {
            Reply::Send {
                status,
                headers,
                mut body,
            } => {
                if let Some(first) = body.first_mut() {
                    *first ^= 0xff;
                }
                Reply::Send {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        },
        Some(Action::ResetMidBody) | None => answer(&state, &config, request),
    }))
}
