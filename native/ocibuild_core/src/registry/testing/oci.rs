//! An OCI registry (the parts of distribution spec v1.1 a client pushes and pulls with) held
//! in memory, on the in-process [`Server`]:
//!
//! - blobs: `HEAD`/`GET` (with `Range: bytes=N-` for a resumed download), uploads opened by
//!   `POST` (or a cross-repository mount), fed by `PATCH` (a `Content-Range` that does not
//!   start where the session stands is answered 416), finished by `PUT ?digest=` (checked);
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

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::Value;

use super::server::{Bodies, Head, Reply, Seen, Server};
use crate::digest::Digest;

/// Who may do what.
#[derive(Clone, Debug, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    /// Every request needs these credentials.
    Basic { username: String, password: String },
    /// Bearer tokens from `/token` on the same listener. The user gets pull and push on any
    /// repository; anonymous callers get pull when `anonymous_pull`. A token serves `uses`
    /// requests (unbounded when `None`) and is then refused as expired.
    Token {
        username: String,
        password: String,
        anonymous_pull: bool,
        uses: Option<usize>,
    },
}

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

/// What a fault does to the requests it fires on.
#[derive(Clone, Debug)]
pub enum Action {
    /// Answer with this status (and `Retry-After`, if given) without doing anything.
    Status {
        status: &'static str,
        retry_after: Option<&'static str>,
    },
    /// Read the whole request, do nothing, reset the connection.
    Reset,
    /// Read half the request body, reset the connection; nothing of it is kept.
    ResetMidBody,
    /// Do the request, send the answer's head and half its body, close the connection.
    CutBody,
    /// Do the request, answer without `Location`.
    NoLocation,
    /// Do the request, answer with the body's first byte flipped.
    Corrupt,
}

/// A fault: an action on the requests whose method is `method` (`*`: any) and whose path
/// contains `path`, firing on the `times`-th of them (counted from 1).
#[derive(Clone, Debug)]
pub struct Fault {
    action: Action,
    method: &'static str,
    path: String,
    times: RangeInclusive<usize>,
}

impl Fault {
    pub fn new(action: Action) -> Fault {
        Fault {
            action,
            method: "*",
            path: String::new(),
            times: 1..=usize::MAX,
        }
    }

    pub fn status(status: &'static str) -> Fault {
        Fault::new(Action::Status {
            status,
            retry_after: None,
        })
    }

    pub fn retry_after(mut self, seconds: &'static str) -> Fault {
        if let Action::Status { retry_after, .. } = &mut self.action {
            *retry_after = Some(seconds);
        }
        self
    }

    pub fn on(mut self, method: &'static str, path: impl Into<String>) -> Fault {
        self.method = method;
        self.path = path.into();
        self
    }

    pub fn times(mut self, times: RangeInclusive<usize>) -> Fault {
        self.times = times;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method == method) && path.contains(&self.path)
    }
}

struct Armed {
    fault: Fault,
    matched: usize,
    fired: usize,
}

struct Upload {
    repo: String,
    data: Vec<u8>,
}

struct Grant {
    /// `(repository, action)` pairs.
    access: HashSet<(String, String)>,
    uses_left: Option<usize>,
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

/// The spec's error body.
fn error(status: &'static str, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    Reply::status(status)
        .header("Content-Type", "application/json")
        .body(body.to_string())
}

fn query(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn query_value(target: &str, name: &str) -> Option<String> {
    query(target)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

/// What a `/v2/...` path asks for.
enum Route {
    Base,
    Blob(String, String),
    UploadStart(String),
    Upload(String, u64),
    Manifest(String, String),
    Unknown,
}

fn parse_route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Unknown;
    };
    if rest.is_empty() {
        return Route::Base;
    }
    if let Some((repo, id)) = rest.rsplit_once("/blobs/uploads/") {
        return match id {
            "" => Route::UploadStart(repo.to_string()),
            id => id
                .parse()
                .map_or(Route::Unknown, |id| Route::Upload(repo.to_string(), id)),
        };
    }
    if let Some((repo, digest)) = rest.rsplit_once("/blobs/") {
        return Route::Blob(repo.to_string(), digest.to_string());
    }
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        return Route::Manifest(repo.to_string(), reference.to_string());
    }
    Route::Unknown
}

