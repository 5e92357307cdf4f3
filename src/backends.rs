//! The backends built into this binary, each behind its cargo feature, and how a rule's
//! `provider` and provider section become one.
//!
//! Adding a backend takes a match arm in [`build`], its name in [`PROVIDERS`] and, if it
//! serves well-known hosts with no config, a line in [`default_rules`].

use std::path::Path;

use icp_core::{Credentials, ImageRef, Request, Token, TokenKey};
use serde_json::Value;

/// Every provider name this project knows, with the cargo feature that builds it in.
pub const PROVIDERS: &[(&str, &str)] = &[
    ("docker-config", "docker-config"),
    ("ecr", "ecr"),
    ("acr", "acr"),
    ("gcp", "gcp"),
];

/// A configured backend.
pub enum Backend {
    /// Answers from static material with a whole `auth` map.
    #[cfg_attr(
        not(feature = "docker-config"),
        allow(dead_code, reason = "built without docker-config")
    )]
    Static(Box<dyn StaticProvider>),
    /// Fetches one short-lived token per registry from a cloud.
    #[cfg_attr(
        not(any(feature = "ecr", feature = "acr", feature = "gcp")),
        allow(dead_code, reason = "built without a cloud backend")
    )]
    Token(Box<dyn TokenProvider>),
}

impl Backend {
    /// Reads every file the backend will read, as `check-config` wants; no network.
    pub fn check(&self) -> anyhow::Result<()> {
        match self {
            Backend::Static(provider) => provider.check(),
            Backend::Token(source) => source.check(),
        }
    }

    /// Whether this backend will serve `image` at all (strict host checks of cloud
    /// backends; no I/O).
    pub fn serves(&self, image: &ImageRef) -> bool {
        match self {
            Backend::Static(_) => true,
            Backend::Token(source) => source.serves(image),
        }
    }
}

/// [`icp_core::Provider`] with its error made an `anyhow::Error`, so backends of
/// different crates fit in one [`Backend`].
pub trait StaticProvider {
    /// See [`icp_core::Provider::provide`].
    fn provide(&self, request: &Request<'_>) -> anyhow::Result<Credentials>;
    /// See [`icp_core::Provider::check`].
    fn check(&self) -> anyhow::Result<()>;
}

impl<P: icp_core::Provider> StaticProvider for P {
    fn provide(&self, request: &Request<'_>) -> anyhow::Result<Credentials> {
        Ok(icp_core::Provider::provide(self, request)?)
    }
    fn check(&self) -> anyhow::Result<()> {
        Ok(icp_core::Provider::check(self)?)
    }
}

/// [`icp_core::TokenSource`] with its error made an `anyhow::Error`.
pub trait TokenProvider {
    /// See [`icp_core::TokenSource::serves`].
    fn serves(&self, image: &ImageRef) -> bool;
    /// See [`icp_core::TokenSource::token_key`].
    fn token_key(&self, image: &ImageRef) -> anyhow::Result<TokenKey>;
    /// See [`icp_core::TokenSource::fetch`].
    fn fetch(&self, request: &Request<'_>) -> anyhow::Result<Token>;
    /// See [`icp_core::TokenSource::patterns`].
    fn patterns(&self, image: &ImageRef) -> Vec<String>;
    /// See [`icp_core::TokenSource::check`].
    fn check(&self) -> anyhow::Result<()>;
}

impl<T: icp_core::TokenSource> TokenProvider for T {
    fn serves(&self, image: &ImageRef) -> bool {
        icp_core::TokenSource::serves(self, image)
    }
    fn token_key(&self, image: &ImageRef) -> anyhow::Result<TokenKey> {
        Ok(icp_core::TokenSource::token_key(self, image)?)
    }
    fn fetch(&self, request: &Request<'_>) -> anyhow::Result<Token> {
        Ok(icp_core::TokenSource::fetch(self, request)?)
    }
    fn patterns(&self, image: &ImageRef) -> Vec<String> {
        icp_core::TokenSource::patterns(self, image)
    }
    fn check(&self) -> anyhow::Result<()> {
        Ok(icp_core::TokenSource::check(self)?)
    }
}

/// The key of a provider's section in a rule: `dockerConfig` for `docker-config`.
pub fn section_key(provider: &str) -> &str {
    match provider {
        "docker-config" => "dockerConfig",
        other => other,
    }
}

/// Builds the backend `provider` from its rule section (`None` when the rule has none).
/// Relative paths resolve against `base_dir`. Cheap: files are read at fetch time, or by
/// [`Backend::check`].
pub fn build(provider: &str, section: Option<Value>, base_dir: &Path) -> anyhow::Result<Backend> {
    match provider {
        #[cfg(feature = "docker-config")]
        "docker-config" => {
            let section = section.ok_or_else(|| {
                anyhow::anyhow!(
                    "the docker-config provider needs a dockerConfig section with a path"
                )
            })?;
            let config = parse_section(section)?;
            Ok(Backend::Static(Box::new(
                icp_docker_config::DockerConfig::new(config, base_dir),
            )))
        }
        #[cfg(feature = "gcp")]
        "gcp" => {
            let config = section.map(parse_section).transpose()?.unwrap_or_default();
            Ok(Backend::Token(Box::new(icp_gcp::Gcp::new(
                config, base_dir,
            )?)))
        }
        #[cfg(feature = "acr")]
        "acr" => {
            let config = section.map(parse_section).transpose()?.unwrap_or_default();
            Ok(Backend::Token(Box::new(icp_acr::Acr::new(
                config, base_dir,
            )?)))
        }
        #[cfg(feature = "ecr")]
        "ecr" => {
            let config = section.map(parse_section).transpose()?.unwrap_or_default();
            Ok(Backend::Token(Box::new(icp_ecr::Ecr::new(
                config, base_dir,
            )?)))
        }
        other => match PROVIDERS.iter().find(|(name, _)| *name == other) {
            Some((name, feature)) => {
                anyhow::bail!(
                    "provider {name:?} is not built into this binary (cargo feature {feature:?})"
                )
            }
            None => {
                let known: Vec<&str> = PROVIDERS.iter().map(|(name, _)| *name).collect();
                anyhow::bail!(
                    "unknown provider {other:?}: expected one of {}",
                    known.join(", ")
                )
            }
        },
    }
}

/// Deserialises a provider section into the backend's own `Config` type.
fn parse_section<T: serde::de::DeserializeOwned>(section: Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(section)?)
}

/// The embedded default rules, one per built-in cloud backend that serves well-known
/// registry hosts with no configuration: `(provider, matchImages)`.
pub fn default_rules() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        #[cfg(feature = "ecr")]
        ("ecr", icp_ecr::DEFAULT_PATTERNS),
        #[cfg(feature = "acr")]
        ("acr", icp_acr::DEFAULT_PATTERNS),
        #[cfg(feature = "gcp")]
        ("gcp", icp_gcp::DEFAULT_PATTERNS),
    ]
}
