//! The distribution API: blobs, uploads, mounts and manifests, over the registry's state.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::auth::{authorize, may_pull, token};
use super::{Config, Reply, Seen, State, Upload};
use crate::digest::Digest;

/// The spec's error body.
pub(super) fn error(status: &'static str, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    Reply::status(status)
        .header("Content-Type", "application/json")
        .body(body.to_string())
}

pub(super) fn query(target: &str) -> Vec<(String, String)> {
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

pub(super) fn answer(state: &Mutex<State>, config: &Config, req: &Seen) -> Reply {
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
        ("DELETE", Route::Upload(repo, id)) => match state.uploads.get(&id) {
            Some(upload) if upload.repo == repo => {
                state.uploads.remove(&id);
                Reply::status("204 No Content")
            }
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
