//! Fleet scale, shown with the ECR backend against a loopback fake that counts and can
//! throttle `GetAuthorizationToken`: the refresh point of a token is the same in every
//! process of a node and tells the kubelet when to ask again; a throttled API is paused
//! for every process of the node (64 concurrent pulls send no request during the pause);
//! a cached token is answered during the pause, and only to its own identity.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{API_VERSIONS, Plugin, Run, request};
use icp_test_kit::aws::counting::{FakeAws, password};

const REGISTRY: &str = "111122223333.dkr.ecr.us-east-1.amazonaws.com";
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
const ROLE: &str = "arn:aws:iam::111122223333:role/puller";
/// The attempts of one ECR fetch (the SDK's own retries of a throttled call).
const ATTEMPTS: usize = 3;

fn ecr(fake: &FakeAws, cache: &Path) -> Plugin {
    Plugin::new(["--cache-dir".as_ref(), cache.as_os_str()])
        .env("AWS_ACCESS_KEY_ID", "AKIAFAKEFLEETTEST")
        .env("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key")
        .env("AWS_ENDPOINT_URL_ECR", &fake.url)
        .env("AWS_ENDPOINT_URL_STS", &fake.url)
}

fn pull(fake: &FakeAws, cache: &Path, image: &str) -> Run {
    ecr(fake, cache)
        .stdin(request(API_VERSIONS[0], &format!("{REGISTRY}/{image}")))
        .run()
}

/// The response's password for the registry and its `cacheDuration` in seconds.
fn answer(run: &Run) -> (String, u64) {
    let response = run.json();
    let password = response["auth"][REGISTRY]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let duration = response["cacheDuration"].as_str().unwrap();
    (password, go_seconds(duration))
}

/// Seconds of a Go duration as the plugin writes them: `10h52m3s`, `4m0s`, `59s`.
fn go_seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut number = 0;
    for c in text.chars() {
        match c {
            '0'..='9' => number = number * 10 + c.to_digit(10).unwrap() as u64,
            'h' => (total, number) = (total + number * 3600, 0),
            'm' => (total, number) = (total + number * 60, 0),
            's' => (total, number) = (total + number, 0),
            _ => panic!("{text}"),
        }
    }
    total
}

