//! Bounded retries of one request: a few tries, short pauses, transient failures only.

use std::time::Duration;

use icp_http::{Client, Request, Response};

use crate::Error;

/// How a request is retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Pause before the second try; doubled before each later one.
    pub backoff: Duration,
    /// Whether a refused connection or a timeout is tried again. The metadata server
    /// answers within milliseconds where it exists, so there it is not: its absence (or
    /// a hang) is reported at once.
    pub unreachable: bool,
}

/// Sends the request `build` makes until it gets an answer that is not HTTP 429 or 5xx,
/// or the tries run out: then the last answer or error is returned.
pub async fn send(
    client: &Client,
    retry: Retry,
    build: impl Fn() -> Request,
) -> Result<Response, icp_http::Error> {
    let mut pause = retry.backoff;
    let mut attempt = 1;
    loop {
        let result = client.send(build()).await;
        let again = match &result {
            Ok(response) => response.status == 429 || response.status >= 500,
            Err(error @ icp_http::Error::Http { .. }) => error.is_transient(),
            Err(error) => error.is_transient() && retry.unreachable,
        };
        if !again || attempt >= retry.attempts {
            return result;
        }
        match &result {
            Ok(response) => tracing::debug!(status = response.status, attempt, "retrying"),
            Err(error) => tracing::debug!(%error, attempt, "retrying"),
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
        attempt += 1;
    }
}

/// [`send`], with a failure to get any answer told as [`Error::Network`] naming `endpoint`.
pub async fn send_to(
    client: &Client,
    retry: Retry,
    endpoint: &str,
    build: impl Fn() -> Request,
) -> Result<Response, Error> {
    send(client, retry, build)
        .await
        .map_err(|cause| Error::Network {
            endpoint: endpoint.to_owned(),
            cause,
        })
}
