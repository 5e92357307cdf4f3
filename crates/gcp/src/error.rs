//! What can go wrong, in one line that names the cause and never a credential.

use std::path::PathBuf;
use std::time::Duration;

/// Why the Google backend has no credentials. Messages name the endpoint, file or field
/// at fault, never a token, key, secret or signed URL's query.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rule's `gcp:` section, or an environment variable, is invalid.
    #[error("invalid gcp configuration: {0}")]
    Config(String),
    /// The source needs a credential file and none is named.
    #[error("no credentials: {0}")]
    NoCredentials(String),
    /// A service account key or `authorized_user` file cannot be used.
    #[error("credential file {path}: {problem}")]
    CredentialFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        problem: String,
    },
    /// Nothing answers at the metadata server's address: not on Google Cloud, or the
    /// metadata server is blocked.
    #[error(
        "no GCE metadata server at {host} (not on Google Cloud, or GCE_METADATA_HOST is wrong): {cause}"
    )]
    MetadataUnreachable {
        /// The metadata server's `host[:port]`.
        host: String,
        /// Why; part of the message, so not also a `source()`.
        cause: icp_http::Error,
    },
    /// Something answered at the metadata server's address, but not as Google's does.
    #[error("{host} answered without Metadata-Flavor: Google, so it is not a GCE metadata server")]
    NotMetadataServer {
        /// The metadata server's `host[:port]`.
        host: String,
    },
    /// The metadata server has no such service account or attribute.
    #[error("the metadata server has no {0}")]
    MetadataNotFound(String),
    /// The instance's service account has no access scope that lets it pull images.
    #[error(
        "service account {0:?} of this instance has no access scope for registries (it needs cloud-platform or devstorage.*)"
    )]
    MissingScope(String),
    /// The endpoint refused the credentials (HTTP 400, 401 or 403; also 404 from IAM
    /// Credentials, for a Google service account that does not exist or is hidden).
    #[error("access denied by {endpoint}: HTTP {status}{detail}")]
    AccessDenied {
        /// Which endpoint.
        endpoint: String,
        /// The status code.
        status: u16,
        /// The OAuth error code and description, when given, as `: invalid_grant (...)`.
        detail: String,
    },
    /// The endpoint throttled the request (HTTP 429) on every try.
    #[error("throttled by {endpoint} (HTTP 429)")]
    Throttled {
        /// Which endpoint.
        endpoint: String,
        /// How long its last answer asked to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// The endpoint answered with another unexpected status on every try.
    #[error("{endpoint} answered HTTP {status}")]
    Status {
        /// Which endpoint.
        endpoint: String,
        /// The status code.
        status: u16,
    },
    /// No answer from the endpoint.
    #[error("request to {endpoint} failed: {cause}")]
    Network {
        /// Which endpoint.
        endpoint: String,
        /// Why; part of the message, so not also a `source()`.
        cause: icp_http::Error,
    },
    /// The endpoint's answer is not what it should be.
    #[error("invalid answer from {endpoint}: {problem}")]
    BadResponse {
        /// Which endpoint.
        endpoint: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The docker config of a `dockercfg` flow has no entry for the image.
    #[error("docker config from {origin}: it has no entry for {registry}")]
    NoDockercfgEntry {
        /// Where it came from: the metadata attribute or the URL (without its query).
        origin: String,
        /// The image's registry.
        registry: String,
    },
    /// The docker config of a `dockercfg` flow is not one; the message names where it
    /// came from and the entry at fault, never its content.
    #[error("{0}")]
    DockerConfig(icp_docker_auth::Error),
    /// A fetch with a pod's service account failed. The message names the service
    /// account (`namespace/name`), the annotations and audience used, and the cause;
    /// never the token.
    #[error("service account {account} ({context}): {cause}")]
    ServiceAccount {
        /// The Kubernetes service account, `namespace/name`.
        account: String,
        /// What was used: annotations and their values, the STS audience.
        context: String,
        /// What went wrong; part of the message, so not also a `source()`.
        cause: Box<Error>,
    },
    /// A service account annotation the backend uses holds a value it cannot use.
    #[error("service account {account}: annotation {annotation} = {value} is {problem}")]
    Annotation {
        /// The Kubernetes service account, `namespace/name`.
        account: String,
        /// The annotation's key.
        annotation: String,
        /// Its value, quoted.
        value: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The whole fetch took longer than its budget.
    #[error("timed out after {0:?} fetching Google credentials")]
    Timeout(Duration),
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl icp_core::BackendError for Error {
    fn kind(&self) -> icp_core::ErrorKind {
        use icp_core::ErrorKind;
        match self {
            Error::Config(_) | Error::CredentialFile { .. } | Error::Annotation { .. } => {
                ErrorKind::Config
            }
            Error::NoCredentials(_)
            | Error::MetadataNotFound(_)
            | Error::MissingScope(_)
            | Error::NoDockercfgEntry { .. } => ErrorKind::NoCredentials,
            Error::MetadataUnreachable { .. } | Error::Network { .. } | Error::Runtime(_) => {
                ErrorKind::Network
            }
            Error::AccessDenied { .. } => ErrorKind::AccessDenied,
            Error::Throttled { .. } => ErrorKind::Throttled,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::NotMetadataServer { .. }
            | Error::Status { .. }
            | Error::BadResponse { .. }
            | Error::DockerConfig(_) => ErrorKind::BadResponse,
            Error::ServiceAccount { cause, .. } => cause.kind(),
        }
    }

    /// A 5xx answer too.
    fn is_transient(&self) -> bool {
        match self {
            Error::Status { status, .. } => *status >= 500,
            Error::ServiceAccount { cause, .. } => cause.is_transient(),
            error => error.kind().is_transient(),
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Throttled { retry_after, .. } => *retry_after,
            Error::ServiceAccount { cause, .. } => cause.retry_after(),
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
            endpoint: "oauth2.googleapis.com".into(),
            status,
        };
        assert!(status(503).is_transient());
        assert_eq!(status(503).kind(), ErrorKind::BadResponse);
        assert!(!status(404).is_transient());
        let wrapped = Error::ServiceAccount {
            account: "team/app".into(),
            context: "audience".into(),
            cause: Box::new(status(500)),
        };
        assert!(wrapped.is_transient());
        assert!(!Error::NoCredentials("x".into()).is_transient());
    }
}
