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

use crate::plugin::BackendFailed;

/// The longest `cacheDuration` of a stale answer: the kubelet asks again within a minute,
/// so a cloud that recovers is used within a minute, and a cloud that stays down is asked
/// at most once a minute per kubelet cache key while the token lasts.
pub const STALE_CACHE_DURATION: Duration = Duration::from_secs(60);

/// The token to answer with, and its `cacheDuration`, when the refresh of `cached` (the
/// token cached for `key`, read before the refresh: `Cache::get_stale`) by `backend`
/// failed with `failure`: `None` unless there was one, the failure is transient and the
/// token is still valid. Logs a warning naming the failure when it answers.
pub fn fallback(
    cached: Option<Token>,
    backend: &str,
    key: &TokenKey,
    failure: &BackendFailed,
) -> Option<(Token, Duration)> {
    if !failure.is_transient() {
        return None;
    }
    let token = cached?;
    let duration = cache_duration(&token, SystemTime::now())?;
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

/// How long the kubelet may cache a stale answer of `token` at `now`: what remains of its
/// validity in whole seconds, at most [`STALE_CACHE_DURATION`]; `None` when less than one
/// second remains (or the token has no expiry), so an expired token is never answered.
fn cache_duration(token: &Token, now: SystemTime) -> Option<Duration> {
    let left = token.expires_at?.duration_since(now).ok()?.as_secs();
    (left > 0).then(|| Duration::from_secs(left).min(STALE_CACHE_DURATION))
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
        let at = |secs: u64| token(Some(now + Duration::from_secs(secs)));
        assert_eq!(cache_duration(&at(240), now), Some(STALE_CACHE_DURATION));
        assert_eq!(cache_duration(&at(20), now), Some(Duration::from_secs(20)));
        assert_eq!(cache_duration(&at(0), now), None);
        let expired = token(Some(now - Duration::from_secs(1)));
        assert_eq!(cache_duration(&expired, now), None);
        assert_eq!(cache_duration(&token(None), now), None);
        let almost = token(Some(now + Duration::from_millis(900)));
        assert_eq!(cache_duration(&almost, now), None);
    }
}
