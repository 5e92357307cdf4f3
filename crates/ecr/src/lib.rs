//! Amazon ECR and ECR Public registry tokens for `image-credential-provider`.
//!
//! [`Ecr`] is a [`TokenBackend`]: it validates an image's host strictly as an ECR registry
//! host of some partition ([`host`]), keys the token on the account and region and on the
//! caller's identity (role, token file and profile names, never a secret), and fetches it
//! with `GetAuthorizationToken` using the AWS default credential chain — environment,
//! shared profile, web identity (IRSA), EKS Pod Identity and container endpoints, EC2
//! instance metadata (IMDSv2) — optionally assuming a role first. Every fetch is bounded in
//! time by the kit's [`Limits`](icp_http::Limits) ([`DEFAULT_LIMITS`] unless set), and
//! every failure is an [`Error`] that names its cause.
//!
//! The backend is built from its rule section with [`Build`]; the [`Environment`] it is
//! built with is what it reads its `AWS_*` settings from, for the identity its tokens are
//! keyed on and for the AWS SDK's configuration alike.
//!
//! When the kubelet sends the pulling pod's service account token and the service account
//! names a role in its [`ROLE_ANNOTATION`] (or the backend has a
//! [default role](Ecr::with_default_role)), the token is exchanged for that role's
//! credentials (STS `AssumeRoleWithWebIdentity` in the image's region and partition) and
//! the ECR token is fetched with those; its key then holds the service account and the role,
//! so no other service account is ever served it. Without such a role the node's identity
//! is used, as without a token.
//!
//! With `podIdentity` in the rule ([`PodIdentityConfig`]), the pod's token (audience
//! [`POD_IDENTITY_AUDIENCE`]) is exchanged with EKS Auth `AssumeRoleForPodIdentity` in the
//! rule's cluster instead, signed with the node's credentials; a service account with no
//! Pod Identity association pulls with the node's identity. See [`pod_identity`](mod@pod_identity).
//!
//! The `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_ECR_PUBLIC`, `AWS_ENDPOINT_URL_STS` and
//! `AWS_ENDPOINT_URL_EKS_AUTH` variables (and `AWS_ENDPOINT_URL`) are honoured, as the AWS SDKs do.

mod config;
mod connector;
mod error;
mod fetch;
mod host;
mod identity;
mod limits;
mod pod;
pub mod pod_identity;

use std::path::Path;

use icp_core::{
    Build, Context, Environment, ImageRef, Request, ServiceAccountTokenUse, Token, TokenBackend,
    TokenKey,
};
use icp_http::Limits;

pub use config::{Config, PodIdentityConfig, ROLE_ANNOTATION};
pub use error::Error;
use fetch::Identity;
pub use host::DEFAULT_PATTERNS;
use host::{EcrHost, Partition};
pub use limits::DEFAULT_LIMITS;
use pod::{DefaultRole, PodRole};
use pod_identity::PodAssociation;

/// The audience of the service account tokens STS exchanges, as EKS sets it up.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The audience of the service account tokens EKS Auth exchanges (EKS Pod Identity).
pub const POD_IDENTITY_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The ECR backend of one rule.
#[derive(Debug, Clone)]
pub struct Ecr {
    config: Config,
    limits: Limits,
    default_role: Option<DefaultRole>,
    env: Environment,
}

/// Where an image's token comes from.
enum Resolved {
    /// An ECR registry host.
    Ecr(EcrHost),
    /// Another host the rule explicitly sends to ECR in a region (a pull-through proxy).
    Proxy {
        region: String,
        partition: Partition,
    },
}

impl Resolved {
    /// The region an image's token is asked for in.
    fn region(&self) -> &str {
        match self {
            Resolved::Ecr(EcrHost::Private { region, .. }) => region,
            Resolved::Ecr(EcrHost::Public { .. }) => host::PUBLIC_REGION,
            Resolved::Proxy { region, .. } => region,
        }
    }
}

