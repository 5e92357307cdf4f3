//! The ECR backend through the built binary: `get` and plugin mode against moto's server
//! (static keys, web identity, an assumed role from a rule), the cache duration from a
//! real expiry, ECR Public, errors, look-alike hosts that must cause no token request, a
//! pull-through proxy rule, and the `ecr-credential-provider` drop-in name; the kubelet's
//! service-account-token mode in `ecr/service_account.rs`, EKS Pod Identity in
//! `ecr/pod_identity.rs`.

use crate::common;
#[path = "ecr/pod_identity.rs"]
mod pod_identity;
#[path = "ecr/service_account.rs"]
mod service_account;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{API_VERSIONS, Plugin, request};
use icp_test_kit::aws::{self, Fake, Reply, aws_error, ecr_answer, moto};

const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1";

/// `get IMAGE` without the token cache, with moto as ECR and STS and these variables.
fn get_from_moto(image: &str, args: &[&str], vars: &[(&str, &str)]) -> common::Run {
    let mut all = vec!["get", image, "--no-cache"];
    all.extend_from_slice(args);
    let mut plugin = Plugin::new(all)
        .env("AWS_ENDPOINT_URL_ECR", moto())
        .env("AWS_ENDPOINT_URL_STS", moto());
    for (name, value) in vars {
        plugin = plugin.env(name, value);
    }
    plugin.run()
}

const STATIC_KEYS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIDBINARYTEST"),
    ("AWS_SECRET_ACCESS_KEY", "binary-test-secret"),
];

fn auth_of(response: &serde_json::Value, host: &str) -> (String, String) {
    let entry = &response["auth"][host];
    (
        entry["username"].as_str().unwrap_or_default().to_owned(),
        entry["password"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn get_with_static_keys_against_moto() {
    let response = get_from_moto(IMAGE, &[], STATIC_KEYS).json();
    assert_eq!(response["apiVersion"], API_VERSIONS[0]);
    assert_eq!(response["kind"], "CredentialProviderResponse");
    assert_eq!(response["cacheKeyType"], "Registry");
    // moto states an expiry in 2015: already expired, so nothing may cache it.
    assert_eq!(response["cacheDuration"], "0s");
    assert_eq!(response["auth"].as_object().unwrap().len(), 1);
    assert_eq!(
        auth_of(&response, HOST),
        ("AWS".into(), "123456789012-auth-token".into())
    );
}

#[test]
fn no_secret_reaches_stderr_at_any_verbosity() {
    for verbosity in ["-v", "-vv", "-vvv"] {
        let run = get_from_moto(IMAGE, &[verbosity], STATIC_KEYS);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stderr.contains("ecr"),
            "{verbosity} logs something: {}",
            run.stderr
        );
        for secret in [
            "123456789012-auth-token",
            "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu",
            "binary-test-secret",
        ] {
            assert!(
                !run.stderr.contains(secret),
                "{verbosity} leaks {secret}: {}",
                run.stderr
            );
        }
    }
}

#[test]
fn plugin_mode_answers_in_the_request_api_version() {
    for api_version in API_VERSIONS {
        let mut plugin = Plugin::new(["--no-cache"])
            .env("AWS_ENDPOINT_URL_ECR", moto())
            .stdin(request(api_version, &format!("{HOST}/team/app")));
        for (name, value) in STATIC_KEYS {
            plugin = plugin.env(name, value);
        }
        let response = plugin.run().json();
        assert_eq!(response["apiVersion"], api_version);
        assert_eq!(auth_of(&response, HOST).1, "123456789012-auth-token");
    }
}

#[test]
fn web_identity_against_moto() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYSJ9.c2ln").unwrap();
    let vars = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/irsa-puller"),
    ];
    let response = get_from_moto(IMAGE, &[], &vars).json();
    assert_eq!(auth_of(&response, HOST).1, "111122223333-auth-token");
}

#[test]
fn a_rule_role_is_assumed_first() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - matchImages: ['*.dkr.ecr.*.amazonaws.com']\n    provider: ecr\n    ecr:\n      roleArn: arn:aws:iam::444455556666:role/puller\n",
    )
    .unwrap();
    let response = get_from_moto(IMAGE, &["--config", rules.to_str().unwrap()], STATIC_KEYS).json();
    assert_eq!(auth_of(&response, HOST).1, "444455556666-auth-token");
}

/// `get` with ECR and ECR Public pointed at `fake`.
fn get_from_fake(fake: &Fake, image: &str, args: &[&str]) -> common::Run {
    let mut all = vec!["get", image, "--no-cache"];
    all.extend_from_slice(args);
    let mut plugin = Plugin::new(all)
        .env("AWS_ENDPOINT_URL_ECR", &fake.url)
        .env("AWS_ENDPOINT_URL_ECR_PUBLIC", &fake.url)
        .env("AWS_ENDPOINT_URL_STS", &fake.url);
    for (name, value) in STATIC_KEYS {
        plugin = plugin.env(name, value);
    }
    plugin.run()
}

