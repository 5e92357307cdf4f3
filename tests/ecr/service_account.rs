//! The ECR backend through the built binary in the kubelet's service-account-token mode,
//! every answer read by the model of the kubelet (`cacheType: ServiceAccount`, audience
//! `sts.amazonaws.com`, the role annotation passed on): the pod's own token exchanged for
//! the annotation's role (moto, and the loopback STS of `icp_test_kit::aws::sts`, which grants a role only to
//! the tokens registered for it); the node's identity without the annotation; tokens shared
//! by the pods of one service account and by no one else; 16 concurrent pods; no token on
//! stderr or in the cache; refusals named by service account; the drop-in's
//! `AWS_ECR_ROLE_ARN`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::kubelet::service_account::{CacheType, Kubelet, Outcome, Pod, TokenAttributes};
use crate::common::{API_VERSIONS, Plugin, Run, pod};
use icp_test_kit::aws::moto;
use icp_test_kit::aws::sts::{Aws, ECR_TOKEN_SECONDS, ecr_password, sts_secrets};

const AUDIENCE: &str = "sts.amazonaws.com";
const ANNOTATION: &str = "eks.amazonaws.com/ecr-role-arn";
const REGISTRY: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1";
const ROLE_A: &str = "arn:aws:iam::111122223333:role/puller-a";
const ROLE_B: &str = "arn:aws:iam::111122223333:role/puller-b";
const NODE_KEY_ID: &str = "AKIDNODEKEY";
const NODE_SECRET: &str = "node-secret-access-key";

/// The kubelet's `tokenAttributes` for this binary as the README configures it.
fn attributes() -> TokenAttributes {
    TokenAttributes {
        audience: AUDIENCE.into(),
        cache_type: CacheType::ServiceAccount,
        require_service_account: false,
        required_keys: Vec::new(),
        optional_keys: vec![ANNOTATION.into()],
    }
}

fn kubelet() -> Kubelet {
    Kubelet::new(API_VERSIONS[0], Some(attributes()))
}

/// The binary in plugin mode at `-vvv` with the node's static keys, STS and ECR at `url`,
/// caching in `cache` (`None`: `--no-cache`).
fn plugin(url: &str, cache: Option<&Path>) -> Plugin {
    let mut args: Vec<std::ffi::OsString> = vec!["-vvv".into()];
    match cache {
        Some(dir) => args.extend(["--cache-dir".into(), dir.as_os_str().to_owned()]),
        None => args.push("--no-cache".into()),
    }
    Plugin::new(args)
        .env("AWS_ACCESS_KEY_ID", NODE_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", NODE_SECRET)
        .env("AWS_ENDPOINT_URL_STS", url)
        .env("AWS_ENDPOINT_URL_ECR", url)
}

/// One pull of `image` for `pod` by a kubelet, the plugin run as `plugin` when the kubelet
/// runs it; `grant` lets the pod's token assume the pod's annotated role at `aws` first,
/// as the role's trust policy would. Returns what the kubelet ended up with, and the run.
fn pull(
    kubelet: &mut Kubelet,
    image: &str,
    pod: &Pod,
    grant: Option<&Aws>,
    plugin: Plugin,
) -> (Outcome, Option<Run>) {
    let run = RefCell::new(None);
    let outcome = kubelet.pull(image, Some(pod), |sent| {
        if let (Some(aws), Some(token)) = (grant, &sent.token) {
            let account = pod.service_account.as_ref().unwrap();
            if let Some(role) = account.annotations.get(ANNOTATION) {
                aws.grant(token, role);
            }
        }
        let done = plugin.stdin(sent.stdin.clone()).run();
        let answer = (done.code, done.stdout.clone());
        *run.borrow_mut() = Some(done);
        answer
    });
    (outcome, run.into_inner())
}

/// The one credential the kubelet pulls `IMAGE` with, after checking the kubelet took the
/// answer.
fn credential(outcome: &Outcome) -> (String, String) {
    assert_eq!(outcome.error, None);
    assert!(outcome.token_requested && outcome.plugin_ran);
    assert_eq!(outcome.credentials.len(), 1, "{:?}", outcome.credentials);
    outcome.credentials[0].clone()
}

/// Asserts that no part of any of `tokens`, no STS secret of the first `sts_calls`
/// exchanges and no node secret is in `text`.
fn assert_no_secret(text: &str, tokens: &[String], sts_calls: usize, what: &str) {
    for token in tokens {
        for part in token.split('.') {
            assert!(!text.contains(part), "{what} holds a token part: {text}");
        }
    }
    for n in 1..=sts_calls {
        for secret in sts_secrets(n) {
            assert!(!text.contains(&secret), "{what} holds {secret}: {text}");
        }
    }
    assert!(!text.contains(NODE_SECRET), "{what}: {text}");
}

/// Every file under `dir`, as text.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(files(&path));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            all.push((path, text));
        }
    }
    all
}

