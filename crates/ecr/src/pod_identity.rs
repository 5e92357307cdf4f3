//! EKS Pod Identity (`ecr.podIdentity`): a pulling pod's service account token exchanged
//! with EKS Auth `AssumeRoleForPodIdentity` for the temporary credentials of the role its
//! service account is associated with in the rule's cluster. The call is signed with the
//! node's credentials (the node role needs `eks-auth:AssumeRoleForPodIdentity`); the ECR
//! token is then fetched with the credentials it gives, and lives no longer than they do.
//!
//! A service account with no association (EKS Auth's `ResourceNotFoundException`) pulls
//! with the node's identity, as a request without a token does. Refusals (`AccessDenied`,
//! `InvalidToken`, `ExpiredToken`) are errors naming the service account and the cluster.
//! Nothing here logs, keys or answers the pod's token.

use std::time::SystemTime;

use aws_config::{Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_eksauth::error::SdkError;
use icp_core::{Environment, ServiceAccount, quote};
use icp_http::Limits;

use crate::error::{from_sdk, seconds};
use crate::{Error, limits};

/// The service as errors name it.
const SERVICE: &str = "EKS Auth";
/// The operation as errors and credentials name it.
const OPERATION: &str = "AssumeRoleForPodIdentity";

/// A pod's service account and the cluster whose Pod Identity associations it is looked
/// up in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodAssociation<'a> {
    /// The pod's service account, with its token.
    pub account: &'a ServiceAccount,
    /// The EKS cluster.
    pub cluster: &'a str,
    /// The region EKS Auth is asked in: the rule's, the node's, or the image's.
    pub region: &'a str,
    /// The identity of the node, for the cache key of what falls back to it.
    pub node: &'a str,
}

/// Credentials EKS Auth granted, and when they expire.
pub(crate) struct Granted {
    /// The role's temporary credentials.
    pub provider: SharedCredentialsProvider,
    /// When they expire.
    pub expires_at: Option<SystemTime>,
}

impl<'a> PodAssociation<'a> {
    /// The identity part of the token cache key: the service account (namespace, name,
    /// uid), the cluster and region, and the node's identity (which signs the exchange,
    /// and pulls for a service account with no association); never the token.
    pub fn key(&self) -> String {
        format!(
            "{};aws:pod-identity;cluster={};region={};node={}",
            self.account.key(&[]),
            self.cluster,
            self.region,
            self.node
        )
    }

    /// `cause`, said of this service account and cluster.
    pub fn error(&self, cause: Error) -> Error {
        Error::ServiceAccount {
            account: self.account.to_string(),
            origin: "ecr.podIdentity.clusterName".to_owned(),
            role: quote(self.cluster),
            cause: Box::new(cause),
        }
    }

    /// Exchanges the pod's token: the role's credentials, or `None` when the service
    /// account has no Pod Identity association in the cluster.
    pub async fn assume(&self, sdk: &SdkConfig, limits: &Limits) -> Result<Option<Granted>, Error> {
        let config = aws_sdk_eksauth::config::Builder::from(sdk)
            .region(Region::new(self.region.to_owned()))
            .retry_classifier(crate::limits::TooManyRequests)
            .build();
        let exchange = aws_sdk_eksauth::Client::from_conf(config)
            .assume_role_for_pod_identity()
            .cluster_name(self.cluster)
            .token(self.account.token.expose())
            .send();
        let timeout = limits::credentials_timeout(limits);
        let answer = tokio::time::timeout(timeout, exchange).await.map_err(|_| {
            Error::Timeout(format!(
                "{SERVICE} {OPERATION} took longer than {}",
                seconds(timeout)
            ))
        })?;
        let output = match answer {
            Ok(output) => output,
            Err(SdkError::ServiceError(e)) if e.err().is_resource_not_found_exception() => {
                tracing::debug!(
                    service_account = %self.account,
                    cluster = self.cluster,
                    "no EKS Pod Identity association: the node's identity is used"
                );
                return Ok(None);
            }
            Err(e) => return Err(from_sdk(SERVICE, OPERATION, limits, e)),
        };
        let credentials = output.credentials().ok_or(Error::BadResponse {
            service: SERVICE,
            detail: "no credentials",
        })?;
        let expires_at = SystemTime::try_from(*credentials.expiration()).ok();
        tracing::debug!(
            service_account = %self.account,
            cluster = self.cluster,
            role = output.assumed_role_user().map(|user| user.arn()),
            association = output
                .pod_identity_association()
                .map(|association| association.association_arn()),
            "EKS Pod Identity granted a role"
        );
        Ok(Some(Granted {
            provider: SharedCredentialsProvider::new(aws_credential_types::Credentials::new(
                credentials.access_key_id(),
                credentials.secret_access_key(),
                Some(credentials.session_token().to_owned()),
                expires_at,
                OPERATION,
            )),
            expires_at,
        }))
    }
}

