//! Requests and responses: a method, a URL, headers and a body of bytes.

use std::time::{Duration, SystemTime};

use hyper::Method;

use crate::form_encode;

/// One HTTP request, built with the methods below.
#[derive(Clone)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) timeout: Option<Duration>,
}

impl Request {
    /// A request with `method` for the absolute `url` (`https://host[:port]/path?query`).
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            connect_timeout: None,
            timeout: None,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Request {
        Request::new(Method::GET, url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Request {
        Request::new(Method::POST, url)
    }

    /// Adds a header. `Host` and `Content-Length` are set by the client.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self.header("Content-Type", content_type)
    }

    /// Sets the body alone, its `Content-Type` (if any) being among the headers.
    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets an `application/x-www-form-urlencoded` body made of `pairs`.
    pub fn form(self, pairs: &[(&str, &str)]) -> Request {
        self.body("application/x-www-form-urlencoded", form_encode(pairs))
    }

    /// Overrides the client's connect timeout (TCP connection and TLS handshake).
    pub fn connect_timeout(mut self, timeout: Duration) -> Request {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Overrides the client's deadline for the whole exchange, connection included.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Headers and body are left out: they may hold credentials.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A response: status, headers and the whole body.
#[derive(Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of the header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How long the `Retry-After` header asks to wait, seen at `now`: its seconds, or
    /// the time until its HTTP date (nothing for a date already past); `None` when there
    /// is no such header or it is neither.
    pub fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        let value = self.header("retry-after")?.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        let at = crate::parse_http_date(value)?;
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Every value of the header `name` (any case), in the order received.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The body is left out: it may hold a credential.
impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_retry_after(value: &str) -> Response {
        Response {
            status: 429,
            headers: vec![("retry-after".to_owned(), value.to_owned())],
            body: Vec::new(),
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            with_retry_after(" 120 ").retry_after(now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            with_retry_after("Sun, 06 Nov 1994 09:49:37 GMT").retry_after(now),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            with_retry_after("Sun, 06 Nov 1994 07:49:37 GMT").retry_after(now),
            Some(Duration::ZERO),
            "a date already past"
        );
        assert_eq!(with_retry_after("soon").retry_after(now), None);
        assert_eq!(with_retry_after("-5").retry_after(now), None);
    }
}
