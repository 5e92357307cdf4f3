//! EKS Pod Identity (`ecr.podIdentity`) against the loopback EKS Auth of
//! `icp_test_kit::aws::eks_auth`: the pod's token exchanged with `AssumeRoleForPodIdentity`
//! (signed with the node's keys) for its association's role, then ECR with those
//! credentials, the token bounded by their expiry; the node's identity for a service account
//! with no association or a request with no token; refusals and throttling named by
//! service account and cluster; one exchange per service account.

use std::time::{Duration, SystemTime};

use icp_core::{CacheKeyType, Environment, ImageRef, Request, TokenBackend};
use icp_ecr::{Config, Error, POD_IDENTITY_AUDIENCE, PodIdentityConfig};
use icp_test_kit::aws::sts::{Aws, SESSION_SECONDS, ecr_password};

use crate::support::{aws_env, backend, fetch_as, quick_limits, service_account, token_for};

const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1";
const ROLE: &str = "arn:aws:iam::111122223333:role/pod-puller";
const OTHER_ROLE: &str = "arn:aws:iam::111122223333:role/batch-puller";
const CLUSTER: &str = "prod";
const NODE: &str = "node:AKIDNODE";

fn config() -> Config {
    Config {
        pod_identity: Some(PodIdentityConfig {
            cluster_name: CLUSTER.into(),
            region: None,
        }),
        ..Config::default()
    }
}

/// EKS Auth, STS and ECR pointed at `aws`, with the node's static keys.
fn env(aws: &Aws) -> Environment {
    aws_env(&[
        ("AWS_ACCESS_KEY_ID", "AKIDNODE"),
        ("AWS_SECRET_ACCESS_KEY", "node-secret"),
        ("AWS_ENDPOINT_URL_EKS_AUTH", &aws.url),
        ("AWS_ENDPOINT_URL_STS", &aws.url),
        ("AWS_ENDPOINT_URL_ECR", &aws.url),
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", &aws.url),
    ])
}

fn token(namespace: &str, name: &str, pod: &str) -> String {
    token_for(POD_IDENTITY_AUDIENCE, namespace, name, pod)
}

#[test]
fn the_pod_token_is_exchanged_for_its_association_s_role() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate(CLUSTER, "team-a", "app", ROLE);
    let token = token("team-a", "app", "web-1");
    let backend = backend(config(), &env(&aws));
    let fetched = fetch_as(&backend, IMAGE, &service_account(&token, &[])).unwrap();
    assert_eq!(fetched.username, "AWS");
    assert_eq!(fetched.password.expose(), ecr_password(1, ROLE));
    // The ECR token would live 12 hours; the credentials it was fetched with live one.
    let left = fetched
        .expires_at
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs();
    assert!(
        (SESSION_SECONDS - 60..=SESSION_SECONDS).contains(&left),
        "{left}s"
    );
    let calls = aws.pod_identity_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].cluster, CLUSTER);
    assert_eq!(calls[0].token, token, "the pod's own token is exchanged");
    assert_eq!(
        calls[0].signed_by.as_deref(),
        Some("AKIDNODE"),
        "signed by the node"
    );
    assert_eq!(aws.ecr_principals(), [ROLE]);
    assert_eq!(aws.sts_calls(), 0);
}

#[test]
fn no_association_or_no_token_means_the_node_identity() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate(CLUSTER, "team-a", "app", ROLE);
    aws.associate("staging", "team-b", "app", ROLE);
    let backend = backend(config(), &env(&aws));
    // Associated in another cluster only.
    let unassociated = service_account(&token("team-b", "app", "web-1"), &[]);
    let fetched = fetch_as(&backend, IMAGE, &unassociated).unwrap();
    assert_eq!(fetched.password.expose(), ecr_password(1, NODE));
    assert_eq!(
        aws.pod_identity_calls()[0].error.as_deref(),
        Some("ResourceNotFoundException")
    );
    // No token at all: EKS Auth is not asked.
    let image = ImageRef::parse(IMAGE).unwrap();
    let fetched = backend.fetch(&Request::new(&image)).unwrap();
    assert_eq!(fetched.password.expose(), ecr_password(2, NODE));
    assert_eq!(aws.eks_auth_calls(), 1);
    assert_eq!(aws.ecr_principals(), [NODE, NODE]);
}

