//! Stale-while-unavailable, through the binary: a cached ECR token inside its safety
//! margin is answered, briefly, while the loopback fake is down for a transient reason (a
//! 5xx, the network, a hang), never after a refusal, never once expired, and only to the
//! identity it was fetched for.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{API_VERSIONS, Plugin, Run, pod, request, service_account_request};
use icp_test_kit::aws::counting::{Down, FakeAws, password};

const IMAGE: &str = "111122223333.dkr.ecr.us-east-1.amazonaws.com/app";
const REGISTRY: &str = "111122223333.dkr.ecr.us-east-1.amazonaws.com";
/// A token lifetime just over the 5 minute safety margin: cached when fetched, inside
/// the margin (so refreshed) a few seconds later.
const JUST_OVER_THE_MARGIN: u64 = 303;
const ROLE_ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";

/// The binary set up for ECR against `fake` with static keys, caching in `cache`, its
/// audit log at `cache/../audit.log`.
fn ecr(endpoint: &str, cache: &Path, input: String) -> Plugin {
    Plugin::new([
        OsStr::new("--cache-dir"),
        cache.as_os_str(),
        OsStr::new("--audit-log"),
        audit_log(cache).as_os_str(),
    ])
    .env("AWS_ACCESS_KEY_ID", "AKIAFAKESTALETEST")
    .env("AWS_SECRET_ACCESS_KEY", "fake-secret-access-key")
    .env("AWS_ENDPOINT_URL_ECR", endpoint)
    .env("AWS_ENDPOINT_URL_STS", endpoint)
    .stdin(input)
}

fn audit_log(cache: &Path) -> PathBuf {
    cache.parent().unwrap().join("audit/audit.log")
}

fn node_request() -> String {
    request(API_VERSIONS[0], IMAGE)
}

/// The password and cacheDuration of a successful run.
fn answered(run: &Run) -> (String, String) {
    assert_eq!(run.code, 0, "{}", run.stderr);
    let response: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    (
        response["auth"][REGISTRY]["password"]
            .as_str()
            .unwrap()
            .to_owned(),
        response["cacheDuration"].as_str().unwrap().to_owned(),
    )
}

/// The last line of the audit log.
fn last_audit_line(cache: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(audit_log(cache)).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// Waits until a token fetched [`JUST_OVER_THE_MARGIN`] ago is inside its safety margin.
fn into_the_margin() {
    std::thread::sleep(Duration::from_millis(3500));
}

/// Sets the `expiresAt` of the one cache entry in `cache` to `seconds` from now (negative:
/// in the past).
fn set_expiry(cache: &Path, seconds: i64) {
    let entry = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json") && p.file_stem().unwrap().len() == 32)
        .expect("one cache entry");
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    value["expiresAt"] = (now + seconds).into();
    std::fs::write(&entry, value.to_string()).unwrap();
}

#[test]
fn a_valid_token_is_answered_briefly_while_the_cloud_fails_transiently_and_never_after_a_refusal() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    fake.token_lifetime(JUST_OVER_THE_MARGIN);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let (first, _) = answered(&ecr(&fake.url, &cache, node_request()).run());
    assert_eq!(first, password(1));
    into_the_margin();

    for status in [500, 503] {
        fake.go_down(Down::Status(status));
        let calls = fake.ecr_calls();
        let run = ecr(&fake.url, &cache, node_request()).run();
        assert_eq!(
            answered(&run),
            (password(1), "1m0s".to_owned()),
            "HTTP {status}: the cached token, for a minute"
        );
        assert!(fake.ecr_calls() > calls, "a refresh was tried");
        assert!(
            run.stderr.contains("WARN")
                && run.stderr.contains(
                    "refreshing the token failed (bad-response: ecr backend (rule 0): ECR error: "
                ),
            "a warning names the failure: {}",
            run.stderr
        );
        assert!(!run.stderr.contains(&password(1)), "{}", run.stderr);
        let line = last_audit_line(&cache);
        assert_eq!(line["cache"], "stale");
        assert_eq!(line["outcome"], "served");
        assert_eq!(line["error"], "bad-response");
        assert_eq!(line["transient"], true);
    }

    // The network: nothing listens on the endpoint any more.
    let run = ecr("http://127.0.0.1:9", &cache, node_request()).run();
    assert_eq!(answered(&run), (password(1), "1m0s".to_owned()));
    assert!(run.stderr.contains("(network: "), "{}", run.stderr);

    // A refusal is never answered with the cached token.
    for status in [403, 400] {
        fake.go_down(Down::Status(status));
        let run = ecr(&fake.url, &cache, node_request()).run();
        run.assert_error(1, "ecr backend (rule 0): ");
        assert!(!run.stderr.contains(&password(1)));
    }

    // Back up: a fresh token, cached until its refresh point: from 75% of its life to its
    // life less the margin.
    fake.token_lifetime(12 * 3600);
    fake.come_back();
    let (password_now, duration) = answered(&ecr(&fake.url, &cache, node_request()).run());
    assert_ne!(password_now, password(1));
    let seconds = crate::common::kubelet::go_duration_nanos(&duration).unwrap() / 1_000_000_000;
    assert!(
        (9 * 3600 - 60..=12 * 3600 - 300).contains(&seconds),
        "{duration}"
    );
    assert_eq!(last_audit_line(&cache)["cache"], "miss");
}

