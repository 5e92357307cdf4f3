//! The AWS SDK's time and retry settings, all derived in this one place from the kit's
//! [`Limits`], the same fields every backend has.
//!
//! | SDK setting                  | from the kit's field                                  |
//! |------------------------------|-------------------------------------------------------|
//! | connect timeout              | `connect`                                             |
//! | read timeout (first byte)    | `request - connect`: what an attempt has left once connected |
//! | operation attempt timeout    | `request`                                             |
//! | operation timeout            | `total - 2s`, room to load the configuration and give up cleanly |
//! | max attempts                 | `attempts`                                            |
//! | initial backoff              | `backoff`                                             |
//! | max backoff                  | `max_wait`; the SDK caps a longer `x-amz-retry-after` at it rather than giving up |
//! | credentials timeout          | `2 × connect`, at most `request`: a credential source answers one short exchange |
//! | the whole fetch's deadline   | `total`                                               |

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ecr::config::interceptors::InterceptorContext;
use aws_sdk_ecr::config::retry::{ClassifyRetry, RetryAction};
use icp_http::Limits;

/// ECR's limits unless a caller sets others: 20 s in all, 8 s per attempt, 3 s to
/// connect, 3 attempts, waits from 0.5 s to at most 3 s. The kit's defaults, but for the
/// longest wait, which stays at the 3 s ECR has always used.
pub const DEFAULT_LIMITS: Limits = Limits {
    total: Duration::from_secs(20),
    request: Duration::from_secs(8),
    connect: Duration::from_secs(3),
    attempts: 3,
    backoff: Duration::from_millis(500),
    max_wait: Duration::from_secs(3),
};

/// What the whole fetch keeps beyond the SDK's operation timeout.
const SETTLE: Duration = Duration::from_secs(2);

/// The SDK's timeouts: connect, read, one attempt, the whole operation.
pub(crate) fn timeout_config(limits: &Limits) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(limits.connect)
        .read_timeout(read_timeout(limits))
        .operation_attempt_timeout(limits.request)
        .operation_timeout(operation_timeout(limits))
        .build()
}

/// The SDK's standard retries: attempts and backoff.
pub(crate) fn retry_config(limits: &Limits) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(limits.attempts)
        .with_initial_backoff(limits.backoff)
        .with_max_backoff(limits.max_wait)
}

/// Longest wait for the first byte of an answer: what an attempt has left once connected
/// (the whole attempt when connecting may take all of it).
pub(crate) fn read_timeout(limits: &Limits) -> Duration {
    Some(limits.request.saturating_sub(limits.connect))
        .filter(|left| !left.is_zero())
        .unwrap_or(limits.request)
}

/// Longest the SDK's call may take, every attempt included: the fetch's `total` less
/// [`SETTLE`] (all of it when `total` is that short).
pub(crate) fn operation_timeout(limits: &Limits) -> Duration {
    Some(limits.total.saturating_sub(SETTLE))
        .filter(|left| !left.is_zero())
        .unwrap_or(limits.total)
}

/// Longest the credential chain (an assumed role or web identity exchange included), or
/// the exchange of a pod's service account token, may take: twice a connection's time, at
/// most one attempt's, so a slow credential source is named as such before the attempt
/// times out.
pub(crate) fn credentials_timeout(limits: &Limits) -> Duration {
    (limits.connect * 2).min(limits.request)
}

/// Makes an HTTP 429 that carries no AWS error code (a proxy's or load balancer's) count
/// as throttling, retried within [`icp_http::Limits::attempts`] as AWS's own throttling codes
/// are; the SDK alone would give up on it at once.
#[derive(Debug)]
pub(crate) struct TooManyRequests;

impl ClassifyRetry for TooManyRequests {
    fn classify_retry(&self, context: &InterceptorContext) -> RetryAction {
        match context.response() {
            Some(response) if response.status().as_u16() == 429 => RetryAction::throttling_error(),
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "HTTP 429 without an AWS error code"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_end_well_inside_the_kubelet_minute() {
        let limits = DEFAULT_LIMITS;
        let attempt = limits.request;
        assert!(limits.total <= Duration::from_secs(20));
        assert!(credentials_timeout(&limits) < attempt);
        assert!(read_timeout(&limits) < attempt && limits.connect < attempt);
    }

    #[test]
    fn the_default_sdk_settings_are_the_ones_ecr_always_had() {
        let limits = DEFAULT_LIMITS;
        assert_eq!(read_timeout(&limits), Duration::from_secs(5));
        assert_eq!(operation_timeout(&limits), Duration::from_secs(18));
        assert_eq!(credentials_timeout(&limits), Duration::from_secs(6));
        let timeouts = timeout_config(&limits);
        assert_eq!(timeouts.connect_timeout(), Some(Duration::from_secs(3)));
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(Duration::from_secs(8))
        );
        let retries = retry_config(&limits);
        assert_eq!(retries.max_attempts(), 3);
        assert_eq!(retries.initial_backoff(), Duration::from_millis(500));
        assert_eq!(retries.max_backoff(), Duration::from_secs(3));
        assert_eq!(
            DEFAULT_LIMITS,
            Limits {
                max_wait: Duration::from_secs(3),
                ..Limits::default()
            }
        );
    }

    #[test]
    fn short_limits_still_leave_every_timeout_some_time() {
        let limits = Limits {
            total: Duration::from_secs(1),
            request: Duration::from_millis(500),
            connect: Duration::from_secs(1),
            ..DEFAULT_LIMITS
        };
        assert_eq!(read_timeout(&limits), Duration::from_millis(500));
        assert_eq!(operation_timeout(&limits), Duration::from_secs(1));
        assert_eq!(credentials_timeout(&limits), Duration::from_millis(500));
    }
}
