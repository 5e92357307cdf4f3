//! The traits a backend implements, and the credentials it answers with.
//!
//! There are two kinds of backend:
//!
//! - a [`StaticBackend`] answers from static material (a docker `config.json`) with a whole
//!   `auth` map, patterns and all;
//! - a [`TokenBackend`] fetches one short-lived token for a registry from a cloud. The
//!   binary asks it first, without any I/O, which token an image needs ([`TokenKey`]), so
//!   that a cache shared by every plugin process can answer before any client is built.
//!
//! Both are synchronous. A backend that talks to the network builds its own runtime and
//! clients inside [`TokenBackend::fetch`], so nothing of the kind is paid for on a cache hit.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::{Environment, ImageRef, Secret, ServiceAccount};

/// What the kubelet keys its cache of a response on (`cacheKeyType`), and so which images
/// it will reuse the response's `auth` map for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheKeyType {
    /// Reused for the same image name only.
    Image,
    /// Reused for every image of the same registry (host and port).
    Registry,
    /// Reused for every image this plugin is configured for.
    Global,
}

impl CacheKeyType {
    /// The name the protocol uses: `Image`, `Registry` or `Global`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKeyType::Image => "Image",
            CacheKeyType::Registry => "Registry",
            CacheKeyType::Global => "Global",
        }
    }
}

/// One image the kubelet asks credentials for.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The image, parsed.
    pub image: &'a ImageRef,
    /// Which images the kubelet will reuse the answer for, so a backend can include every
    /// entry those images need.
    pub cache_key_type: CacheKeyType,
    /// The pulling pod's service account, its token and the annotations the kubelet
    /// passed on, when the kubelet sends a token (v1, KEP-4412).
    pub service_account: Option<&'a ServiceAccount>,
}

impl<'a> Request<'a> {
    /// A request for `image` with no service account, keyed by registry: as `get` asks.
    pub fn new(image: &'a ImageRef) -> Request<'a> {
        Request {
            image,
            cache_key_type: CacheKeyType::Registry,
            service_account: None,
        }
    }
}

/// A username and password under the pattern the kubelet should use them for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// An `auth` map key: a host glob with an optional port and path, as in
    /// `*.registry.example:5000/team`.
    pub pattern: String,
    /// Registry username.
    pub username: String,
    /// Registry password or token.
    pub password: Secret,
}

/// The answer of a [`StaticBackend`]: `auth` entries, most specific pattern first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The entries, in the order the kubelet will try them.
    pub auth: Vec<AuthEntry>,
    /// When the credentials stop working; `None` for static credentials with no expiry.
    pub expires_at: Option<SystemTime>,
}

/// A backend that answers from static material with a whole `auth` map.
pub trait StaticBackend {
    /// What can go wrong; its message must never contain a credential.
    type Error: crate::BackendError;

    /// The credentials for `request.image`, and for every image the kubelet will reuse
    /// the answer for under `request.cache_key_type`. An empty `auth` means none apply.
    fn provide(&self, request: &Request<'_>) -> Result<Credentials, Self::Error>;

    /// What `check-config` wants: reads every file the backend will read, without any
    /// network. Nothing to read by default.
    fn check(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A registry token fetched from a cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Registry username (`AWS`, `oauth2accesstoken`, an all-zero GUID, ...).
    pub username: String,
    /// The token itself.
    pub password: Secret,
    /// When the token expires as the cloud stated it, bounded by
    /// [`expiry::MAX_LIFETIME`](crate::expiry::MAX_LIFETIME) (backends build it with
    /// [`crate::expiry`]); `None` when the cloud did not say, which the binary treats as
    /// already expired (answer, but let nothing cache it).
    pub expires_at: Option<SystemTime>,
}

/// Which token an image needs, worked out without any I/O.
///
/// Two images with equal keys are served by the same token, so a cache may hand out one
/// fetched token for both. Neither field may contain a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// The identity the token is fetched as: a fingerprint of the role, client id, key
    /// file or token file path, never of a secret value. A token fetched with a pod's
    /// service account starts with [`ServiceAccount::key`] (namespace, name, uid and the
    /// annotation values used), so no other service account is ever served it.
    pub identity: String,
    /// What the token is good for: for ECR the account and region, for ACR the registry.
    pub scope: String,
}

/// What a backend needs of the kubelet to pull as pods' service accounts: the
/// `tokenAttributes` of the kubelet config's provider entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountTokenUse {
    /// The audience the cloud expects the pod's token to carry
    /// (`serviceAccountTokenAudience`).
    pub audience: String,
    /// The service account annotations the backend reads; without them a pod keeps the
    /// node's identity (`optionalServiceAccountAnnotationKeys`).
    pub annotation_keys: Vec<String>,
}