#[test]
fn moto_gives_the_token_of_the_annotated_role() {
    let pod = pod("team-a", "web-1", "app", &[(ANNOTATION, ROLE_A)]);
    let (outcome, _) = pull(&mut kubelet(), IMAGE, &pod, None, plugin(moto(), None));
    // moto names the account of the credentials that asked: the role's, not the node's.
    assert_eq!(
        credential(&outcome),
        ("AWS".into(), "111122223333-auth-token".into())
    );
}

#[test]
fn the_pod_token_is_exchanged_for_the_annotated_role() {
    let aws = Aws::start(Duration::ZERO);
    let pod = pod("team-a", "web-1", "app", &[(ANNOTATION, ROLE_A)]);
    let (outcome, run) = pull(
        &mut kubelet(),
        IMAGE,
        &pod,
        Some(&aws),
        plugin(&aws.url, None),
    );
    assert_eq!(
        credential(&outcome),
        ("AWS".into(), ecr_password(1, ROLE_A))
    );
    let sent = outcome.sent.unwrap();
    let exchanges = aws.exchanges();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(Some(&exchanges[0].token), sent.token.as_ref());
    assert_eq!(exchanges[0].role_arn, ROLE_A);
    assert_eq!(exchanges[0].session_name, "team-a.app");
    assert!(!exchanges[0].signed);
    assert_eq!(aws.ecr_principals(), [ROLE_A]);
    // The session lives an hour, the ECR token 12: the answer follows the token, asking
    // again at its refresh point, from 75% of its life to 5 minutes before its expiry.
    let response = run.unwrap().json();
    assert_eq!(response["cacheKeyType"], "Registry");
    let cached = super::seconds(response["cacheDuration"].as_str().unwrap());
    let expected = ECR_TOKEN_SECONDS - 5 * 60;
    assert!(
        (ECR_TOKEN_SECONDS * 3 / 4 - 120..=expected).contains(&cached),
        "{cached}s"
    );
}

#[test]
fn without_the_annotation_or_the_token_the_node_identity_is_used() {
    let aws = Aws::start(Duration::ZERO);
    let bare = pod(
        "team-a",
        "web-1",
        "app",
        &[("other.example/annotation", "x")],
    );
    let (outcome, _) = pull(
        &mut kubelet(),
        IMAGE,
        &bare,
        Some(&aws),
        plugin(&aws.url, None),
    );
    assert_eq!(
        credential(&outcome),
        (
            "AWS".into(),
            ecr_password(1, &format!("node:{NODE_KEY_ID}"))
        )
    );
    // A kubelet that sends no token (no tokenAttributes).
    let mut plain = Kubelet::new(API_VERSIONS[0], None);
    let annotated = pod("team-a", "web-2", "app", &[(ANNOTATION, ROLE_A)]);
    let outcome = plain.pull(IMAGE, Some(&annotated), |sent| {
        assert_eq!(sent.token, None);
        let run = plugin(&aws.url, None).stdin(sent.stdin.clone()).run();
        (run.code, run.stdout)
    });
    assert_eq!(outcome.credentials.len(), 1);
    assert_eq!(aws.sts_calls(), 0);
    let node = format!("node:{NODE_KEY_ID}");
    assert_eq!(aws.ecr_principals(), [node.clone(), node]);
}

