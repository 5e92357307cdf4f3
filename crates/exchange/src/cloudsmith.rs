//! Cloudsmith OIDC: the pod's token is posted to `POST /openid/<org>/` with the slug of
//! the Cloudsmith service account it stands for, which answers `{"token": ...}`, an API
//! token of that service account.

use std::time::SystemTime;

use icp_core::{
    Build, Context, ImageRef, Request, Secret, ServiceAccountTokenUse, Token, TokenBackend,
    TokenKey, quote,
};
use icp_http::Shape;
use serde::Deserialize;

use crate::common::{self, Base, Choice};
use crate::endpoint::Endpoint;
use crate::{Error, Limits};

/// Cloudsmith's API.
pub const DEFAULT_URL: &str = "https://api.cloudsmith.io";

/// The pod token's audience when the rule names none.
pub const DEFAULT_AUDIENCE: &str = "cloudsmith";

/// The registry username a Cloudsmith token is used with by default.
pub const DEFAULT_USERNAME: &str = "token";

/// The `cloudsmith:` section of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudsmithConfig {
    /// The Cloudsmith organization (workspace) slug.
    pub org: String,
    /// The Cloudsmith service account's slug, when the service account names none.
    pub service_slug: Option<String>,
    /// The service account annotation naming the slug; it wins over `serviceSlug`.
    pub service_annotation: Option<String>,
    /// The API, `https://host[:port]` (default `https://api.cloudsmith.io`).
    pub url: Option<String>,
    /// The registry username the token is answered with (default `token`).
    pub username: Option<String>,
    /// The audience of the pod's token (default `cloudsmith`).
    pub token_audience: Option<String>,
    /// Allows a plain `http://` loopback `url`, for tests.
    #[serde(default)]
    pub insecure: bool,
}

/// The `cloudsmith` backend.
#[derive(Debug, Clone)]
pub struct Cloudsmith {
    base: Base,
    org: String,
    service_slug: Option<String>,
    service_annotation: Option<String>,
    username: String,
    url: Endpoint,
}

/// Whether `slug` is a Cloudsmith slug: alphanumerics, `-` and `_`.
fn is_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 128
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Cloudsmith {
    /// Checks `config`. Opens nothing.
    pub fn new(config: CloudsmithConfig, context: &Context<'_>) -> Result<Cloudsmith, Error> {
        let section = <Cloudsmith as Build>::NAME;
        let audience = config
            .token_audience
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        let mut base = Base::new(section, audience, context.env)?;
        base.annotation_key("serviceAnnotation", config.service_annotation.as_deref())?;
        if config.service_slug.is_none() && config.service_annotation.is_none() {
            return Err(Error::config(
                section,
                "set serviceSlug, serviceAnnotation or both",
            ));
        }
        for (field, value) in [
            ("org", Some(&config.org)),
            ("serviceSlug", config.service_slug.as_ref()),
        ] {
            if let Some(value) = value
                && !is_slug(value)
            {
                return Err(Error::config(
                    section,
                    format!("{field} {} is not a Cloudsmith slug", quote(value)),
                ));
            }
        }
        let username = config
            .username
            .unwrap_or_else(|| DEFAULT_USERNAME.to_owned());
        if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
            return Err(Error::config(
                section,
                format!("username {} is not a registry username", quote(&username)),
            ));
        }
        let url = Endpoint::parse(
            "url",
            config.url.as_deref().unwrap_or(DEFAULT_URL),
            config.insecure,
        )
        .map_err(|reason| Error::config(section, reason))?;
        Ok(Cloudsmith {
            base,
            org: config.org,
            service_slug: config.service_slug,
            service_annotation: config.service_annotation,
            username,
            url,
        })
    }

    /// The same backend with other time and retry bounds.
    pub fn with_limits(mut self, limits: Limits) -> Cloudsmith {
        self.base.limits = limits;
        self
    }

    /// The same backend with another lifetime for a token whose expiry is not stated (the
    /// rule's `cacheDuration`; 5 minutes by default).
    pub fn with_default_lifetime(mut self, lifetime: std::time::Duration) -> Cloudsmith {
        self.base.default_lifetime = lifetime;
        self
    }

    fn slug<'a>(&'a self, account: &'a icp_core::ServiceAccount) -> Result<Choice<'a>, Error> {
        let choice = Choice::pick(
            account,
            self.service_annotation.as_deref(),
            "cloudsmith.serviceAnnotation",
            self.service_slug.as_deref(),
            "cloudsmith.serviceSlug",
        )
        .ok_or_else(|| {
            Error::NoCredentials(format!(
                "service account {account}: no annotation {} and the rule names no serviceSlug",
                self.service_annotation.as_deref().unwrap_or_default()
            ))
        })?;
        if !is_slug(choice.value) {
            return Err(Error::NoCredentials(format!(
                "service account {account}: {} is not a Cloudsmith slug",
                choice.describe()
            )));
        }
        Ok(choice)
    }
}

impl Build for Cloudsmith {
    const NAME: &'static str = "cloudsmith";
    type Config = CloudsmithConfig;
    type Error = Error;

    fn default_config() -> Option<CloudsmithConfig> {
        None
    }

    fn build(config: CloudsmithConfig, context: &Context<'_>) -> Result<Cloudsmith, Error> {
        Cloudsmith::new(config, context)
    }

    fn with_default_lifetime(self, lifetime: std::time::Duration) -> Cloudsmith {
        Cloudsmith::with_default_lifetime(self, lifetime)
    }
}

impl TokenBackend for Cloudsmith {
    type Error = Error;

    fn serves(&self, _image: &ImageRef) -> bool {
        true
    }

    /// The service account, the Cloudsmith service and where its slug came from, the
    /// organization, the audience and the API.
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let account = self.base.account(request)?;
        let slug = self.slug(account)?;
        let choice = format!("org={};service={}", self.org, slug.value);
        Ok(self
            .base
            .key(account, &slug.keys(), &choice, self.url.url()))
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let account = self.base.account(request)?;
        let slug = self.slug(account)?;
        let service = self.url.authority().to_owned();
        let url = self.url.join(&format!("/openid/{}/", self.org));
        let body = serde_json::json!({
            "oidc_token": account.token.expose(),
            "service_slug": slug.value,
        })
        .to_string();
        tracing::debug!(service, service_account = %account, org = self.org, service_slug = slug.value, "exchanging the pod's token with Cloudsmith");
        let start = SystemTime::now();
        let fetched = self.base.run(&service, &account.token, async |fetch| {
            let json = fetch
                .json(&service, &[Shape::Detail], || {
                    icp_http::Request::post(url.clone()).body("application/json", body.clone())
                })
                .await?;
            let token =
                common::text(&json, "/token").ok_or_else(|| common::missing(&service, "token"))?;
            let expires_at = self.base.expiry(
                &service,
                start,
                common::seconds(&json, "/expires_in"),
                token,
            )?;
            Ok(Token {
                username: self.username.clone(),
                password: Secret::new(token),
                expires_at: Some(expires_at),
            })
        });
        fetched.map_err(|error| common::context(account, slug.describe(), error))
    }

    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        Some(self.base.token_use())
    }
}
