//! What can go wrong sending a request.

use std::time::Duration;

use crate::RESOLVE_ENV;

/// Why a request got no response. Messages name the host, never a header or body, so
/// they never contain a credential. Each message includes its cause, so the error has no
/// `source()`: a `{:#}` chain never says the cause twice.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not an absolute `http://` or `https://` URL with a host.
    #[error("invalid URL: {0}")]
    Url(String),
    /// A header name or value is not valid in HTTP.
    #[error("invalid header {0:?}")]
    Header(String),
    /// [`RESOLVE_ENV`] is malformed.
    #[error("invalid {RESOLVE_ENV}: {0}")]
    Resolve(String),
    /// A proxy setting is unusable, or the proxy refused the tunnel.
    #[error("proxy {proxy}: {reason}")]
    Proxy {
        /// The proxy's variable (`HTTPS_PROXY`, ...) or `host:port`.
        proxy: String,
        /// What is wrong.
        reason: String,
    },
    /// No trusted root certificate could be loaded for TLS.
    #[error("no trusted root certificates: {0}")]
    Roots(String),
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {cause}")]
    Dns {
        /// The host.
        host: String,
        /// Why.
        cause: std::io::Error,
    },
    /// No TCP connection could be made.
    #[error("cannot connect to {authority}: {cause}")]
    Connect {
        /// The `host:port` connected to.
        authority: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The TCP connection or the TLS handshake took longer than the connect timeout.
    #[error("connecting to {authority} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The `host:port` connected to.
        authority: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The TLS handshake failed (an untrusted certificate, a name mismatch, ...).
    #[error("TLS handshake with {authority} failed: {cause}")]
    Tls {
        /// The `host:port` connected to.
        authority: String,
        /// Why.
        cause: std::io::Error,
    },
    /// The whole exchange took longer than the request's deadline.
    #[error("request to {authority} timed out after {timeout:?}")]
    Timeout {
        /// The `host:port` of the request.
        authority: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The response body is larger than the cap.
    #[error("response from {authority} is larger than {limit} bytes")]
    TooLarge {
        /// The `host:port` of the request.
        authority: String,
        /// The cap.
        limit: usize,
    },
    /// The HTTP exchange itself failed (connection closed, malformed response, ...).
    #[error("HTTP exchange with {authority} failed: {cause}")]
    Http {
        /// The `host:port` of the request.
        authority: String,
        /// Why.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether the error is a connect timeout or a request deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::ConnectTimeout { .. } | Error::Timeout { .. })
    }

    /// Whether trying the same request again may help: timeouts, refused or reset
    /// connections and broken exchanges, but not a bad URL, a TLS failure or a body too
    /// large.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::ConnectTimeout { .. }
                | Error::Timeout { .. }
                | Error::Connect { .. }
                | Error::Http { .. }
        )
    }
}
