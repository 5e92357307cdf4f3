//! Fakes of Google's services on the loopback, for the GCP backend's tests and the
//! binary's:
//!
//! - [`metadata`]: the GCE metadata server;
//! - [`oauth`]: the OAuth 2.0 token endpoint, with the service account keys it knows;
//! - [`workload_identity`]: STS and IAM Credentials, which exchange a Kubernetes service
//!   account token for a Google token.

pub mod metadata;
pub mod oauth;
pub mod workload_identity;

pub use metadata::{Account, Instance, MetadataFake};
pub use oauth::{Accounts, TestKey, TokenFake, write_key_file};