impl Build for Ecr {
    const NAME: &'static str = "ecr";
    const DEFAULT_PATTERNS: &'static [&'static str] = DEFAULT_PATTERNS;
    const POD_IDENTITY_ANNOTATIONS: &'static [&'static str] = &[ROLE_ANNOTATION];
    type Config = Config;
    type Error = Error;

    /// A rule without an `ecr:` section serves ECR hosts with the default identity.
    fn default_config() -> Option<Config> {
        Some(Config::default())
    }

    /// Checks the rule's `ecr:` section. Cheap: no I/O, no clients. The base directory is
    /// unused, as the section names no file.
    fn build(config: Config, context: &Context<'_>) -> Result<Ecr, Error> {
        config.validate()?;
        Ok(Ecr {
            config,
            limits: DEFAULT_LIMITS,
            default_role: None,
            env: context.env.clone(),
        })
    }
}

impl Ecr {
    /// [`Build::build`]: the backend for a rule's `config`, in `env`.
    pub fn new(config: Config, base_dir: &Path, env: &Environment) -> Result<Self, Error> {
        Self::build(config, &Context { base_dir, env })
    }

    /// Sets the role a service account token is exchanged for when its service account has
    /// no role annotation, as the official provider takes it from `AWS_ECR_ROLE_ARN`;
    /// `source` names the setting in messages. Without one, such a pod pulls with the
    /// node's identity.
    pub fn with_default_role(
        mut self,
        role_arn: &str,
        source: &'static str,
    ) -> Result<Self, Error> {
        if !config::is_role_arn(role_arn) {
            return Err(Error::Config(format!(
                "{source} {} is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)",
                icp_core::quote(role_arn)
            )));
        }
        self.default_role = Some(DefaultRole {
            arn: role_arn.to_owned(),
            source,
        });
        Ok(self)
    }

    /// Replaces the time limits and retry budget of each fetch, [`DEFAULT_LIMITS`] until
    /// then.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn resolve(&self, image: &ImageRef) -> Option<Resolved> {
        if let Some(host) = EcrHost::parse(image.registry()) {
            return Some(Resolved::Ecr(host));
        }
        let region = self.config.region.as_ref()?;
        let partition = Partition::of_region(region)?;
        Some(Resolved::Proxy {
            region: region.clone(),
            partition,
        })
    }

    fn resolved(&self, image: &ImageRef) -> Result<Resolved, Error> {
        self.resolve(image)
            .ok_or_else(|| Error::NotServed(image.registry().to_owned()))
    }

    /// The pod's service account and the rule's `podIdentity`, if the kubelet sent a token
    /// and the rule uses EKS Pod Identity.
    fn pod_identity<'a>(
        &'a self,
        request: &Request<'a>,
    ) -> Option<(&'a icp_core::ServiceAccount, &'a PodIdentityConfig)> {
        Some((request.service_account?, self.config.pod_identity.as_ref()?))
    }

    /// The role the pod's service account token is exchanged for, if the kubelet sent one
    /// and the service account (or the backend's default) names a role; never with
    /// `podIdentity`, whose tokens STS does not take.
    fn pod_role<'a>(&'a self, request: &Request<'a>) -> Result<Option<PodRole<'a>>, Error> {
        match request.service_account {
            Some(_) if self.config.pod_identity.is_some() => Ok(None),
            Some(account) => PodRole::resolve(
                account,
                self.config.role_annotation(),
                self.default_role.as_ref(),
            ),
            None => Ok(None),
        }
    }
}

impl TokenBackend for Ecr {
    type Error = Error;

