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
//! The `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_ECR_PUBLIC` and `AWS_ENDPOINT_URL_STS`
//! variables (and `AWS_ENDPOINT_URL`) are honoured, as the AWS SDKs do.

mod config;
mod error;
mod fetch;
mod host;
mod identity;
mod limits;
mod pod;

use std::path::Path;

use icp_core::{
    Build, Context, Environment, ImageRef, Request, ServiceAccountTokenUse, Token, TokenBackend,
    TokenKey,
};
use icp_http::Limits;

pub use config::{Config, ROLE_ANNOTATION};
pub use error::Error;
use fetch::Identity;
pub use host::DEFAULT_PATTERNS;
use host::{EcrHost, Partition};
pub use limits::DEFAULT_LIMITS;
use pod::{DefaultRole, PodRole};

/// The audience of the service account tokens STS exchanges, as EKS sets it up.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

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

impl Build for Ecr {
    const NAME: &'static str = "ecr";
    const DEFAULT_PATTERNS: &'static [&'static str] = DEFAULT_PATTERNS;
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

    /// The role the pod's service account token is exchanged for, if the kubelet sent one
    /// and the service account (or the backend's default) names a role.
    fn pod_role<'a>(&'a self, request: &Request<'a>) -> Result<Option<PodRole<'a>>, Error> {
        match request.service_account {
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

    /// Tokens for STS's `AssumeRoleWithWebIdentity`, with the role annotation.
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        Some(ServiceAccountTokenUse {
            audience: STS_AUDIENCE.to_owned(),
            annotation_keys: vec![self.config.role_annotation().to_owned()],
        })
    }

    fn serves(&self, image: &ImageRef) -> bool {
        self.resolve(image).is_some()
    }

    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let image = request.image;
        let scope = match self.resolved(image)? {
            Resolved::Ecr(host) => host.scope(),
            Resolved::Proxy { region, partition } => {
                format!("ecr:{partition}:{region}:via:{}", image.registry())
            }
        };
        let identity = match self.pod_role(request)? {
            Some(pod) => pod.key(),
            None => identity::fingerprint(&self.config, &self.env),
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
        let identity = match (pod, self.config.role_arn.as_deref()) {
            (Some(pod), _) => Identity::Pod(pod),
            (None, Some(arn)) => Identity::NodeRole(arn, self.config.session_name()),
            (None, None) => Identity::Node,
        };
        let target = match self.resolved(request.image)? {
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
        match pod {
            Some(pod) => fetched.map_err(|cause| pod.error(cause)),
            None => fetched,
        }
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
