//! What kind of failure a backend error is, whatever backend it comes from.
//!
//! Every backend crate has one `Error` type with a `kind()`; the binary chooses the log
//! level and the shape of the message from the [`ErrorKind`] alone, never from a
//! backend's variants.

use std::fmt;
use std::time::Duration;

/// The kinds of backend failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The backend does not serve this image (a host it does not recognise).
    NotServed,
    /// No credentials could be found for the identity the backend uses.
    NoCredentials,
    /// The cloud or registry refused the identity (HTTP 401/403, access denied).
    AccessDenied,
    /// The cloud kept throttling until the fetch's budget was spent.
    Throttled,
    /// A request or the whole fetch took longer than its limit.
    Timeout,
    /// The service could not be reached, or the connection failed.
    Network,
    /// The service answered with an error status, or an answer that cannot be used.
    BadResponse,
    /// The rule's settings, or a file or variable they name, are wrong.
    Config,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::NotServed,
        ErrorKind::NoCredentials,
        ErrorKind::AccessDenied,
        ErrorKind::Throttled,
        ErrorKind::Timeout,
        ErrorKind::Network,
        ErrorKind::BadResponse,
        ErrorKind::Config,
    ];

    /// A short lower-case name: `access-denied`, `timeout`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotServed => "not-served",
            ErrorKind::NoCredentials => "no-credentials",
            ErrorKind::AccessDenied => "access-denied",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::BadResponse => "bad-response",
            ErrorKind::Config => "config",
        }
    }

    /// Whether trying again later may succeed with nothing changed: throttling, a
    /// timeout, a network failure, an error status from an unhealthy service.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Timeout | ErrorKind::Network
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend crate's error: one line that never holds a credential, and its kind.
pub trait BackendError: std::error::Error + Send + Sync + 'static {
    /// What kind of failure this is.
    fn kind(&self) -> ErrorKind;

    /// Whether trying again later may succeed with nothing changed: its kind's
    /// [`ErrorKind::is_transient`], and also a server error (HTTP 5xx) from a service that
    /// is down or overloaded, which is of kind [`ErrorKind::BadResponse`] like any other
    /// unexpected status. A backend whose errors can be 5xx answers overrides this.
    fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// How long the service asked to be left alone (its `Retry-After`) when it throttled
    /// the last request ([`ErrorKind::Throttled`]); `None` when it did not say, or for any
    /// other failure.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}
