//! A generic token exchange, in one of three styles:
//!
//! - `exchange` (RFC 8693): `POST <url>` with a form of `grant_type`
//!   (`urn:ietf:params:oauth:grant-type:token-exchange`), `subject_token` (the pod's
//!   token), `subject_token_type` (default `urn:ietf:params:oauth:token-type:jwt`), and
//!   the optional `audience` and `scope`; a client id and secret, when the rule names
//!   them, go in HTTP Basic authentication (RFC 6749 section 2.3.1). The answer's
//!   `access_token` (or `token`) is the registry password, `expires_in` its lifetime.
//! - `bearer`: `GET` or `POST <url>` with `Authorization: Bearer <pod token>` and nothing
//!   else, as Chainguard's STS and similar services take it; the same answer.
//! - `passThrough`: no request at all: the pod's token itself is the registry password,
//!   for a registry that verifies Kubernetes tokens. The answer then holds the pod's
//!   token, so it must be cached by the kubelet per token (`cacheType: Token`,
//!   [`TokenExchange::requires_token_cache_type`]), and it is given no expiry, so that
//!   the binary's own cache never stores it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use icp_core::{
    Build, Context, ImageRef, Request, Secret, ServiceAccountTokenUse, Token, TokenBackend,
    TokenKey, quote,
};
use icp_http::Shape;
use serde::Deserialize;

use crate::common::{self, Base};
use crate::endpoint::Endpoint;
use crate::{Error, Limits};

/// RFC 8693's grant type.
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The subject token type sent when the rule names none.
pub const DEFAULT_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The error answers a token endpoint may give: OAuth's (RFC 6749 section 5.2), and the
/// other JSON shapes services answer errors in.
const SHAPES: &[Shape] = &[
    Shape::OAuth,
    Shape::Registry,
    Shape::Messages,
    Shape::Detail,
];

/// The largest client secret file read.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// How the pod's token is turned into a registry password.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Style {
    /// An RFC 8693 token exchange (a form `POST`).
    #[default]
    Exchange,
    /// The pod's token as a bearer token of a `GET` or `POST`.
    Bearer,
    /// The pod's token itself, with no request; needs the kubelet's `cacheType: Token`.
    PassThrough,
}

/// The HTTP method of the `bearer` style.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`.
    Get,
    /// `POST` (the default).
    #[default]
    Post,
}

/// The `tokenExchange:` section of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenExchangeConfig {
    /// The token endpoint, `https://host[:port]/path[?query]`; not used by `passThrough`.
    pub url: Option<String>,
    /// `exchange` (default), `bearer` or `passThrough`.
    #[serde(default)]
    pub style: Style,
    /// `GET` or `POST` (default), for the `bearer` style; `exchange` always posts.
    pub method: Option<Method>,
    /// `subject_token_type` (default `urn:ietf:params:oauth:token-type:jwt`).
    pub subject_token_type: Option<String>,
    /// `audience` of the exchange.
    pub audience: Option<String>,
    /// `scope` of the exchange.
    pub scope: Option<String>,
    /// A client id, sent with the secret of `clientSecretFile` in HTTP Basic
    /// authentication (`exchange` style only).
    pub client_id: Option<String>,
    /// A file holding the client secret (relative to the rules file), read at each fetch.
    pub client_secret_file: Option<PathBuf>,
    /// The fixed registry username.
    pub username: Option<String>,
    /// The field of the answer holding the registry username, instead of `username`.
    pub username_field: Option<String>,
    /// The field of the answer holding the registry password (default `access_token`,
    /// else `token`).
    pub password_field: Option<String>,
    /// The audience of the pod's token (default `audience`, else the host of `url`).
    pub token_audience: Option<String>,
    /// Allows a plain `http://` loopback `url`, for tests.
    #[serde(default)]
    pub insecure: bool,
}

/// The `tokenExchange` backend.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    base: Base,
    style: Style,
    method: Method,
    url: Option<Endpoint>,
    subject_token_type: String,
    audience: Option<String>,
    scope: Option<String>,
    client: Option<(String, PathBuf)>,
    username: Username,
    password_field: Option<String>,
}

#[derive(Debug, Clone)]
enum Username {
    Fixed(String),
    Field(String),
}

/// Whether `value` is a one-line value with no control character.
fn is_line(value: &str) -> bool {
    !value.is_empty() && value.len() <= 1024 && !value.chars().any(char::is_control)
}

