//! The backends built into this binary: one [`TABLE`] entry each, behind its cargo
//! feature, and the two kinds a rule's backend can be.
//!
//! Adding a backend takes one entry in [`TABLE`] (and its name in [`NAMES`]).

use std::path::Path;

use icp_core::{Credentials, ImageRef, Request, ServiceAccountTokenUse, Token, TokenKey};
use serde_json::Value;

/// One backend this binary can build.
pub struct Entry {
    /// The name a rule's `provider` field gives: `ecr`. The rule's settings for it are
    /// under [`section_key`] of the name.
    pub name: &'static str,
    /// The `matchImages` of its embedded default rule: the well-known registry hosts it
    /// serves with no configuration; empty for a backend that needs configuration.
    pub default_patterns: &'static [&'static str],
    /// Builds the backend from a rule's section (`None` when the rule has none), relative
    /// paths resolved against the rules file's directory. No network; what it reads is
    /// the backend constructor's to say (ACR reads `azure.json`, Google a key file, ECR
    /// and docker-config nothing until asked).
    pub build: fn(Option<Value>, &Path) -> anyhow::Result<Backend>,
}

/// Every backend this project has, built into this binary or not, so that a rule naming
/// one that is left out gets a message saying which cargo feature builds it (the feature
/// has the backend's name).
pub const NAMES: &[&str] = &["docker-config", "ecr", "acr", "gcp"];

/// The backends built into this binary. Their order is the order of the embedded default
/// rules.
pub const TABLE: &[Entry] = &[
    #[cfg(feature = "docker-config")]
    Entry {
        name: "docker-config",
        default_patterns: &[],
        build: |section, base_dir| {
            let section = section.ok_or_else(|| {
                anyhow::anyhow!(
                    "the docker-config provider needs a dockerConfig section with a path"
                )
            })?;
            let config = serde_json::from_value(section)?;
            Ok(Backend::statics(icp_docker_config::DockerConfig::new(
                config, base_dir,
            )))
        },
    },
    #[cfg(feature = "ecr")]
    Entry {
        name: "ecr",
        default_patterns: icp_ecr::DEFAULT_PATTERNS,
        build: |section, base_dir| {
            let config = parse_or_default(section)?;
            Ok(Backend::tokens(icp_ecr::Ecr::new(config, base_dir)?))
        },
    },
    #[cfg(feature = "acr")]
    Entry {
        name: "acr",
        default_patterns: icp_acr::DEFAULT_PATTERNS,
        build: |section, base_dir| {
            let config = parse_or_default(section)?;
            let env = icp_core::Environment::process();
            Ok(Backend::tokens(icp_acr::Acr::new(config, base_dir, &env)?))
        },
    },
    #[cfg(feature = "gcp")]
    Entry {
        name: "gcp",
        default_patterns: icp_gcp::DEFAULT_PATTERNS,
        build: |section, base_dir| {
            let config = parse_or_default(section)?;
            let env = icp_core::Environment::process();
            Ok(Backend::tokens(icp_gcp::Gcp::new(config, base_dir, &env)?))
        },
    },
];

/// A backend's own `Config` from its rule section, or its default when there is none.
#[cfg_attr(
    not(any(feature = "ecr", feature = "acr", feature = "gcp")),
    allow(dead_code, reason = "built without a cloud backend")
)]
fn parse_or_default<T: serde::de::DeserializeOwned + Default>(
    section: Option<Value>,
) -> anyhow::Result<T> {
    Ok(section
        .map(serde_json::from_value)
        .transpose()?
        .unwrap_or_default())
}

/// The built-in backend called `name`, or why there is none.
pub fn find(name: &str) -> anyhow::Result<&'static Entry> {
    if let Some(entry) = TABLE.iter().find(|entry| entry.name == name) {
        return Ok(entry);
    }
    if NAMES.contains(&name) {
        anyhow::bail!("provider {name:?} is not built into this binary (cargo feature {name:?})")
    }
    anyhow::bail!(
        "unknown provider {}: expected one of {}",
        icp_core::quote(name),
        NAMES.join(", ")
    )
}

/// The key of a backend's settings in a rule: its name in camelCase, `dockerConfig` for
/// `docker-config`.
pub fn section_key(name: &str) -> String {
    let mut words = name.split('-');
    let first = words.next().unwrap_or_default().to_owned();
    words.fold(first, |mut key, word| {
        let mut chars = word.chars();
        key.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        key.push_str(chars.as_str());
        key
    })
}

