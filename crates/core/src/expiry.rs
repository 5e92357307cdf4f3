//! When a token expires, from what its cloud states: bounded, so that neither a broken nor
//! a hostile answer can make a token live for centuries or overflow a clock.
//!
//! Every backend turns "expires in N seconds" ([`after`]) or "expires at T" ([`at`]) into
//! a [`Token`](crate::Token)'s expiry here, and nowhere else. The longest lifetime believed
//! is [`MAX_LIFETIME`]: ECR tokens live 12 hours, ACR refresh tokens about 3 and Google
//! access tokens about 1, so a token that claims more is suspect. It is still answered,
//! but taken to expire after [`MAX_LIFETIME`] (said at `-v`), which keeps the cache
//! durations derived from it, and the token cache's entries, within a day.

use std::time::{Duration, SystemTime};

/// The longest a token is taken to live, whatever its cloud states.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The expiry of a token stated to live `lifetime` from `start` (when it was asked for):
/// no later than [`MAX_LIFETIME`] after `start`.
pub fn after(start: SystemTime, lifetime: Duration) -> SystemTime {
    if lifetime > MAX_LIFETIME {
        tracing::info!(
            stated_secs = lifetime.as_secs(),
            "the token states a lifetime longer than {}h; taken as {}h",
            MAX_LIFETIME.as_secs() / 3600,
            MAX_LIFETIME.as_secs() / 3600
        );
    }
    start
        .checked_add(lifetime.min(MAX_LIFETIME))
        .unwrap_or(start)
}

/// The expiry of a token stated to expire at `stated`, seen at `now`: `stated`, but no
/// later than [`MAX_LIFETIME`] after `now`.
pub fn at(stated: SystemTime, now: SystemTime) -> SystemTime {
    match stated.duration_since(now) {
        Ok(left) if left > MAX_LIFETIME => after(now, left),
        _ => stated,
    }
}

/// The time `seconds` after the Unix epoch, as a JWT `exp` claim or an API states it;
/// `None` when that is not a time at all (negative, not finite, or beyond what a clock
/// holds).
pub fn from_unix_seconds(seconds: f64) -> Option<SystemTime> {
    let since_epoch = Duration::try_from_secs_f64(seconds).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(since_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn a_plausible_expiry_is_kept() {
        assert_eq!(after(now(), 12 * HOUR), now() + 12 * HOUR);
        assert_eq!(at(now() + 3 * HOUR, now()), now() + 3 * HOUR);
        assert_eq!(at(now() - HOUR, now()), now() - HOUR, "already expired");
        assert_eq!(after(now(), MAX_LIFETIME), now() + MAX_LIFETIME);
    }

    #[test]
    fn a_huge_one_is_bounded_and_never_overflows() {
        assert_eq!(after(now(), 25 * HOUR), now() + MAX_LIFETIME);
        assert_eq!(after(now(), Duration::MAX), now() + MAX_LIFETIME);
        assert_eq!(
            after(now(), Duration::from_secs(u64::MAX)),
            now() + MAX_LIFETIME
        );
        let far = from_unix_seconds(1e11).unwrap();
        assert_eq!(at(far, now()), now() + MAX_LIFETIME);
    }

    #[test]
    fn unix_seconds_that_are_no_time_are_none() {
        assert_eq!(
            from_unix_seconds(1_700_000_000.5),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500))
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300, u64::MAX as f64] {
            assert_eq!(from_unix_seconds(bad), None, "{bad}");
        }
    }
}