#[test]
fn the_rule_s_role_is_the_fallback_of_a_service_account_with_no_association() {
    let aws = Aws::start(Duration::ZERO);
    let backend = backend(
        Config {
            role_arn: Some(OTHER_ROLE.into()),
            ..config()
        },
        &env(&aws),
    );
    let account = service_account(&token("team-a", "app", "web-1"), &[]);
    // The fake STS grants AssumeRole to no one: the fallback is tried, and named.
    let error = fetch_as(&backend, IMAGE, &account).unwrap_err().to_string();
    assert!(error.contains("STS"), "{error}");
    assert_eq!((aws.eks_auth_calls(), aws.sts_calls()), (1, 1));
}

#[test]
fn refusals_are_one_line_naming_the_service_account_and_the_cluster() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate(CLUSTER, "team-a", "app", ROLE);
    let backend = backend(config(), &env(&aws));
    let message = |token: &str| {
        let error = fetch_as(&backend, IMAGE, &service_account(token, &[])).unwrap_err();
        let Error::ServiceAccount { cause, .. } = &error else {
            panic!("{error}")
        };
        assert!(
            matches!(
                **cause,
                Error::AccessDenied {
                    service: "EKS Auth",
                    ..
                }
            ),
            "{cause}"
        );
        let message = error.to_string();
        assert!(!message.contains('\n'), "{message}");
        for part in token.split('.') {
            assert!(!message.contains(part), "{message}");
        }
        message
    };
    let prefix = "service account team-a/app, ecr.podIdentity.clusterName = \"prod\": \
                  access denied by EKS Auth: ";
    // A token for STS, not for EKS Auth.
    let wrong_audience = token_for("sts.amazonaws.com", "team-a", "app", "web-1");
    assert_eq!(
        message(&wrong_audience),
        format!(
            "{prefix}InvalidTokenException: The service account token's audience is not \
             pods.eks.amazonaws.com"
        )
    );
    let expired = expired_token();
    assert_eq!(
        message(&expired),
        format!("{prefix}ExpiredTokenException: The service account token has expired")
    );
    aws.deny_eks_auth();
    assert!(
        message(&token("team-a", "app", "web-1")).starts_with(&format!(
            "{prefix}AccessDeniedException: User: arn:aws:sts::111122223333:assumed-role/node/i-0 \
             is not authorized to perform: eks-auth:AssumeRoleForPodIdentity"
        ))
    );
    assert_eq!(aws.eks_auth_calls(), 3, "a refusal is not retried");
    assert_eq!(aws.ecr_calls(), 0);
}

/// A token of `team-a/app` for EKS Auth whose `exp` has passed.
fn expired_token() -> String {
    use base64::Engine;
    let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let claims = r#"{"aud":["pods.eks.amazonaws.com"],"exp":1000,
        "kubernetes.io":{"namespace":"team-a","serviceaccount":{"name":"app","uid":"team-a-app-uid"}}}"#;
    format!("{}.{}.{}", encode("{}"), encode(claims), encode("sig"))
}

#[test]
fn throttling_is_retried_within_the_budget_then_named() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate(CLUSTER, "team-a", "app", ROLE);
    let backend = backend(config(), &env(&aws));
    let account = service_account(&token("team-a", "app", "web-1"), &[]);
    aws.throttle_eks_auth(2);
    let fetched = fetch_as(&backend, IMAGE, &account).unwrap();
    assert_eq!(fetched.password.expose(), ecr_password(1, ROLE));
    assert_eq!(aws.eks_auth_calls(), 3, "two throttled, the third granted");

    aws.throttle_eks_auth(100);
    let error = fetch_as(&backend, IMAGE, &account).unwrap_err().to_string();
    assert_eq!(
        error,
        "service account team-a/app, ecr.podIdentity.clusterName = \"prod\": throttled by EKS \
         Auth (gave up after 3 attempts): ThrottlingException: Rate exceeded"
    );
    assert_eq!(aws.eks_auth_calls(), 3 + quick_limits().attempts as usize);
}