/// Seconds in a duration as the binary prints it: `11h55m0s`, `4m59s`, `0s`.
fn seconds(duration: &str) -> u64 {
    let mut total = 0;
    let mut number = 0;
    for c in duration.chars() {
        match c {
            '0'..='9' => number = number * 10 + u64::from(c.to_digit(10).unwrap()),
            'h' => (total, number) = (total + number * 3600, 0),
            'm' => (total, number) = (total + number * 60, 0),
            's' => (total, number) = (total + number, 0),
            _ => panic!("unexpected duration {duration:?}"),
        }
    }
    total
}

#[test]
fn the_cache_duration_is_what_remains_of_the_token_less_five_minutes() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let twelve_hours = 12 * 3600;
    let fake = Fake::start(move |_, _| ecr_answer("AWS:p", now + twelve_hours));
    let response = get_from_fake(&fake, IMAGE, &[]).json();
    let cached = seconds(response["cacheDuration"].as_str().unwrap());
    let expected = twelve_hours - 5 * 60;
    // Its refresh point: from 75% of its life on (the window of crate::refresh).
    assert!(
        (twelve_hours * 3 / 4 - 120..=expected).contains(&cached),
        "{cached}s for a token with 12h left"
    );
    let expired = Fake::start(move |_, _| ecr_answer("AWS:p", now - 60));
    let response = get_from_fake(&expired, IMAGE, &[]).json();
    assert_eq!(response["cacheDuration"], "0s");
    assert_eq!(
        auth_of(&response, HOST).1,
        "p",
        "an expired token is still answered"
    );
}

#[test]
fn an_expiry_centuries_away_is_answered_with_a_duration_the_kubelet_reads() {
    for stated in ["1e11", "100000000000", "9.2e18"] {
        let fake = Fake::start(move |_, _| {
            let token = aws::base64("AWS:p");
            Reply::Respond(
                200,
                aws::AMZ_JSON,
                format!(
                    r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{stated}}}]}}"#
                ),
            )
        });
        let run = get_from_fake(&fake, IMAGE, &[]);
        let observed = common::kubelet::read(API_VERSIONS[0], IMAGE, run.code, &run.stdout)
            .unwrap_or_else(|e| panic!("{stated}: the kubelet refuses the answer: {e}"));
        assert_eq!(observed.credentials, [("AWS".to_owned(), "p".to_owned())]);
        let cached = seconds(run.json()["cacheDuration"].as_str().unwrap());
        assert!(cached <= 24 * 3600, "{stated}: {cached}s");
    }
}

#[test]
fn ecr_public_through_the_binary() {
    let fake = Fake::start(|request, _| {
        let token = aws::base64("AWS:public-password");
        match request.header("x-amz-target") {
            Some("SpencerFrontendService.GetAuthorizationToken") => Reply::Respond(
                200,
                aws::AMZ_JSON,
                format!(
                    r#"{{"authorizationData":{{"authorizationToken":"{token}","expiresAt":1}}}}"#
                ),
            ),
            _ => aws_error(400, "UnknownOperationException", "not ECR Public"),
        }
    });
    let response = get_from_fake(&fake, "public.ecr.aws/team/app:v1", &[]).json();
    assert_eq!(
        auth_of(&response, "public.ecr.aws"),
        ("AWS".into(), "public-password".into())
    );
}

#[test]
fn errors_are_one_line_naming_the_cause() {
    let no_credentials = Plugin::new(["get", IMAGE, "--no-cache"])
        .env("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:9")
        .run();
    no_credentials.assert_error(
        1,
        "no AWS credentials found (looked in: environment variables,",
    );
    assert!(
        no_credentials.stderr.len() < 250,
        "one short line: {}",
        no_credentials.stderr
    );

    let throttling = Fake::start(|_, _| aws_error(400, "ThrottlingException", "Rate exceeded"));
    get_from_fake(&throttling, IMAGE, &[])
        .assert_error(1, "throttled by ECR (gave up after 3 attempts)");
    assert_eq!(throttling.count(), 3);

    let denied = Fake::start(|_, _| aws_error(400, "AccessDeniedException", "not authorized"));
    get_from_fake(&denied, IMAGE, &[])
        .assert_error(1, "access denied by ECR: AccessDeniedException");
    assert_eq!(denied.count(), 1);
}