#[test]
fn tokens_are_shared_by_the_pods_of_one_service_account_and_by_no_one_else() {
    let aws = Aws::start(Duration::ZERO);
    let cache = tempfile::tempdir().unwrap();
    let mut tokens = Vec::new();
    let mut stderr = String::new();
    // Each pull by a kubelet of its own, so that the kubelet's cache does not hide the
    // plugin's: what the plugin fetches is what is counted.
    let mut serve = |pod: &Pod| {
        let (outcome, run) = pull(
            &mut kubelet(),
            IMAGE,
            pod,
            Some(&aws),
            plugin(&aws.url, Some(cache.path())),
        );
        tokens.push(outcome.sent.as_ref().unwrap().token.clone().unwrap());
        stderr.push_str(&run.unwrap().stderr);
        let password = credential(&outcome).1;
        (password, aws.sts_calls(), aws.ecr_calls())
    };
    let a = [(ANNOTATION, ROLE_A)];
    let node = format!("node:{NODE_KEY_ID}");
    let steps = [
        (
            pod("team-a", "web-1", "app", &a),
            (ecr_password(1, ROLE_A), 1, 1),
        ),
        (
            pod("team-a", "web-2", "app", &a),
            (ecr_password(1, ROLE_A), 1, 1),
        ),
        (
            pod("team-b", "web-1", "app", &a),
            (ecr_password(2, ROLE_A), 2, 2),
        ),
        (
            pod("team-a", "job-1", "batch", &a),
            (ecr_password(3, ROLE_A), 3, 3),
        ),
        (
            pod("team-a", "web-3", "app", &[(ANNOTATION, ROLE_B)]),
            (ecr_password(4, ROLE_B), 4, 4),
        ),
        (
            pod("team-a", "web-4", "app", &[]),
            (ecr_password(5, &node), 4, 5),
        ),
        (
            pod("team-c", "web-1", "other", &[]),
            (ecr_password(5, &node), 4, 5),
        ),
        (
            pod("team-a", "web-5", "app", &a),
            (ecr_password(1, ROLE_A), 4, 5),
        ),
    ];
    for (pod, expected) in &steps {
        assert_eq!(&serve(pod), expected, "{}/{}", pod.namespace, pod.name);
    }
    assert!(
        stderr.contains("team-a/app"),
        "-vvv names the service account: {stderr}"
    );
    assert_no_secret(&stderr, &tokens, aws.sts_calls(), "stderr at -vvv");
    for (path, text) in files(cache.path()) {
        assert_no_secret(&text, &tokens, aws.sts_calls(), &path.display().to_string());
        for token in &tokens {
            for part in token.split('.') {
                assert!(!path.to_string_lossy().contains(part), "{}", path.display());
            }
        }
    }
}

/// Runs one pull for each of `pods` at once, each by a kubelet of its own and with its own
/// token; returns each pod's credential.
fn concurrent(aws: &Aws, pods: &[Pod], cache: Option<&Path>) -> Vec<(String, String)> {
    std::thread::scope(|scope| {
        let pulls: Vec<_> = pods
            .iter()
            .map(|pod| {
                scope.spawn(move || {
                    let plugin = plugin(&aws.url, cache);
                    let (outcome, run) = pull(&mut kubelet(), IMAGE, pod, Some(aws), plugin);
                    let token = outcome.sent.as_ref().unwrap().token.clone().unwrap();
                    assert_no_secret(&run.unwrap().stderr, &[token], pods.len(), "stderr");
                    credential(&outcome)
                })
            })
            .collect();
        pulls.into_iter().map(|p| p.join().unwrap()).collect()
    })
}

#[test]
fn sixteen_concurrent_pods_of_one_service_account_make_one_exchange() {
    let pods: Vec<Pod> = (0..16)
        .map(|i| {
            pod(
                "team-a",
                &format!("web-{i}"),
                "app",
                &[(ANNOTATION, ROLE_A)],
            )
        })
        .collect();

    let aws = Aws::start(Duration::from_millis(500));
    let cache = tempfile::tempdir().unwrap();
    let credentials = concurrent(&aws, &pods, Some(cache.path()));
    assert!(
        credentials
            .iter()
            .all(|c| *c == ("AWS".to_owned(), ecr_password(1, ROLE_A))),
        "{credentials:?}"
    );
    assert_eq!(
        (aws.sts_calls(), aws.ecr_calls()),
        (1, 1),
        "one exchange and one registry token for 16 pods"
    );

    let uncached = Aws::start(Duration::from_millis(100));
    concurrent(&uncached, &pods, None);
    assert_eq!((uncached.sts_calls(), uncached.ecr_calls()), (16, 16));
    let mut exchanged: Vec<String> = uncached.exchanges().into_iter().map(|e| e.token).collect();
    exchanged.sort();
    exchanged.dedup();
    assert_eq!(exchanged.len(), 16, "each pod's own token was exchanged");
}