#[test]
fn each_service_account_has_its_own_key_and_exchange() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate(CLUSTER, "team-a", "app", ROLE);
    aws.associate(CLUSTER, "team-a", "batch", OTHER_ROLE);
    let backend = backend(config(), &env(&aws));
    let image = ImageRef::parse(IMAGE).unwrap();
    let key = |token: &str| {
        let account = service_account(token, &[]);
        backend
            .token_key(&Request {
                image: &image,
                cache_key_type: CacheKeyType::Registry,
                service_account: Some(&account),
            })
            .unwrap()
    };
    let web_1 = key(&token("team-a", "app", "web-1"));
    assert_eq!(
        web_1,
        key(&token("team-a", "app", "web-2")),
        "one account, one key"
    );
    assert!(
        web_1.identity.starts_with(
            "sa=team-a/app/team-a-app-uid;aws:pod-identity;cluster=prod;region=eu-west-1;"
        ),
        "{}",
        web_1.identity
    );
    for other in [
        key(&token("team-a", "batch", "job-1")),
        key(&token("team-b", "app", "web-1")),
    ] {
        assert_ne!(web_1.identity, other.identity);
    }
    assert_ne!(web_1, backend.token_key(&Request::new(&image)).unwrap());

    // Two service accounts, two exchanges, each its own role.
    let app = fetch_as(
        &backend,
        IMAGE,
        &service_account(&token("team-a", "app", "web-1"), &[]),
    );
    let batch = fetch_as(
        &backend,
        IMAGE,
        &service_account(&token("team-a", "batch", "job-1"), &[]),
    );
    assert_eq!(app.unwrap().password.expose(), ecr_password(1, ROLE));
    assert_eq!(
        batch.unwrap().password.expose(),
        ecr_password(2, OTHER_ROLE)
    );
    assert_eq!(aws.ecr_principals(), [ROLE, OTHER_ROLE]);
    assert_eq!(aws.eks_auth_calls(), 2);
}

#[test]
fn the_token_request_is_for_eks_auth_s_audience_and_no_annotation() {
    let env = aws_env(&[]);
    let usage = backend(config(), &env).service_account_token().unwrap();
    assert_eq!(usage.audience, "pods.eks.amazonaws.com");
    assert!(usage.annotation_keys.is_empty());
    let sts = backend(Config::default(), &env)
        .service_account_token()
        .unwrap();
    assert_eq!(sts.audience, "sts.amazonaws.com");
}

#[test]
fn the_cluster_region_is_the_rule_s_or_the_node_s() {
    let aws = Aws::start(Duration::ZERO);
    aws.associate(CLUSTER, "team-a", "app", ROLE);
    let account = service_account(&token("team-a", "app", "web-1"), &[]);
    let image = ImageRef::parse(IMAGE).unwrap();
    let request = Request {
        image: &image,
        cache_key_type: CacheKeyType::Registry,
        service_account: Some(&account),
    };
    let node_region = backend(config(), &env(&aws).with("AWS_REGION", "us-east-2"));
    assert!(
        node_region
            .token_key(&request)
            .unwrap()
            .identity
            .contains(";region=us-east-2;")
    );
    let rule_region = backend(
        Config {
            pod_identity: Some(PodIdentityConfig {
                cluster_name: CLUSTER.into(),
                region: Some("ap-south-1".into()),
            }),
            ..Config::default()
        },
        &env(&aws).with("AWS_REGION", "us-east-2"),
    );
    assert!(
        rule_region
            .token_key(&request)
            .unwrap()
            .identity
            .contains(";region=ap-south-1;")
    );
    rule_region.fetch(&request).unwrap();
    node_region.fetch(&request).unwrap();
    let regions: Vec<_> = aws
        .pod_identity_calls()
        .into_iter()
        .map(|call| call.region.unwrap())
        .collect();
    assert_eq!(
        regions,
        ["ap-south-1", "us-east-2"],
        "signed for the cluster's region"
    );
}
