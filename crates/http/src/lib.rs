//! The one small HTTPS client the `image-credential-provider` backends share.
//!
//! A backend that talks to a cloud without a full SDK (Azure AD, the Azure instance
//! metadata service, an ACR registry, the GCE metadata server) sends a handful of
//! requests per fetch. This crate sends them over one stack: hyper 1 (HTTP/1.1), rustls
//! with the aws-lc-rs provider, and tokio, with every request bounded:
//!
//! - a connect timeout and an overall deadline per request ([`Options`], overridable per
//!   [`Request`]);
//! - a cap on the size of a response body;
//! - no retries by the client itself: a backend sends through [`Retry`], the one retry
//!   policy (429, 5xx and transient failures, `Retry-After`, exponential backoff), every
//!   attempt and wait within the fetch's [`Deadline`].
//!
//! Both `https://` and plain `http://` URLs are accepted (metadata servers speak plain
//! HTTP on a link-local address). `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`, read from the
//! [`Environment`](icp_core::Environment) the client is made with, are honoured
//! as Go's `net/http` honours them (an `http://` proxy, `CONNECT` tunnels for HTTPS), except
//! that loopback and link-local addresses are always reached directly. TLS trusts the platform's root certificates; when
//! `SSL_CERT_FILE` or `SSL_CERT_DIR` (a `:`-separated list) is set, those are read
//! *instead*, as OpenSSL does. They are read on a client's first `https://` request, the
//! bundle file only (`SSL_CERT_FILE`, else the distribution's, such as
//! `/etc/ssl/certs/ca-certificates.crt`); the certificate directories (`SSL_CERT_DIR`, else
//! `/etc/ssl/certs`) are read only when the bundle lacks a server certificate's issuer, or
//! when there is no bundle. There are no built-in roots.
//!
//! A connection is kept alive for the next request to the same host, for the client's
//! life: a fetch's requests to one service share one TCP connection and TLS handshake.
//!
//! The API is async, for use inside the runtime [`run`] builds for one fetch; making a
//! [`Client`] builds no runtime and opens no connection. What else every network backend
//! shares is here too: the bounds of a fetch ([`Limits`]), and the one summary of an
//! error answer's body ([`Summary`]).
//!
//! # Address override for tests and debugging
//!
//! [`RESOLVE_ENV`] (`IMAGE_CREDENTIAL_PROVIDER_RESOLVE`), read from the client's
//! environment, holds comma-separated
//! `host:port:address` entries, as curl's `--resolve`: a connection to `host:port` goes
//! to `address` instead of the address DNS gives, while the request and the TLS handshake
//! still use `host` (so the certificate must be valid for `host`). `address` is an IP
//! address with an optional port (`127.0.0.1`, `127.0.0.1:8443`, `[::1]:8443`); without a
//! port, `port` is kept. For example
//! `IMAGE_CREDENTIAL_PROVIDER_RESOLVE=myacr.azurecr.io:443:127.0.0.1:8443` lets a fake
//! registry on the loopback answer for `myacr.azurecr.io`. It is meant for tests and
//! debugging, never for production.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), icp_http::Error> {
//! let env = icp_core::Environment::process();
//! let client = icp_http::Client::new(icp_http::Options::default(), &env)?;
//! let response = client
//!     .send(icp_http::Request::post("https://login.example/token").form(&[("grant_type", "client_credentials")]))
//!     .await?;
//! assert!(response.is_success());
//! # Ok(())
//! # }
//! ```

mod client;
mod date;
mod error;
mod form;
mod limits;
mod message;
mod proxy;
mod resolve;
mod retry;
mod roots;
mod run;
mod summary;
mod tls;

pub use client::{Client, Options};
pub use date::parse_http_date;
pub use error::Error;
pub use form::form_encode;
pub use hyper::Method;
pub use limits::Limits;
pub use message::{Request, Response};
pub use resolve::RESOLVE_ENV;
pub use retry::{Retry, is_retryable_status};
pub use run::{Deadline, RunError, run};
pub use summary::{Shape, Summary};