impl TokenExchange {
    /// Checks `config` (a relative `clientSecretFile` against `context.base_dir`). Opens
    /// nothing.
    pub fn new(config: TokenExchangeConfig, context: &Context<'_>) -> Result<TokenExchange, Error> {
        let section = <TokenExchange as Build>::NAME;
        let bad = |reason: String| Error::config(section, reason);
        let url = match (&config.url, config.style) {
            (Some(url), Style::Exchange | Style::Bearer) => {
                Some(Endpoint::parse("url", url, config.insecure).map_err(bad)?)
            }
            (None, Style::Exchange | Style::Bearer) => {
                return Err(bad("url is required unless style is passThrough".into()));
            }
            (Some(_), Style::PassThrough) => {
                return Err(bad("style passThrough sends no request: remove url".into()));
            }
            (None, Style::PassThrough) => None,
        };
        let audience = config
            .token_audience
            .clone()
            .or_else(|| config.audience.clone())
            .or_else(|| url.as_ref().map(|url| host(url.authority()).to_owned()))
            .ok_or_else(|| bad("style passThrough needs tokenAudience".into()))?;
        let base = Base::new(section, audience, context.env)?;
        let exchange_only = [
            ("subjectTokenType", config.subject_token_type.is_some()),
            ("audience", config.audience.is_some()),
            ("scope", config.scope.is_some()),
            ("clientId", config.client_id.is_some()),
            ("clientSecretFile", config.client_secret_file.is_some()),
        ];
        if config.style != Style::Exchange
            && let Some((field, _)) = exchange_only.iter().find(|(_, set)| *set)
        {
            return Err(bad(format!("{field} is only for style exchange")));
        }
        if config.method.is_some() && config.style != Style::Bearer {
            return Err(bad("method is only for style bearer".into()));
        }
        if config.style == Style::PassThrough
            && (config.username_field.is_some() || config.password_field.is_some())
        {
            return Err(bad(
                "style passThrough answers no fields: set username only".into(),
            ));
        }
        for (field, value) in [
            ("subjectTokenType", config.subject_token_type.as_ref()),
            ("audience", config.audience.as_ref()),
            ("scope", config.scope.as_ref()),
            ("clientId", config.client_id.as_ref()),
            ("usernameField", config.username_field.as_ref()),
            ("passwordField", config.password_field.as_ref()),
        ] {
            if let Some(value) = value
                && !is_line(value)
            {
                return Err(bad(format!(
                    "{field} {} must be a non-empty line",
                    quote(value)
                )));
            }
        }
        let client = match (config.client_id, config.client_secret_file) {
            (Some(id), Some(file)) => Some((id, context.base_dir.join(file))),
            (None, None) => None,
            _ => {
                return Err(bad("clientId and clientSecretFile go together".into()));
            }
        };
        let username = match (config.username, config.username_field) {
            (Some(name), None) => {
                if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                    return Err(bad(format!(
                        "username {} is not a registry username",
                        quote(&name)
                    )));
                }
                Username::Fixed(name)
            }
            (None, Some(field)) => Username::Field(field),
            (Some(_), Some(_)) => {
                return Err(bad("set username or usernameField, not both".into()));
            }
            (None, None) => return Err(bad("set username or usernameField".into())),
        };
        Ok(TokenExchange {
            base,
            style: config.style,
            method: config.method.unwrap_or_default(),
            url,
            subject_token_type: config
                .subject_token_type
                .unwrap_or_else(|| DEFAULT_SUBJECT_TOKEN_TYPE.to_owned()),
            audience: config.audience,
            scope: config.scope,
            client,
            username,
            password_field: config.password_field,
        })
    }

    /// The same backend with other time and retry bounds.
    pub fn with_limits(mut self, limits: Limits) -> TokenExchange {
        self.base.limits = limits;
        self
    }

    /// The same backend with another lifetime for a token whose expiry is not stated (the
    /// rule's `cacheDuration`; 5 minutes by default).
    pub fn with_default_lifetime(mut self, lifetime: std::time::Duration) -> TokenExchange {
        self.base.default_lifetime = lifetime;
        self
    }

    /// Whether the kubelet must cache the answers per token (`cacheType: Token` in the
    /// provider's `tokenAttributes`): true for the `passThrough` style, whose answer is
    /// the pod's token. `kubelet-config` writes it, `check-config` checks it.
    pub fn requires_token_cache_type(&self) -> bool {
        self.style == Style::PassThrough
    }

    fn client_secret(&self) -> Result<Option<(String, Secret)>, Error> {
        let Some((id, path)) = &self.client else {
            return Ok(None);
        };
        Ok(Some((id.clone(), read_secret(path)?)))
    }

    fn request(
        &self,
        url: &str,
        pod_token: &str,
        client: Option<&(String, Secret)>,
    ) -> icp_http::Request {
        match self.style {
            Style::Bearer => {
                let request = match self.method {
                    Method::Get => icp_http::Request::get(url),
                    Method::Post => icp_http::Request::post(url),
                };
                request.header("Authorization", format!("Bearer {pod_token}"))
            }
            _ => {
                let mut form = vec![
                    ("grant_type", GRANT_TYPE),
                    ("subject_token", pod_token),
                    ("subject_token_type", self.subject_token_type.as_str()),
                ];
                if let Some(audience) = &self.audience {
                    form.push(("audience", audience));
                }
                if let Some(scope) = &self.scope {
                    form.push(("scope", scope));
                }
                let request = icp_http::Request::post(url).form(&form);
                match client {
                    Some((id, secret)) => request.header("Authorization", basic(id, secret)),
                    None => request,
                }
            }
        }
        .header("Accept", "application/json")
    }

    fn used(&self) -> String {
        let url = self.url.as_ref().map_or("", Endpoint::url);
        match self.style {
            Style::Exchange => format!("rule field tokenExchange.url = {}", quote(url)),
            Style::Bearer => format!("rule field tokenExchange.url = {} (bearer)", quote(url)),
            Style::PassThrough => "tokenExchange.style = passThrough".to_owned(),
        }
    }
}