fn route_repo(route: &Route) -> Option<&str> {
    match route {
        Route::Blob(r, _) | Route::UploadStart(r) | Route::Upload(r, _) | Route::Manifest(r, _) => {
            Some(r)
        }
        Route::Base | Route::Unknown => None,
    }
}

fn answer(state: &Mutex<State>, config: &Config, req: &Seen) -> Reply {
    let path = req.target.split('?').next().unwrap_or("");
    if path == "/token" {
        return token(state, config, req);
    }
    let route = parse_route(path);
    let action = match req.method.as_str() {
        "GET" | "HEAD" => "pull",
        _ => "push",
    };
    let mut state = state.lock().unwrap();
    if let Some(refused) = authorize(&mut state, config, req, route_repo(&route), action) {
        return refused;
    }
    match (req.method.as_str(), route) {
        (_, Route::Base) => Reply::status("200 OK").body("{}"),
        ("HEAD" | "GET", Route::Blob(repo, digest)) => get_blob(&state, req, &repo, &digest),
        ("POST", Route::UploadStart(repo)) => start_upload(&mut state, config, req, &repo),
        ("PATCH", Route::Upload(repo, id)) => patch_upload(&mut state, req, &repo, id),
        ("PUT", Route::Upload(repo, id)) => finish_upload(&mut state, req, &repo, id),
        ("GET", Route::Upload(repo, id)) => match state.uploads.get(&id) {
            Some(upload) if upload.repo == repo => Reply::status("204 No Content")
                .header("Location", upload_url(&repo, id))
                .header("Range", range(upload.data.len())),
            _ => error("404 Not Found", "BLOB_UPLOAD_UNKNOWN", "no such upload"),
        },
        ("PUT", Route::Manifest(repo, reference)) => {
            put_manifest(&mut state, req, &repo, &reference)
        }
        ("HEAD" | "GET", Route::Manifest(repo, reference)) => {
            match state.manifests.get(&(repo, reference)) {
                Some((media_type, bytes)) => {
                    let reply = Reply::status("200 OK")
                        .header("Content-Type", media_type.clone())
                        .header("Docker-Content-Digest", Digest::of(bytes).to_string());
                    if req.method == "HEAD" {
                        reply.header("Content-Length", bytes.len().to_string())
                    } else {
                        reply.body(bytes.clone())
                    }
                }
                None => error("404 Not Found", "MANIFEST_UNKNOWN", "manifest unknown"),
            }
        }
        _ => error("405 Method Not Allowed", "UNSUPPORTED", "not here"),
    }
}

/// `Range: 0-N` for a session holding `len` bytes; distribution says `0-0` when it is empty.
fn range(len: usize) -> String {
    format!("0-{}", len.saturating_sub(1))
}

fn upload_url(repo: &str, id: u64) -> String {
    // A query of its own, as distribution's `_state`, so a client must append to it.
    format!("/v2/{repo}/blobs/uploads/{id}?_state=s{id}")
}

fn get_blob(state: &State, req: &Seen, repo: &str, digest: &str) -> Reply {
    if !state
        .links
        .contains(&(repo.to_string(), digest.to_string()))
    {
        return error("404 Not Found", "BLOB_UNKNOWN", "blob unknown");
    }
    let bytes = &state.blobs[digest];
    let reply = Reply::status("200 OK")
        .header("Docker-Content-Digest", digest)
        .header("Content-Type", "application/octet-stream");
    if req.method == "HEAD" {
        return reply.header("Content-Length", bytes.len().to_string());
    }
    let from = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match from {
        Some(from) if from < bytes.len() => Reply::Send {
            status: "206 Partial Content",
            headers: vec![(
                "Content-Range".into(),
                format!("bytes {from}-{}/{}", bytes.len() - 1, bytes.len()),
            )],
            body: bytes[from..].to_vec(),
        },
        Some(_) => error("416 Range Not Satisfiable", "RANGE_INVALID", "past the end"),
        None => reply.body(bytes.to_vec()),
    }
}

