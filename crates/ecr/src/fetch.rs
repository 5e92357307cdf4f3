//! Fetching a token: the AWS default credential chain (and an optional assumed role), or a
//! pod's service account token exchanged for a role's credentials (STS
//! `AssumeRoleWithWebIdentity`), then `GetAuthorizationToken` on ECR or ECR Public, and
//! decoding what it answers, all within a bounded time.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_config::identity::IdentityCache;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_types::os_shim_internal::Env;
use aws_types::service_config::ServiceConfigKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use icp_core::{Environment, Secret, Token};
use icp_http::{Deadline, Limits, RunError};

use crate::Error;
use crate::connector::Sdk;
use crate::error::{from_sdk, seconds};
use crate::limits::{self, TooManyRequests};
use crate::pod::PodRole;
use crate::pod_identity::{self, PodAssociation};

/// What to ask for: where, as whom, and through which API endpoint variant.
#[derive(Debug, Clone)]
pub(crate) struct Target<'a> {
    /// The region to ask in.
    pub region: String,
    /// ECR Public rather than private ECR.
    pub public: bool,
    /// Use the FIPS API endpoint.
    pub fips: bool,
    /// Use the dual-stack API endpoint.
    pub dual_stack: bool,
    /// Whose credentials to ask with.
    pub identity: Identity<'a>,
}

/// Whose credentials a fetch asks with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Identity<'a> {
    /// The node's: the default credential chain.
    Node,
    /// A role assumed (STS `AssumeRole`) with the node's credentials: its ARN and session
    /// name.
    NodeRole(&'a str, &'a str),
    /// A role assumed with a pod's service account token.
    Pod(PodRole<'a>),
    /// A pod's EKS Pod Identity; for a service account with no association, the node's
    /// credentials, or the rule's role (ARN and session name) assumed with them.
    PodAssociation {
        association: PodAssociation<'a>,
        node_role: Option<(&'a str, &'a str)>,
    },
}

/// What a log line says of an identity: names and ARNs, never a token.
impl std::fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node => f.write_str("the node's credentials"),
            Identity::NodeRole(arn, session) => {
                write!(
                    f,
                    "role {arn} (session {session}) assumed with the node's credentials"
                )
            }
            Identity::Pod(pod) => write!(
                f,
                "role {} ({}, session {}) assumed with the token of service account {}",
                pod.role_arn,
                pod.origin(),
                pod.session_name(),
                pod.account
            ),
            Identity::PodAssociation { association, .. } => association.fmt(f),
        }
    }
}

/// Runs one fetch with the kit's runner: on a runtime of its own, dropped with everything
/// in it when the fetch ends or its deadline (`limits.total`) passes.
pub(crate) fn fetch(
    target: &Target<'_>,
    limits: &Limits,
    env: &Environment,
) -> Result<Token, Error> {
    icp_http::run(Deadline::after(limits.total), |_| {
        fetch_async(target, limits, env)
    })
    .map_err(|error| match error {
        RunError::Runtime(error) => Error::Runtime(error),
        RunError::Elapsed(budget) => Error::Timeout(format!(
            "fetching the ECR token took longer than {}",
            seconds(budget)
        )),
    })?
}

/// The environment the SDK reads its `AWS_*` settings from (credentials, profiles, endpoint
/// overrides, instance metadata): the backend's. A fixed environment is handed over whole
/// through `ConfigLoader::env`, which aws-config offers only under its `test-util` feature
/// (its `Env` takes UTF-8 variables only, as `std::env::var` reads them); the process's
/// environment is the SDK's default, left as it is. The HTTP client below the SDK reads
/// the proxy variables (`HTTPS_PROXY`, ...) from the backend's environment too
/// ([`crate::connector`]), and the root certificates (`SSL_CERT_FILE`, `SSL_CERT_DIR`) of
/// the process, as every backend does.
fn sdk_environment(env: &Environment) -> Option<Env> {
    let vars: HashMap<String, String> = env
        .fixed()?
        .filter_map(|(name, value)| Some((name.to_str()?.to_owned(), value.to_str()?.to_owned())))
        .collect();
    Some(Env::from(vars))
}

