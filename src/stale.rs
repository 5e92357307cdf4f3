//! Stale-while-unavailable: when refreshing a cached token fails for a transient reason
//! (a timeout, the network, throttling, a server error), the cached token is answered
//! while it is still valid, for a short while, rather than failing the pull.
//!
//! A token is refreshed once it is inside the safety margin ([`crate::cache::SAFETY_MARGIN`])
//! of its expiry, so a cloud that is down for a few minutes would otherwise fail every
//! pull of a node whose token is still good for minutes. Never for a refusal (401/403), a
//! missing credential, a malformed answer or a configuration error: those say the token
//! must not be used any more, or that something needs fixing. Never an expired token. The
//! cache key holds the identity (a pod's service account included), so a stale token is
//! only ever answered to the identity it was fetched for.

use std::time::{Duration, SystemTime};

use icp_core::{BackendError, Token, TokenKey};

/// The longest `cacheDuration` of a stale answer: the kubelet asks again within a minute,
/// so a cloud that recovers is used within a minute, and a cloud that stays down is asked
/// at most once a minute per kubelet cache key while the token lasts.
pub const STALE_CACHE_DURATION: Duration = Duration::from_secs(60);

/// The token to answer with, and its `cacheDuration`, when the refresh of `cached` (the
/// token cached for `key`, read before the refresh) by `backend` failed with `failure`:
/// `None` unless there was one, the failure is transient and the token is still valid.
/// The kubelet is to ask again at `retry` (the end of a pause the failure began, or now) or
/// within [`STALE_CACHE_DURATION`], whichever is later, never past the token's validity.
/// Logs a warning naming the failure when it answers.
pub fn fallback(
    cached: Option<Token>,
    backend: &str,
    key: &TokenKey,
    failure: &dyn BackendError,
    retry: SystemTime,
) -> Option<(Token, Duration)> {
    if !failure.is_transient() {
        return None;
    }
    let (token, duration) = answer(cached?, retry, SystemTime::now())?;
    tracing::warn!(
        provider = backend,
        scope = %key.scope,
        cache_duration = %crate::duration::format(duration),
        "refreshing the token failed ({}: {}); answering with the cached token, still valid",
        failure.kind(),
        crate::backends::chain(failure),
    );
    Some((token, duration))
}

/// `token` answered at `now` past its refresh point, with how long the kubelet may cache
/// it: until `retry` or for [`STALE_CACHE_DURATION`], whichever is later, at most what
/// remains of its validity in whole seconds; `None` when less than a second remains (or
/// the token has no expiry), so an expired token is never answered.
pub fn answer(token: Token, retry: SystemTime, now: SystemTime) -> Option<(Token, Duration)> {
    let left = token.expires_at?.duration_since(now).ok()?.as_secs();
    let wait = retry
        .duration_since(now)
        .unwrap_or_default()
        .max(STALE_CACHE_DURATION);
    (left > 0).then(|| (token, Duration::from_secs(left).min(wait)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use icp_core::Secret;

    fn token(expires_at: Option<SystemTime>) -> Token {
        Token {
            username: "AWS".into(),
            password: Secret::new("t"),
            expires_at,
        }
    }

    #[test]
    fn a_stale_answer_is_short_and_never_outlives_the_token() {
        let now = SystemTime::now();
        let cache_duration =
            |token: Token, retry: SystemTime| answer(token, retry, now).map(|(_, d)| d);
        let at = |secs: u64| token(Some(now + Duration::from_secs(secs)));
        assert_eq!(cache_duration(at(240), now), Some(STALE_CACHE_DURATION));
        assert_eq!(cache_duration(at(20), now), Some(Duration::from_secs(20)));
        assert_eq!(cache_duration(at(0), now), None);
        let expired = token(Some(now - Duration::from_secs(1)));
        assert_eq!(cache_duration(expired, now), None);
        assert_eq!(cache_duration(token(None), now), None);
        let almost = token(Some(now + Duration::from_millis(900)));
        assert_eq!(cache_duration(almost, now), None);
        // Until a pause ends when that is later, never past the token's validity.
        let pause_end = now + Duration::from_secs(200);
        assert_eq!(
            cache_duration(at(600), pause_end),
            Some(Duration::from_secs(200))
        );
        assert_eq!(
            cache_duration(at(100), pause_end),
            Some(Duration::from_secs(100))
        );
    }
}
