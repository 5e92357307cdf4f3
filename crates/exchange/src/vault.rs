//! HashiCorp Vault: the pod's token logs in with Vault's Kubernetes auth method
//! (`POST /v1/auth/<mount>/login {"role", "jwt"}`, answered with `auth.client_token` and
//! `auth.lease_duration`), and the Vault token reads a KV secret holding the registry's
//! username and password (`GET /v1/<secretPath>` with `X-Vault-Token`: KV v2 answers
//! `data.data`, KV v1 `data`).

use std::time::{Duration, SystemTime};

use icp_core::{
    Build, Context, ImageRef, Request, Secret, ServiceAccount, ServiceAccountTokenUse, Token,
    TokenBackend, TokenKey, quote,
};
use icp_http::Shape;
use serde::Deserialize;

use crate::common::{self, Base, Choice};
use crate::endpoint::Endpoint;
use crate::template::Template;
use crate::{Error, Limits};

/// The mount path of the Kubernetes auth method when the rule names none.
pub const DEFAULT_AUTH_MOUNT: &str = "kubernetes";

/// The pod token's audience when the rule names none.
pub const DEFAULT_AUDIENCE: &str = "vault";

/// The `vault:` section of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultConfig {
    /// Vault's address, `https://host[:port]`.
    pub address: String,
    /// The mount path of the Kubernetes auth method (default `kubernetes`).
    pub auth_mount: Option<String>,
    /// The Kubernetes auth role, when the service account names none.
    pub role: Option<String>,
    /// The service account annotation naming the role; it wins over `role`.
    pub role_annotation: Option<String>,
    /// The secret's path under `/v1/`, with `{namespace}` and `{serviceAccount}`
    /// placeholders; for KV v2 with its `data/` segment (`secret/data/registry/...`).
    pub secret_path: String,
    /// The KV engine version, 1 or 2 (default 2).
    pub kv_version: Option<u8>,
    /// The secret's field holding the registry username (default `username`).
    pub username_field: Option<String>,
    /// The secret's field holding the registry password (default `password`).
    pub password_field: Option<String>,
    /// A Vault Enterprise namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// The audience of the pod's token (default `vault`).
    pub token_audience: Option<String>,
    /// Allows a plain `http://` loopback `address`, for tests.
    #[serde(default)]
    pub insecure: bool,
}

/// The `vault` backend.
#[derive(Debug, Clone)]
pub struct Vault {
    base: Base,
    address: Endpoint,
    auth_mount: String,
    role: Option<String>,
    role_annotation: Option<String>,
    secret_path: Template,
    kv_version: u8,
    username_field: String,
    password_field: String,
    namespace: Option<String>,
}

/// Whether `value` is a Vault name (a role, a field, a namespace): printable ASCII with no
/// space, at most 256 bytes.
fn is_name(value: &str) -> bool {
    !value.is_empty() && value.len() <= 256 && value.bytes().all(|b| b.is_ascii_graphic())
}

impl Vault {
    /// Checks `config`. Opens nothing.
    pub fn new(config: VaultConfig, context: &Context<'_>) -> Result<Vault, Error> {
        let section = <Vault as Build>::NAME;
        let audience = config
            .token_audience
            .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        let mut base = Base::new(section, audience, context.env)?;
        let bad = |reason: String| Error::config(section, reason);
        base.annotation_key("roleAnnotation", config.role_annotation.as_deref())?;
        if config.role.is_none() && config.role_annotation.is_none() {
            return Err(bad("set role, roleAnnotation or both".into()));
        }
        let address = Endpoint::parse("address", &config.address, config.insecure).map_err(bad)?;
        let auth_mount = config
            .auth_mount
            .unwrap_or_else(|| DEFAULT_AUTH_MOUNT.to_owned());
        let mount = Template::parse("authMount", &auth_mount).map_err(bad)?;
        if mount.is_per_account() {
            return Err(bad(format!(
                "authMount {} cannot have placeholders",
                quote(&auth_mount)
            )));
        }
        let secret_path = Template::parse("secretPath", &config.secret_path).map_err(bad)?;
        let kv_version = config.kv_version.unwrap_or(2);
        if !matches!(kv_version, 1 | 2) {
            return Err(bad(format!("kvVersion {kv_version} is neither 1 nor 2")));
        }
        let username_field = config.username_field.unwrap_or_else(|| "username".into());
        let password_field = config.password_field.unwrap_or_else(|| "password".into());
        for (field, value) in [
            ("role", config.role.as_ref()),
            ("namespace", config.namespace.as_ref()),
            ("usernameField", Some(&username_field)),
            ("passwordField", Some(&password_field)),
        ] {
            if let Some(value) = value
                && !is_name(value)
            {
                return Err(bad(format!(
                    "{field} {} must be printable with no spaces",
                    quote(value)
                )));
            }
        }
        Ok(Vault {
            base,
            address,
            auth_mount,
            role: config.role,
            role_annotation: config.role_annotation,
            secret_path,
            kv_version,
            username_field,
            password_field,
            namespace: config.namespace,
        })
    }

    /// The same backend with other time and retry bounds.
    pub fn with_limits(mut self, limits: Limits) -> Vault {
        self.base.limits = limits;
        self
    }