async fn fetch_async(
    target: &Target<'_>,
    limits: &Limits,
    env: &Environment,
) -> Result<Token, Error> {
    let region = Region::new(target.region.clone());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region.clone())
        .timeout_config(limits::timeout_config(limits))
        .retry_config(limits::retry_config(limits))
        .identity_cache(
            IdentityCache::lazy()
                .load_timeout(limits::credentials_timeout(limits))
                .build(),
        );
    if let Some(env) = sdk_environment(env) {
        loader = loader.env(env);
    }
    let options = icp_http::Options {
        connect_timeout: limits.connect,
        timeout: limits.request,
        ..icp_http::Options::default()
    };
    let client =
        icp_http::Client::new(options, env).map_err(|error| Error::Config(error.to_string()))?;
    loader = loader.http_client(SharedHttpClient::new(Sdk::new(client)));
    let sdk = loader.load().await;
    let mut credentials_expiry = None;
    let credentials = match target.identity {
        Identity::Node => None,
        Identity::NodeRole(role_arn, session_name) => {
            Some(assume_role(&sdk, role_arn, session_name, region).await)
        }
        Identity::Pod(pod) => Some(web_identity(&sdk, target, &pod, limits).await?),
        Identity::PodAssociation {
            association,
            node_role,
        } => match association.assume(&sdk, limits).await? {
            Some(granted) => {
                credentials_expiry = granted.expires_at;
                Some(granted.provider)
            }
            None => match node_role {
                Some((role_arn, session_name)) => {
                    Some(assume_role(&sdk, role_arn, session_name, region).await)
                }
                None => None,
            },
        },
    };
    let sdk = match credentials {
        Some(provider) => sdk.into_builder().credentials_provider(provider).build(),
        None => sdk,
    };
    let token = if target.public {
        fetch_public(&sdk, target, limits).await
    } else {
        fetch_private(&sdk, target, limits).await
    }?;
    Ok(Token {
        expires_at: pod_identity::bounded(token.expires_at, credentials_expiry),
        ..token
    })
}

/// The credentials of `role_arn` assumed (STS `AssumeRole`) with the node's.
async fn assume_role(
    sdk: &SdkConfig,
    role_arn: &str,
    session_name: &str,
    region: Region,
) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(
        AssumeRoleProvider::builder(role_arn)
            .session_name(session_name)
            .region(region)
            .configure(sdk)
            .build()
            .await,
    )
}

/// The credentials of the role a pod's service account token is exchanged for, with STS
/// `AssumeRoleWithWebIdentity` (an unsigned call) at the STS endpoint of the target's region
/// and partition, FIPS when the target is.
async fn web_identity(
    sdk: &SdkConfig,
    target: &Target<'_>,
    pod: &PodRole<'_>,
    limits: &Limits,
) -> Result<SharedCredentialsProvider, Error> {
    const SERVICE: &str = "STS";
    const OPERATION: &str = "AssumeRoleWithWebIdentity";
    let client = aws_sdk_sts::Client::from_conf(sts_config(sdk, target));
    let exchange = client
        .assume_role_with_web_identity()
        .role_arn(pod.role_arn)
        .role_session_name(pod.session_name())
        .web_identity_token(pod.account.token.expose())
        .send();
    let timeout = limits::credentials_timeout(limits);
    let output = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            Error::Timeout(format!(
                "{SERVICE} {OPERATION} took longer than {}",
                seconds(timeout)
            ))
        })?
        .map_err(|e| from_sdk(SERVICE, OPERATION, limits, e))?;
    let credentials = output.credentials().ok_or(Error::BadResponse {
        service: SERVICE,
        detail: "no Credentials",
    })?;
    Ok(SharedCredentialsProvider::new(
        aws_credential_types::Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
            SystemTime::try_from(*credentials.expiration()).ok(),
            OPERATION,
        ),
    ))
}

/// The STS client's configuration for `target`: its region, and the FIPS endpoint when the
/// registry host is a FIPS one (or the environment asks for FIPS), unless an endpoint
/// override points STS elsewhere. Without credentials: the exchange is unsigned, and the
/// node's credentials have no part in it.
fn sts_config(sdk: &SdkConfig, target: &Target<'_>) -> aws_sdk_sts::Config {
    let mut unsigned = sdk.to_builder();
    unsigned.set_credentials_provider(None);
    let mut config = aws_sdk_sts::config::Builder::from(&unsigned.build())
        .region(Region::new(target.region.clone()))
        .retry_classifier(TooManyRequests);
    if !has_custom_endpoint(sdk, "STS") {
        config = config.use_fips(target.fips || sdk.use_fips().unwrap_or(false));
    }
    config.build()
}

async fn fetch_private(
    sdk: &SdkConfig,
    target: &Target<'_>,
    limits: &Limits,
) -> Result<Token, Error> {
    const SERVICE: &str = "ECR";
    let mut config = aws_sdk_ecr::config::Builder::from(sdk);
    if !has_custom_endpoint(sdk, SERVICE) {
        config = config.use_fips(target.fips || sdk.use_fips().unwrap_or(false));
        config = config.use_dual_stack(target.dual_stack || sdk.use_dual_stack().unwrap_or(false));
    }
    let client = aws_sdk_ecr::Client::from_conf(config.retry_classifier(TooManyRequests).build());
    let output = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| from_sdk(SERVICE, "GetAuthorizationToken", limits, e))?;
    let data = output
        .authorization_data()
        .first()
        .ok_or(Error::BadResponse {
            service: SERVICE,
            detail: "no authorizationData",
        })?;
    let token = data.authorization_token().ok_or(Error::BadResponse {
        service: SERVICE,
        detail: "no authorizationToken",
    })?;
    decode(SERVICE, token, data.expires_at().and_then(to_system_time))
}