    /// Tokens for STS's `AssumeRoleWithWebIdentity`, with the role annotation; with
    /// `podIdentity`, tokens for EKS Auth, which needs no annotation.
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        if self.config.pod_identity.is_some() {
            return Some(ServiceAccountTokenUse {
                audience: POD_IDENTITY_AUDIENCE.to_owned(),
                annotation_keys: Vec::new(),
            });
        }
        Some(ServiceAccountTokenUse {
            audience: self
                .config
                .audience
                .clone()
                .unwrap_or_else(|| STS_AUDIENCE.to_owned()),
            annotation_keys: vec![self.config.role_annotation().to_owned()],
        })
    }

    fn serves(&self, image: &ImageRef) -> bool {
        self.resolve(image).is_some()
    }

    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let image = request.image;
        let resolved = self.resolved(image)?;
        let node = identity::fingerprint(&self.config, &self.env);
        let identity = match self.pod_identity(request) {
            Some((account, pod_identity)) => {
                let region = pod_identity::region(
                    pod_identity.region.as_deref(),
                    &self.env,
                    resolved.region(),
                );
                PodAssociation {
                    account,
                    cluster: &pod_identity.cluster_name,
                    region: &region,
                    node: &node,
                }
                .key()
            }
            None => match self.pod_role(request)? {
                Some(pod) => pod.key(),
                None => node,
            },
        };
        let scope = match resolved {
            Resolved::Ecr(host) => host.scope(),
            Resolved::Proxy { region, partition } => {
                format!("ecr:{partition}:{region}:via:{}", image.registry())
            }
        };
        Ok(TokenKey { identity, scope })
    }

    /// The instance metadata service, when the node's identity is fetched with no
    /// credentials named by the environment: the default chain then ends at EC2 IMDS.
    fn metadata_service(&self, request: &Request<'_>) -> Option<&'static str> {
        let node = matches!(self.pod_role(request), Ok(None));
        let named = identity::names_credentials(&self.env);
        (node && !named).then_some("ec2-imds")
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let pod = self.pod_role(request)?;
        let resolved = self.resolved(request.image)?;
        let node = identity::fingerprint(&self.config, &self.env);
        let node_role = self
            .config
            .role_arn
            .as_deref()
            .map(|arn| (arn, self.config.session_name()));
        let cluster_region = self.pod_identity(request).map(|(_, pod_identity)| {
            pod_identity::region(pod_identity.region.as_deref(), &self.env, resolved.region())
        });
        let association = self
            .pod_identity(request)
            .zip(cluster_region.as_deref())
            .map(|((account, pod_identity), region)| PodAssociation {
                account,
                cluster: &pod_identity.cluster_name,
                region,
                node: &node,
            });
        let identity = match (association, pod, node_role) {
            (Some(association), _, _) => Identity::PodAssociation {
                association,
                node_role,
            },
            (None, Some(pod), _) => Identity::Pod(pod),
            (None, None, Some((arn, session))) => Identity::NodeRole(arn, session),
            (None, None, None) => Identity::Node,
        };
        let target = match resolved {
            Resolved::Ecr(EcrHost::Private {
                region,
                fips,
                dual_stack,
                ..
            }) => fetch::Target {
                region,
                public: false,
                fips,
                dual_stack,
                identity,
            },
            Resolved::Ecr(EcrHost::Public { dual_stack }) => fetch::Target {
                region: host::PUBLIC_REGION.to_owned(),
                public: true,
                fips: false,
                dual_stack,
                identity,
            },
            Resolved::Proxy { region, .. } => fetch::Target {
                region,
                public: false,
                fips: false,
                dual_stack: false,
                identity,
            },
        };
        let role = match &target.identity {
            Identity::Pod(pod) => Some(pod.role_arn),
            Identity::NodeRole(arn, _)
            | Identity::PodAssociation {
                node_role: Some((arn, _)),
                ..
            } => Some(*arn),
            Identity::Node
            | Identity::PodAssociation {
                node_role: None, ..
            } => None,
        };
        if let Some(arn) = role {
            let checked = same_partition(arn, &target.region);
            match pod {
                Some(pod) => checked.map_err(|cause| pod.error(cause))?,
                None => checked?,
            }
        }
        tracing::debug!(
            registry = request.image.registry(),
            region = target.region,
            public = target.public,
            fips = target.fips,
            dual_stack = target.dual_stack,
            identity = %target.identity,
            "fetching an ECR authorization token"
        );
        let fetched = fetch::fetch(&target, &self.limits, &self.env);
        match (association, pod) {
            (Some(association), _) => fetched.map_err(|cause| association.error(cause)),
            (None, Some(pod)) => fetched.map_err(|cause| pod.error(cause)),
            (None, None) => fetched,
        }
    }
}

