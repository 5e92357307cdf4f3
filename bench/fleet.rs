//! A model of a fleet's load on the clouds' token APIs: N nodes × M service accounts
//! (per-pod identity, one token per node and identity), pods starting and kubelets
//! restarting over simulated days, node pools scaling up and being replaced, each cloud's
//! quota enforced. It calls the plugin's own refresh point ([`refresh::offset`],
//! [`refresh::spread`]) and node-wide pause ([`pause::length`]), and prints, per API, the
//! mean and peak calls per minute against the API's quota, with and without spreading.
//!
//! It models events, not wall time: a token is fetched again at the first pull after its
//! refresh point, and pulls of one identity on one node come as a Poisson process, so the
//! wait from the refresh point to that pull is drawn directly (exponential) instead of
//! simulating every pull. No network, no clock: `cargo run --release --example fleet`.
//!
//! The fleet: nodes come up cold in pools of 500 that scale up within 2 minutes, pools at
//! random times over the first 12 hours; every day 20% of the nodes are replaced by new
//! ones (empty cache, new machine id) in pools of 500 within 2 minutes, and every kubelet
//! restarts once a day (its own cache lost: the next pull of each identity asks the
//! plugin, whose disk cache answers unless the token is past its refresh point). Pods of
//! each identity start on each node every 5 minutes on average. Load is counted over the
//! two days after the first (the cold start itself is the same either way).

use std::time::Duration;

use image_credential_provider::{pause, refresh};

/// Service accounts with pods on every node.
const IDENTITIES: usize = 20;
/// Nodes per pool, and how long a pool takes to scale up.
const POOL: usize = 500;
const POOL_RISE: f64 = 120.0;
/// Nodes replaced per day, as a fraction of the fleet.
const CHURN: f64 = 0.2;
/// Mean time between pod starts of one identity on one node.
const PULL_MEAN: f64 = 300.0;
/// The fleet comes up over this long; load is counted from the end of day 1 for
/// [`DAYS`] days.
const RISE: f64 = 12.0 * 3600.0;
const DAY: f64 = 86_400.0;
const DAYS: usize = 2;

/// One cloud API and its quota.
struct Api {
    name: &'static str,
    /// Token lifetime.
    lifetime: Duration,
    /// Calls allowed per `per` seconds (1 or 60), for the whole fleet.
    quota: u64,
    per: u64,
    /// The `Retry-After` of its throttling answers, if it sends one.
    retry_after: Option<Duration>,
}

const APIS: &[Api] = &[
    Api {
        name: "ECR GetAuthorizationToken (200/s per account and region)",
        lifetime: Duration::from_secs(12 * 3600),
        quota: 200,
        per: 1,
        retry_after: None,
    },
    Api {
        name: "Google STS token exchange (6,000/min per project)",
        lifetime: Duration::from_secs(3600),
        quota: 6000,
        per: 60,
        retry_after: None,
    },
    Api {
        name: "ACR token exchange, Standard (3,000/min; Basic 1,000, Premium 10,000)",
        lifetime: Duration::from_secs(3 * 3600),
        quota: 3000,
        per: 60,
        retry_after: Some(Duration::from_secs(60)),
    },
];

/// SplitMix64: a small deterministic generator, so every run prints the same table.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Exponential with `mean`.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// A pull of (node, identity) that asks the cloud if the token is missing or due.
    Attempt { key: u32, generation: u32 },
    /// A node replaced by a new one.
    Replace { node: u32 },
    /// A node's kubelet restarts.
    Restart { node: u32 },
}

#[derive(Clone, Default)]
struct Key {
    /// When the token expires; 0 when there is none.
    expires: f64,
    /// When it is due for refresh.
    refresh: f64,
    /// Where in the window this node refreshes it.
    spread: f64,
    /// Bumped to cancel the scheduled attempt.
    generation: u32,
    /// When the scheduled attempt is.
    scheduled: f64,
}

#[derive(Clone, Default)]
struct Node {
    pause_until: f64,
    strikes: u32,
}

/// What one run measured over the counted days.
struct Load {
    mean_per_minute: f64,
    peak_per_minute: u64,
    peak_per_second: u64,
    /// The peak of refreshes alone: calls for a token the node already had, not the first
    /// fetches of new nodes.
    peak_refreshes_per_minute: u64,
    throttled: u64,
    failed_pulls: u64,
}

