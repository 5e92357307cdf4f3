//! EKS Pod Identity (`ecr.podIdentity`) through the built binary, every answer read by the
//! model of the kubelet in service-account-token mode (`cacheType: ServiceAccount`,
//! audience `pods.eks.amazonaws.com`, no annotation): the pod's own token exchanged at the
//! loopback EKS Auth of `icp_test_kit::aws::eks_auth` for its association's role, the
//! node's identity for a service account with no association; tokens shared by the pods
//! of one service account and by no one else; 16 concurrent pods; no secret on stderr or
//! in the cache; refusals named by service account and cluster; `check-config`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::kubelet::service_account::{CacheType, Kubelet, Outcome, Pod, TokenAttributes};
use crate::common::{API_VERSIONS, Plugin, Run, pod};
use icp_test_kit::aws::sts::{Aws, SESSION_SECONDS, ecr_password, sts_secrets};

const AUDIENCE: &str = "pods.eks.amazonaws.com";
const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1";
const ROLE_A: &str = "arn:aws:iam::111122223333:role/puller-a";
const ROLE_B: &str = "arn:aws:iam::111122223333:role/puller-b";
const NODE_KEY_ID: &str = "AKIDNODEKEY";
const NODE_SECRET: &str = "node-secret-access-key";

fn kubelet() -> Kubelet {
    Kubelet::new(
        API_VERSIONS[0],
        Some(TokenAttributes {
            audience: AUDIENCE.into(),
            cache_type: CacheType::ServiceAccount,
            require_service_account: false,
            required_keys: Vec::new(),
            optional_keys: Vec::new(),
        }),
    )
}

/// A rules file serving ECR with EKS Pod Identity in cluster `prod`, written once (plugins
/// running at the same time read it).
fn rules(dir: &Path) -> PathBuf {
    let path = dir.join("rules.yaml");
    if !path.exists() {
        let staged = dir.join("rules.yaml.new");
        std::fs::write(
            &staged,
            "rules:\n  - matchImages: ['*.dkr.ecr.*.amazonaws.com']\n    provider: ecr\n    ecr:\n      podIdentity: {clusterName: prod}\n",
        )
        .unwrap();
        std::fs::rename(&staged, &path).unwrap();
    }
    path
}

/// The binary in plugin mode at `-vvv` with the node's static keys, every AWS service at
/// `url`, the rules in `dir`, caching in `dir/cache` when `cached`.
fn plugin(url: &str, dir: &Path, cached: bool) -> Plugin {
    let rules = rules(dir);
    let mut args: Vec<std::ffi::OsString> =
        vec!["-vvv".into(), "--config".into(), rules.into_os_string()];
    if cached {
        args.extend(["--cache-dir".into(), dir.join("cache").into_os_string()]);
    } else {
        args.push("--no-cache".into());
    }
    Plugin::new(args)
        .env("AWS_ACCESS_KEY_ID", NODE_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", NODE_SECRET)
        .env("AWS_ENDPOINT_URL_EKS_AUTH", url)
        .env("AWS_ENDPOINT_URL_STS", url)
        .env("AWS_ENDPOINT_URL_ECR", url)
}

/// One pull of `IMAGE` for `pod` by a fresh kubelet running `plugin`.
fn pull(pod: &Pod, plugin: Plugin) -> (Outcome, Run) {
    let mut run = None;
    let outcome = kubelet().pull(IMAGE, Some(pod), |sent| {
        let done = plugin.stdin(sent.stdin.clone()).run();
        let answer = (done.code, done.stdout.clone());
        run = Some(done);
        answer
    });
    (outcome, run.unwrap())
}

fn credential(outcome: &Outcome) -> (String, String) {
    assert_eq!(outcome.error, None);
    assert_eq!(outcome.credentials.len(), 1, "{:?}", outcome.credentials);
    outcome.credentials[0].clone()
}

/// Asserts that no part of `tokens`, no secret EKS Auth handed out and no node secret is in
/// `text`.
fn assert_no_secret(text: &str, tokens: &[String], grants: usize, what: &str) {
    for token in tokens {
        for part in token.split('.') {
            assert!(!text.contains(part), "{what} holds a token part: {text}");
        }
    }
    for n in 1..=grants {
        for secret in sts_secrets(n) {
            assert!(!text.contains(&secret), "{what} holds {secret}: {text}");
        }
    }
    assert!(!text.contains(NODE_SECRET), "{what}: {text}");
}

#[test]
fn the_pod_pulls_as_its_association_s_role_and_without_one_as_the_node() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate("prod", "team-a", "app", ROLE_A);
    let dir = tempfile::tempdir().unwrap();
    let app = pod("team-a", "web-1", "app", &[]);
    let (outcome, run) = pull(&app, plugin(&aws.url, dir.path(), false));
    assert_eq!(
        credential(&outcome),
        ("AWS".into(), ecr_password(1, ROLE_A))
    );
    let calls = aws.pod_identity_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        Some(&calls[0].token),
        outcome.sent.as_ref().unwrap().token.as_ref()
    );
    assert_eq!(calls[0].signed_by.as_deref(), Some(NODE_KEY_ID));
    // The answer lives as long as the role's credentials, less the margin.
    let response = run.json();
    let cached = super::seconds(response["cacheDuration"].as_str().unwrap());
    let expected = SESSION_SECONDS - 5 * 60;
    assert!((expected - 120..=expected).contains(&cached), "{cached}s");
    let token = outcome.sent.unwrap().token.unwrap();
    assert_no_secret(&run.stderr, &[token], 1, "stderr at -vvv");

    let other = pod("team-b", "web-1", "app", &[]);
    let (outcome, _) = pull(&other, plugin(&aws.url, dir.path(), false));
    let node = format!("node:{NODE_KEY_ID}");
    assert_eq!(credential(&outcome).1, ecr_password(2, &node));
    assert_eq!(aws.ecr_principals(), [ROLE_A.to_owned(), node]);
}

