//! JFrog Access OIDC token exchange: the pod's token is posted to
//! `POST /access/api/v1/oidc/token` as an RFC 8693 exchange naming the platform's OIDC
//! integration (`provider_name`), which answers `{access_token, username, expires_in}`.

use std::time::SystemTime;

use icp_core::{
    Build, Context, ImageRef, Request, Secret, ServiceAccountTokenUse, Token, TokenBackend,
    TokenKey, quote,
};
use icp_http::Shape;
use serde::Deserialize;

use crate::common::{self, Base};
use crate::endpoint::Endpoint;
use crate::{Error, Limits};

/// The exchange endpoint, under the JFrog platform URL.
const PATH: &str = "/access/api/v1/oidc/token";

/// The pod token's audience when the rule names neither `tokenAudience` nor `audience`.
pub const DEFAULT_AUDIENCE: &str = "jfrog";

/// The `jfrog:` section of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JfrogConfig {
    /// The name of the OIDC integration on the JFrog platform (`provider_name`).
    pub provider_name: String,
    /// The `audience` sent with the exchange, as the integration expects it; also the pod
    /// token's audience unless `tokenAudience` says otherwise.
    pub audience: Option<String>,
    /// The JFrog platform, `https://host[:port]`; default: the image's registry.
    pub url: Option<String>,
    /// The audience of the pod's token (default `audience`, else `jfrog`).
    pub token_audience: Option<String>,
    /// A JFrog project key sent with the exchange (`project_key`), for project-scoped
    /// identity mappings.
    pub project_key: Option<String>,
    /// Allows a plain `http://` loopback `url`, for tests.
    #[serde(default)]
    pub insecure: bool,
}

/// The `jfrog` backend.
#[derive(Debug, Clone)]
pub struct Jfrog {
    base: Base,
    provider_name: String,
    audience: Option<String>,
    project_key: Option<String>,
    url: Option<Endpoint>,
}

/// Whether `value` may be sent as a name: printable, one line, not empty.
fn is_name(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && !value.chars().any(|c| c.is_control())
}

impl Jfrog {
    /// Checks `config`. Opens nothing.
    pub fn new(config: JfrogConfig, context: &Context<'_>) -> Result<Jfrog, Error> {
        let section = <Jfrog as Build>::NAME;
        let audience = config
            .token_audience
            .clone()
            .or_else(|| config.audience.clone())
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        for (field, value) in [
            ("providerName", Some(&config.provider_name)),
            ("audience", config.audience.as_ref()),
            ("projectKey", config.project_key.as_ref()),
        ] {
            if let Some(value) = value
                && !is_name(value)
            {
                return Err(Error::config(
                    section,
                    format!("{field} {} must be a non-empty line", quote(value)),
                ));
            }
        }
        let base = Base::new(section, audience, context.env)?;
        let url = config
            .url
            .map(|url| Endpoint::parse("url", &url, config.insecure))
            .transpose()
            .map_err(|reason| Error::config(section, reason))?;
        Ok(Jfrog {
            base,
            provider_name: config.provider_name,
            audience: config.audience,
            project_key: config.project_key,
            url,
        })
    }

    /// The same backend with other time and retry bounds.
    pub fn with_limits(mut self, limits: Limits) -> Jfrog {
        self.base.limits = limits;
        self
    }

    /// The same backend with another lifetime for a token whose expiry is not stated (the
    /// rule's `cacheDuration`; 5 minutes by default).
    pub fn with_default_lifetime(mut self, lifetime: std::time::Duration) -> Jfrog {
        self.base.default_lifetime = lifetime;
        self
    }

    fn endpoint(&self, image: &ImageRef) -> Endpoint {
        self.url
            .clone()
            .unwrap_or_else(|| Endpoint::registry(image.registry()))
    }

    fn used(&self) -> String {
        format!(
            "rule field jfrog.providerName = {}",
            quote(&self.provider_name)
        )
    }
}

impl Build for Jfrog {
    const NAME: &'static str = "jfrog";
    type Config = JfrogConfig;
    type Error = Error;

    fn default_config() -> Option<JfrogConfig> {
        None
    }

    fn build(config: JfrogConfig, context: &Context<'_>) -> Result<Jfrog, Error> {
        Jfrog::new(config, context)
    }

    fn with_default_lifetime(self, lifetime: std::time::Duration) -> Jfrog {
        Jfrog::with_default_lifetime(self, lifetime)
    }
}

impl TokenBackend for Jfrog {
    type Error = Error;

    fn serves(&self, _image: &ImageRef) -> bool {
        true
    }

    /// The service account, the integration, the audience and the platform.
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let account = self.base.account(request)?;
        let choice = format!(
            "provider={};audience={};project={}",
            self.provider_name,
            self.audience.as_deref().unwrap_or_default(),
            self.project_key.as_deref().unwrap_or_default()
        );
        Ok(self
            .base
            .key(account, &[], &choice, self.endpoint(request.image).url()))
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let account = self.base.account(request)?;
        let endpoint = self.endpoint(request.image);
        let service = endpoint.authority().to_owned();
        let url = endpoint.join(PATH);
        let mut body = serde_json::json!({
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "subject_token": account.token.expose(),
            "provider_name": self.provider_name,
        });
        if let Some(audience) = &self.audience {
            body["audience"] = audience.as_str().into();
        }
        if let Some(project) = &self.project_key {
            body["project_key"] = project.as_str().into();
        }
        let body = body.to_string();
        tracing::debug!(service, service_account = %account, provider = self.provider_name, "exchanging the pod's token with JFrog Access");
        let start = SystemTime::now();
        let fetched = self.base.run(&service, &account.token, async |fetch| {
            let json = fetch
                .json(&service, &[Shape::Registry], || {
                    icp_http::Request::post(url.clone()).body("application/json", body.clone())
                })
                .await?;
            let token = common::text(&json, "/access_token")
                .ok_or_else(|| common::missing(&service, "access_token"))?;
            let username = common::text(&json, "/username")
                .ok_or_else(|| common::missing(&service, "username"))?;
            let expires_at = self.base.expiry(
                &service,
                start,
                common::seconds(&json, "/expires_in"),
                token,
            )?;
            Ok(Token {
                username: username.to_owned(),
                password: Secret::new(token),
                expires_at: Some(expires_at),
            })
        });
        fetched.map_err(|error| common::context(account, self.used(), error))
    }

    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        Some(self.base.token_use())
    }
}
