//! What one answer was, for the audit log (`audit`) and the node metrics (`metrics`):
//! filled in by the main path (`plugin`) as the answer is worked out, then handed to the
//! [`Recorders`] in force. Never a token, password or service account token: the identity
//! is what the token cache key holds (`icp_core::TokenKey::identity`), which never holds
//! a secret.

use std::time::{Duration, SystemTime};

/// One answer, or one failure to answer.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request was read.
    pub time: SystemTime,
    /// The image asked for, as the kubelet sent it; `None` when the request was unreadable.
    pub image: Option<String>,
    /// The index of the rule that served it.
    pub rule: Option<usize>,
    /// The backend of that rule.
    pub backend: Option<String>,
    /// Who the credentials were fetched as: the token key's identity (the node's, or a
    /// pod's service account, namespace, name, uid and the role, client id or account it
    /// names), `node` for static credentials on the node.
    pub identity: Option<String>,
    /// How the token cache was used.
    pub cache: CacheUse,
    /// How long the upstream fetch took, when there was one.
    pub upstream: Option<Duration>,
    /// Whether the upstream fetch failed (a stale answer's refresh included).
    pub upstream_failed: bool,
    /// What the plugin answered.
    pub outcome: Outcome,
    /// The `cacheDuration` of the answer.
    pub cache_duration: Option<Duration>,
    /// Why it failed, or why a stale answer's refresh failed.
    pub problem: Option<Problem>,
}

/// How the token cache was used for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// No token was needed: static credentials, no rule, or a bad request.
    None,
    /// Caching is off, or the cache directory could not be used.
    Off,
    /// A cached token was answered.
    Hit,
    /// The token was fetched (by this process, or by one it waited for).
    Miss,
    /// Refreshing failed for a transient reason and a cached token, still valid, was
    /// answered (`stale`).
    Stale,
}

impl CacheUse {
    /// The name in the audit log and the metrics' `cache` label.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheUse::None => "none",
            CacheUse::Off => "off",
            CacheUse::Hit => "hit",
            CacheUse::Miss => "miss",
            CacheUse::Stale => "stale",
        }
    }
}

/// What the plugin answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Credentials.
    Served,
    /// An empty `auth`: no rule serves the image, or its backend has nothing for it.
    Empty,
    /// An error: exit 1 and nothing on stdout.
    Error,
}

impl Outcome {
    /// The name in the audit log and the metrics' `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::Empty => "empty",
            Outcome::Error => "error",
        }
    }
}

/// Why an answer failed (or a stale answer's refresh did).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Problem {
    /// The backend's `icp_core::ErrorKind` name (`timeout`, `access-denied`, ...), or
    /// `bad-request` (the request could not be read, or named no valid image), or `io`
    /// (the response could not be written).
    pub kind: &'static str,
    /// Whether trying again later may succeed with nothing changed.
    pub transient: bool,
}

impl Record {
    /// The record of a request for `image` read at `time`, before anything is known of
    /// its answer.
    pub fn new(time: SystemTime, image: Option<&str>) -> Record {
        Record {
            time,
            image: image.map(str::to_owned),
            rule: None,
            backend: None,
            identity: None,
            cache: CacheUse::None,
            upstream: None,
            upstream_failed: false,
            outcome: Outcome::Error,
            cache_duration: None,
            problem: None,
        }
    }

    /// The backend's name for the metrics' `backend` label: `none` when no rule served.
    pub fn backend_label(&self) -> &str {
        self.backend.as_deref().unwrap_or("none")
    }
}