#[test]
fn tokens_are_shared_by_the_pods_of_one_service_account_and_by_no_one_else() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate("prod", "team-a", "app", ROLE_A);
    aws.associate("prod", "team-a", "batch", ROLE_B);
    let dir = tempfile::tempdir().unwrap();
    let node = format!("node:{NODE_KEY_ID}");
    let mut tokens = Vec::new();
    let mut stderr = String::new();
    let steps = [
        (
            pod("team-a", "web-1", "app", &[]),
            ecr_password(1, ROLE_A),
            1,
        ),
        (
            pod("team-a", "web-2", "app", &[]),
            ecr_password(1, ROLE_A),
            1,
        ),
        (
            pod("team-a", "job-1", "batch", &[]),
            ecr_password(2, ROLE_B),
            2,
        ),
        (
            pod("team-b", "web-1", "app", &[]),
            ecr_password(3, &node),
            3,
        ),
        (
            pod("team-c", "web-1", "app", &[]),
            ecr_password(4, &node),
            4,
        ),
        (
            pod("team-a", "web-3", "app", &[]),
            ecr_password(1, ROLE_A),
            4,
        ),
    ];
    for (pod, password, exchanges) in &steps {
        let (outcome, run) = pull(pod, plugin(&aws.url, dir.path(), true));
        tokens.push(outcome.sent.as_ref().unwrap().token.clone().unwrap());
        stderr.push_str(&run.stderr);
        assert_eq!(
            &credential(&outcome).1,
            password,
            "{}/{}",
            pod.namespace,
            pod.name
        );
        assert_eq!(
            aws.eks_auth_calls(),
            *exchanges,
            "{}/{}",
            pod.namespace,
            pod.name
        );
    }
    assert!(
        stderr.contains("team-a/app"),
        "-vvv names the service account: {stderr}"
    );
    assert_no_secret(&stderr, &tokens, 2, "stderr at -vvv");
    for entry in walk(&dir.path().join("cache")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert_no_secret(&text, &tokens, 2, &entry.display().to_string());
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(walk(&path));
        } else {
            all.push(path);
        }
    }
    all
}

#[test]
fn sixteen_concurrent_pods_of_one_service_account_make_one_exchange() {
    let aws = Aws::start(Duration::from_millis(500));
    aws.associate("prod", "team-a", "app", ROLE_A);
    aws.associate("prod", "team-b", "app", ROLE_B);
    let dir = tempfile::tempdir().unwrap();
    let pods: Vec<Pod> = (0..16)
        .map(|i| pod("team-a", &format!("web-{i}"), "app", &[]))
        .chain([pod("team-b", "web-0", "app", &[])])
        .collect();
    let credentials: Vec<(String, String)> = std::thread::scope(|scope| {
        let pulls: Vec<_> = pods
            .iter()
            .map(|pod| {
                let plugin = plugin(&aws.url, dir.path(), true);
                scope.spawn(move || credential(&pull(pod, plugin).0))
            })
            .collect();
        pulls.into_iter().map(|p| p.join().unwrap()).collect()
    });
    let (team_a, team_b) = credentials.split_at(16);
    assert!(team_a.iter().all(|c| *c == team_a[0]), "{team_a:?}");
    assert!(team_a[0].1.ends_with("-for-puller-a"), "{team_a:?}");
    assert!(team_b[0].1.ends_with("-for-puller-b"), "{team_b:?}");
    assert_eq!(
        (aws.eks_auth_calls(), aws.ecr_calls()),
        (2, 2),
        "one exchange for the 16 pods of team-a/app, one for team-b/app"
    );
}

#[test]
fn a_refusal_is_one_line_naming_the_service_account_and_the_cluster() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate("prod", "team-a", "app", ROLE_A);
    aws.deny_eks_auth();
    let dir = tempfile::tempdir().unwrap();
    let rules = rules(dir.path());
    let quiet = Plugin::new(["--no-cache", "--config", rules.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", NODE_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", NODE_SECRET)
        .env("AWS_ENDPOINT_URL_EKS_AUTH", &aws.url)
        .env("AWS_ENDPOINT_URL_ECR", &aws.url);
    let (outcome, run) = pull(&pod("team-a", "web-1", "app", &[]), quiet);
    assert!(outcome.credentials.is_empty());
    run.assert_error(
        1,
        "service account team-a/app, ecr.podIdentity.clusterName = \"prod\": access denied by \
         EKS Auth: AccessDeniedException: User: arn:aws:sts::111122223333:assumed-role/node/i-0 \
         is not authorized to perform: eks-auth:AssumeRoleForPodIdentity",
    );
    assert_eq!((aws.eks_auth_calls(), aws.ecr_calls()), (1, 0));
}

#[test]
fn check_config_names_a_wrong_cluster_name() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        "rules:\n  - matchImages: ['*.dkr.ecr.*.amazonaws.com']\n    provider: ecr\n    ecr:\n      podIdentity: {clusterName: 'prod.eu'}\n",
    )
    .unwrap();
    let run = Plugin::new(["check-config", "--config", wrong.to_str().unwrap()]).run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("ecr.podIdentity.clusterName \"prod.eu\" is not an EKS cluster name"),
        "{}",
        run.stderr
    );
    let good = rules(dir.path());
    let run = Plugin::new(["check-config", "--config", good.to_str().unwrap()]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
}
