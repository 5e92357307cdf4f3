//! What the tests of image-credential-provider share; never part of a build that ships.
//!
//! - [`ca`]: a certificate authority made for one test run, which issues the fakes'
//!   certificates and which the client under test trusts through `SSL_CERT_FILE`;
//! - [`server`]: a fake HTTP or HTTPS server on `127.0.0.1` that answers through a handler
//!   and records every request, so that tests count requests (zero, for a host that must
//!   get no token) and check what they carried;
//! - [`form`]: decoding of `application/x-www-form-urlencoded` fields, and [`time`]: times
//!   as the fakes write them;
//! - one module of fakes for each cloud, each fake written once for the crate's tests
//!   and the binary's: [`aws`] (ECR, STS, instance metadata, moto), [`azure`] (Azure AD,
//!   IMDS, ACR registries), [`google`] (GCE metadata, the OAuth token endpoint, STS and
//!   IAM Credentials), [`exchange`] (Quay, JFrog, Cloudsmith, Vault and token endpoints,
//!   which take a pod's service account token);
//! - [`conformance`]: the kubelet's own cases in `testdata/conformance/`.
//!
//! Fakes reached under a service's real name get there through
//! `IMAGE_CREDENTIAL_PROVIDER_RESOLVE`; nothing here ever leaves the loopback. The crate
//! depends on none of the workspace's crates, so that any of them can use it in its tests
//! without a second copy of its own types.

pub mod aws;
pub mod azure;
pub mod ca;
pub mod conformance;
pub mod exchange;
pub mod form;
pub mod google;
pub mod server;
pub mod time;

pub use ca::TestCa;
pub use server::{FakeServer, Recorded, Reply};
