//! The GCE metadata server: service account tokens, their scopes, and instance attributes.

use std::time::{Duration, SystemTime};

use icp_http::{Request, Response};

use crate::fetch::Fetch;
use crate::{Error, token};

/// The metadata server's address when `GCE_METADATA_HOST` is not set: the link-local IP,
/// as Google's Go library uses, so no DNS lookup is needed to find it absent.
pub const DEFAULT_HOST: &str = "169.254.169.254";

/// Scope prefixes that let a token pull images, as the official provider checks them.
const REGISTRY_SCOPE_PREFIXES: &[&str] = &[
    "https://www.googleapis.com/auth/devstorage",
    "https://www.googleapis.com/auth/cloud-platform",
];

/// Bounds of one metadata request: it answers in milliseconds where it exists, so the
/// connection gets a second, retries come quickly, and a missing server is reported
/// without retrying.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF: Duration = Duration::from_millis(100);

/// The metadata server at `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    host: String,
}

impl Metadata {
    /// The server at `host` (the value of `GCE_METADATA_HOST`), or at [`DEFAULT_HOST`].
    /// The value is checked by [`Metadata::check`] and before each request.
    pub fn new(host: Option<&str>) -> Metadata {
        Metadata {
            host: host.unwrap_or(DEFAULT_HOST).to_owned(),
        }
    }

    /// Whether the host is a `host[:port]` (and so cannot change the request's path).
    pub fn check(&self) -> Result<(), Error> {
        let valid = !self.host.is_empty()
            && self.host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if valid {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "GCE_METADATA_HOST {} is not a host[:port]",
                icp_core::quote(&self.host)
            )))
        }
    }

    /// The server's `host[:port]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// An access token of the service account `account`, once its scopes are checked.
    pub async fn token(&self, fetch: &Fetch<'_>, account: &str) -> Result<icp_core::Token, Error> {
        let scopes = self
            .get(
                fetch,
                &format!("instance/service-accounts/{account}/scopes"),
            )
            .await;
        let scopes = match scopes {
            Err(Error::MetadataNotFound(_)) => {
                return Err(Error::MetadataNotFound(format!(
                    "service account {account:?} on this instance"
                )));
            }
            other => other?,
        };
        let scopes = String::from_utf8_lossy(&scopes);
        let allowed = scopes
            .split_whitespace()
            .any(|s| REGISTRY_SCOPE_PREFIXES.iter().any(|p| s.starts_with(p)));
        if !allowed {
            return Err(Error::MissingScope(account.to_owned()));
        }
        let asked_at = SystemTime::now();
        let body = self
            .get(fetch, &format!("instance/service-accounts/{account}/token"))
            .await?;
        token::parse(&body, asked_at, &self.endpoint())
    }

    /// The value of the instance attribute `name`.
    pub async fn attribute(&self, fetch: &Fetch<'_>, name: &str) -> Result<Vec<u8>, Error> {
        match self
            .get(fetch, &format!("instance/attributes/{name}"))
            .await
        {
            Err(Error::MetadataNotFound(_)) => Err(Error::MetadataNotFound(format!(
                "instance attribute {name:?}"
            ))),
            other => other,
        }
    }

    fn endpoint(&self) -> String {
        format!("the metadata server at {}", self.host)
    }

    /// GETs `computeMetadata/v1/<path>`, requiring the answer to come from a GCE
    /// metadata server (`Metadata-Flavor: Google`).
    async fn get(&self, fetch: &Fetch<'_>, path: &str) -> Result<Vec<u8>, Error> {
        self.check()?;
        let url = format!("http://{}/computeMetadata/v1/{path}", self.host);
        let request = || Request::get(url.as_str()).header("Metadata-Flavor", "Google");
        let retry = fetch
            .retry()
            .connect_timeout(CONNECT_TIMEOUT)
            .backoff(BACKOFF)
            .unreachable(false);
        let response = fetch
            .send(&retry, request)
            .await
            .map_err(|cause| match cause {
                icp_http::Error::Connect { .. }
                | icp_http::Error::ConnectTimeout { .. }
                | icp_http::Error::Dns { .. } => Error::MetadataUnreachable {
                    host: self.host.clone(),
                    cause,
                },
                cause => Error::Network {
                    endpoint: self.endpoint(),
                    cause,
                },
            })?;
        if !is_google(&response) {
            return Err(Error::NotMetadataServer {
                host: self.host.clone(),
            });
        }
        match response.status {
            200 => Ok(response.body),
            404 => Err(Error::MetadataNotFound(path.to_owned())),
            429 => Err(Error::Throttled {
                endpoint: self.endpoint(),
                retry_after: response.retry_after(SystemTime::now()),
            }),
            status @ (401 | 403) => Err(Error::AccessDenied {
                endpoint: self.endpoint(),
                status,
                detail: String::new(),
            }),
            status => Err(Error::Status {
                endpoint: self.endpoint(),
                status,
            }),
        }
    }
}

fn is_google(response: &Response) -> bool {
    response
        .header("Metadata-Flavor")
        .is_some_and(|flavor| flavor.eq_ignore_ascii_case("Google"))
}
