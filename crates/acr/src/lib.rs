//! Azure Container Registry credentials for `image-credential-provider`.
//!
//! For an image on an ACR login server (`myacr.azurecr.io`, a geo-replica endpoint, a
//! sovereign or custom cloud's registry, or a configured mirror of one), the backend
//!
//! 1. asks the registry for its challenge (`GET /v2/`) and checks that the challenge's
//!    realm is on the registry itself;
//! 2. gets an Azure AD access token for the registry audience
//!    (`https://containerregistry.azure.net/.default`) as the configured identity: the
//!    VM's managed identity through IMDS, workload identity with a federated token, or a
//!    service principal with a client secret;
//! 3. exchanges it at `POST /oauth2/exchange` for an ACR refresh token, and answers with
//!    the username `00000000-0000-0000-0000-000000000000` and that token, which expires
//!    when its `exp` claim says (a token that is no JWT, or has no `exp`, is answered
//!    with no expiry: the binary answers it with a cache duration of `0s`).
//!
//! When the kubelet sends the pulling pod's service account token (service-account-token
//! mode, KEP-4412) and the service account has the annotations
//! `kubernetes.azure.com/acr-client-id` and `kubernetes.azure.com/acr-tenant-id`
//! (renamable in the rule), step 2 is done as that pod's own identity instead: the pod's
//! token is the client assertion of the annotated application in the annotated tenant, as
//! the official `acr-credential-provider` does. Tokens fetched so are cached per service
//! account ([`TokenBackend::token_key`]). With neither annotation, or no token, the node's
//! identity is used; an image on a mirror is always fetched as the node's identity, as the
//! official provider does, unless [`Config::mirrors_use_pod_identity`] is set.
//!
//! With `identityBindings` in the rule (AKS identity bindings, the official provider's
//! `--ib-*` flags), a request carrying the pod's token is fetched as the identity the
//! service account is bound to instead: step 2 is sent to the cluster's identity-binding
//! endpoint (see [`identity_binding`](mod@identity_binding)), with the client id and tenant
//! of the same two annotations, else the bindings' defaults; pods' tokens are then for
//! [`IDENTITY_BINDING_AUDIENCE`], as AKS configures the kubelet.
//!
//! The Azure AD token only ever goes to a host strictly recognised (by its `host` module) as a
//! login server of the configured cloud, and every request is bounded ([`Limits`]).
//!
//! The backend reads only the [`Environment`] it is built with (`AZURE_*`, the address
//! overrides and proxies of [`icp_http`], and [`IMDS_ENDPOINT_ENV`] for tests), and is
//! built by [`Acr::new`] or as a [`Build`] row of the binary's backend table; a problem
//! with its settings or environment is the constructor's error.
//!
//! Azure AD, IMDS and the registry are spoken to directly over [`icp_http`], the
//! project's one hyper/rustls stack, rather than through `azure_identity`: that crate
//! only has pre-release 1.x versions, brings its own HTTP pipeline (reqwest by default)
//! and retry policy, and the three token requests needed here are small.

mod aad;
mod azure_json;
mod challenge;
mod cloud;
mod cloud_choice;
mod config;
mod error;
mod fetch;
mod host;
mod identity;
pub mod identity_binding;
mod identity_choice;
mod registry;
mod service_account;
mod settings;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use icp_core::{
    Build, Context, Environment, ImageRef, Request, ServiceAccountTokenUse, Token, TokenBackend,
    TokenKey,
};
use icp_http::{Deadline, RunError};

pub use aad::IMDS_ENDPOINT_ENV;
use cloud::Cloud;
use cloud_choice::CloudChoice;
use config::parse_registry_mirrors;
pub use config::{Config, IdentityBindingsConfig, IdentityKind};
pub use error::Error;
use fetch::Fetch;
pub use host::DEFAULT_PATTERNS;
pub use icp_http::Limits;
use identity_binding::Bound;
pub use identity_binding::IDENTITY_BINDING_AUDIENCE;
use service_account::PodIdentity;
pub use service_account::{CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION};
use settings::Settings;

