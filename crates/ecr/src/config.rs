//! The `ecr:` section of a rule in the rules file.

use icp_core::names::is_annotation_key;
use icp_core::quote;
use serde::Deserialize;

use crate::Error;
use crate::host::Partition;

/// How a rule's images get their ECR tokens. Every field is optional; the embedded default
/// rule uses [`Config::default`].
///
/// ```yaml
/// ecr:
///   region: eu-west-1                                 # only for hosts that are not ECR's
///   roleArn: arn:aws:iam::123456789012:role/puller    # assume this role first
///   roleSessionName: node-puller
///   roleArnAnnotation: eks.amazonaws.com/ecr-role-arn # where a service account names its role
///   podIdentity: {clusterName: prod}                  # or: EKS Pod Identity, instead of the annotation
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The region to ask for a token in when an image's host is not an ECR registry host,
    /// such as a pull-through proxy in front of ECR. Without it such hosts are not served
    /// at all. An ECR registry host always uses the region in its name.
    pub region: Option<String>,
    /// An IAM role to assume (STS `AssumeRole`) with the default credentials before asking
    /// for the token, as in `arn:aws:iam::123456789012:role/puller`.
    pub role_arn: Option<String>,
    /// The session name for [`role_arn`](Config::role_arn); defaults to
    /// `image-credential-provider`. Only allowed together with `roleArn`.
    pub role_session_name: Option<String>,
    /// The service account annotation that names the IAM role a pod's service account
    /// token is exchanged for (STS `AssumeRoleWithWebIdentity`), when the kubelet sends
    /// one; defaults to [`ROLE_ANNOTATION`], the official provider's key. A service account
    /// without it pulls with the node's identity.
    pub role_arn_annotation: Option<String>,
    /// The audience pods' service account tokens must carry (the IAM OIDC provider's
    /// client id); defaults to `sts.amazonaws.com`.
    pub audience: Option<String>,
    /// EKS Pod Identity: a pod's service account token (audience
    /// [`POD_IDENTITY_AUDIENCE`](crate::POD_IDENTITY_AUDIENCE)) is exchanged with EKS Auth
    /// `AssumeRoleForPodIdentity` for the credentials of the role its service account is
    /// associated with in this cluster, instead of STS `AssumeRoleWithWebIdentity`; a
    /// service account with no association pulls with the node's identity.
    pub pod_identity: Option<PodIdentityConfig>,
}

/// The `ecr.podIdentity` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodIdentityConfig {
    /// The EKS cluster the node and its pods belong to, as its Pod Identity associations
    /// name it.
    pub cluster_name: String,
    /// The cluster's region, where EKS Auth is asked; defaults to `AWS_REGION` (or
    /// `AWS_DEFAULT_REGION`) of the node, else the image's region.
    pub region: Option<String>,
}

/// The service account annotation the official provider reads a pod's ECR role from.
pub const ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";

/// The session name an assumed role gets when the rule names none.
pub const DEFAULT_ROLE_SESSION_NAME: &str = "image-credential-provider";

