//! When a token is refreshed: at a point spread over the last part of its lifetime, so
//! that the nodes of a fleet that fetched together (a node pool scaling up) do not all
//! fetch again together one lifetime later.
//!
//! The window runs from [`WINDOW_START`] (75%) of the token's lifetime to its expiry less
//! the [`SAFETY_MARGIN`]; the point in it is a stable hash of the node ([`node`]: its
//! `/etc/machine-id`, else its host name) and the token's key, so every plugin process of
//! a node picks the same point for a token, and the nodes of a fleet pick points spread
//! evenly over the window. Since a token's next fetch happens at its point, each key keeps
//! its own period, and keys that fetched together drift further apart at every refresh.
//!
//! The kubelet is told to ask again at the point (`cacheDuration`); the shared cache
//! serves the token unchanged until then, and from then on a process fetches a new one,
//! while the token is still answered, within its real validity less the safety margin,
//! when that fetch fails or the API is paused ([`crate::pause`]).

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use icp_core::{Token, TokenKey};
use sha2::{Digest, Sha256};

/// Where the refresh window starts, as a fraction of the token's lifetime: late enough
/// that refreshing costs at most a third more fetches than refreshing at the end (1/0.75),
/// early enough that a token refreshed at the start of the window still has a quarter of
/// its life to ride out a throttled or unreachable cloud.
/// What is taken off a token's remaining lifetime before anyone may use it: a cached
/// token is served only while more than this remains, and the `cacheDuration` the
/// kubelet gets is what remains less this, so the kubelet never uses a token in its last
/// minutes.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(5 * 60);

pub const WINDOW_START: f64 = 0.75;

/// The longest `cacheDuration` of a token answered past its refresh point (its refresh
/// failed, or its API is paused and the pause ends sooner): the kubelet asks again soon,
/// and the refresh is tried again.
pub const RETRY: Duration = Duration::from_secs(60);