/// The audience of the service account tokens Azure AD takes as client assertions, as
/// Azure's workload identity federation sets it up.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// The username of every ACR refresh token.
pub const USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// Whose identity a fetch is done as when it is not the node's.
#[derive(Debug, Clone, Copy)]
enum Pod<'a> {
    /// The client id and tenant of the service account's annotations, with Azure AD.
    Annotated(PodIdentity<'a>),
    /// The identity the service account is bound to, with the identity-binding endpoint.
    Bound(Bound<'a>),
}

impl Pod<'_> {
    /// `error`, said of the pod's service account and identity.
    fn context(&self, error: Error) -> Error {
        match self {
            Pod::Annotated(pod) => pod.context(error),
            Pod::Bound(bound) => bound.context(error),
        }
    }
}

/// The ACR backend: one resolved identity, one cloud (or the image's), and mirrors.
#[derive(Debug, Clone)]
pub struct Acr {
    settings: Settings,
    /// The audience of pods' service account tokens.
    audience: String,
    limits: Limits,
    /// The environment the backend was built with, for its clients' overrides and proxies.
    env: Environment,
}

impl Acr {
    /// Resolves `config` (reading `azure.json` if it names one, relative paths against
    /// `base_dir`) and the `AZURE_*` variables of `env`. Opens no connection. A rule with
    /// no settings whose environment cannot be used is [`Error::Environment`].
    pub fn new(config: Config, base_dir: &Path, env: &Environment) -> Result<Acr, Error> {
        let settings = settings::resolve(&config, base_dir, env).map_err(|error| {
            if config == Config::default() {
                Error::Environment(error.to_string())
            } else {
                error
            }
        })?;
        Ok(Acr {
            audience: config.audience.clone().unwrap_or_else(|| {
                match config.identity_bindings {
                    Some(_) => IDENTITY_BINDING_AUDIENCE,
                    None => TOKEN_EXCHANGE_AUDIENCE,
                }
                .to_owned()
            }),
            settings,
            limits: Limits::default(),
            env: env.clone(),
        })
    }

    /// The backend the official `acr-credential-provider` command line asks for: the
    /// identity and cloud of its `azure.json` (read here; a relative path is taken from
    /// the working directory, as the official provider does), the `--registry-mirror`
    /// values, each `mirror:loginserver[,...]`, and the identity bindings of its `--ib-*`
    /// flags.
    pub fn from_command_line(
        azure_config: &Path,
        registry_mirrors: &[String],
        identity_bindings: Option<IdentityBindingsConfig>,
        env: &Environment,
    ) -> Result<Acr, Error> {
        let mut mirrors = BTreeMap::new();
        for value in registry_mirrors {
            mirrors.extend(parse_registry_mirrors(value)?);
        }
        let config = Config {
            azure_config: Some(azure_config.to_owned()),
            registry_mirrors: mirrors,
            identity_bindings,
            ..Config::default()
        };
        Acr::new(config, Path::new("."), env)
    }

    /// The same backend with other time and retry bounds.
    pub fn with_limits(mut self, limits: Limits) -> Acr {
        self.limits = limits;
        self
    }

    /// The kubelet-glob patterns of the images this backend serves: [`DEFAULT_PATTERNS`],
    /// or the configured cloud's, and the mirrors.
    pub fn match_patterns(&self) -> Vec<String> {
        let mut patterns = match &self.settings.cloud {
            CloudChoice::BySuffix => DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect(),
            CloudChoice::Fixed(cloud) => host::patterns_for_suffix(&cloud.registry_suffix),
        };
        patterns.extend(self.settings.mirrors.keys().cloned());
        patterns
    }

    /// The login server `image` needs a token for, and its cloud.
    fn target(&self, image: &ImageRef) -> Option<(String, Cloud)> {
        if image.port().is_some() {
            return None;
        }
        let login_server = self
            .settings
            .mirrors
            .get(image.host())
            .map_or(image.host(), String::as_str);
        let cloud = self.settings.cloud.cloud_of(login_server)?;
        Some((login_server.to_owned(), cloud))
    }

    /// The Azure AD authority client assertions go to: `AZURE_AUTHORITY_HOST`, else the
    /// cloud's.
    fn assertion_authority<'a>(&'a self, cloud: &'a Cloud) -> &'a str {
        self.settings
            .authority_host
            .as_deref()
            .unwrap_or(&cloud.authority_host)
    }

    /// The Azure AD authority the node's identity gets its tokens from.
    fn node_authority<'a>(&'a self, cloud: &'a Cloud) -> &'a str {
        match &self.settings.identity {
            identity::Identity::Workload { .. } => self.assertion_authority(cloud),
            _ => &cloud.authority_host,
        }
    }