/// The region EKS Auth is asked in: the rule's `region`, else the node's of `env`
/// (`AWS_REGION`, `AWS_DEFAULT_REGION`), else `image_region`.
pub(crate) fn region(rule: Option<&str>, env: &Environment, image_region: &str) -> String {
    rule.map(str::to_owned)
        .or_else(|| env.non_empty("AWS_REGION"))
        .or_else(|| env.non_empty("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| image_region.to_owned())
}

/// What a log line says of the identity: names, never a token.
impl std::fmt::Display for PodAssociation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the EKS Pod Identity of service account {} in cluster {} ({})",
            self.account, self.cluster, self.region
        )
    }
}

/// `expires_at` of a token fetched with credentials expiring at `credentials`: the
/// earlier of the two.
pub(crate) fn bounded(
    expires_at: Option<SystemTime>,
    credentials: Option<SystemTime>,
) -> Option<SystemTime> {
    match (expires_at, credentials) {
        (Some(token), Some(credentials)) => Some(token.min(credentials)),
        (token, credentials) => token.or(credentials),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use icp_core::Secret;

    use super::*;

    fn account(namespace: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("{namespace}-{name}-uid"),
            token: Secret::new("header.payload.signature"),
            annotations: BTreeMap::new(),
        }
    }

    fn association<'a>(account: &'a ServiceAccount, cluster: &'a str) -> PodAssociation<'a> {
        PodAssociation {
            account,
            cluster,
            region: "eu-west-1",
            node: "aws",
        }
    }

    #[test]
    fn the_region_is_the_rule_s_then_the_node_s_then_the_image_s() {
        let node = Environment::from_pairs([("AWS_DEFAULT_REGION", "us-east-2")]);
        let none = Environment::empty();
        let region = |rule, env| region(rule, env, "eu-west-1");
        assert_eq!(region(Some("ap-south-1"), &node), "ap-south-1");
        assert_eq!(region(None, &node), "us-east-2");
        assert_eq!(region(None, &none), "eu-west-1");
    }

    #[test]
    fn the_key_names_the_account_and_cluster_never_the_token() {
        let (a, b) = (account("team-a", "app"), account("team-b", "app"));
        let key = |account, cluster| association(account, cluster).key();
        assert_eq!(
            key(&a, "prod"),
            "sa=team-a/app/team-a-app-uid;aws:pod-identity;cluster=prod;region=eu-west-1;node=aws"
        );
        assert_ne!(key(&a, "prod"), key(&b, "prod"));
        assert_ne!(key(&a, "prod"), key(&a, "staging"));
        assert!(!key(&a, "prod").contains("payload"));
    }

    #[test]
    fn errors_name_the_account_and_the_cluster() {
        let app = account("team-a", "app");
        let error = association(&app, "prod").error(Error::AccessDenied {
            service: SERVICE,
            detail: "AccessDeniedException: no".into(),
        });
        assert_eq!(
            error.to_string(),
            "service account team-a/app, ecr.podIdentity.clusterName = \"prod\": \
             access denied by EKS Auth: AccessDeniedException: no"
        );
    }

    #[test]
    fn a_token_lives_no_longer_than_its_credentials() {
        let now = SystemTime::now();
        let hour = now + Duration::from_secs(3600);
        let twelve = now + Duration::from_secs(12 * 3600);
        assert_eq!(bounded(Some(twelve), Some(hour)), Some(hour));
        assert_eq!(bounded(Some(hour), Some(twelve)), Some(hour));
        assert_eq!(bounded(None, Some(hour)), Some(hour));
        assert_eq!(bounded(Some(twelve), None), Some(twelve));
        assert_eq!(bounded(None, None), None);
    }
}
