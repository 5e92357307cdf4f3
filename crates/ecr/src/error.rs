//! What can go wrong, each in one line that names the cause, and how SDK errors map to it.

use std::error::Error as StdError;
use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ecr::error::{ConnectorError, ProvideErrorMetadata};

/// An ECR backend error. No variant ever holds a token, password or secret key: the
/// details come from AWS's error codes and messages and the SDK's own descriptions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rule's `ecr:` section is wrong.
    #[error("invalid ecr config: {0}")]
    Config(String),
    /// The image's host is not an ECR registry host and the rule names no region.
    #[error(
        "{0} is not an ECR registry host (a rule must set ecr.region to use ECR tokens for it)"
    )]
    NotServed(String),
    /// No source of the default credential chain had credentials: the sources it looked
    /// in.
    #[error("no AWS credentials found (looked in: {0})")]
    NoCredentials(String),
    /// A credential source was configured but failed for a reason other than the ones below.
    #[error("AWS credentials could not be loaded: {0}")]
    Credentials(String),
    /// AWS refused the caller: access denied, unknown or expired keys, a rejected identity
    /// token.
    #[error("access denied by {service}: {detail}")]
    AccessDenied {
        /// The AWS service that refused (`ECR`, `ECR Public`, `STS`).
        service: &'static str,
        /// AWS's error code and message.
        detail: String,
    },
    /// AWS kept throttling the request until the retry budget was spent.
    #[error("throttled by {service} (gave up after {attempts} attempts): {detail}")]
    Throttled {
        /// The AWS service that throttled.
        service: &'static str,
        /// How many attempts the retry budget allowed.
        attempts: u32,
        /// AWS's error code and message.
        detail: String,
    },
    /// A connection, an answer or the whole fetch took longer than its limit.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The service could not be reached: connection refused, DNS failure, TLS failure.
    #[error("cannot reach {service}: {detail}")]
    Network {
        /// The AWS service that could not be reached.
        service: &'static str,
        /// The SDK's description of the failure.
        detail: String,
    },
    /// The service answered with a server error (HTTP 5xx, or an AWS code that says the
    /// service failed) on every try: of kind `BadResponse` as [`Error::Status`] is, and
    /// transient.
    #[error("{service} error: {detail}")]
    Unavailable {
        /// The AWS service that answered.
        service: &'static str,
        /// AWS's error code and message, or the HTTP status.
        detail: String,
    },
    /// The service answered with an error other than the ones above (a client error).
    #[error("{service} error: {detail}")]
    Status {
        /// The AWS service that answered.
        service: &'static str,
        /// AWS's error code and message.
        detail: String,
    },
    /// The answer carried no usable token.
    #[error("malformed {service} answer: {detail}")]
    BadResponse {
        /// The AWS service that answered.
        service: &'static str,
        /// What is missing or malformed (never the token itself).
        detail: &'static str,
    },
    /// The async runtime for the fetch could not be started.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// A role of another partition than the registry's: STS would refuse it, so it is
    /// never sent.
    #[error(
        "the role is in partition {role}, the registry in {registry}: a role can only be assumed in its own partition"
    )]
    OtherPartition {
        /// The role ARN's partition, quoted.
        role: String,
        /// The registry's partition.
        registry: &'static str,
    },
    /// A role named for a service account is not an IAM role ARN.
    #[error("not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)")]
    InvalidRole,
    /// Fetching with a pod's service account token failed: which service account, the
    /// role and where it was named, and the cause (never the token).
    #[error("service account {account}, {origin} = {role}: {cause}")]
    ServiceAccount {
        /// The service account, as `namespace/name`.
        account: String,
        /// Where the role was named: `annotation <key>`, or the setting of a default role.
        origin: String,
        /// The role ARN, quoted.
        role: String,
        /// What went wrong.
        cause: Box<Error>,
    },
}

/// What a network failure below a credential provider is attributed to.
const CREDENTIAL_SOURCE: &str = "the AWS credential source";

