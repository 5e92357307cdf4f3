//! The one retry policy of every backend: one request sent again while it may help, and
//! never past the fetch's [`Deadline`].

use std::time::{Duration, SystemTime};

use crate::{Client, Deadline, Error, Limits, Request, Response};

/// How one request is sent again: on which answers and failures, how often, and with
/// what waits in between. Every attempt and every wait is capped by the fetch's
/// [`Deadline`].
///
/// An answer is tried again when its status is one [`Retry::on_status`] names (429 and
/// 5xx by default); a failure to get an answer when it is transient
/// ([`Error::is_transient`]), and, with [`Retry::unreachable`] off, only when the exchange
/// broke after the connection was made. Before another attempt the policy waits what the
/// answer's `Retry-After` asks (seconds or an HTTP date), else the backoff, doubled at each
/// attempt. The last answer or failure is given back when attempts run out, when
/// `Retry-After` asks for more than [`Limits::max_wait`], or when the wait would pass the
/// deadline.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    attempts: u32,
    backoff: Duration,
    max_wait: Duration,
    request: Duration,
    connect: Duration,
    on_status: fn(u16) -> bool,
    unreachable: bool,
}

/// The statuses worth trying again by default: 429 and 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    status == 429 || status >= 500
}

impl Retry {
    /// The policy of `limits`: its attempts, backoff, longest wait, and request and
    /// connect timeouts; retried on 429, 5xx and transient failures.
    pub fn new(limits: &Limits) -> Retry {
        Retry {
            attempts: limits.attempts.max(1),
            backoff: limits.backoff,
            max_wait: limits.max_wait,
            request: limits.request,
            connect: limits.connect,
            on_status: is_retryable_status,
            unreachable: true,
        }
    }

    /// The same policy, retrying answers whose status `retry` accepts instead.
    pub fn on_status(mut self, retry: fn(u16) -> bool) -> Retry {
        self.on_status = retry;
        self
    }

    /// The same policy, with at most `attempts` attempts (at least one).
    pub fn attempts(mut self, attempts: u32) -> Retry {
        self.attempts = attempts.clamp(1, self.attempts);
        self
    }

    /// The same policy, waiting `backoff` before the second attempt when the service does
    /// not say.
    pub fn backoff(mut self, backoff: Duration) -> Retry {
        self.backoff = backoff;
        self
    }

    /// The same policy, with at most `connect` for one connection and TLS handshake.
    pub fn connect_timeout(mut self, connect: Duration) -> Retry {
        self.connect = self.connect.min(connect);
        self
    }

    /// Whether a service that cannot be reached at all (a refused connection, a connect
    /// or request timeout) is tried again; on by default. A service that answers within
    /// milliseconds where it exists (a metadata server) turns it off, so that its absence
    /// is reported at once.
    pub fn unreachable(mut self, retry: bool) -> Retry {
        self.unreachable = retry;
        self
    }

    /// Sends the request `build` makes with `client`, again while the policy allows and
    /// `deadline` leaves time, and gives back the last answer, whatever its status, or
    /// the last failure.
    pub async fn send(
        &self,
        client: &Client,
        deadline: Deadline,
        build: impl Fn() -> Request,
    ) -> Result<Response, Error> {
        let mut attempt = 1;
        loop {
            let remaining = deadline.remaining();
            let request = build()
                .timeout(self.request.min(remaining))
                .connect_timeout(self.connect.min(remaining));
            let result = client.send(request).await;
            let last = attempt >= self.attempts;
            let wait = match &result {
                Ok(response) if !last && (self.on_status)(response.status) => {
                    match response.retry_after(SystemTime::now()) {
                        Some(wait) if wait > self.max_wait => return result,
                        Some(wait) => wait,
                        None => self.backoff_before(attempt + 1),
                    }
                }
                Err(error) if !last && self.retries(error) => self.backoff_before(attempt + 1),
                _ => return result,
            };
            if wait >= deadline.remaining() {
                return result;
            }
            match &result {
                Ok(response) => tracing::debug!(status = response.status, attempt, "retrying"),
                Err(error) => tracing::debug!(%error, attempt, "retrying"),
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Whether the failure `error` is worth another attempt.
    fn retries(&self, error: &Error) -> bool {
        match error {
            Error::Http { .. } => true,
            error => error.is_transient() && self.unreachable,
        }
    }

    /// The wait before attempt `attempt` (the second or later): the backoff, doubled for
    /// each attempt after the second, at most 16 times the backoff.
    fn backoff_before(&self, attempt: u32) -> Duration {
        self.backoff * (1u32 << attempt.saturating_sub(2).min(4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let retry = Retry::new(&Limits::default());
        assert_eq!(retry.backoff_before(2), Duration::from_millis(500));
        assert_eq!(retry.backoff_before(3), Duration::from_secs(1));
        assert_eq!(retry.backoff_before(101), Duration::from_secs(8));
    }

    #[test]
    fn settings_narrow_the_limits() {
        let retry = Retry::new(&Limits::default())
            .attempts(10)
            .connect_timeout(Duration::from_secs(1));
        assert_eq!(retry.attempts, 3);
        assert_eq!(retry.connect, Duration::from_secs(1));
        assert_eq!(
            Retry::new(&Limits::default())
                .connect_timeout(Duration::from_secs(60))
                .connect,
            Duration::from_secs(3)
        );
        assert_eq!(Retry::new(&Limits::default()).attempts(0).attempts, 1);
        assert!(is_retryable_status(429) && is_retryable_status(503));
        assert!(!is_retryable_status(404) && !is_retryable_status(401));
    }
}
