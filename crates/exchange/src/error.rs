//! What can go wrong, each in one line that names the cause and never holds a token.

/// An error of one of the token-exchange backends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The backend's section of the rule is invalid.
    #[error("invalid {section} configuration: {reason}")]
    Config {
        /// The section: `quay`, `jfrog`, `cloudsmith`, `vault` or `tokenExchange`.
        section: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The kubelet sent no service account token, and the backend pulls only as the pod's
    /// service account: the pull gets no credentials (the kubelet then falls back to the
    /// pod's image pull secrets). Its kind is [`NotServed`](icp_core::ErrorKind::NotServed),
    /// which the binary answers with an empty response, logged at `-v`.
    #[error(
        "the kubelet sent no service account token and the {0} backend pulls only as the pod's \
         service account (set the provider's tokenAttributes); answering with no credentials"
    )]
    NoServiceAccountToken(&'static str),
    /// The service account lacks what the rule needs of it (an annotation), or has a value
    /// that cannot be used.
    #[error("{0}")]
    NoCredentials(String),
    /// A file the rule names (a client secret) cannot be read.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The registry or token service refused the pod's token (HTTP 401/403).
    #[error("access denied by {service}: {detail}")]
    AccessDenied {
        /// Who refused.
        service: String,
        /// The status and the service's own error message.
        detail: String,
    },
    /// The service kept answering 429 or 5xx (or asked to wait longer than the time left).
    #[error("throttled by {0}; try again later")]
    Throttled(String),
    /// The service did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The service answered with an unexpected status.
    #[error("{service} answered HTTP {status}{detail}")]
    Status {
        /// The service.
        service: String,
        /// The status code.
        status: u16,
        /// The service's error message, with a leading `: `, or nothing.
        detail: String,
    },
    /// The service could not be reached.
    #[error("cannot reach {service}: {cause}")]
    Network {
        /// The service.
        service: String,
        /// Why (in the message, so not a `source()`).
        cause: icp_http::Error,
    },
    /// The service answered something that is not what it should answer.
    #[error("unexpected answer from {service}: {reason}")]
    BadResponse {
        /// The service.
        service: String,
        /// What is wrong.
        reason: String,
    },
    /// A fetch as a pod's service account failed: names the account and the annotation
    /// or rule field the exchange used, then the cause.
    #[error("service account {account} ({used}): {error}")]
    ServiceAccount {
        /// The service account, `namespace/name`.
        account: String,
        /// The annotations or rule fields used, and their values.
        used: String,
        /// The cause (in the message, so not a `source()`).
        error: Box<Error>,
    },
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl Error {
    /// A configuration error of `section`.
    pub(crate) fn config(section: &'static str, reason: impl Into<String>) -> Error {
        Error::Config {
            section,
            reason: reason.into(),
        }
    }

    /// Whether this is [`Error::NoServiceAccountToken`], through any context.
    pub fn is_no_service_account_token(&self) -> bool {
        match self {
            Error::NoServiceAccountToken(_) => true,
            Error::ServiceAccount { error, .. } => error.is_no_service_account_token(),
            _ => false,
        }
    }
}

impl icp_core::BackendError for Error {
    fn kind(&self) -> icp_core::ErrorKind {
        use icp_core::ErrorKind;
        match self {
            Error::Config { .. } | Error::File { .. } => ErrorKind::Config,
            Error::NoServiceAccountToken(_) => ErrorKind::NotServed,
            Error::NoCredentials(_) => ErrorKind::NoCredentials,
            Error::AccessDenied { .. } => ErrorKind::AccessDenied,
            Error::Throttled(_) => ErrorKind::Throttled,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Network { .. } | Error::Runtime(_) => ErrorKind::Network,
            Error::Status { .. } | Error::BadResponse { .. } => ErrorKind::BadResponse,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use icp_core::{BackendError, ErrorKind};

    #[test]
    fn a_server_error_is_transient_and_still_a_bad_response() {
        let status = |status| Error::Status {
            service: "vault.example".into(),
            status,
            detail: String::new(),
        };
        assert!(status(503).is_transient());
        assert_eq!(status(503).kind(), ErrorKind::BadResponse);
        assert!(!status(404).is_transient());
        let wrapped = Error::ServiceAccount {
            account: "team/app".into(),
            used: "role".into(),
            error: Box::new(status(502)),
        };
        assert!(wrapped.is_transient());
        assert!(Error::Throttled("x".into()).is_transient());
        assert!(!Error::NoCredentials("x".into()).is_transient());
    }
}