/// Where in the window (0 at its start, below 1 at its end) the token of `key` from
/// `backend` is refreshed on `node`: a stable hash of the three, the same in every
/// process.
pub fn spread(node: &str, backend: &str, key: &TokenKey) -> f64 {
    let mut hash = Sha256::new();
    for part in [node, backend, &key.identity, &key.scope] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let bits = u64::from_le_bytes(digest[..8].try_into().expect("eight bytes"));
    // The top 53 bits, exactly representable: a fraction in [0, 1).
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// How long after its fetch a token that lives `lifetime` is refreshed, at `spread` of the
/// window: from [`WINDOW_START`] of the lifetime (or the end of the window, for a token
/// too short-lived to have one) to the lifetime less the [`SAFETY_MARGIN`]. A `spread` of
/// 1 is the end of the window, where tokens are refreshed without spreading.
pub fn offset(lifetime: Duration, spread: f64) -> Duration {
    let end = lifetime.saturating_sub(SAFETY_MARGIN);
    let start = lifetime.mul_f64(WINDOW_START).min(end);
    start + (end - start).mul_f64(spread.clamp(0.0, 1.0))
}

/// When `token`, of `key` from `backend`, just fetched, is to be refreshed on this node;
/// `None` when it has no expiry.
pub fn point(backend: &str, key: &TokenKey, token: &Token) -> Option<SystemTime> {
    let now = SystemTime::now();
    let lifetime = token.expires_at?.duration_since(now).unwrap_or_default();
    Some(now + offset(lifetime, spread(node(), backend, key)))
}

/// This node's name for spreading refreshes, read once per process: the machine id
/// (`/etc/machine-id`, as systemd writes it at first boot, unique per machine and stable
/// across reboots, unlike an address), else the kernel's host name, else empty (every
/// token then still has a point of its own).
pub fn node() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| {
        ["/etc/machine-id", "/proc/sys/kernel/hostname"]
            .iter()
            .find_map(|path| {
                let text = std::fs::read_to_string(path).ok()?;
                let text = text.trim();
                (!text.is_empty() && text.len() <= 255).then(|| text.to_owned())
            })
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> TokenKey {
        TokenKey {
            identity: format!("sa=team/app-{n}/uid-{n}"),
            scope: "111122223333-us-east-1".into(),
        }
    }

    /// Pearson's chi-square statistic of `values` in [0, 1) over `buckets` equal buckets.
    fn chi_square(values: impl Iterator<Item = f64>, buckets: usize) -> f64 {
        let mut counts = vec![0usize; buckets];
        let mut total = 0;
        for value in values {
            assert!((0.0..1.0).contains(&value), "{value}");
            counts[(value * buckets as f64) as usize] += 1;
            total += 1;
        }
        let expected = total as f64 / buckets as f64;
        counts
            .iter()
            .map(|&n| (n as f64 - expected).powi(2) / expected)
            .sum()
    }

    /// The 0.999 quantile of chi-square with 19 degrees of freedom: an even spread of
    /// 10,000 points over 20 buckets passes with probability 0.999, and the hash is fixed,
    /// so the test is deterministic.
    const CHI_SQUARE_19_999: f64 = 43.82;

    #[test]
    fn the_points_of_many_identities_spread_evenly_over_the_window() {
        let statistic = chi_square((0..10_000).map(|n| spread("node-a", "ecr", &key(n))), 20);
        assert!(statistic < CHI_SQUARE_19_999, "chi-square {statistic}");
        let lifetime = Duration::from_secs(12 * 3600);
        let offsets: Vec<Duration> = (0..10_000)
            .map(|n| offset(lifetime, spread("node-a", "ecr", &key(n))))
            .collect();
        let (start, end) = (lifetime.mul_f64(0.75), lifetime - SAFETY_MARGIN);
        assert!(offsets.iter().all(|o| (start..end).contains(o)));
        let window = (end - start).as_secs_f64();
        let fractions = offsets.iter().map(|o| (*o - start).as_secs_f64() / window);
        assert!(chi_square(fractions, 20) < CHI_SQUARE_19_999);
    }

    #[test]
    fn the_nodes_of_a_fleet_spread_one_identity_evenly() {
        let statistic = chi_square(
            (0..10_000).map(|n| spread(&format!("machine-{n:05}"), "gcp", &key(0))),
            20,
        );
        assert!(statistic < CHI_SQUARE_19_999, "chi-square {statistic}");
    }

    #[test]
    fn the_point_is_stable_and_its_own_per_node_backend_and_identity() {
        let a = spread("node-a", "ecr", &key(1));
        assert_eq!(a, spread("node-a", "ecr", &key(1)));
        assert_ne!(a, spread("node-b", "ecr", &key(1)));
        assert_ne!(a, spread("node-a", "acr", &key(1)));
        assert_ne!(a, spread("node-a", "ecr", &key(2)));
        let scope = TokenKey {
            scope: "111122223333-us-west-2".into(),
            ..key(1)
        };
        assert_ne!(a, spread("node-a", "ecr", &scope));
        assert_eq!(node(), node(), "read once");
    }

    #[test]
    fn the_window_runs_from_three_quarters_to_the_safety_margin() {
        let hour = Duration::from_secs(3600);
        assert_eq!(offset(hour, 0.0), Duration::from_secs(45 * 60));
        assert_eq!(offset(hour, 1.0), Duration::from_secs(55 * 60));
        assert_eq!(offset(hour, 0.5), Duration::from_secs(50 * 60));
        assert_eq!(offset(hour, 7.0), offset(hour, 1.0), "clamped");
        // Too short for a window: its end, where the cache stops serving it anyway.
        let short = Duration::from_secs(10 * 60);
        assert_eq!(offset(short, 0.0), Duration::from_secs(5 * 60));
        assert_eq!(offset(Duration::from_secs(60), 0.3), Duration::ZERO);
    }

    #[test]
    fn a_fresh_token_is_refreshed_inside_its_window() {
        let now = SystemTime::now();
        let token = Token {
            username: "AWS".into(),
            password: icp_core::Secret::new("t"),
            expires_at: Some(now + Duration::from_secs(12 * 3600)),
        };
        let at = point("ecr", &key(3), &token).unwrap();
        assert!(at >= now + Duration::from_secs(9 * 3600) - Duration::from_secs(2));
        assert!(at <= now + Duration::from_secs(12 * 3600) - SAFETY_MARGIN);
        let forever = Token {
            expires_at: None,
            ..token
        };
        assert_eq!(point("ecr", &key(3), &forever), None);
    }
}
