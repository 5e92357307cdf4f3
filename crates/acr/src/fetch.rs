//! What every request of one fetch shares: the client, the kit's retry policy and the
//! fetch's deadline; and how a request's failure or an error answer becomes an [`Error`]
//! naming the service.

use std::time::SystemTime;

use icp_http::{Client, Deadline, Request, Response, Retry, Shape, Summary};

use crate::Error;

/// One fetch's client, retry policy and deadline.
pub struct Fetch<'a> {
    /// The client, with the environment's overrides and proxies.
    pub client: &'a Client,
    /// The retry policy of the backend's limits.
    pub retry: Retry,
    /// When the whole fetch must be over.
    pub deadline: Deadline,
}

impl Fetch<'_> {
    /// Sends the request `build` makes to `service` under the fetch's policy, and gives
    /// back the last answer, whatever its status.
    pub async fn send(
        &self,
        service: &str,
        build: impl Fn() -> Request,
    ) -> Result<Response, Error> {
        self.send_with(&self.retry, service, build).await
    }

    /// [`Fetch::send`] under another policy (IMDS retries more statuses).
    pub async fn send_with(
        &self,
        retry: &Retry,
        service: &str,
        build: impl Fn() -> Request,
    ) -> Result<Response, Error> {
        retry
            .send(self.client, self.deadline, build)
            .await
            .map_err(|cause| match cause {
                cause if cause.is_timeout() => Error::Timeout(service.to_owned()),
                cause => Error::Network {
                    service: service.to_owned(),
                    cause,
                },
            })
    }
}

/// The error for `service`'s answer with a status that is not the expected one.
pub fn status_error(service: &str, response: &Response) -> Error {
    let service = service.to_owned();
    let detail = error_detail(&response.body);
    match response.status {
        429 => Error::Throttled(service, response.retry_after(SystemTime::now())),
        401 | 403 => Error::AccessDenied {
            service,
            detail: format!("HTTP {}{}", response.status, prefixed(&detail)),
        },
        status => Error::Status {
            service,
            status,
            detail: prefixed(&detail),
        },
    }
}

/// The summary of an error answer from Azure AD, IMDS or a registry, `code: message`;
/// empty for a body of any other shape.
pub fn error_detail(body: &[u8]) -> String {
    Summary::read(body, &[Shape::Registry, Shape::OAuth])
        .map(|summary| summary.to_string())
        .unwrap_or_default()
}

fn prefixed(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}