#[test]
fn a_rejected_token_is_one_line_naming_the_service_account() {
    let aws = Aws::start(Duration::ZERO);
    let pod = pod("team-a", "web-1", "app", &[(ANNOTATION, ROLE_A)]);
    // No grant: the role's trust policy does not let this token in.
    let (outcome, run) = pull(&mut kubelet(), IMAGE, &pod, None, plugin(&aws.url, None));
    assert!(outcome.credentials.is_empty());
    assert_eq!(outcome.error.as_deref(), Some("exit status 1"));
    let run = run.unwrap();
    let last = run.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "error: ecr backend (rule 0): service account team-a/app, annotation \
         eks.amazonaws.com/ecr-role-arn = \"arn:aws:iam::111122223333:role/puller-a\": \
         access denied by STS: AccessDenied: Not authorized to perform \
         sts:AssumeRoleWithWebIdentity",
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
    let token = outcome.sent.unwrap().token.unwrap();
    assert_no_secret(&run.stderr, &[token], 0, "stderr");
    assert_eq!((aws.sts_calls(), aws.ecr_calls()), (1, 0));

    // Without -v, the error is the only line.
    let throttled = Aws::start(Duration::ZERO);
    throttled.throttle();
    let quiet = Plugin::new(["--no-cache"])
        .env("AWS_ENDPOINT_URL_STS", &throttled.url)
        .env("AWS_ENDPOINT_URL_ECR", &throttled.url);
    let (_, run) = pull(&mut kubelet(), IMAGE, &pod, Some(&throttled), quiet);
    run.unwrap().assert_error(
        1,
        "service account team-a/app, annotation eks.amazonaws.com/ecr-role-arn = \
         \"arn:aws:iam::111122223333:role/puller-a\": throttled by STS (gave up after 3 attempts): \
         Throttling: Rate exceeded",
    );
    assert_eq!((throttled.sts_calls(), throttled.ecr_calls()), (3, 0));
}

/// The binary under the official provider's name, in a directory of its own.
fn drop_in() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ecr-credential-provider");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_image-credential-provider"), &link).unwrap();
    (dir, link)
}

#[test]
fn the_drop_in_exchanges_for_aws_ecr_role_arn_when_the_annotation_is_missing() {
    let (_dir, program) = drop_in();
    let aws = Aws::start(Duration::ZERO);
    let drop_in = |role: &str| {
        Plugin::at(&program, ["--v=6"])
            .env("AWS_ACCESS_KEY_ID", NODE_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", NODE_SECRET)
            .env("AWS_ENDPOINT_URL_STS", &aws.url)
            .env("AWS_ENDPOINT_URL_ECR", &aws.url)
            .env("AWS_ECR_ROLE_ARN", role)
    };
    let bare = pod("team-a", "web-1", "app", &[]);
    let outcome = kubelet().pull(IMAGE, Some(&bare), |sent| {
        // The default role's trust policy lets this pod's token in.
        aws.grant(sent.token.as_ref().unwrap(), ROLE_B);
        let run = drop_in(ROLE_B).stdin(sent.stdin.clone()).run();
        (run.code, run.stdout)
    });
    assert_eq!(credential(&outcome).1, ecr_password(1, ROLE_B));
    let annotated = pod("team-a", "web-2", "app", &[(ANNOTATION, ROLE_A)]);
    let (outcome, _) = pull(
        &mut kubelet(),
        IMAGE,
        &annotated,
        Some(&aws),
        drop_in(ROLE_B),
    );
    assert_eq!(
        credential(&outcome).1,
        ecr_password(2, ROLE_A),
        "the annotation wins"
    );
    let roles: Vec<String> = aws.exchanges().into_iter().map(|e| e.role_arn).collect();
    assert_eq!(roles, [ROLE_B, ROLE_A]);

    let invalid = drop_in("arn:aws:iam::1:role/x")
        .stdin(crate::common::request(
            API_VERSIONS[0],
            &format!("{REGISTRY}/app"),
        ))
        .run();
    invalid.assert_error(
        1,
        "AWS_ECR_ROLE_ARN \"arn:aws:iam::1:role/x\" is not an IAM role ARN",
    );
}
