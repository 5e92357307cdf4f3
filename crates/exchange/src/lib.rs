//! Registry credentials for `image-credential-provider` exchanged for the pulling pod's
//! own service account token (the kubelet's service-account-token mode, KEP-4412), one
//! backend per kind of registry:
//!
//! - [`Quay`] (`provider: quay`): Quay robot account federation;
//! - [`Jfrog`] (`provider: jfrog`): JFrog Access OIDC token exchange;
//! - [`Cloudsmith`] (`provider: cloudsmith`): Cloudsmith OIDC service accounts;
//! - [`Vault`] (`provider: vault`): HashiCorp Vault's Kubernetes auth, then a KV secret
//!   holding the registry's username and password;
//! - [`TokenExchange`] (`provider: tokenExchange`): a generic RFC 8693 token exchange, a
//!   bearer-token exchange (Chainguard's STS and the like), or the pod's token itself.
//!
//! Each is built from its rule section ([`Build`](icp_core::Build)) and answers as a
//! [`TokenBackend`](icp_core::TokenBackend) for pods only: a request without a service
//! account token is [`Error::NoServiceAccountToken`], of kind
//! [`NotServed`](icp_core::ErrorKind::NotServed), which the binary answers with no
//! credentials (the kubelet then uses the pod's image pull secrets). Tokens are keyed per
//! service account (namespace, name, uid, the annotation values used), the audience and
//! the endpoint, so that one account's token is never served to another; the pod's token
//! is never logged, put in a key or a message, nor answered, except by
//! [`TokenExchange`]'s documented pass-through style, which needs the kubelet's
//! `cacheType: Token` ([`TokenExchange::requires_token_cache_type`]).
//!
//! A pod's token is only sent to the rule's endpoint (or the image's registry, for Quay
//! and JFrog without `url`) over TLS; plain `http://` is refused unless the host is a
//! loopback address and the rule says `insecure: true`, for tests. Every request goes
//! through [`icp_http`], bounded by [`Limits`] and retried (429, 5xx) by its policy;
//! refusals become one line naming the service account, the annotation or rule field
//! used and the service's own error message. The backends read only the
//! [`Environment`](icp_core::Environment) they are built with.

mod cloudsmith;
mod common;
mod endpoint;
mod error;
mod fetch;
mod jfrog;
mod quay;
mod template;
mod token_exchange;
mod vault;

pub use cloudsmith::{Cloudsmith, CloudsmithConfig};
pub use common::DEFAULT_LIFETIME;
pub use error::Error;
pub use icp_http::Limits;
pub use jfrog::{Jfrog, JfrogConfig};
pub use quay::{Quay, QuayConfig, ROBOT_ANNOTATION};
pub use token_exchange::{Method, Style, TokenExchange, TokenExchangeConfig};
pub use vault::{Vault, VaultConfig};