/// A configured backend of one of the two kinds.
pub enum Backend {
    /// Answers from static material with a whole `auth` map.
    Static(Box<dyn DynStaticBackend>),
    /// Fetches one short-lived token per registry from a cloud.
    Token(Box<dyn DynTokenBackend>),
}

impl Backend {
    /// A backend answering from static material.
    pub fn statics(backend: impl icp_core::StaticBackend + 'static) -> Backend {
        Backend::Static(Box::new(backend))
    }

    /// A backend fetching tokens.
    pub fn tokens(backend: impl icp_core::TokenBackend + 'static) -> Backend {
        Backend::Token(Box::new(backend))
    }

    /// Reads every file the backend will read, as `check-config` wants; no network.
    pub fn check(&self) -> anyhow::Result<()> {
        match self {
            Backend::Static(backend) => backend.check(),
            Backend::Token(backend) => backend.check(),
        }
    }

    /// What the backend needs of the kubelet to pull as pods' service accounts, if it can.
    pub fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        match self {
            Backend::Static(_) => None,
            Backend::Token(backend) => backend.service_account_token(),
        }
    }

    /// Whether this backend will serve `image` at all (strict host checks of cloud
    /// backends; no I/O).
    pub fn serves(&self, image: &ImageRef) -> bool {
        match self {
            Backend::Static(_) => true,
            Backend::Token(backend) => backend.serves(image),
        }
    }
}

/// [`icp_core::StaticBackend`] with its error made an `anyhow::Error`, so backends of
/// different crates fit in one [`Backend`].
pub trait DynStaticBackend {
    /// See [`icp_core::StaticBackend::provide`].
    fn provide(&self, request: &Request<'_>) -> anyhow::Result<Credentials>;
    /// See [`icp_core::StaticBackend::check`].
    fn check(&self) -> anyhow::Result<()>;
}

impl<B: icp_core::StaticBackend> DynStaticBackend for B {
    fn provide(&self, request: &Request<'_>) -> anyhow::Result<Credentials> {
        Ok(icp_core::StaticBackend::provide(self, request)?)
    }
    fn check(&self) -> anyhow::Result<()> {
        Ok(icp_core::StaticBackend::check(self)?)
    }
}

/// [`icp_core::TokenBackend`] with its error made an `anyhow::Error`.
pub trait DynTokenBackend {
    /// See [`icp_core::TokenBackend::serves`].
    fn serves(&self, image: &ImageRef) -> bool;
    /// See [`icp_core::TokenBackend::token_key`].
    fn token_key(&self, request: &Request<'_>) -> anyhow::Result<TokenKey>;
    /// See [`icp_core::TokenBackend::fetch`].
    fn fetch(&self, request: &Request<'_>) -> anyhow::Result<Token>;
    /// See [`icp_core::TokenBackend::patterns`].
    fn patterns(&self, image: &ImageRef) -> Vec<String>;
    /// See [`icp_core::TokenBackend::service_account_token`].
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse>;
    /// See [`icp_core::TokenBackend::check`].
    fn check(&self) -> anyhow::Result<()>;
}

impl<B: icp_core::TokenBackend> DynTokenBackend for B {
    fn serves(&self, image: &ImageRef) -> bool {
        icp_core::TokenBackend::serves(self, image)
    }
    fn token_key(&self, request: &Request<'_>) -> anyhow::Result<TokenKey> {
        Ok(icp_core::TokenBackend::token_key(self, request)?)
    }
    fn fetch(&self, request: &Request<'_>) -> anyhow::Result<Token> {
        Ok(icp_core::TokenBackend::fetch(self, request)?)
    }
    fn patterns(&self, image: &ImageRef) -> Vec<String> {
        icp_core::TokenBackend::patterns(self, image)
    }
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        icp_core::TokenBackend::service_account_token(self)
    }
    fn check(&self) -> anyhow::Result<()> {
        Ok(icp_core::TokenBackend::check(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_backend_is_named() {
        for entry in TABLE {
            assert!(NAMES.contains(&entry.name), "{}", entry.name);
        }
    }

    #[test]
    fn section_keys_are_camel_case_names() {
        let keys: Vec<String> = NAMES.iter().map(|name| section_key(name)).collect();
        assert_eq!(keys, ["dockerConfig", "ecr", "acr", "gcp"]);
    }
}
