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
//!    when its `exp` claim says.
//!
//! The Azure AD token only ever goes to a host that [`host`] strictly recognises as a
//! login server of the configured cloud, and every request is bounded ([`Limits`]).
//!
//! Azure AD, IMDS and the registry are spoken to directly over [`icp_http`], the
//! project's one hyper/rustls stack, rather than through `azure_identity`: that crate
//! only has pre-release 1.x versions, brings its own HTTP pipeline (reqwest by default)
//! and retry policy, and the three token requests needed here are small.

mod aad;
mod challenge;
mod cloud;
mod config;
mod error;
mod host;
mod identity;
mod jwt;
mod registry;
mod retry;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use icp_core::{ImageRef, Request, Token, TokenBackend, TokenKey};

use cloud::Cloud;
use config::parse_registry_mirrors;
pub use config::{Config, IdentityKind};
pub use error::Error;
pub use host::DEFAULT_PATTERNS;
pub use retry::Limits;

use config::{CloudChoice, Settings};

/// The username of every ACR refresh token.
pub const USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// The ACR backend: one resolved identity, one cloud (or the image's), and mirrors.
#[derive(Debug, Clone)]
pub struct Acr {
    settings: Settings,
    limits: Limits,
    /// Why the environment cannot be used, for a rule with no settings.
    unusable: Option<String>,
}

impl Acr {
    /// Resolves `config` (reading `azure.json` if it names one, relative paths against
    /// `base_dir`) and the `AZURE_*` environment variables. Opens no connection.
    pub fn new(config: Config, base_dir: &Path) -> Result<Acr, Error> {
        let env = |name: &str| std::env::var(name).ok();
        let (settings, unusable) = match config::resolve(&config, base_dir, &env) {
            Ok(settings) => (settings, None),
            Err(error) if config == Config::default() => {
                (config::Settings::unusable(), Some(error.to_string()))
            }
            Err(error) => return Err(error),
        };
        Ok(Acr {
            settings,
            limits: Limits::default(),
            unusable,
        })
    }

    /// The backend the official `acr-credential-provider` command line asks for: the
    /// identity and cloud of its `azure.json` (read here; a relative path is taken from
    /// the working directory, as the official provider does), and the
    /// `--registry-mirror` values, each `mirror:loginserver[,...]`.
    pub fn from_command_line(
        azure_config: &Path,
        registry_mirrors: &[String],
    ) -> Result<Acr, Error> {
        let mut mirrors = BTreeMap::new();
        for value in registry_mirrors {
            mirrors.extend(parse_registry_mirrors(value)?);
        }
        let config = Config {
            azure_config: Some(azure_config.to_owned()),
            registry_mirrors: mirrors,
            ..Config::default()
        };
        Acr::new(config, Path::new("."))
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

    fn authority<'a>(&'a self, cloud: &'a Cloud) -> &'a str {
        match &self.settings.identity {
            identity::Identity::Workload {
                authority_host: Some(host),
                ..
            } => host,
            _ => &cloud.authority_host,
        }
    }

    async fn fetch_async(&self, login_server: &str, cloud: &Cloud) -> Result<Token, Error> {
        let deadline = Instant::now() + self.limits.total;
        let options = icp_http::Options {
            connect_timeout: self.limits.connect,
            timeout: self.limits.request,
            max_body: 256 * 1024,
        };
        let client = icp_http::Client::new(options).map_err(|e| Error::Config(e.to_string()))?;
        let call = |service| retry::Call {
            client: &client,
            limits: &self.limits,
            deadline,
            service,
        };
        let registry_call = call(login_server);
        let bearer = registry::challenge(&registry_call, login_server).await?;
        tracing::debug!(registry = login_server, identity = %self.settings.identity.fingerprint(), "getting an Azure AD token");
        let access_token = aad::access_token(
            &client,
            &self.limits,
            deadline,
            &self.settings.identity,
            cloud,
        )
        .await?;
        let tenant = self.settings.identity.tenant_id();
        let refresh_token =
            registry::exchange(&registry_call, login_server, &bearer, tenant, &access_token)
                .await?;
        let bad = |reason: &str| Error::BadResponse {
            service: login_server.to_owned(),
            reason: reason.to_owned(),
        };
        let stated = jwt::expiry(refresh_token.expose())
            .map_err(|reason| bad(&format!("malformed refresh token: {reason}")))?;
        let now = SystemTime::now();
        let expires_at = icp_core::expiry::at(stated, now);
        if expires_at <= now {
            return Err(bad("the refresh token has already expired"));
        }
        Ok(Token {
            username: USERNAME.to_owned(),
            password: refresh_token,
            expires_at: Some(expires_at),
        })
    }
}

impl TokenBackend for Acr {
    type Error = Error;

    /// Reads the files the identity reads at each fetch (a federated token file, a client
    /// secret file), so that `check-config` reports a missing one now.
    fn check(&self) -> Result<(), Error> {
        if let Some(reason) = &self.unusable {
            return Err(Error::Environment(reason.clone()));
        }
        aad::check_files(&self.settings.identity)
    }

    fn serves(&self, image: &ImageRef) -> bool {
        self.target(image).is_some()
    }

    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let image = request.image;
        if let Some(reason) = &self.unusable {
            return Err(Error::Environment(reason.clone()));
        }
        let (login_server, cloud) = self
            .target(image)
            .ok_or_else(|| Error::NotServed(image.registry().to_owned()))?;
        Ok(TokenKey {
            identity: format!(
                "acr:{}:authority={}",
                self.settings.identity.fingerprint(),
                self.authority(&cloud)
            ),
            scope: login_server,
        })
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        if let Some(reason) = &self.unusable {
            return Err(Error::Environment(reason.clone()));
        }
        let (login_server, cloud) = self
            .target(request.image)
            .ok_or_else(|| Error::NotServed(request.image.registry().to_owned()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(Error::Runtime)?;
        runtime.block_on(self.fetch_async(&login_server, &cloud))
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
        let settings = config::resolve(&config, Path::new("/"), &|_| None).unwrap();
        Acr {
            settings,
            limits: Limits::default(),
            unusable: None,
        }
    }

    fn image(reference: &str) -> ImageRef {
        ImageRef::parse(reference).unwrap()
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