/// The files of `cache` ending in `suffix`.
fn files(cache: &Path, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

/// Sets field `field` of the one file of `cache` ending in `suffix` to `value`.
fn set(cache: &Path, suffix: &str, field: &str, value: u64) {
    let [path] = files(cache, suffix).try_into().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json[field] = value.into();
    std::fs::write(&path, json.to_string()).unwrap();
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_refresh_point_is_the_same_in_every_process_of_the_node() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Two processes that each fetch (two caches), and a third that reads the first's.
    let (_, first) = answer(&pull(&fake, one.path(), "app"));
    let (_, second) = answer(&pull(&fake, two.path(), "app"));
    let (_, hit) = answer(&pull(&fake, one.path(), "other"));
    assert_eq!(fake.ecr_calls(), 2);
    assert!(first.abs_diff(second) <= 2, "{first}s and {second}s");
    assert!(first.abs_diff(hit) <= 2, "{first}s and {hit}s");
    // The fake's tokens live 12 hours: the point is between 9h and 11h55m.
    assert!(
        (9 * 3600 - 2..=11 * 3600 + 55 * 60).contains(&first),
        "{first}s"
    );
    let refresh_at = |dir: &Path| {
        let [path] = files(dir, ".json").try_into().unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        json["refreshAt"].as_u64().unwrap()
    };
    assert!(refresh_at(one.path()).abs_diff(refresh_at(two.path())) <= 2);
}

#[test]
fn sixty_four_pulls_during_a_pause_send_no_request() {
    let fake = FakeAws::start(Duration::from_millis(50), 0);
    let cache = tempfile::tempdir().unwrap();
    fake.throttle(true);
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..64)
            .map(|i| {
                let (fake, cache) = (&fake, cache.path());
                scope.spawn(move || pull(fake, cache, &format!("app-{i}")))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        fake.ecr_calls(),
        ATTEMPTS,
        "one fetch (with its retries) for 64 processes"
    );
    for run in &runs {
        run.assert_error(
            1,
            "are paused on this node after throttling; the API may be tried again in ",
        );
        assert!(
            run.stderr.contains("ecr:aws:us-east-1:111122223333"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        runs.iter()
            .filter(|run| run.stderr.contains("ThrottlingException"))
            .count(),
        1,
        "the process that was throttled says by what"
    );
    assert_eq!(files(cache.path(), ".pause").len(), 1);
    // Still paused after the cloud has recovered: no request until the pause ends.
    fake.throttle(false);
    pull(&fake, cache.path(), "late").assert_error(1, "are paused on this node");
    assert_eq!(fake.ecr_calls(), ATTEMPTS);
    // Once it ends, the next pull fetches and lifts it.
    set(cache.path(), ".pause", "until", (unix_now() - 1) * 1000);
    let (token, _) = answer(&pull(&fake, cache.path(), "after"));
    assert_eq!(token, password(ATTEMPTS + 1));
    assert!(files(cache.path(), ".pause").is_empty(), "lifted");
}

#[test]
fn a_cached_token_is_answered_during_the_pause() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let cache = tempfile::tempdir().unwrap();
    let (token, _) = answer(&pull(&fake, cache.path(), "app"));
    assert_eq!(token, password(1));
    // Past its refresh point, still valid for hours: the next pull refreshes it, is
    // throttled, and answers it, for a minute or until the pause ends.
    set(cache.path(), ".json", "refreshAt", unix_now() - 60);
    fake.throttle(true);
    let run = pull(&fake, cache.path(), "app");
    let (served, ask_again) = answer(&run);
    assert_eq!(served, password(1));
    assert_eq!(fake.ecr_calls(), 1 + ATTEMPTS);
    assert!((15..=60).contains(&ask_again), "{ask_again}s");
    // Every pull during the pause is answered from the cache without a request.
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (fake, cache) = (&fake, cache.path());
                scope.spawn(move || pull(fake, cache, &format!("app-{i}")))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for run in &runs {
        assert_eq!(answer(run).0, password(1));
    }
    assert_eq!(fake.ecr_calls(), 1 + ATTEMPTS);
    // A token inside its safety margin is still answered while it is valid (as a stale
    // answer is), never past its expiry; an expired one is not answered at all.
    set(cache.path(), ".json", "expiresAt", unix_now() + 120);
    let (served, ask_again) = answer(&pull(&fake, cache.path(), "app"));
    assert_eq!(served, password(1));
    assert!(ask_again <= 120, "{ask_again}s");
    set(cache.path(), ".json", "expiresAt", unix_now() - 1);
    pull(&fake, cache.path(), "app").assert_error(1, "are paused on this node");
    assert_eq!(fake.ecr_calls(), 1 + ATTEMPTS);
}

#[test]
fn a_token_answered_during_a_pause_is_never_another_identitys() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let cache = tempfile::tempdir().unwrap();
    // Two service accounts whose pods assume the same role.
    let pull_as = |account: &str| {
        let pod = common::pod(
            "team",
            &format!("{account}-pod"),
            account,
            &[(ROLE_ANNOTATION, ROLE)],
        );
        let (stdin, _) =
            common::service_account_request(&format!("{REGISTRY}/app"), &pod, "sts.amazonaws.com");
        ecr(&fake, cache.path()).stdin(stdin).run()
    };
    assert_eq!(answer(&pull_as("a")).0, password(1));
    assert_eq!(answer(&pull_as("b")).0, password(2), "each fetches its own");
    assert_eq!(answer(&pull_as("a")).0, password(1));
    assert_eq!(fake.ecr_calls(), 2);
    // A third account of the same role during a pause: nothing of its own cached, so it
    // fails rather than get a's or b's token.
    for entry in files(cache.path(), ".json") {
        let mut json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
        json["refreshAt"] = (unix_now() - 60).into();
        std::fs::write(&entry, json.to_string()).unwrap();
    }
    fake.throttle(true);
    assert_eq!(answer(&pull_as("a")).0, password(1), "a's own, still valid");
    pull_as("c").assert_error(1, "are paused on this node");
    assert_eq!(answer(&pull_as("b")).0, password(2), "b's own, still valid");
}