async fn fetch_public(
    sdk: &SdkConfig,
    target: &Target<'_>,
    limits: &Limits,
) -> Result<Token, Error> {
    const SERVICE: &str = "ECR Public";
    let mut config = aws_sdk_ecrpublic::config::Builder::from(sdk);
    if !has_custom_endpoint(sdk, "ECR PUBLIC") {
        config = config.use_dual_stack(target.dual_stack || sdk.use_dual_stack().unwrap_or(false));
    }
    let client =
        aws_sdk_ecrpublic::Client::from_conf(config.retry_classifier(TooManyRequests).build());
    let output = client
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| from_sdk(SERVICE, "GetAuthorizationToken", limits, e))?;
    let data = output.authorization_data().ok_or(Error::BadResponse {
        service: SERVICE,
        detail: "no authorizationData",
    })?;
    let token = data.authorization_token().ok_or(Error::BadResponse {
        service: SERVICE,
        detail: "no authorizationToken",
    })?;
    decode(SERVICE, token, data.expires_at().and_then(to_system_time))
}

/// Whether `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>` or a profile's `endpoint_url`
/// points the service somewhere else, in which case the FIPS and dual-stack variants do
/// not apply (the SDK refuses them together with a custom endpoint).
fn has_custom_endpoint(sdk: &SdkConfig, service_id: &str) -> bool {
    let key = ServiceConfigKey::builder()
        .service_id(service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .expect("every field of the key is set");
    sdk.endpoint_url().is_some()
        || sdk
            .service_config()
            .is_some_and(|config| config.load_config(key).is_some())
}

/// The expiry ECR states, bounded by [`icp_core::expiry`]; `None` when it is no time a
/// clock holds.
fn to_system_time(time: &aws_sdk_ecr::primitives::DateTime) -> Option<SystemTime> {
    let stated = SystemTime::try_from(*time).ok()?;
    Some(icp_core::expiry::at(stated, SystemTime::now()))
}

/// Decodes an authorization token, base64 of `user:password`, into a [`Token`].
pub(crate) fn decode(
    service: &'static str,
    token: &str,
    expires_at: Option<SystemTime>,
) -> Result<Token, Error> {
    let bad = |detail| Error::BadResponse { service, detail };
    let decoded = STANDARD
        .decode(token.trim())
        .map_err(|_| bad("the authorizationToken is not base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| bad("the authorizationToken is not UTF-8"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| bad("the authorizationToken is not user:password"))?;
    if username.is_empty() || password.is_empty() {
        return Err(bad("the authorizationToken has an empty user or password"));
    }
    Ok(Token {
        username: username.to_owned(),
        password: Secret::new(password),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use aws_sdk_ecr::primitives::DateTime;

    #[test]
    fn decodes_user_and_password() {
        let token = decode("ECR", &STANDARD.encode("AWS:pass:with:colons"), None).unwrap();
        assert_eq!(token.username, "AWS");
        assert_eq!(token.password.expose(), "pass:with:colons");
        assert_eq!(token.expires_at, None);
    }

    #[test]
    fn refuses_malformed_tokens_without_echoing_them() {
        let cases = [
            ("not base64 !!", "not base64"),
            (&STANDARD.encode("AWS-no-colon-secret"), "not user:password"),
            (&STANDARD.encode(":secret"), "empty user"),
            (&STANDARD.encode("AWS:"), "empty user or password"),
            (&STANDARD.encode([0xff, 0xfe, b':', b's']), "not UTF-8"),
        ];
        for (token, expected) in cases {
            let message = decode("ECR", token, None).unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
            assert!(
                !message.contains("secret") && !message.contains(token),
                "{message}"
            );
        }
    }

    #[test]
    fn expiry_is_the_one_aws_states_within_a_day() {
        let in_twelve_hours = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 12 * 3600;
        let stated = DateTime::from_secs(in_twelve_hours as i64);
        let expires_at = to_system_time(&stated).unwrap();
        assert_eq!(
            expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(in_twelve_hours)
        );
        let fractional = DateTime::from_fractional_secs(1_420_070_400, 0.5);
        assert_eq!(
            to_system_time(&fractional).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_420_070_400_500)
        );
        let token = decode("ECR", &STANDARD.encode("AWS:p"), Some(expires_at)).unwrap();
        assert_eq!(token.expires_at, Some(expires_at));
        for far in [
            DateTime::from_secs(100_000_000_000),
            DateTime::from_secs(i64::MAX),
        ] {
            if let Some(bounded) = to_system_time(&far) {
                let left = bounded.duration_since(SystemTime::now()).unwrap();
                assert!(left <= icp_core::expiry::MAX_LIFETIME, "{far}");
            }
        }
    }
}
