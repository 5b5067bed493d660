//! Who may do what: Basic credentials, or Bearer tokens from the registry's own `/token`
//! endpoint, scoped per repository and action.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine;

use super::api::{error, query};
use super::{Config, Reply, Seen, State};

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

pub(super) struct Grant {
    /// `(repository, action)` pairs.
    access: HashSet<(String, String)>,
    uses_left: Option<usize>,
}

fn basic_header(username: &str, password: &str) -> String {
    let pair = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `None` when the request may go on; else the 401 to send.
pub(super) fn authorize(
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
pub(super) fn may_pull(state: &State, config: &Config, req: &Seen, repo: &str) -> bool {
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
pub(super) fn token(state: &Mutex<State>, config: &Config, req: &Seen) -> Reply {
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