/// A backend that fetches one short-lived token per registry from a cloud.
pub trait TokenBackend {
    /// What can go wrong; its message must never contain a credential.
    type Error: crate::BackendError;

    /// Whether this backend will serve `image` at all: strict validation of the registry
    /// host, so a look-alike never causes a token request. No I/O.
    fn serves(&self, image: &ImageRef) -> bool;

    /// Which token `request` needs: for the image's registry, as the identity the fetch
    /// would use (the node's, or the pod's service account's when the backend uses it).
    /// No I/O. Called only for images [`serves`] accepts.
    ///
    /// [`serves`]: TokenBackend::serves
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Self::Error>;

    /// Fetches the token for `request.image` from the cloud, within a bounded time.
    fn fetch(&self, request: &Request<'_>) -> Result<Token, Self::Error>;

    /// What `check-config` wants: whether the backend can fetch at all as far as can be
    /// told without the network (its files read, its settings usable). Nothing to check
    /// by default.
    fn check(&self) -> Result<(), Self::Error> {
        Ok(())
    }

    /// What the backend needs of the kubelet to pull as pods' service accounts, when it
    /// can: `kubelet-config` writes it as `tokenAttributes`. `None` by default.
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        None
    }

    /// Whether the kubelet must cache this backend's answers per pod token
    /// (`tokenAttributes.cacheType: Token`) rather than per service account: true for a
    /// backend that answers with the pod's token itself. `false` by default.
    fn requires_token_cache_type(&self) -> bool {
        false
    }

    /// The metadata service of the node that fetching `request`'s token calls, if any,
    /// named alike in every process (`azure-imds`, `gce-metadata`, `ec2-imds`): such a
    /// service limits concurrent calls per machine (Azure IMDS allows 5), so the binary
    /// lets at most one fetch through it run at a time on the node. No I/O; `None` by
    /// default.
    fn metadata_service(&self, request: &Request<'_>) -> Option<&'static str> {
        let _ = request;
        None
    }

    /// The `auth` keys the token is returned under for `image`: its registry by default;
    /// a backend that serves mirrors adds them.
    fn patterns(&self, image: &ImageRef) -> Vec<String> {
        vec![image.registry().to_owned()]
    }
}

/// What a backend is built with besides its rule section.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The directory relative paths of the section resolve against: the rules file's.
    pub base_dir: &'a Path,
    /// The environment variables the backend may read (its cloud's `AWS_*`, `AZURE_*`,
    /// `GOOGLE_*` settings, `PATH`, proxies), the process's in production.
    pub env: &'a Environment,
}

/// How a backend is built from its section of a rule: what the binary's backend table
/// needs of a backend crate, so that adding a backend is its crate and one table row.
///
/// The rules file's `provider:` field names the backend ([`Build::NAME`]); its settings
/// are under the name in camelCase (`dockerConfig` for `docker-config`), read into
/// [`Build::Config`] with unknown fields refused.
pub trait Build: Sized {
    /// The name a rule's `provider:` field gives, and the backend's cargo feature.
    const NAME: &'static str;

    /// The `matchImages` of the backend's embedded default rule: the well-known registry
    /// hosts it serves with no configuration. Empty for a backend that needs
    /// configuration (it then has no embedded rule).
    const DEFAULT_PATTERNS: &'static [&'static str] = &[];

    /// The service account annotation keys with which a pod asks, as the backend's
    /// official provider reads them, to pull as its own identity: `-v` notes a request
    /// carrying one that the rule serving it does not use. Empty for a backend whose
    /// annotations are all its rules' own choice.
    const POD_IDENTITY_ANNOTATIONS: &'static [&'static str] = &[];

    /// The rule section's settings.
    type Config: serde::de::DeserializeOwned;

    /// What building can fail with.
    type Error: crate::BackendError;

    /// The settings of a rule without a section, or `None` when the section is required.
    fn default_config() -> Option<Self::Config>;

    /// Builds the backend. No network: files the settings name may be read, and a
    /// problem with them is an error here.
    fn build(config: Self::Config, context: &Context<'_>) -> Result<Self, Self::Error>;

    /// The backend, told how long a token lives when its service does not say (the
    /// binary derives it from the rule's `cacheDuration`). Backends whose services always
    /// state a token's expiry ignore it, as this default does.
    fn with_default_lifetime(self, _lifetime: Duration) -> Self {
        self
    }
}