/// Refuses a role of another partition than the one of `region` (the registry's),
/// before anything is sent to STS.
fn same_partition(role_arn: &str, region: &str) -> Result<(), Error> {
    let role = role_arn.split(':').nth(1).unwrap_or_default();
    match Partition::of_region(region) {
        Some(registry) if registry.as_str() != role => Err(Error::OtherPartition {
            role: icp_core::quote(role),
            registry: registry.as_str(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecr(config: Config) -> Ecr {
        Ecr::new(config, Path::new("/"), &Environment::empty()).unwrap()
    }

    fn image(reference: &str) -> ImageRef {
        ImageRef::parse(reference).unwrap()
    }

    #[test]
    fn the_node_identity_goes_through_imds_unless_the_environment_names_credentials() {
        let image = image("111122223333.dkr.ecr.us-east-1.amazonaws.com/a");
        let request = Request::new(&image);
        assert_eq!(
            ecr(Config::default()).metadata_service(&request),
            Some("ec2-imds")
        );
        let keys = Environment::from_pairs([("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")]);
        let with_keys = Ecr::new(Config::default(), Path::new("/"), &keys).unwrap();
        assert_eq!(with_keys.metadata_service(&request), None);
    }

    #[test]
    fn serves_ecr_hosts_only_unless_a_region_is_set() {
        let strict = ecr(Config::default());
        assert!(strict.serves(&image(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v1"
        )));
        assert!(strict.serves(&image("public.ecr.aws/team/app")));
        assert!(!strict.serves(&image(
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com:443/app"
        )));
        assert!(!strict.serves(&image("proxy.corp.example/app")));
        let message = strict
            .token_key(&icp_core::Request::new(&image("proxy.corp.example/app")))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("proxy.corp.example") && message.contains("ecr.region"),
            "{message}"
        );

        let proxied = ecr(Config {
            region: Some("eu-central-1".into()),
            ..Config::default()
        });
        assert!(proxied.serves(&image("proxy.corp.example:5000/app")));
        let key = proxied
            .token_key(&icp_core::Request::new(&image(
                "proxy.corp.example:5000/app",
            )))
            .unwrap();
        assert_eq!(
            key.scope,
            "ecr:aws:eu-central-1:via:proxy.corp.example:5000"
        );
        let key = proxied
            .token_key(&icp_core::Request::new(&image(
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app",
            )))
            .unwrap();
        assert_eq!(
            key.scope, "ecr:aws:eu-west-1:123456789012",
            "an ECR host keeps its own region"
        );
    }

    #[test]
    fn every_host_of_an_account_and_region_shares_a_key() {
        let backend = ecr(Config::default());
        let a = backend
            .token_key(&icp_core::Request::new(&image(
                "123456789012.dkr.ecr.us-west-2.amazonaws.com/a",
            )))
            .unwrap();
        let b = backend
            .token_key(&icp_core::Request::new(&image(
                "123456789012.dkr-ecr.us-west-2.on.aws/b/c:v2",
            )))
            .unwrap();
        assert_eq!(a, b);
        let public = backend
            .token_key(&icp_core::Request::new(&image("public.ecr.aws/x/y")))
            .unwrap();
        assert_ne!(a.scope, public.scope);
    }

    #[test]
    fn a_role_of_another_partition_is_refused_before_sts_is_asked() {
        // No credentials and no endpoint: reaching STS would be another error.
        let backend = ecr(Config {
            role_arn: Some("arn:aws-cn:iam::123456789012:role/x".into()),
            ..Config::default()
        });
        let registry = image("123456789012.dkr.ecr.us-east-1.amazonaws.com/app");
        let error = backend
            .fetch(&icp_core::Request::new(&registry))
            .unwrap_err();
        assert!(matches!(error, Error::OtherPartition { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "the role is in partition \"aws-cn\", the registry in aws: a role can only be assumed in its own partition"
        );
        let account = icp_core::ServiceAccount {
            namespace: "team".into(),
            name: "puller".into(),
            uid: "u".into(),
            token: icp_core::Secret::new("a.b.c"),
            annotations: [(
                config::ROLE_ANNOTATION.to_owned(),
                "arn:aws-cn:iam::123456789012:role/pod".to_owned(),
            )]
            .into(),
        };
        let request = icp_core::Request {
            service_account: Some(&account),
            ..icp_core::Request::new(&registry)
        };
        let error = ecr(Config::default()).fetch(&request).unwrap_err();
        assert!(
            error.to_string().starts_with("service account team/puller")
                && error
                    .to_string()
                    .contains("partition \"aws-cn\", the registry in aws"),
            "{error}"
        );
        assert_eq!(
            same_partition("arn:aws-cn:iam::123456789012:role/x", "cn-north-1").ok(),
            Some(())
        );
    }

    #[test]
    fn new_refuses_an_invalid_section() {
        let config = Config {
            role_arn: Some("arn:aws:iam::1:role/x".into()),
            ..Config::default()
        };
        assert!(matches!(
            Ecr::new(config, Path::new("/"), &Environment::empty()),
            Err(Error::Config(_))
        ));
    }
}