/// The sources of the AWS default credential chain, in the order it tries them.
const CREDENTIAL_SOURCES: &str = "environment variables, shared config and credentials files, \
     web identity token file, ECS/EKS container endpoint, EC2 instance metadata";

/// Longest part of an AWS error message quoted in an error.
const MAX_MESSAGE_CHARS: usize = 200;

/// AWS error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "LimitExceededException",
    "SlowDown",
];

/// AWS error codes that mean the caller was refused.
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidIdentityToken",
    "InvalidTokenException",
    "IDPRejectedClaim",
    "AuthFailure",
    "RegionDisabledException",
];

/// AWS error codes that mean the service failed, whatever the HTTP status.
const UNAVAILABLE_CODES: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "ServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// An error and all its causes, on one line: each one's message, joined by `: `, leaving
/// out a message already contained in an earlier one. Only `Display` is used, never
/// `Debug`, which for SDK errors can include a raw response body.
pub(crate) fn one_line(err: &(dyn StdError + 'static)) -> String {
    let mut messages: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(err) = next {
        let message = err
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if !message.is_empty() && !messages.iter().any(|m| m.contains(&message)) {
            messages.push(message);
        }
        next = err.source();
    }
    messages.join(": ")
}

/// `code: message` of an AWS error; without a code, the HTTP status says what it was.
/// The message is cut short and kept on one line.
fn code_and_message(code: Option<&str>, message: Option<&str>, status: Option<u16>) -> String {
    let message = message.map(|m| {
        let line = m.split_whitespace().collect::<Vec<_>>().join(" ");
        icp_core::quote::cut(&line, MAX_MESSAGE_CHARS).into_owned()
    });
    let what = match (code, status) {
        (Some(code), _) => code.to_owned(),
        (None, Some(status)) => format!("HTTP {status} with no AWS error code"),
        (None, None) => "no AWS error code".to_owned(),
    };
    match message {
        Some(message) if !message.is_empty() => format!("{what}: {message}"),
        _ => what,
    }
}

/// Maps an AWS error code (with the HTTP status when known) to an [`Error`].
fn from_code(
    service: &'static str,
    attempts: u32,
    code: Option<&str>,
    message: Option<&str>,
    status: Option<u16>,
) -> Error {
    let detail = code_and_message(code, message, status);
    match code {
        Some(code) if THROTTLING_CODES.contains(&code) => Error::Throttled {
            service,
            attempts,
            detail,
        },
        Some(code) if DENIED_CODES.contains(&code) => Error::AccessDenied { service, detail },
        _ if status == Some(429) => Error::Throttled {
            service,
            attempts,
            detail,
        },
        _ if status == Some(403) || status == Some(401) => Error::AccessDenied { service, detail },
        Some(code) if UNAVAILABLE_CODES.contains(&code) => Error::Unavailable { service, detail },
        _ if status.is_some_and(|status| status >= 500) => Error::Unavailable { service, detail },
        _ => Error::Status { service, detail },
    }
}

/// Looks through an error's causes for one we can name more precisely than "failed".
fn classify_chain(
    service: &'static str,
    limits: &icp_http::Limits,
    err: &(dyn StdError + 'static),
) -> Option<Error> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(credentials) = err.downcast_ref::<CredentialsError>() {
            match credentials {
                CredentialsError::CredentialsNotLoaded(_) => {
                    return Some(Error::NoCredentials(CREDENTIAL_SOURCES.to_owned()));
                }
                CredentialsError::ProviderTimedOut(timed_out) => {
                    let limit = seconds(timed_out.timeout_duration());
                    return Some(Error::Timeout(format!(
                        "loading AWS credentials took longer than {limit}"
                    )));
                }
                _ if answered_as_no_imds(credentials) => {
                    tracing::info!(
                        "something other than EC2's instance metadata service answers at the metadata address; taken as no instance credentials"
                    );
                    return Some(Error::NoCredentials(CREDENTIAL_SOURCES.to_owned()));
                }
                _ => {
                    let source = credentials.source();
                    let cause = source.and_then(|s| classify_chain(CREDENTIAL_SOURCE, limits, s));
                    return Some(
                        cause.unwrap_or_else(|| Error::Credentials(one_line(credentials))),
                    );
                }
            }
        }
        if let Some(connector) = err.downcast_ref::<ConnectorError>() {
            if connector.is_timeout() {
                let detail = one_line(connector);
                return Some(Error::Timeout(format!(
                    "{service} did not answer in time: {detail}"
                )));
            }
            if connector.is_io() {
                let detail = one_line(connector);
                return Some(Error::Network { service, detail });
            }
        }
        if let Some(e) = err.downcast_ref::<aws_sdk_sts::operation::assume_role::AssumeRoleError>()
        {
            return Some(from_code(
                "STS",
                limits.attempts,
                e.code(),
                e.message(),
                None,
            ));
        }
        if let Some(e) =
            err.downcast_ref::<aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityError>()
        {
            return Some(from_code("STS", limits.attempts, e.code(), e.message(), None));
        }
        next = err.source();
    }
    None
}

