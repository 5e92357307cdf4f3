//! What can go wrong, each in one line that names the cause and never holds a secret.

use std::time::Duration;

/// An ACR backend error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `acr` section of the rule (or the command line) is invalid.
    #[error("invalid acr configuration: {0}")]
    Config(String),
    /// The rule has no `acr` settings and the `AZURE_*` environment cannot be used (for
    /// example `AZURE_FEDERATED_TOKEN_FILE` without `AZURE_CLIENT_ID`): the constructor's
    /// error, which the binary reports for the pull whose rule first needs the backend.
    #[error("{0}")]
    Environment(String),
    /// The `azure.json` file (or the custom cloud's environment file) cannot be used.
    #[error("cannot use {path}: {reason}")]
    AzureConfig {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The image's registry is not an ACR login server this backend serves.
    #[error("{0} is not an Azure Container Registry login server this rule serves")]
    NotServed(String),
    /// The identity has no usable credentials (a missing token or secret file, a
    /// managed identity that does not exist on this VM, ...).
    #[error("no Azure credentials: {0}")]
    NoCredentials(String),
    /// Azure AD or the registry refused the credentials.
    #[error("access denied by {service}: {detail}")]
    AccessDenied {
        /// Who refused: `Azure AD`, `IMDS`, or the registry.
        service: String,
        /// The status and the service's error code or message.
        detail: String,
    },
    /// A service kept answering 429 (or asked to wait longer than the time left), and how
    /// long its last answer asked to wait (`Retry-After`), if it said.
    #[error("throttled by {0}; try again later")]
    Throttled(String, Option<Duration>),
    /// A service did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A service answered with an unexpected status.
    #[error("{service} answered HTTP {status}{detail}")]
    Status {
        /// The service.
        service: String,
        /// The status code.
        status: u16,
        /// The service's error code or message, with a leading `: `, or nothing.
        detail: String,
    },
    /// A service could not be reached.
    #[error("cannot reach {service}: {cause}")]
    Network {
        /// The service.
        service: String,
        /// Why (in the message, so not a `source()`).
        cause: icp_http::Error,
    },
    /// The registry's `WWW-Authenticate` challenge is missing, malformed, or points
    /// somewhere the Azure AD token must not go.
    #[error("registry {registry}: {reason}")]
    Challenge {
        /// The login server.
        registry: String,
        /// What is wrong.
        reason: String,
    },
    /// A service answered something that is not what it should answer.
    #[error("unexpected answer from {service}: {reason}")]
    BadResponse {
        /// The service.
        service: String,
        /// What is wrong.
        reason: String,
    },
    /// A fetch as a pod's own identity failed: names the pod's service account and the
    /// annotations it was fetched with, then the cause.
    #[error("service account {account} ({identity}): {error}")]
    ServiceAccount {
        /// The service account, `namespace/name`.
        account: String,
        /// The annotations used and their values.
        identity: String,
        /// The cause (in the message, so not a `source()`).
        error: Box<Error>,
    },
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl icp_core::BackendError for Error {
    fn kind(&self) -> icp_core::ErrorKind {
        use icp_core::ErrorKind;
        match self {
            Error::Config(_) | Error::Environment(_) | Error::AzureConfig { .. } => {
                ErrorKind::Config
            }
            Error::NotServed(_) => ErrorKind::NotServed,
            Error::NoCredentials(_) => ErrorKind::NoCredentials,
            Error::AccessDenied { .. } => ErrorKind::AccessDenied,
            Error::Throttled(..) => ErrorKind::Throttled,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Network { .. } | Error::Runtime(_) => ErrorKind::Network,
            Error::Status { .. } | Error::Challenge { .. } | Error::BadResponse { .. } => {
                ErrorKind::BadResponse
            }
            Error::ServiceAccount { error, .. } => error.kind(),
        }
    }

    /// A 5xx answer too.
    fn is_transient(&self) -> bool {
        match self {
            Error::Status { status, .. } => *status >= 500,
            Error::ServiceAccount { error, .. } => error.is_transient(),
            error => error.kind().is_transient(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Throttled(_, wait) => *wait,
            Error::ServiceAccount { error, .. } => error.retry_after(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icp_core::{BackendError, ErrorKind};

    #[test]
    fn a_server_error_is_transient_and_still_a_bad_response() {
        let status = |status| Error::Status {
            service: "Azure AD".into(),
            status,
            detail: String::new(),
        };
        assert!(status(503).is_transient());
        assert_eq!(status(503).kind(), ErrorKind::BadResponse);
        assert!(!status(404).is_transient());
        let wrapped = Error::ServiceAccount {
            account: "team/app".into(),
            identity: "client-id=x".into(),
            error: Box::new(status(500)),
        };
        assert!(wrapped.is_transient());
        assert!(Error::Throttled("x".into(), None).is_transient());
        assert!(!Error::NoCredentials("x".into()).is_transient());
    }
}