fn start_upload(state: &mut State, config: &Config, req: &Seen, repo: &str) -> Reply {
    if let (Some(digest), Some(from)) = (
        query_value(&req.target, "mount"),
        query_value(&req.target, "from"),
    ) {
        let in_from = state.links.contains(&(from.clone(), digest.clone()));
        if in_from && !config.no_mounts && may_pull(state, config, req, &from) {
            state.links.insert((repo.to_string(), digest.clone()));
            return Reply::status("201 Created")
                .header("Location", format!("/v2/{repo}/blobs/{digest}"))
                .header("Docker-Content-Digest", digest);
        }
    }
    state.next_id += 1;
    let id = state.next_id;
    state.uploads.insert(
        id,
        Upload {
            repo: repo.to_string(),
            data: Vec::new(),
        },
    );
    let reply = Reply::status("202 Accepted")
        .header("Location", upload_url(repo, id))
        .header("Range", "0-0");
    match config.chunk_min {
        Some(min) => reply.header("OCI-Chunk-Min-Length", min.to_string()),
        None => reply,
    }
}

fn patch_upload(state: &mut State, req: &Seen, repo: &str, id: u64) -> Reply {
    let Some(upload) = state.uploads.get_mut(&id).filter(|u| u.repo == repo) else {
        return error("404 Not Found", "BLOB_UPLOAD_UNKNOWN", "no such upload");
    };
    if let Some(content_range) = req.header("content-range") {
        let start = content_range
            .split_once('-')
            .and_then(|(s, _)| s.trim().parse::<usize>().ok());
        if start != Some(upload.data.len()) {
            return Reply::status("416 Range Not Satisfiable")
                .header("Location", upload_url(repo, id))
                .header("Range", range(upload.data.len()));
        }
    }
    upload.data.extend_from_slice(&req.body);
    Reply::status("202 Accepted")
        .header("Location", upload_url(repo, id))
        .header("Range", range(upload.data.len()))
}

fn finish_upload(state: &mut State, req: &Seen, repo: &str, id: u64) -> Reply {
    let Some(mut upload) = state.uploads.remove(&id).filter(|u| u.repo == repo) else {
        return error("404 Not Found", "BLOB_UPLOAD_UNKNOWN", "no such upload");
    };
    upload.data.extend_from_slice(&req.body);
    let actual = Digest::of(&upload.data);
    if query_value(&req.target, "digest").as_deref() != Some(actual.as_str()) {
        // The session is gone either way, as in distribution.
        return error("400 Bad Request", "DIGEST_INVALID", "digest mismatch");
    }
    state
        .blobs
        .insert(actual.to_string(), Arc::new(upload.data));
    state.links.insert((repo.to_string(), actual.to_string()));
    Reply::status("201 Created")
        .header("Location", format!("/v2/{repo}/blobs/{actual}"))
        .header("Docker-Content-Digest", actual.to_string())
}

fn put_manifest(state: &mut State, req: &Seen, repo: &str, reference: &str) -> Reply {
    let Ok(json) = serde_json::from_slice::<Value>(&req.body) else {
        return error("400 Bad Request", "MANIFEST_INVALID", "not JSON");
    };
    let digest = Digest::of(&req.body);
    if reference.starts_with("sha256:") && reference != digest.as_str() {
        return error("400 Bad Request", "DIGEST_INVALID", "digest mismatch");
    }
    let digests = |v: Option<&Value>| -> Vec<String> {
        let items = match v {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(item) => vec![item],
            None => Vec::new(),
        };
        items
            .into_iter()
            .filter_map(|d| d.get("digest")?.as_str().map(str::to_string))
            .collect()
    };
    let mut blobs = digests(json.get("config"));
    blobs.extend(digests(json.get("layers")));
    if blobs
        .iter()
        .any(|d| !state.links.contains(&(repo.to_string(), d.clone())))
    {
        return error("400 Bad Request", "MANIFEST_BLOB_UNKNOWN", "blob unknown");
    }
    if digests(json.get("manifests"))
        .into_iter()
        .any(|d| !state.manifests.contains_key(&(repo.to_string(), d)))
    {
        return error("400 Bad Request", "MANIFEST_UNKNOWN", "manifest unknown");
    }
    let media_type = req.header("content-type").unwrap_or("").to_string();
    for r in [reference.to_string(), digest.to_string()] {
        state.manifests.insert(
            (repo.to_string(), r),
            (media_type.clone(), req.body.clone()),
        );
    }
    Reply::status("201 Created")
        .header("Location", format!("/v2/{repo}/manifests/{digest}"))
        .header("Docker-Content-Digest", digest.to_string())
}