    /// The pod's own identity when the request carries a service account token and the
    /// account has the annotations; `None` for the node's identity, which an image on a
    /// mirror is always fetched as unless the rule says `mirrorsUsePodIdentity`.
    fn pod_identity<'a>(&'a self, request: &Request<'a>) -> Result<Option<Pod<'a>>, Error> {
        let Some(account) = request.service_account else {
            return Ok(None);
        };
        let image = request.image;
        if self.settings.mirrors.contains_key(image.host())
            && !self.settings.mirrors_use_pod_identity
        {
            tracing::debug!(mirror = image.host(), service_account = %account, "an image on a mirror is fetched as the node's identity");
            return Ok(None);
        }
        if let Some(bindings) = &self.settings.identity_bindings {
            return bindings.bind(account).map(|bound| Some(Pod::Bound(bound)));
        }
        let pod = self.settings.annotations.pod_identity(account)?;
        Ok(pod.map(Pod::Annotated))
    }

    /// The login server and cloud of `request`'s image, and the pod identity it is fetched
    /// as, if any; no I/O.
    fn resolve<'a>(
        &'a self,
        request: &Request<'a>,
    ) -> Result<(String, Cloud, Option<Pod<'a>>), Error> {
        let (login_server, cloud) = self
            .target(request.image)
            .ok_or_else(|| Error::NotServed(request.image.registry().to_owned()))?;
        let pod = self.pod_identity(request)?;
        Ok((login_server, cloud, pod))
    }

    async fn fetch_async(
        &self,
        deadline: Deadline,
        login_server: &str,
        cloud: &Cloud,
        pod: Option<&Pod<'_>>,
    ) -> Result<Token, Error> {
        let options = icp_http::Options {
            connect_timeout: self.limits.connect,
            timeout: self.limits.request,
            max_body: 256 * 1024,
        };
        let client =
            icp_http::Client::new(options, &self.env).map_err(|e| Error::Config(e.to_string()))?;
        let fetch = Fetch {
            client: &client,
            retry: icp_http::Retry::new(&self.limits),
            deadline,
        };
        let bearer = registry::challenge(&fetch, login_server).await?;
        let (access_token, tenant) = match pod {
            Some(Pod::Bound(bound)) => {
                tracing::debug!(registry = login_server, service_account = %bound.account, client_id = bound.client_id, tenant = bound.tenant_id, "getting an access token from the identity-binding endpoint as the pod's identity");
                let token = bound.access_token(&fetch, cloud, &self.env).await?;
                (token, bound.tenant_id)
            }
            Some(Pod::Annotated(pod)) => {
                tracing::debug!(registry = login_server, service_account = %pod.account, client_id = pod.client_id, tenant = pod.tenant_id, "getting an Azure AD token as the pod's identity");
                let federated = aad::Federated {
                    authority: self.assertion_authority(cloud),
                    tenant_id: pod.tenant_id,
                    client_id: pod.client_id,
                    assertion: &pod.account.token,
                };
                let token = aad::client_assertion(&fetch, &federated, cloud).await?;
                (token, Some(pod.tenant_id))
            }
            None => {
                tracing::debug!(registry = login_server, identity = %self.settings.identity.fingerprint(), "getting an Azure AD token");
                let node = aad::Node {
                    identity: &self.settings.identity,
                    cloud,
                    assertion_authority: self.assertion_authority(cloud),
                    imds_endpoint: &self.settings.imds_endpoint,
                };
                let token = aad::access_token(&fetch, &node).await?;
                (token, self.settings.identity.tenant_id())
            }
        };
        let refresh_token =
            registry::exchange(&fetch, login_server, &bearer, tenant, &access_token).await?;
        let bad = |reason: &str| Error::BadResponse {
            service: login_server.to_owned(),
            reason: reason.to_owned(),
        };
        let exp = icp_core::jwt::claims(refresh_token.expose()).and_then(|claims| {
            claims
                .get("exp")
                .and_then(serde_json::Value::as_f64)
                .ok_or("the JWT has no numeric exp claim")
        });
        let expires_at = match exp {
            Ok(exp) => {
                let stated = icp_core::expiry::from_unix_seconds(exp.trunc()).ok_or_else(|| {
                    bad("malformed refresh token: the JWT exp claim is out of range")
                })?;
                let now = SystemTime::now();
                let expires_at = icp_core::expiry::at(stated, now);
                if expires_at <= now {
                    return Err(bad("the refresh token has already expired"));
                }
                Some(expires_at)
            }
            // An expiry ACR does not state is no reason to refuse the token: it is answered
            // for this pull only (a cache duration of 0s).
            Err(reason) => {
                tracing::info!(
                    registry = login_server,
                    reason,
                    "the ACR refresh token states no expiry; answered uncached"
                );
                None
            }
        };
        Ok(Token {
            username: USERNAME.to_owned(),
            password: refresh_token,
            expires_at,
        })
    }
}

