//! The time and retry bounds of one fetch, the same fields for every backend.

use std::time::Duration;

/// The time and retry bounds of one fetch: every request, retry and wait of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole fetch: every request and every wait between attempts.
    pub total: Duration,
    /// One request (one attempt), connection included.
    pub request: Duration,
    /// One TCP connection and TLS handshake.
    pub connect: Duration,
    /// Attempts per request, the first included.
    pub attempts: u32,
    /// The wait before the second attempt when the service does not say (`Retry-After`);
    /// doubled before each later one.
    pub backoff: Duration,
    /// Longest wait before another attempt; a `Retry-After` asking for more ends the
    /// fetch with the answer that asked.
    pub max_wait: Duration,
}

impl Default for Limits {
    /// 20 s in all, 8 s per request, 3 s to connect, 3 attempts, waits from 0.5 s to at
    /// most 5 s: well inside the kubelet's one-minute limit on a plugin.
    fn default() -> Self {
        Limits {
            total: Duration::from_secs(20),
            request: Duration::from_secs(8),
            connect: Duration::from_secs(3),
            attempts: 3,
            backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(5),
        }
    }
}
