//! What every `image-credential-provider` backend shares.
//!
//! This crate is the small contract between the plugin binary and its backends, in the
//! way `grep-matcher` is for ripgrep: it holds no cloud SDK, no HTTP client and no async
//! runtime, only
//!
//! - [`backend`]: the traits a backend implements, and the credentials it answers with;
//! - [`calendar`]: days of UTC dates, for reading HTTP dates and timestamps;
//! - [`environment`]: the environment variables a backend reads, passed in as a value;
//! - [`error`]: the kinds of backend failure, shared by every backend's `Error`;
//! - [`expiry`]: a token's expiry from what its cloud states, bounded;
//! - [`image`]: container image references, parsed and normalised as the kubelet does;
//! - [`io`]: reading regular files and streams whole, up to a limit;
//! - [`jwt`]: the claims of a JWT, read unverified;
//! - [`names`]: Kubernetes names and annotation keys, as apimachinery judges them;
//! - [`pattern`]: the kubelet's glob matching of `matchImages` entries and `auth` keys;
//! - [`quote`]: input quoted in messages, escaped and cut short;
//! - [`secret`]: a string that never shows itself in logs or debug output;
//! - [`service_account`]: the pulling pod's service account, read from its token;
//! - [`trust`]: whether a file or directory could have been planted by someone else.

pub mod backend;
pub mod calendar;
pub mod environment;
pub mod error;
pub mod expiry;
pub mod image;
pub mod io;
pub mod jwt;
pub mod names;
pub mod pattern;
pub mod quote;
pub mod secret;
pub mod service_account;
pub mod trust;

pub use backend::{
    AuthEntry, Build, CacheKeyType, Context, Credentials, Request, ServiceAccountTokenUse,
    StaticBackend, Token, TokenBackend, TokenKey,
};
pub use environment::Environment;
pub use error::{BackendError, ErrorKind};
pub use image::{ImageError, ImageRef};
pub use pattern::{Pattern, PatternError};
pub use quote::quote;
pub use secret::Secret;
pub use service_account::{ServiceAccount, ServiceAccountError};