fn basic_header(username: &str, password: &str) -> String {
    let pair = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `None` when the request may go on; else the 401 to send.
fn authorize(
    state: &mut State,
    config: &Config,
    req: &Seen,
    repo: Option<&str>,
    action: &str,
) -> Option<Reply> {
    match &config.auth {
        Auth::Anonymous => None,
        Auth::Basic { username, password } => {
            if req.header("authorization") == Some(basic_header(username, password).as_str()) {
                None
            } else {
                Some(
                    error(
                        "401 Unauthorized",
                        "UNAUTHORIZED",
                        "authentication required",
                    )
                    .header("WWW-Authenticate", "Basic realm=\"test\""),
                )
            }
        }
        Auth::Token { .. } => {
            let token = req
                .header("authorization")
                .and_then(|h| h.strip_prefix("Bearer "));
            let allowed = token.is_some_and(|t| spend(state, t, repo, action));
            if allowed {
                return None;
            }
            let mut challenge =
                format!("Bearer realm=\"http://{}/token\",service=\"test\"", req.at);
            if let Some(repo) = repo {
                let actions = if action == "pull" {
                    "pull"
                } else {
                    "pull,push"
                };
                challenge.push_str(&format!(",scope=\"repository:{repo}:{actions}\""));
            }
            Some(
                error(
                    "401 Unauthorized",
                    "UNAUTHORIZED",
                    "authentication required",
                )
                .header("WWW-Authenticate", challenge),
            )
        }
    }
}

/// Does `token` allow `action` on `repo` (any valid token for `/v2/`)? Uses one of its
/// requests if so.
fn spend(state: &mut State, token: &str, repo: Option<&str>, action: &str) -> bool {
    let Some(grant) = state.tokens.get_mut(token) else {
        return false;
    };
    if grant.uses_left == Some(0) {
        return false;
    }
    let covered = repo.is_none_or(|r| grant.access.contains(&(r.to_string(), action.to_string())));
    if covered {
        if let Some(n) = &mut grant.uses_left {
            *n -= 1;
        }
    }
    covered
}

/// May the caller of `req` pull from `repo` (for a mount's `from`)?
fn may_pull(state: &State, config: &Config, req: &Seen, repo: &str) -> bool {
    match &config.auth {
        Auth::Token { .. } => req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|t| state.tokens.get(t))
            .is_some_and(|g| g.access.contains(&(repo.to_string(), "pull".to_string()))),
        _ => true,
    }
}

/// The token endpoint: a token granting what the scopes ask for, as far as the caller may.
fn token(state: &Mutex<State>, config: &Config, req: &Seen) -> Reply {
    let Auth::Token {
        username,
        password,
        anonymous_pull,
        uses,
    } = &config.auth
    else {
        return error("404 Not Found", "NOT_FOUND", "no token endpoint");
    };
    let user = match req.header("authorization") {
        None => false,
        Some(h) if h == basic_header(username, password) => true,
        Some(_) => return error("401 Unauthorized", "UNAUTHORIZED", "bad credentials"),
    };
    let mut access = HashSet::new();
    for (_, scope) in query(&req.target).into_iter().filter(|(n, _)| n == "scope") {
        for one in scope.split(' ') {
            let mut parts = one.splitn(3, ':');
            let (Some("repository"), Some(repo), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            for action in actions.split(',') {
                if user || (*anonymous_pull && action == "pull") {
                    access.insert((repo.to_string(), action.to_string()));
                }
            }
        }
    }
    let mut state = state.lock().unwrap();
    state.next_id += 1;
    let token = format!("tok{}", state.next_id);
    state.tokens.insert(
        token.clone(),
        Grant {
            access,
            uses_left: *uses,
        },
    );
    let expires_in = config.token_expires_in.unwrap_or("300");
    Reply::status("200 OK")
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"token":"{token}","expires_in":{expires_in}}}"#
        ))
}