struct Fleet<'a> {
    api: &'a Api,
    spread: bool,
    rng: Rng,
    nodes: Vec<Node>,
    keys: Vec<Key>,
    /// The events of each simulated second, in the order they were scheduled: a time wheel,
    /// so that tens of millions of events take seconds.
    wheel: Vec<Vec<(f64, Kind)>>,
    next_id: u64,
    per_second: Vec<u64>,
    per_minute: Vec<u64>,
    refreshes_per_minute: Vec<u64>,
    throttled: u64,
    failed_pulls: u64,
}

const MARGIN: f64 = 300.0;
const COUNT_FROM: f64 = DAY;

impl Fleet<'_> {
    fn push(&mut self, at: f64, kind: Kind) {
        if let Some(second) = self.wheel.get_mut(at as usize) {
            second.push((at, kind));
        }
    }

    fn schedule(&mut self, key: usize, at: f64) {
        let state = &mut self.keys[key];
        state.generation += 1;
        state.scheduled = at;
        let generation = state.generation;
        self.push(
            at,
            Kind::Attempt {
                key: key as u32,
                generation,
            },
        );
    }

    /// A new machine at `node`, its identities pulling within the pool's rise.
    fn start_node(&mut self, node: usize, at: f64) {
        self.next_id += 1;
        self.nodes[node] = Node::default();
        // A new machine id: the node's refresh points are its own.
        let name = format!("machine-{:016x}", self.next_id);
        for identity in 0..IDENTITIES {
            let key = node * IDENTITIES + identity;
            let token_key = icp_core::TokenKey {
                identity: format!("sa=team-{identity}/app"),
                scope: "fleet".into(),
            };
            self.keys[key] = Key {
                spread: refresh::spread(&name, "fleet", &token_key),
                ..Key::default()
            };
            let first = at + self.rng.unit() * POOL_RISE;
            self.schedule(key, first);
        }
    }

    /// Counts a call at `at` (a `refresh` of a token the node has), and says whether the
    /// quota lets it through.
    fn count(&mut self, at: f64, refresh: bool) -> bool {
        let second = at as usize;
        if second >= self.per_second.len() {
            return true;
        }
        let minute = second / 60;
        let used = if self.api.per == 1 {
            self.per_second[second]
        } else {
            self.per_minute[minute]
        };
        self.per_second[second] += 1;
        self.per_minute[minute] += 1;
        if refresh {
            self.refreshes_per_minute[minute] += 1;
        }
        used < self.api.quota
    }

    fn attempt(&mut self, key: usize, at: f64) {
        let node = key / IDENTITIES;
        let valid = at < self.keys[key].expires - MARGIN;
        if valid && at < self.keys[key].refresh {
            return;
        }
        let counted = at >= COUNT_FROM;
        let paused = at < self.nodes[node].pause_until;
        let refresh = self.keys[key].expires > 0.0;
        if !paused && self.count(at, refresh) {
            let lifetime = self.api.lifetime;
            let spread = if self.spread {
                self.keys[key].spread
            } else {
                1.0
            };
            let state = &mut self.keys[key];
            state.expires = at + lifetime.as_secs_f64();
            state.refresh = at + refresh::offset(lifetime, spread).as_secs_f64();
            self.nodes[node].strikes = 0;
            let next = self.keys[key].refresh + self.rng.exp(PULL_MEAN);
            self.schedule(key, next);
            return;
        }
        if !paused {
            if counted {
                self.throttled += 1;
            }
            let jitter = self.rng.unit();
            let state = &mut self.nodes[node];
            state.strikes += 1;
            let length = pause::length(self.api.retry_after, state.strikes, jitter);
            state.pause_until = at + length.as_secs_f64();
        }
        if !valid && counted {
            self.failed_pulls += 1;
        }
        let next = self.nodes[node].pause_until + self.rng.exp(PULL_MEAN);
        self.schedule(key, next);
    }

    fn restart(&mut self, node: usize, at: f64) {
        for identity in 0..IDENTITIES {
            let key = node * IDENTITIES + identity;
            let pull = at + self.rng.exp(PULL_MEAN);
            let state = &self.keys[key];
            if state.refresh <= pull && pull < state.scheduled {
                self.schedule(key, pull);
            }
        }
    }

    fn run(api: &Api, nodes: usize, spread: bool) -> Load {
        let end = COUNT_FROM + DAYS as f64 * DAY;
        let mut fleet = Fleet {
            api,
            spread,
            rng: Rng(nodes as u64),
            nodes: vec![Node::default(); nodes],
            keys: vec![Key::default(); nodes * IDENTITIES],
            wheel: vec![Vec::new(); end as usize],
            next_id: 0,
            per_second: vec![0; end as usize],
            per_minute: vec![0; end as usize / 60 + 1],
            refreshes_per_minute: vec![0; end as usize / 60 + 1],
            throttled: 0,
            failed_pulls: 0,
        };
        for pool in (0..nodes).step_by(POOL) {
            let at = fleet.rng.unit() * RISE;
            for node in pool..(pool + POOL).min(nodes) {
                fleet.start_node(node, at);
            }
        }
        let pools_per_day = ((nodes as f64 * CHURN) / POOL as f64).ceil() as usize;
        let replaced = ((nodes as f64 * CHURN) as usize).div_ceil(pools_per_day.max(1));
        for day in 0..=DAYS {
            let day_start = day as f64 * DAY;
            for _ in 0..pools_per_day {
                let at = day_start + RISE + fleet.rng.unit() * DAY;
                let first = (fleet.rng.next() % nodes as u64) as usize;
                for offset in 0..replaced.min(nodes) {
                    let node = (first + offset) % nodes;
                    fleet.push(at, Kind::Replace { node: node as u32 });
                }
            }
            for node in 0..nodes {
                let at = day_start + RISE + fleet.rng.unit() * DAY;
                fleet.push(at, Kind::Restart { node: node as u32 });
            }
        }
        for second in 0..fleet.wheel.len() {
            let mut next = 0;
            while let Some(&(at, kind)) = fleet.wheel[second].get(next) {
                next += 1;
                match kind {
                    Kind::Attempt { key, generation } => {
                        if fleet.keys[key as usize].generation == generation {
                            fleet.attempt(key as usize, at);
                        }
                    }
                    Kind::Replace { node } => fleet.start_node(node as usize, at),
                    Kind::Restart { node } => fleet.restart(node as usize, at),
                }
            }
            fleet.wheel[second] = Vec::new();
        }
        let first_second = COUNT_FROM as usize;
        let minutes = &fleet.per_minute[first_second / 60..];
        Load {
            mean_per_minute: minutes.iter().sum::<u64>() as f64 / minutes.len() as f64,
            peak_per_minute: minutes.iter().copied().max().unwrap_or_default(),
            peak_per_second: fleet.per_second[first_second..]
                .iter()
                .copied()
                .max()
                .unwrap_or_default(),
            peak_refreshes_per_minute: fleet.refreshes_per_minute[first_second / 60..]
                .iter()
                .copied()
                .max()
                .unwrap_or_default(),
            throttled: fleet.throttled,
            failed_pulls: fleet.failed_pulls,
        }
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("node counts"))
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 5000, 15000]
    } else {
        sizes
    };
    println!(
        "{IDENTITIES} service accounts per node, pods of each starting every {}s per node, {}% of nodes replaced per day in pools of {POOL} (2 min rise), kubelets restarted daily; counted over {DAYS} days",
        PULL_MEAN as u64,
        (CHURN * 100.0) as u64
    );
    println!();
    println!(
        "| API (quota) | nodes | refresh | mean calls/min | peak calls/min | peak calls/s | peak / quota | peak refreshes/min | throttled calls | pulls with no token |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for api in APIS {
        for &nodes in &sizes {
            for spread in [false, true] {
                let load = Fleet::run(api, nodes, spread);
                let peak = if api.per == 1 {
                    load.peak_per_second
                } else {
                    load.peak_per_minute
                };
                println!(
                    "| {} | {nodes} | {} | {:.0} | {} | {} | {:.0}% | {} | {} | {} |",
                    api.name,
                    if spread {
                        "spread (75%..expiry-5m)"
                    } else {
                        "at expiry-5m"
                    },
                    load.mean_per_minute,
                    load.peak_per_minute,
                    load.peak_per_second,
                    peak as f64 * 100.0 / api.quota as f64,
                    load.peak_refreshes_per_minute,
                    load.throttled,
                    load.failed_pulls,
                );
            }
        }
    }
}
