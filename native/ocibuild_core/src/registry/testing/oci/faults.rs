//! Faults: which requests they fire on, and what they do.

use std::ops::RangeInclusive;

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
    pub(super) action: Action,
    method: &'static str,
    path: String,
    pub(super) times: RangeInclusive<usize>,
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

    pub(super) fn matches(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method == method) && path.contains(&self.path)
    }
}

pub(super) struct Armed {
    pub(super) fault: Fault,
    /// Requests that matched so far.
    pub(super) matched: usize,
    pub(super) fired: usize,
}