#[test]
fn a_stale_answer_never_outlives_the_token_and_an_expired_one_is_never_answered() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    answered(&ecr(&fake.url, &cache, node_request()).run());
    fake.go_down(Down::Status(500));

    set_expiry(&cache, 20);
    let (password_now, duration) = answered(&ecr(&fake.url, &cache, node_request()).run());
    assert_eq!(password_now, password(1));
    // What the token has left once the refresh (three tries of a 500) gave up.
    let seconds: u64 = duration.strip_suffix('s').unwrap().parse().unwrap();
    assert!(
        (10..=20).contains(&seconds),
        "no longer than the token's validity: {duration}"
    );

    set_expiry(&cache, -1);
    let run = ecr(&fake.url, &cache, node_request()).run();
    run.assert_error(1, "ECR error: ServerException");
    assert_eq!(last_audit_line(&cache)["outcome"], "error");
}

#[test]
fn a_hanging_cloud_times_out_and_the_cached_token_is_answered() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    fake.token_lifetime(JUST_OVER_THE_MARGIN);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    answered(&ecr(&fake.url, &cache, node_request()).run());
    into_the_margin();
    fake.go_down(Down::Hang);
    let run = ecr(&fake.url, &cache, node_request()).run();
    assert_eq!(answered(&run), (password(1), "1m0s".to_owned()));
    assert!(run.stderr.contains("(timeout: "), "{}", run.stderr);
}

#[test]
fn a_stale_token_is_answered_only_to_the_service_account_it_was_fetched_for() {
    let fake = FakeAws::start(Duration::ZERO, 0);
    fake.token_lifetime(JUST_OVER_THE_MARGIN);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let role = "arn:aws:iam::111122223333:role/shared";
    let team_a = pod("team-a", "app-0", "app", &[(ROLE_ANNOTATION, role)]);
    let team_b = pod("team-b", "app-0", "app", &[(ROLE_ANNOTATION, role)]);
    let asks = |pod| service_account_request(IMAGE, pod, "sts.amazonaws.com").0;
    let (first, _) = answered(&ecr(&fake.url, &cache, asks(&team_a)).run());
    assert_eq!(first, password(1));
    into_the_margin();
    fake.go_down(Down::Status(500));
    assert_eq!(
        answered(&ecr(&fake.url, &cache, asks(&team_a)).run()).0,
        password(1)
    );
    let run = ecr(&fake.url, &cache, asks(&team_b)).run();
    run.assert_error(1, "service account team-b/app");
    let run = ecr(&fake.url, &cache, node_request()).run();
    run.assert_error(1, "ECR error: ServerException");
    let line = last_audit_line(&cache);
    assert!(
        line["identity"]
            .as_str()
            .unwrap()
            .starts_with("aws;AWS_ACCESS_KEY_ID=AKIAFAKESTALETEST"),
        "{line}"
    );
}
