//! What every request of one fetch shares: the client, the kit's retry policy and the
//! fetch's deadline; and how a failure or an error answer becomes an [`Error`] naming the
//! service with its own error message (never the request, which holds the pod's token).

use icp_core::Secret;
use icp_http::{Client, Deadline, Request, Response, Retry, Shape, Summary};

use crate::Error;

/// One fetch's client, retry policy and deadline.
pub struct Fetch<'a> {
    /// The client, with the environment's overrides and proxies.
    pub client: &'a Client,
    /// The pod's token, cut out of error answers should a service echo it.
    pub token: &'a Secret,
    /// The retry policy of the backend's limits: 429, 5xx and transient failures.
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
        self.retry
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

    /// [`Fetch::send`], then the answer's body as JSON when its status is 2xx, and the
    /// error for any other status.
    /// `shapes` are the error answers the service gives.
    pub async fn json(
        &self,
        service: &str,
        shapes: &[Shape],
        build: impl Fn() -> Request,
    ) -> Result<serde_json::Value, Error> {
        let response = self.send(service, build).await?;
        if !response.is_success() {
            return Err(status_error(service, &response, shapes, self.token));
        }
        serde_json::from_slice(&response.body).map_err(|_| Error::BadResponse {
            service: service.to_owned(),
            reason: format!("HTTP {} with a body that is not JSON", response.status),
        })
    }
}

/// The error for `service`'s answer with a status that is not a success, with the
/// summary of its error answer in one of `shapes`, from which `token` and each of its
/// JWT parts are cut out first.
pub fn status_error(service: &str, response: &Response, shapes: &[Shape], token: &Secret) -> Error {
    let service = service.to_owned();
    let body = redact(&response.body, token.expose());
    let detail = Summary::read(&body, shapes)
        .map(|summary| summary.to_string())
        .unwrap_or_default();
    match response.status {
        429 => Error::Throttled(service),
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

/// `body` with every occurrence of `token`, and of each of its `.`-separated parts of 8
/// characters or more, replaced by `<redacted>`.
fn redact(body: &[u8], token: &str) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(body) else {
        return body.to_vec();
    };
    let parts = token.split('.').filter(|part| part.len() >= 8);
    std::iter::once(token)
        .filter(|token| !token.is_empty())
        .chain(parts)
        .fold(text.to_owned(), |text, part| {
            text.replace(part, "<redacted>")
        })
        .into_bytes()
}

fn prefixed(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> String {
        let response = Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        };
        let shapes = [
            Shape::Registry,
            Shape::Messages,
            Shape::OAuth,
            Shape::Detail,
        ];
        status_error(
            "svc",
            &response,
            &shapes,
            &Secret::new("aaaaaaaa.bbbbbbbbbb.c"),
        )
        .to_string()
    }

    #[test]
    fn every_vendor_error_shape_is_one_line() {
        assert_eq!(
            answer(403, r#"{"errors":["permission denied"]}"#),
            "access denied by svc: HTTP 403: permission denied"
        );
        assert_eq!(
            answer(
                401,
                r#"{"errors":[{"status":401,"message":"Token failed verification"}]}"#
            ),
            "access denied by svc: HTTP 401: Token failed verification"
        );
        assert_eq!(
            answer(401, r#"{"detail":"OIDC token cannot be authenticated."}"#),
            "access denied by svc: HTTP 401: OIDC token cannot be authenticated."
        );
        assert_eq!(
            answer(
                400,
                r#"{"error":"invalid_grant","error_description":"bad\nsecond"}"#
            ),
            "svc answered HTTP 400: invalid_grant: bad"
        );
        assert_eq!(answer(404, "<html>x</html>"), "svc answered HTTP 404");
        assert_eq!(answer(429, ""), "throttled by svc; try again later");
        assert_eq!(
            answer(
                401,
                r#"{"error":"invalid_grant","error_description":"bad aaaaaaaa.bbbbbbbbbb.c, bbbbbbbbbbX"}"#
            ),
            "access denied by svc: HTTP 401: invalid_grant: bad <redacted>, <redacted>X"
        );
        assert_eq!(answer(503, ""), "svc answered HTTP 503");
    }
}
