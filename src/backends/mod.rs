//! The backends built into this binary ([`table`]: one row each, behind its cargo
//! feature), the two kinds a rule's backend can be, and a backend's failure with its
//! [`ErrorKind`] kept.

mod table;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use icp_core::{
    BackendError, Credentials, ErrorKind, ImageRef, Request, ServiceAccountTokenUse, Token,
    TokenKey,
};

pub use table::{Lazy, NAMES, Recipe, Row, TABLE, find, log_targets, section_key};

/// What a backend failed with, whatever its crate: its message and causes, and its
/// [`ErrorKind`], which is all the binary judges it by.
#[derive(Debug, Clone)]
pub struct Failure {
    kind: ErrorKind,
    transient: bool,
    retry_after: Option<Duration>,
    error: Arc<dyn std::error::Error + Send + Sync>,
}

impl Failure {
    /// `error`, with its kind.
    pub fn new(error: impl BackendError) -> Failure {
        Failure {
            kind: error.kind(),
            transient: error.is_transient(),
            retry_after: error.retry_after(),
            error: Arc::new(error),
        }
    }
}

impl Failure {
    /// This failure with every fragment of `token` removed from its message and its
    /// causes' (see [`icp_core::Secret::remove_from`]), which become one text: for the
    /// request's service account token, which an upstream service may echo.
    pub fn without(&self, token: &icp_core::Secret) -> Failure {
        let mut text = self.error.to_string();
        let mut cause = self.error.source();
        while let Some(error) = cause {
            text.push_str(&format!(": {error}"));
            cause = error.source();
        }
        Failure {
            kind: self.kind,
            transient: self.transient,
            retry_after: self.retry_after,
            error: Arc::new(Removed(token.remove_from(&text))),
        }
    }
}

/// A failure's text with a token removed.
#[derive(Debug)]
struct Removed(String);

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Removed {}

/// The backend's own message; its causes are its [`source`](std::error::Error::source)s.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl BackendError for Failure {
    fn kind(&self) -> ErrorKind {
        self.kind
    }

    fn is_transient(&self) -> bool {
        self.transient
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// An error and its causes on one line, `: ` between them, as `check-config` lists a
/// problem.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        line.push_str(": ");
        line.push_str(&error.to_string());
        cause = error.source();
    }
    line
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
    pub fn check(&self) -> Result<(), Failure> {
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

    /// Whether the kubelet must cache this backend's answers per pod token
    /// (`cacheType: Token`): it answers with the pod's token itself.
    pub fn requires_token_cache_type(&self) -> bool {
        match self {
            Backend::Static(_) => false,
            Backend::Token(backend) => backend.requires_token_cache_type(),
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

/// [`icp_core::StaticBackend`] with its error made a [`Failure`], so backends of
/// different crates fit in one [`Backend`].
pub trait DynStaticBackend {
    /// See [`icp_core::StaticBackend::provide`].
    fn provide(&self, request: &Request<'_>) -> Result<Credentials, Failure>;
    /// See [`icp_core::StaticBackend::check`].
    fn check(&self) -> Result<(), Failure>;
}

impl<B: icp_core::StaticBackend> DynStaticBackend for B {
    fn provide(&self, request: &Request<'_>) -> Result<Credentials, Failure> {
        icp_core::StaticBackend::provide(self, request).map_err(Failure::new)
    }
    fn check(&self) -> Result<(), Failure> {
        icp_core::StaticBackend::check(self).map_err(Failure::new)
    }
}

/// [`icp_core::TokenBackend`] with its error made a [`Failure`].
pub trait DynTokenBackend {
    /// See [`icp_core::TokenBackend::serves`].
    fn serves(&self, image: &ImageRef) -> bool;
    /// See [`icp_core::TokenBackend::token_key`].
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Failure>;
    /// See [`icp_core::TokenBackend::fetch`].
    fn fetch(&self, request: &Request<'_>) -> Result<Token, Failure>;
    /// See [`icp_core::TokenBackend::metadata_service`].
    fn metadata_service(&self, request: &Request<'_>) -> Option<&'static str>;
    /// See [`icp_core::TokenBackend::patterns`].
    fn patterns(&self, image: &ImageRef) -> Vec<String>;
    /// See [`icp_core::TokenBackend::service_account_token`].
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse>;
    /// See [`icp_core::TokenBackend::requires_token_cache_type`].
    fn requires_token_cache_type(&self) -> bool;
    /// See [`icp_core::TokenBackend::check`].
    fn check(&self) -> Result<(), Failure>;
}

impl<B: icp_core::TokenBackend> DynTokenBackend for B {
    fn serves(&self, image: &ImageRef) -> bool {
        icp_core::TokenBackend::serves(self, image)
    }
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Failure> {
        icp_core::TokenBackend::token_key(self, request).map_err(Failure::new)
    }
    fn fetch(&self, request: &Request<'_>) -> Result<Token, Failure> {
        icp_core::TokenBackend::fetch(self, request).map_err(Failure::new)
    }
    fn metadata_service(&self, request: &Request<'_>) -> Option<&'static str> {
        icp_core::TokenBackend::metadata_service(self, request)
    }
    fn patterns(&self, image: &ImageRef) -> Vec<String> {
        icp_core::TokenBackend::patterns(self, image)
    }
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        icp_core::TokenBackend::service_account_token(self)
    }
    fn requires_token_cache_type(&self) -> bool {
        icp_core::TokenBackend::requires_token_cache_type(self)
    }
    fn check(&self) -> Result<(), Failure> {
        icp_core::TokenBackend::check(self).map_err(Failure::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Throttled(std::io::Error);

    impl fmt::Display for Throttled {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("throttled")
        }
    }

    impl std::error::Error for Throttled {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    impl BackendError for Throttled {
        fn kind(&self) -> ErrorKind {
            ErrorKind::Throttled
        }
    }

    #[test]
    fn a_failure_keeps_the_kind_the_message_and_the_causes() {
        let failure = Failure::new(Throttled(std::io::Error::other("HTTP 429")));
        assert_eq!(failure.kind(), ErrorKind::Throttled);
        assert_eq!(chain(&failure), "throttled: HTTP 429");
        assert_eq!(
            format!("{:#}", anyhow::Error::new(failure.clone())),
            "throttled: HTTP 429"
        );
    }
}