#[test]
fn look_alike_hosts_get_no_token_and_cause_no_request() {
    let fake = Fake::start(|_, _| ecr_answer("AWS:must-not-leak", 4_000_000_000));
    let hostile = [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example/app",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:8443/app",
        "evil.dkr.ecr.us-east-1.amazonaws.com/app",
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com/app",
        "12345678901x.dkr.ecr.us-east-1.amazonaws.com/app",
        "x.123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com/app",
        "123456789012.dkr.ecr.moon-base-1.amazonaws.com/app",
        "123456789012.dkr.ecr-fipsy.us-east-1.amazonaws.com/app",
        "123456789012.dkr-ecr.us-east-1.on.aws.evil.example/app",
        "public.ecr.aws.evil.example/app",
        "evil.public.ecr.aws/app",
        "ecr-public.aws.com:444/app",
    ];
    for image in hostile {
        let response = get_from_fake(&fake, image, &[]).json();
        let auth = response["auth"].as_object().map_or(0, |auth| auth.len());
        assert_eq!(auth, 0, "{image}: {response}");
    }
    assert_eq!(fake.count(), 0);
}

#[test]
fn a_rule_region_serves_a_pull_through_proxy_host() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - matchImages: ['mirror.corp.example']\n    provider: ecr\n    ecr:\n      region: ap-south-1\n",
    )
    .unwrap();
    let fake = Fake::start(|_, _| ecr_answer("AWS:mirror-password", 4_000_000_000));
    let config = ["--config", rules.to_str().unwrap()];
    let response = get_from_fake(&fake, "mirror.corp.example/team/app", &config).json();
    assert_eq!(
        auth_of(&response, "mirror.corp.example").1,
        "mirror-password"
    );
    let authorization = fake.requests()[0]
        .header("authorization")
        .unwrap()
        .to_owned();
    assert!(
        authorization.contains("/ap-south-1/ecr/aws4_request"),
        "{authorization}"
    );
}

#[test]
fn check_config_names_a_wrong_ecr_section() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - matchImages: ['*.dkr.ecr.*.amazonaws.com']\n    provider: ecr\n    ecr:\n      roleArn: arn:aws:iam::42:role/x\n  - matchImages: ['mirror.corp.example']\n    provider: ecr\n    ecr:\n      regoin: eu-west-1\n",
    )
    .unwrap();
    let run = Plugin::new(["check-config", "--config", rules.to_str().unwrap()]).run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("ecr.roleArn"), "{}", run.stderr);
    assert!(run.stderr.contains("regoin"), "{}", run.stderr);
}

/// The binary under the official provider's name, in a directory of its own.
fn drop_in() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ecr-credential-provider");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_image-credential-provider"), &link).unwrap();
    (dir, link)
}

#[test]
fn drop_in_answers_with_no_arguments_in_the_request_api_version() {
    let (_dir, program) = drop_in();
    for api_version in API_VERSIONS {
        let mut plugin = Plugin::at(&program, Vec::<&str>::new())
            .env("AWS_ENDPOINT_URL_ECR", moto())
            .stdin(request(api_version, &format!("{HOST}/team/app")));
        for (name, value) in STATIC_KEYS {
            plugin = plugin.env(name, value);
        }
        let response = plugin.run().json();
        assert_eq!(response["apiVersion"], api_version);
        assert_eq!(response["cacheKeyType"], "Registry");
        assert_eq!(
            auth_of(&response, HOST),
            ("AWS".into(), "123456789012-auth-token".into())
        );
    }
}

#[test]
fn drop_in_version_and_look_alikes() {
    let (_dir, program) = drop_in();
    let version = Plugin::at(&program, ["--version"]).run();
    assert_eq!(version.code, 0);
    assert!(
        version
            .stdout
            .starts_with("ecr-credential-provider version v"),
        "{}",
        version.stdout
    );
    let fake = Fake::start(|_, _| ecr_answer("AWS:must-not-leak", 4_000_000_000));
    let look_alike = "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example/app";
    let mut plugin = Plugin::at(&program, Vec::<&str>::new())
        .env("AWS_ENDPOINT_URL_ECR", &fake.url)
        .stdin(request(API_VERSIONS[0], look_alike));
    for (name, value) in STATIC_KEYS {
        plugin = plugin.env(name, value);
    }
    let response = plugin.run().json();
    assert!(
        response["auth"]
            .as_object()
            .is_none_or(|auth| auth.is_empty()),
        "{response}"
    );
    assert_eq!(fake.count(), 0);
    let usage = Plugin::at(&program, ["--image", "x"]).run();
    usage.assert_error(2, "unknown argument");
}

#[test]
fn a_hung_ecr_is_abandoned_inside_the_kubelet_minute() {
    let fake = Fake::start(|_, _| Reply::Hang);
    let started = std::time::Instant::now();
    get_from_fake(&fake, IMAGE, &[]).assert_error(1, "timeout");
    let attempts = fake.count();
    assert!((1..=3).contains(&attempts), "{attempts} attempts");
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the kubelet would have killed it"
    );
}