/// HTTP Basic client authentication as RFC 6749 section 2.3.1 has it: the client id and
/// secret each form-urlencoded first.
fn basic(id: &str, secret: &Secret) -> String {
    let encode = |value: &str| icp_http::form_encode(&[("", value)])[1..].to_owned();
    let pair = format!("{}:{}", encode(id), encode(secret.expose()));
    format!("Basic {}", STANDARD.encode(pair))
}

/// The host of `authority`, without its port.
fn host(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => authority.split(':').next().unwrap_or(authority),
    }
}

/// The client secret in `path`, trailing line breaks removed.
fn read_secret(path: &Path) -> Result<Secret, Error> {
    let error = |reason: String| Error::File {
        path: icp_core::quote::path(path),
        reason,
    };
    let bytes = icp_core::io::read_file(path, MAX_SECRET_FILE).map_err(|e| error(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| error("not UTF-8".into()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(error("empty".into()));
    }
    Ok(Secret::new(secret))
}

impl Build for TokenExchange {
    const NAME: &'static str = "tokenExchange";
    type Config = TokenExchangeConfig;
    type Error = Error;

    fn default_config() -> Option<TokenExchangeConfig> {
        None
    }

    fn build(config: TokenExchangeConfig, context: &Context<'_>) -> Result<TokenExchange, Error> {
        TokenExchange::new(config, context)
    }

    fn with_default_lifetime(self, lifetime: std::time::Duration) -> TokenExchange {
        TokenExchange::with_default_lifetime(self, lifetime)
    }
}

impl TokenBackend for TokenExchange {
    type Error = Error;

    fn serves(&self, _image: &ImageRef) -> bool {
        true
    }

    /// The service account, the audience, the exchange's parameters and the endpoint.
    /// In the `passThrough` style, the key is the service account's alone; its token
    /// has no expiry, so no cache ever stores it.
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let account = self.base.account(request)?;
        let choice = format!(
            "style={:?};type={};audience={};scope={};client={}",
            self.style,
            self.subject_token_type,
            self.audience.as_deref().unwrap_or_default(),
            self.scope.as_deref().unwrap_or_default(),
            self.client.as_ref().map_or("", |(id, _)| id.as_str()),
        );
        let endpoint = self.url.as_ref().map_or("", Endpoint::url);
        Ok(self.base.key(account, &[], &choice, endpoint))
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let account = self.base.account(request)?;
        let Some(url) = &self.url else {
            let Username::Fixed(username) = &self.username else {
                unreachable!("passThrough has a fixed username, checked in new")
            };
            tracing::debug!(service_account = %account, "passing the pod's token through");
            return Ok(Token {
                username: username.clone(),
                password: account.token.clone(),
                expires_at: None,
            });
        };
        let service = url.authority().to_owned();
        let client = self
            .client_secret()
            .map_err(|error| common::context(account, self.used(), error))?;
        tracing::debug!(service, service_account = %account, style = ?self.style, "exchanging the pod's token");
        let start = SystemTime::now();
        let fetched = self.base.run(&service, &account.token, async |fetch| {
            let json = fetch
                .json(&service, SHAPES, || {
                    self.request(url.url(), account.token.expose(), client.as_ref())
                })
                .await?;
            let password = match &self.password_field {
                Some(field) => common::field(&json, "", field)
                    .ok_or_else(|| common::missing(&service, field))?,
                None => common::text(&json, "/access_token")
                    .or_else(|| common::text(&json, "/token"))
                    .ok_or_else(|| common::missing(&service, "access_token or token"))?,
            };
            let username = match &self.username {
                Username::Fixed(name) => name.clone(),
                Username::Field(field) => common::field(&json, "", field)
                    .ok_or_else(|| common::missing(&service, field))?
                    .to_owned(),
            };
            let expires_at = self.base.expiry(
                &service,
                start,
                common::seconds(&json, "/expires_in"),
                password,
            )?;
            Ok(Token {
                username,
                password: Secret::new(password),
                expires_at: Some(expires_at),
            })
        });
        fetched.map_err(|error| common::context(account, self.used(), error))
    }

    /// Reads the client secret file, so that `check-config` reports a missing one now.
    fn check(&self) -> Result<(), Error> {
        self.client_secret().map(drop)
    }

    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        Some(self.base.token_use())
    }

    fn requires_token_cache_type(&self) -> bool {
        TokenExchange::requires_token_cache_type(self)
    }
}