impl Config {
    /// Checks every field; the error names the field and what is wrong with it.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |message: String| Err(Error::Config(message));
        if let Some(region) = &self.region
            && Partition::of_region(region).is_none()
        {
            return invalid(format!(
                "ecr.region {} is not an AWS region name",
                quote(region)
            ));
        }
        if let Some(arn) = &self.role_arn
            && !is_role_arn(arn)
        {
            return invalid(format!(
                "ecr.roleArn {} is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)",
                quote(arn)
            ));
        }
        if let Some(name) = &self.role_session_name {
            if self.role_arn.is_none() {
                return invalid("ecr.roleSessionName needs ecr.roleArn".into());
            }
            if !(2..=64).contains(&name.len()) || !name.chars().all(is_session_name_char) {
                return invalid(format!(
                    "ecr.roleSessionName {} must be 2 to 64 characters of letters, digits and =,.@_-",
                    quote(name)
                ));
            }
        }
        if let Some(key) = &self.role_arn_annotation
            && !is_annotation_key(key)
        {
            return invalid(format!(
                "ecr.roleArnAnnotation {} is not an annotation key ([prefix/]name: a DNS subdomain prefix, a name of up to 63 letters, digits and -_.)",
                quote(key)
            ));
        }
        if let Some(pod_identity) = &self.pod_identity {
            pod_identity.validate()?;
            if self.role_arn_annotation.is_some() {
                return invalid(
                    "ecr.roleArnAnnotation and ecr.podIdentity exclude each other: a rule's pods \
                     get one kind of token (audience sts.amazonaws.com or pods.eks.amazonaws.com)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// The annotation a service account names its role with.
    pub(crate) fn role_annotation(&self) -> &str {
        self.role_arn_annotation
            .as_deref()
            .unwrap_or(ROLE_ANNOTATION)
    }

    /// The session name to assume [`role_arn`](Config::role_arn) with.
    pub(crate) fn session_name(&self) -> &str {
        self.role_session_name
            .as_deref()
            .unwrap_or(DEFAULT_ROLE_SESSION_NAME)
    }
}

impl PodIdentityConfig {
    fn validate(&self) -> Result<(), Error> {
        if !is_cluster_name(&self.cluster_name) {
            return Err(Error::Config(format!(
                "ecr.podIdentity.clusterName {} is not an EKS cluster name (1 to 100 letters, \
                 digits, - and _, starting with a letter or digit)",
                quote(&self.cluster_name)
            )));
        }
        if let Some(region) = &self.region
            && Partition::of_region(region).is_none()
        {
            return Err(Error::Config(format!(
                "ecr.podIdentity.region {} is not an AWS region name",
                quote(region)
            )));
        }
        Ok(())
    }
}

/// EKS's rule for a cluster name: 1 to 100 characters, `[0-9A-Za-z][A-Za-z0-9\-_]*`.
pub(crate) fn is_cluster_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether STS accepts `c` in a role session name: letters, digits and `=,.@_-`.
pub(crate) fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "=,.@_-".contains(c)
}

/// `arn:<partition>:iam::<12 digits>:role/<path/>name`.
pub(crate) fn is_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let known_partition = [
        Partition::Aws,
        Partition::AwsCn,
        Partition::AwsUsGov,
        Partition::AwsIso,
        Partition::AwsIsoB,
        Partition::AwsIsoE,
        Partition::AwsIsoF,
        Partition::AwsEusc,
    ]
    .iter()
    .any(|p| p.as_str() == partition);
    let name_ok = resource.strip_prefix("role/").is_some_and(|name| {
        !name.is_empty()
            && name.len() <= 512
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
    });
    known_partition && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Config, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn reads_camel_case_and_refuses_unknown_fields() {
        let parsed =
            config(r#"{"region":"eu-west-1","roleArn":"arn:aws:iam::123456789012:role/x"}"#)
                .unwrap();
        assert_eq!(parsed.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            parsed.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/x")
        );
        assert!(config(r#"{"role_arn":"arn:aws:iam::123456789012:role/x"}"#).is_err());
        assert!(config(r#"{"registryId":"123456789012"}"#).is_err());
        assert!(config(r#"{"podIdentity":{"cluster":"prod"}}"#).is_err());
        assert!(config(r#"{"podIdentity":{}}"#).is_err());
        assert_eq!(config("{}").unwrap(), Config::default());
    }

    #[test]
    fn validates_each_field() {
        let valid = [
            r#"{}"#,
            r#"{"region":"us-gov-west-1"}"#,
            r#"{"roleArn":"arn:aws:iam::123456789012:role/team/puller"}"#,
            r#"{"roleArn":"arn:aws-cn:iam::123456789012:role/p","roleSessionName":"node@pool-1"}"#,
            r#"{"roleArnAnnotation":"eks.amazonaws.com/ecr-role-arn"}"#,
            r#"{"roleArnAnnotation":"ecr-role"}"#,
            r#"{"roleArnAnnotation":"platform.example.io/Pull_Role.v2"}"#,
            // apimachinery judges an annotation key in lower case, as the kubelet does the
            // keys `kubelet-config` writes for this one.
            r#"{"roleArnAnnotation":"Example.io/role"}"#,
            r#"{"podIdentity":{"clusterName":"prod"}}"#,
            r#"{"podIdentity":{"clusterName":"0-a_B","region":"eu-west-1"}}"#,
        ];
        for json in valid {
            assert!(config(json).unwrap().validate().is_ok(), "{json}");
        }
        let invalid = [
            (r#"{"region":"moon-1"}"#, "ecr.region"),
            (r#"{"region":"us-east-1.evil"}"#, "ecr.region"),
            (r#"{"roleArn":"arn:aws:iam::12345:role/p"}"#, "ecr.roleArn"),
            (
                r#"{"roleArn":"arn:aws:iam::123456789012:user/p"}"#,
                "ecr.roleArn",
            ),
            (
                r#"{"roleArn":"arn:aws:sts::123456789012:role/p"}"#,
                "ecr.roleArn",
            ),
            (
                r#"{"roleArn":"arn:evil:iam::123456789012:role/p"}"#,
                "ecr.roleArn",
            ),
            (
                r#"{"roleArn":"arn:aws:iam::123456789012:role/"}"#,
                "ecr.roleArn",
            ),
            (r#"{"roleSessionName":"abc"}"#, "ecr.roleSessionName"),
            (r#"{"roleArnAnnotation":""}"#, "ecr.roleArnAnnotation"),
            (r#"{"roleArnAnnotation":"a b"}"#, "ecr.roleArnAnnotation"),
            (
                r#"{"roleArnAnnotation":"example.io/"}"#,
                "ecr.roleArnAnnotation",
            ),
            (r#"{"roleArnAnnotation":"a/b/c"}"#, "ecr.roleArnAnnotation"),
            (
                r#"{"roleArnAnnotation":"example.io/-role"}"#,
                "ecr.roleArnAnnotation",
            ),
            (
                r#"{"roleArn":"arn:aws:iam::123456789012:role/p","roleSessionName":"a b"}"#,
                "ecr.roleSessionName",
            ),
            (
                r#"{"podIdentity":{"clusterName":""}}"#,
                "ecr.podIdentity.clusterName",
            ),
            (
                r#"{"podIdentity":{"clusterName":"-prod"}}"#,
                "ecr.podIdentity.clusterName",
            ),
            (
                r#"{"podIdentity":{"clusterName":"prod/x"}}"#,
                "ecr.podIdentity.clusterName",
            ),
            (
                r#"{"podIdentity":{"clusterName":"prod.x"}}"#,
                "ecr.podIdentity.clusterName",
            ),
            (
                &format!(
                    r#"{{"podIdentity":{{"clusterName":"{}"}}}}"#,
                    "a".repeat(101)
                ),
                "ecr.podIdentity.clusterName",
            ),
            (
                r#"{"podIdentity":{"clusterName":"prod","region":"moon-1"}}"#,
                "ecr.podIdentity.region",
            ),
            (
                r#"{"podIdentity":{"clusterName":"prod"},"roleArnAnnotation":"x.io/r"}"#,
                "ecr.roleArnAnnotation and ecr.podIdentity",
            ),
        ];
        for (json, field) in invalid {
            let message = config(json).unwrap().validate().unwrap_err().to_string();
            assert!(message.contains(field), "{json}: {message}");
        }
    }
}