/// The `acr` row of the binary's backend table: the rule section is [`Config`], every
/// field optional.
impl Build for Acr {
    const NAME: &'static str = "acr";
    const DEFAULT_PATTERNS: &'static [&'static str] = DEFAULT_PATTERNS;
    const POD_IDENTITY_ANNOTATIONS: &'static [&'static str] =
        &[CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION];
    type Config = Config;
    type Error = Error;

    fn default_config() -> Option<Config> {
        Some(Config::default())
    }

    fn build(config: Config, context: &Context<'_>) -> Result<Acr, Error> {
        Acr::new(config, context.base_dir, context.env)
    }
}

impl TokenBackend for Acr {
    type Error = Error;

    /// Tokens for Azure AD's workload identity federation, with the client id and tenant
    /// annotations; with identity bindings, tokens for [`IDENTITY_BINDING_AUDIENCE`] with
    /// the official annotations (the rule's audience, if it names one, in either case).
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        let keys = &self.settings.annotations;
        let annotation_keys = match self.settings.identity_bindings {
            Some(_) => vec![
                identity_binding::CLIENT_ID_ANNOTATION.to_owned(),
                identity_binding::TENANT_ID_ANNOTATION.to_owned(),
            ],
            None => vec![keys.client_id.clone(), keys.tenant_id.clone()],
        };
        Some(ServiceAccountTokenUse {
            audience: self.audience.clone(),
            annotation_keys,
        })
    }

    /// Reads the files the identity reads at each fetch (a federated token file, a client
    /// secret file, identity bindings' CA), so that `check-config` reports a missing one
    /// now.
    fn check(&self) -> Result<(), Error> {
        aad::check_files(&self.settings.identity)?;
        match &self.settings.identity_bindings {
            Some(bindings) => bindings.check(),
            None => Ok(()),
        }
    }

    fn serves(&self, image: &ImageRef) -> bool {
        self.target(image).is_some()
    }

    /// The node's identity, or for a pod with its own identity its service account (with
    /// the annotation values) and the authority: pods of one service account share a
    /// token, two service accounts never do.
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let (login_server, cloud, pod) = self.resolve(request)?;
        let identity = match pod {
            Some(Pod::Annotated(pod)) => pod.cache_identity(self.assertion_authority(&cloud)),
            Some(Pod::Bound(bound)) => bound.cache_identity(),
            None => format!(
                "acr:{}:authority={}",
                self.settings.identity.fingerprint(),
                self.node_authority(&cloud)
            ),
        };
        Ok(TokenKey {
            identity,
            scope: login_server,
        })
    }

    /// The instance metadata service, when the token is fetched as the VM's managed
    /// identity.
    fn metadata_service(&self, request: &Request<'_>) -> Option<&'static str> {
        let node = matches!(self.pod_identity(request), Ok(None));
        (node && matches!(self.settings.identity, identity::Identity::Managed { .. }))
            .then_some("azure-imds")
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let (login_server, cloud, pod) = self.resolve(request)?;
        let fetched = icp_http::run(Deadline::after(self.limits.total), |deadline| {
            self.fetch_async(deadline, &login_server, &cloud, pod.as_ref())
        })
        .unwrap_or_else(|error| {
            Err(match error {
                RunError::Runtime(cause) => Error::Runtime(cause),
                RunError::Elapsed(_) => Error::Timeout(login_server.clone()),
            })
        });
        match pod {
            Some(pod) => fetched.map_err(|error| pod.context(error)),
            None => fetched,
        }
    }

    fn patterns(&self, image: &ImageRef) -> Vec<String> {
        let mut patterns = vec![image.registry().to_owned()];
        if let Some((login_server, _)) = self.target(image) {
            patterns.push(login_server.clone());
            patterns.extend(
                self.settings
                    .mirrors
                    .iter()
                    .filter(|(_, target)| **target == login_server)
                    .map(|(m, _)| m.clone()),
            );
        }
        let mut seen = std::collections::HashSet::new();
        patterns.retain(|p| seen.insert(p.clone()));
        patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acr(json: &str) -> Acr {
        let config: Config = serde_json::from_str(json).unwrap();
        let env = settings::testing::no_env();
        Acr::new(config, Path::new("/"), &env).unwrap()
    }

    fn image(reference: &str) -> ImageRef {
        ImageRef::parse(reference).unwrap()
    }

    #[test]
    fn the_managed_identity_goes_through_the_instance_metadata_service() {
        let image = image("myacr.azurecr.io/a");
        let request = icp_core::Request::new(&image);
        assert_eq!(acr("{}").metadata_service(&request), Some("azure-imds"));
        assert_eq!(
            acr(r#"{"clientId": "c1"}"#).metadata_service(&request),
            Some("azure-imds")
        );
    }

    #[test]
    fn serves_login_servers_and_mirrors_only() {
        let backend = acr(r#"{"registryMirrors": {"mirror.example": "myacr.azurecr.io"}}"#);
        for served in [
            "myacr.azurecr.io/app:1",
            "myacr.azurecr.cn/app",
            "myacr.azurecr.us/app",
            "myacr.eastus.geo.azurecr.io/a/b",
            "mirror.example/app",
        ] {
            assert!(backend.serves(&image(served)), "{served}");
        }
        for refused in [
            "myacr.azurecr.io:443/app",
            "myacr.azurecr.io.evil.example/app",
            "evilazurecr.io/app",
            "mirror.example:5000/app",
            "other.mirror.example/app",
            "docker.io/library/busybox",
        ] {
            assert!(!backend.serves(&image(refused)), "{refused}");
            assert!(matches!(
                backend.token_key(&icp_core::Request::new(&image(refused))),
                Err(Error::NotServed(_))
            ));
        }
    }

    #[test]
    fn token_keys_share_a_registry_and_name_the_identity() {
        let backend = acr(r#"{"registryMirrors": {"mirror.example": "myacr.azurecr.io"}}"#);
        let direct = backend
            .token_key(&icp_core::Request::new(&image("myacr.azurecr.io/a")))
            .unwrap();
        assert_eq!(
            direct,
            backend
                .token_key(&icp_core::Request::new(&image("myacr.azurecr.io/b:2")))
                .unwrap()
        );
        assert_eq!(
            direct,
            backend
                .token_key(&icp_core::Request::new(&image("mirror.example/a")))
                .unwrap()
        );
        assert_eq!(direct.scope, "myacr.azurecr.io");
        assert_eq!(
            direct.identity,
            "acr:managed-identity:system:authority=https://login.microsoftonline.com/"
        );
        assert_ne!(
            direct,
            backend
                .token_key(&icp_core::Request::new(&image("other.azurecr.io/a")))
                .unwrap()
        );
        let china = backend
            .token_key(&icp_core::Request::new(&image("myacr.azurecr.cn/a")))
            .unwrap();
        assert_eq!(
            china.identity,
            "acr:managed-identity:system:authority=https://login.chinacloudapi.cn/"
        );
        let user = acr(r#"{"clientId": "c1"}"#)
            .token_key(&icp_core::Request::new(&image("myacr.azurecr.io/a")))
            .unwrap();
        assert_ne!(user.identity, direct.identity);
    }

    fn account(
        namespace: &str,
        name: &str,
        annotations: &[(&str, &str)],
    ) -> icp_core::ServiceAccount {
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let claims = format!(
            r#"{{"kubernetes.io":{{"namespace":"{namespace}","serviceaccount":{{"name":"{name}","uid":"{name}-uid"}}}}}}"#
        );
        let token = format!("{}.{}.{}", encode("{}"), encode(&claims), encode(name));
        let annotations = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        icp_core::ServiceAccount::from_token(icp_core::Secret::new(token), annotations).unwrap()
    }

    #[test]
    fn pods_with_their_own_identity_are_keyed_by_service_account() {
        let backend = acr("{}");
        let image = image("myacr.azurecr.io/app");
        let key = |account: Option<&icp_core::ServiceAccount>| {
            backend.token_key(&Request {
                service_account: account,
                ..Request::new(&image)
            })
        };
        let node = key(None).unwrap();
        let both = [(CLIENT_ID_ANNOTATION, "c1"), (TENANT_ID_ANNOTATION, "t1")];
        let app = account("team-a", "app", &both);
        let own = key(Some(&app)).unwrap();
        assert_eq!(own.scope, "myacr.azurecr.io");
        assert_eq!(
            own.identity,
            "sa=team-a/app/app-uid;kubernetes.azure.com/acr-client-id=c1;\
             kubernetes.azure.com/acr-tenant-id=t1;acr-client-assertion;\
             authority=https://login.microsoftonline.com/"
        );
        assert!(!own.identity.contains(app.token.expose()));
        // Another pod of the account (its own token) shares the key; no one else does.
        let mut other_pod = app.clone();
        other_pod.token = icp_core::Secret::new("another.token.value");
        assert_eq!(key(Some(&other_pod)).unwrap(), own);
        for other in [
            account("team-b", "app", &both),
            account("team-a", "batch", &both),
            account(
                "team-a",
                "app",
                &[(CLIENT_ID_ANNOTATION, "c2"), (TENANT_ID_ANNOTATION, "t1")],
            ),
            account(
                "team-a",
                "app",
                &[(CLIENT_ID_ANNOTATION, "c1"), (TENANT_ID_ANNOTATION, "t2")],
            ),
        ] {
            let other = key(Some(&other)).unwrap();
            assert_ne!(other, own);
            assert_ne!(other, node);
        }
        // No annotation: the node's identity, and its key.
        assert_eq!(key(Some(&account("team-a", "app", &[]))).unwrap(), node);
        let error = key(Some(&account("team-a", "app", &both[..1]))).unwrap_err();
        assert!(
            error.to_string().contains("acr-tenant-id is missing"),
            "{error}"
        );
        // A China-cloud registry: that cloud's authority.
        let china = image_key(&backend, "myacr.azurecr.cn/app", &app);
        assert!(
            china
                .identity
                .ends_with("authority=https://login.chinacloudapi.cn/")
        );
    }

    #[test]
    fn images_on_a_mirror_are_keyed_as_the_node_unless_the_rule_says_otherwise() {
        let mirrors = r#""registryMirrors": {"mcr.microsoft.com": "myacr.azurecr.io"}"#;
        let both = [(CLIENT_ID_ANNOTATION, "c1"), (TENANT_ID_ANNOTATION, "t1")];
        let app = account("team-a", "app", &both);
        let half = account("team-a", "app", &both[..1]);
        let backend = acr(&format!("{{{mirrors}}}"));
        let node = backend
            .token_key(&Request::new(&image("myacr.azurecr.io/app")))
            .unwrap();
        for account in [&app, &half] {
            assert_eq!(
                image_key(&backend, "mcr.microsoft.com/oss/app:1", account),
                node
            );
        }
        // The login server itself is still fetched as the pod.
        let own = image_key(&backend, "myacr.azurecr.io/app", &app);
        assert!(own.identity.starts_with("sa=team-a/app/"), "{own:?}");
        // Opted in: the mirror is fetched as the pod too, and keyed so.
        let opted = acr(&format!(r#"{{{mirrors}, "mirrorsUsePodIdentity": true}}"#));
        assert_eq!(image_key(&opted, "mcr.microsoft.com/oss/app:1", &app), own);
    }

    fn image_key(backend: &Acr, reference: &str, account: &icp_core::ServiceAccount) -> TokenKey {
        let image = image(reference);
        backend
            .token_key(&Request {
                service_account: Some(account),
                ..Request::new(&image)
            })
            .unwrap()
    }

    #[test]
    fn patterns_include_the_mirrors() {
        let backend = acr(
            r#"{"registryMirrors": {"mirror.example": "myacr.azurecr.io", "m2.example": "myacr.azurecr.io", "m3.example": "other.azurecr.io"}}"#,
        );
        assert_eq!(
            backend.patterns(&image("mirror.example/app")),
            ["mirror.example", "myacr.azurecr.io", "m2.example"]
        );
        assert_eq!(
            backend.patterns(&image("myacr.azurecr.io/app")),
            ["myacr.azurecr.io", "m2.example", "mirror.example"]
        );
        assert_eq!(
            backend.patterns(&image("third.azurecr.io/app")),
            ["third.azurecr.io"]
        );
        assert_eq!(backend.match_patterns().len(), DEFAULT_PATTERNS.len() + 3);
        let china = acr(r#"{"cloud": "AzureChinaCloud"}"#);
        assert_eq!(
            china.match_patterns(),
            ["*.azurecr.cn", "*.*.geo.azurecr.cn"]
        );
        assert!(!china.serves(&image("myacr.azurecr.io/app")));
    }
}
