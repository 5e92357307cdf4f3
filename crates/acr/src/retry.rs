//! Sending one request within the fetch's budget: bounded attempts, `Retry-After`, and
//! the mapping of failures to one-line errors.

use std::time::{Duration, Instant, SystemTime};

use icp_http::{Client, Request, Response};

use crate::Error;

/// The time and retry bounds of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole fetch: every request and every wait between attempts.
    pub total: Duration,
    /// One request, connection included.
    pub request: Duration,
    /// One TCP connection and TLS handshake.
    pub connect: Duration,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// Longest wait before another attempt; a `Retry-After` asking for more ends the
    /// fetch with a throttling error instead.
    pub max_wait: Duration,
}

impl Default for Limits {
    /// 20 s in all, 8 s per request, 3 s to connect, 3 attempts, waits of at most 5 s:
    /// well inside the kubelet's one-minute limit.
    fn default() -> Self {
        Limits {
            total: Duration::from_secs(20),
            request: Duration::from_secs(8),
            connect: Duration::from_secs(3),
            attempts: 3,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// One service called during a fetch.
pub struct Call<'a> {
    /// The client.
    pub client: &'a Client,
    /// The bounds.
    pub limits: &'a Limits,
    /// When the whole fetch must be over.
    pub deadline: Instant,
    /// The service's name in errors.
    pub service: &'a str,
}

impl Call<'_> {
    /// Sends the request `build` makes, again on a transient failure or a status in
    /// `retry_on`, while attempts and time are left. Returns the last response, whatever
    /// its status.
    pub async fn send(
        &self,
        build: impl Fn() -> Request,
        retry_on: impl Fn(u16) -> bool,
    ) -> Result<Response, Error> {
        let mut attempt = 1;
        loop {
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout(self.service.to_owned()));
            }
            let request = build()
                .timeout(self.limits.request.min(remaining))
                .connect_timeout(self.limits.connect.min(remaining));
            let wait = match self.client.send(request).await {
                Ok(response) if retry_on(response.status) && attempt < self.limits.attempts => {
                    match response.retry_after(SystemTime::now()) {
                        Some(wait) if wait > self.limits.max_wait => return Ok(response),
                        Some(wait) => wait,
                        None => backoff(attempt),
                    }
                }
                Ok(response) => return Ok(response),
                Err(error) if error.is_transient() && attempt < self.limits.attempts => {
                    tracing::debug!(service = self.service, %error, attempt, "retrying");
                    backoff(attempt)
                }
                Err(error) if error.is_timeout() => {
                    return Err(Error::Timeout(self.service.to_owned()));
                }
                Err(cause) => {
                    return Err(Error::Network {
                        service: self.service.to_owned(),
                        cause,
                    });
                }
            };
            if Instant::now() + wait >= self.deadline {
                return Err(Error::Timeout(self.service.to_owned()));
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// The error for a response with a status that is not the expected one.
    pub fn status_error(&self, response: &Response) -> Error {
        let service = self.service.to_owned();
        let detail = error_detail(&response.body);
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
}

fn prefixed(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

/// Exponential backoff: 0.5 s, 1 s, 2 s, ...
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64 << attempt.saturating_sub(1).min(4))
}

/// A short, single-line description of an error body from Azure AD, IMDS or ACR: the
/// error code and the first sentence of its description. Bodies that are not one of
/// those JSON shapes give nothing, so no unknown content reaches a log.
pub fn error_detail(body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let text = |value: Option<&serde_json::Value>| {
        value
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (code, message) = if let Some(first) = json.get("errors").and_then(|e| e.get(0)) {
        (text(first.get("code")), text(first.get("message")))
    } else {
        (text(json.get("error")), text(json.get("error_description")))
    };
    let message: String = message
        .lines()
        .next()
        .unwrap_or_default()
        .split(" Trace ID:")
        .next()
        .unwrap_or_default()
        .to_owned();
    let message: String = message.chars().filter(|c| !c.is_control()).collect();
    let message = shorten(&message, 200);
    let code: String = code.chars().filter(|c| !c.is_control()).take(60).collect();
    match (code.is_empty(), message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => code,
        (true, false) => message,
        (false, false) => format!("{code}: {message}"),
    }
}

/// `text` when it has at most `max` characters; else its sentences that fit (Azure AD
/// descriptions run on with advice and links), or its first `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let Some((cut, _)) = text.char_indices().nth(max) else {
        return text.to_owned();
    };
    match text[..cut].rfind(". ") {
        Some(end) => text[..=end].to_owned(),
        None => text[..cut].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_are_short_and_known_shapes_only() {
        assert_eq!(
            error_detail(br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Trace ID: 1\r\nCorrelation ID: 2"}"#),
            "invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(
            error_detail(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
            ),
            "UNAUTHORIZED: authentication required"
        );
        assert_eq!(
            error_detail(br#"{"error":"invalid_request"}"#),
            "invalid_request"
        );
        assert_eq!(error_detail(b"<html>secret</html>"), "");
        assert_eq!(error_detail(br#"{"other":"x"}"#), "");
        assert_eq!(error_detail(&[0xff, 0xfe]), "");
        assert_eq!(
            error_detail(format!(r#"{{"error":"{}"}}"#, "x".repeat(500)).as_bytes()).len(),
            60
        );
        // A long description keeps the sentences that fit, or is cut.
        let long = format!(
            r#"{{"error":"invalid_client","error_description":"AADSTS700213: No match for 'a'. {} Trace ID: 1"}}"#,
            "More advice. ".repeat(30)
        );
        let detail = error_detail(long.as_bytes());
        assert!(detail.starts_with("invalid_client: AADSTS700213: No match for 'a'. More advice."));
        assert!(
            detail.ends_with("advice.") && detail.len() <= 218,
            "{detail}"
        );
        let detail =
            error_detail(format!(r#"{{"error_description":"{}"}}"#, "é".repeat(300)).as_bytes());
        assert_eq!(detail.chars().count(), 200);
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(100), Duration::from_secs(8));
    }
}