/// Whether the instance metadata address answered, but not as EC2's metadata service does:
/// a GCE or Azure metadata server, or a proxy, refusing the session token request (400,
/// 403), answering it without a TTL header or a usable token, or answering the credential
/// paths with a client error. There are no instance credentials there, as on a node with
/// nothing at that address.
fn answered_as_no_imds(err: &(dyn StdError + 'static)) -> bool {
    use aws_config::imds::client::error::{ImdsError, TokenError};
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<TokenError>() {
            return true;
        }
        if let Some(ImdsError::ErrorResponse(response)) = err.downcast_ref::<ImdsError>()
            && response.response().status().is_client_error()
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Maps the failure of an `operation` call (`GetAuthorizationToken`,
/// `AssumeRoleWithWebIdentity`) to an [`Error`].
pub(crate) fn from_sdk<E>(
    service: &'static str,
    operation: &str,
    limits: &icp_http::Limits,
    err: aws_sdk_ecr::error::SdkError<E, aws_sdk_ecr::config::http::HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    use aws_sdk_ecr::error::SdkError;
    let status = err
        .raw_response()
        .map(|response| response.status().as_u16());
    if let SdkError::TimeoutError(_) = &err {
        return Error::Timeout(format!(
            "{service} {operation} did not finish in time ({} per attempt, {} in all)",
            seconds(limits.request),
            seconds(crate::limits::operation_timeout(limits))
        ));
    }
    if let SdkError::ServiceError(service_error) = &err {
        let e = service_error.err();
        return from_code(service, limits.attempts, e.code(), e.message(), status);
    }
    if let Some(named) = classify_chain(service, limits, &err) {
        return named;
    }
    match err {
        // An error status with a body that is no AWS error (a proxy's or load balancer's
        // page, or nothing): named by its status, as throttling, refusal or a failure.
        SdkError::ResponseError(_) if status.is_some_and(|s| !(200..300).contains(&s)) => {
            from_code(service, limits.attempts, None, None, status)
        }
        SdkError::ResponseError(_) => Error::BadResponse {
            service,
            detail: "the answer could not be parsed",
        },
        other => Error::Status {
            service,
            detail: one_line(&other),
        },
    }
}

/// A duration as people write it: `15s`, `2.5s`.
pub(crate) fn seconds(duration: Duration) -> String {
    format!("{}s", duration.as_secs_f64())
}

impl icp_core::BackendError for Error {
    fn kind(&self) -> icp_core::ErrorKind {
        use icp_core::ErrorKind;
        match self {
            Error::Config(_) | Error::InvalidRole | Error::OtherPartition { .. } => {
                ErrorKind::Config
            }
            Error::NotServed(_) => ErrorKind::NotServed,
            Error::NoCredentials(_) | Error::Credentials(_) => ErrorKind::NoCredentials,
            Error::AccessDenied { .. } => ErrorKind::AccessDenied,
            Error::Throttled { .. } => ErrorKind::Throttled,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Network { .. } | Error::Runtime(_) => ErrorKind::Network,
            Error::Unavailable { .. } | Error::Status { .. } | Error::BadResponse { .. } => {
                ErrorKind::BadResponse
            }
            Error::ServiceAccount { cause, .. } => cause.kind(),
        }
    }

    /// A 5xx answer too.
    fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::ServiceAccount { cause, .. } => cause.is_transient(),
            error => error.kind().is_transient(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_causes() {
        let throttled = from_code(
            "ECR",
            3,
            Some("ThrottlingException"),
            Some("Rate exceeded"),
            Some(400),
        );
        assert_eq!(
            throttled.to_string(),
            "throttled by ECR (gave up after 3 attempts): ThrottlingException: Rate exceeded"
        );
        let denied = from_code("STS", 3, Some("AccessDenied"), Some("not authorized"), None);
        assert_eq!(
            denied.to_string(),
            "access denied by STS: AccessDenied: not authorized"
        );
        assert!(matches!(
            from_code("ECR", 3, None, None, Some(403)),
            Error::AccessDenied { .. }
        ));
        assert!(matches!(
            from_code("ECR", 3, None, None, Some(429)),
            Error::Throttled { .. }
        ));
        let server = from_code("ECR", 3, Some("ServerException"), Some("boom"), Some(500));
        assert_eq!(server.to_string(), "ECR error: ServerException: boom");
        assert_eq!(
            from_code("ECR", 3, None, None, Some(503)).to_string(),
            "ECR error: HTTP 503 with no AWS error code"
        );
        assert_eq!(
            from_code("ECR Public", 3, None, None, Some(429)).to_string(),
            "throttled by ECR Public (gave up after 3 attempts): HTTP 429 with no AWS error code"
        );
        let long = from_code("ECR", 3, Some("X"), Some(&"m\n".repeat(10_000)), Some(500));
        assert!(long.to_string().len() < 300, "{long}");
    }

    #[test]
    fn server_errors_are_transient_and_keep_their_message() {
        use icp_core::{BackendError, ErrorKind};
        for (code, status) in [
            (Some("ServerException"), Some(500)),
            (None, Some(503)),
            (Some("ServiceUnavailable"), None),
            (Some("InternalFailure"), None),
        ] {
            let error = from_code("ECR", 3, code, Some("boom"), status);
            assert!(error.is_transient(), "{error}");
            assert_eq!(error.kind(), ErrorKind::BadResponse);
            assert!(error.to_string().starts_with("ECR error: "), "{error}");
        }
        for status in [400, 404] {
            assert!(!from_code("ECR", 3, None, None, Some(status)).is_transient());
        }
        assert!(!from_code("STS", 3, Some("AccessDenied"), None, Some(403)).is_transient());
    }

    #[test]
    fn credential_errors_are_found_among_the_causes() {
        let limits = crate::DEFAULT_LIMITS;
        let not_loaded = CredentialsError::not_loaded("no providers in chain provided credentials");
        let found = classify_chain("ECR", &limits, &not_loaded).unwrap();
        assert!(matches!(found, Error::NoCredentials(_)));
        assert!(found.to_string().len() < 200, "{found}");
        let timed_out = CredentialsError::provider_timed_out(Duration::from_secs(5));
        let Some(Error::Timeout(message)) = classify_chain("ECR", &limits, &timed_out) else {
            panic!()
        };
        assert_eq!(message, "loading AWS credentials took longer than 5s");
        let other = CredentialsError::provider_error("profile `x` not found");
        let Some(Error::Credentials(message)) = classify_chain("ECR", &limits, &other) else {
            panic!()
        };
        assert!(message.contains("profile `x` not found"), "{message}");
        assert!(!message.contains('\n'));
    }
}
