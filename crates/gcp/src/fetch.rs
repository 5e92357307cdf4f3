//! What every request of one fetch shares: the client, the fetch's limits and deadline,
//! and the kit's retry policy for Google's services.

use icp_http::{Client, Deadline, Limits, Request, Response, Retry};

use crate::Error;

/// One fetch's client, limits and deadline.
pub struct Fetch<'a> {
    /// The client, with the environment's overrides and proxies.
    pub client: &'a Client,
    /// The bounds of the fetch.
    pub limits: Limits,
    /// When the whole fetch must be over.
    pub deadline: Deadline,
}

impl Fetch<'_> {
    /// The retry policy of Google's token services: the limits' attempts, backoff and
    /// timeouts, on 429, 5xx and transient failures.
    pub fn retry(&self) -> Retry {
        Retry::new(&self.limits)
    }

    /// Sends the request `build` makes under `retry`, and gives back the last answer,
    /// whatever its status, or the last failure.
    pub async fn send(
        &self,
        retry: &Retry,
        build: impl Fn() -> Request,
    ) -> Result<Response, icp_http::Error> {
        retry.send(self.client, self.deadline, build).await
    }

    /// [`Fetch::send`], with a failure to get any answer told as [`Error::Network`]
    /// naming `endpoint`.
    pub async fn send_to(
        &self,
        retry: &Retry,
        endpoint: &str,
        build: impl Fn() -> Request,
    ) -> Result<Response, Error> {
        self.send(retry, build)
            .await
            .map_err(|cause| Error::Network {
                endpoint: endpoint.to_owned(),
                cause,
            })
    }
}