    /// The same backend with another lifetime for credentials no lease bounds (the rule's
    /// `cacheDuration`; 5 minutes by default).
    pub fn with_default_lifetime(mut self, lifetime: Duration) -> Vault {
        self.base.default_lifetime = lifetime;
        self
    }

    fn role<'a>(&'a self, account: &'a ServiceAccount) -> Result<Choice<'a>, Error> {
        let choice = Choice::pick(
            account,
            self.role_annotation.as_deref(),
            "vault.roleAnnotation",
            self.role.as_deref(),
            "vault.role",
        )
        .ok_or_else(|| {
            Error::NoCredentials(format!(
                "service account {account}: no annotation {} and the rule names no role",
                self.role_annotation.as_deref().unwrap_or_default()
            ))
        })?;
        if !is_name(choice.value) {
            return Err(Error::NoCredentials(format!(
                "service account {account}: {} is not a Vault role name",
                choice.describe()
            )));
        }
        Ok(choice)
    }

    fn request(&self, request: icp_http::Request) -> icp_http::Request {
        match &self.namespace {
            Some(namespace) => request.header("X-Vault-Namespace", namespace.clone()),
            None => request,
        }
    }
}

impl Build for Vault {
    const NAME: &'static str = "vault";
    type Config = VaultConfig;
    type Error = Error;

    fn default_config() -> Option<VaultConfig> {
        None
    }

    fn build(config: VaultConfig, context: &Context<'_>) -> Result<Vault, Error> {
        Vault::new(config, context)
    }

    fn with_default_lifetime(self, lifetime: std::time::Duration) -> Vault {
        Vault::with_default_lifetime(self, lifetime)
    }
}

impl TokenBackend for Vault {
    type Error = Error;

    fn serves(&self, _image: &ImageRef) -> bool {
        true
    }

    /// The service account, the role and where it came from, the secret's path, the
    /// audience, the namespace and Vault's address.
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let account = self.base.account(request)?;
        let role = self.role(account)?;
        let choice = format!(
            "mount={};role={};path={};kv={};fields={},{};namespace={}",
            self.auth_mount,
            role.value,
            self.secret_path.render(account),
            self.kv_version,
            self.username_field,
            self.password_field,
            self.namespace.as_deref().unwrap_or_default()
        );
        Ok(self
            .base
            .key(account, &role.keys(), &choice, self.address.url()))
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let account = self.base.account(request)?;
        let role = self.role(account)?;
        let service = format!("Vault {}", self.address.authority());
        let login_url = self
            .address
            .join(&format!("/v1/auth/{}/login", self.auth_mount));
        let path = self.secret_path.render(account);
        let secret_url = self.address.join(&format!("/v1/{path}"));
        let login =
            serde_json::json!({"role": role.value, "jwt": account.token.expose()}).to_string();
        tracing::debug!(service, service_account = %account, role = role.value, path, "logging in to Vault with the pod's token");
        let start = SystemTime::now();
        let fetched = self.base.run(&service, &account.token, async |fetch| {
            let json = fetch
                .json(&service, &[Shape::Messages], || {
                    self.request(icp_http::Request::post(login_url.clone()))
                        .body("application/json", login.clone())
                })
                .await?;
            let client_token = Secret::new(
                common::text(&json, "/auth/client_token")
                    .ok_or_else(|| common::missing(&service, "auth.client_token"))?,
            );
            let login_lease = common::seconds(&json, "/auth/lease_duration");
            let secret = fetch
                .json(&service, &[Shape::Messages], || {
                    self.request(icp_http::Request::get(secret_url.clone()))
                        .header("X-Vault-Token", client_token.expose())
                })
                .await
                .map_err(|error| match error {
                    Error::Status {
                        service,
                        status,
                        detail,
                    } => Error::Status {
                        service: format!("{service} (secret {})", quote(&path)),
                        status,
                        detail,
                    },
                    Error::AccessDenied { service, detail } => Error::AccessDenied {
                        service: format!("{service} (secret {})", quote(&path)),
                        detail,
                    },
                    error => error,
                })?;
            let data = if self.kv_version == 2 {
                "/data/data"
            } else {
                "/data"
            };
            let field = |name: &str| {
                common::field(&secret, data, name).ok_or_else(|| Error::BadResponse {
                    service: service.clone(),
                    reason: format!(
                        "the secret {} has no string field {} (kvVersion {})",
                        quote(&path),
                        quote(name),
                        self.kv_version
                    ),
                })
            };
            let username = field(&self.username_field)?.to_owned();
            let password = Secret::new(field(&self.password_field)?);
            let secret_lease = common::seconds(&secret, "/lease_duration");
            let lease = [login_lease, secret_lease].into_iter().flatten().min();
            let expires_at = match lease {
                Some(seconds) => icp_core::expiry::after(start, Duration::from_secs(seconds)),
                None => icp_core::expiry::after(start, self.base.default_lifetime),
            };
            Ok(Token {
                username,
                password,
                expires_at: Some(expires_at),
            })
        });
        fetched.map_err(|error| common::context(account, role.describe(), error))
    }

    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        Some(self.base.token_use())
    }
}
