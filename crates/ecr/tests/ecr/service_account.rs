//! The ECR backend in the kubelet's service-account-token mode: the pod's token exchanged
//! (STS `AssumeRoleWithWebIdentity`) for the role its service account's annotation names,
//! against moto's STS and ECR and against the loopback STS of `icp_test_kit::aws::sts`, which grants a
//! role only to the tokens registered for it; the node's identity without the annotation;
//! the STS endpoint of each region and partition; errors that name the service account.

use std::time::{Duration, SystemTime};

use icp_core::{CacheKeyType, Environment, ImageRef, Request, TokenBackend};
use icp_ecr::{Config, Error, ROLE_ANNOTATION};
use icp_http::Limits;
use icp_test_kit::aws::sts::{Aws, ECR_TOKEN_SECONDS, ecr_password};
use icp_test_kit::aws::{Fake, Reply, moto};

use crate::support::{
    aws_env, backend, child_case, fetch_as, projected_token, quick_limits, run_child,
    service_account,
};

const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1";
const ROLE: &str = "arn:aws:iam::111122223333:role/pod-puller";
const NODE_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKIDNODE"),
    ("AWS_SECRET_ACCESS_KEY", "node-secret"),
];

/// ECR and STS pointed at `aws`, with the node's static keys.
fn fake_aws_env(aws: &Aws) -> Environment {
    aws_env(&[
        NODE_KEYS[0],
        NODE_KEYS[1],
        ("AWS_ENDPOINT_URL_STS", &aws.url),
        ("AWS_ENDPOINT_URL_ECR", &aws.url),
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", &aws.url),
    ])
}

fn seconds_from_now(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::now()).unwrap().as_secs()
}

#[test]
fn moto_exchanges_the_pod_token_for_the_annotated_role() {
    let url = moto();
    // No node credentials at all: the exchange needs none.
    let env = aws_env(&[("AWS_ENDPOINT_URL_STS", url), ("AWS_ENDPOINT_URL_ECR", url)]);
    let token = projected_token("team-a", "app", "web-1");
    let account = service_account(&token, &[(ROLE_ANNOTATION, ROLE)]);
    let fetched = fetch_as(&backend(Config::default(), &env), IMAGE, &account).unwrap();
    assert_eq!(fetched.password.expose(), "111122223333-auth-token");
}

#[test]
fn the_pod_token_is_exchanged_unsigned_for_the_annotated_role() {
    let aws = Aws::start(Duration::ZERO);
    let token = projected_token("team-a", "app", "web-1");
    aws.grant(&token, ROLE);
    let env = fake_aws_env(&aws);
    let account = service_account(&token, &[(ROLE_ANNOTATION, ROLE)]);
    let backend = backend(Config::default(), &env);
    let fetched = fetch_as(&backend, IMAGE, &account).unwrap();
    assert_eq!(fetched.username, "AWS");
    assert_eq!(fetched.password.expose(), ecr_password(1, ROLE));
    // The session lives an hour; the ECR token its credentials got lives 12 hours, and
    // that is the expiry the answer follows.
    let left = seconds_from_now(fetched.expires_at.unwrap());
    assert!(
        (ECR_TOKEN_SECONDS - 60..=ECR_TOKEN_SECONDS).contains(&left),
        "{left}s"
    );
    let exchanges = aws.exchanges();
    assert_eq!(exchanges.len(), 1);
    let exchange = &exchanges[0];
    assert_eq!(exchange.token, token, "the pod's own token is exchanged");
    assert_eq!(exchange.role_arn, ROLE);
    assert_eq!(exchange.session_name, "team-a.app");
    assert!(!exchange.signed, "the exchange is unsigned");
    assert_eq!(aws.ecr_principals(), [ROLE]);

    let public = fetch_as(&backend, "public.ecr.aws/team/app", &account).unwrap();
    assert_eq!(public.password.expose(), ecr_password(2, ROLE));
    assert_eq!(aws.sts_calls(), 2);
}

#[test]
fn without_the_annotation_the_node_identity_is_used() {
    let aws = Aws::start(Duration::ZERO);
    let env = fake_aws_env(&aws);
    let token = projected_token("team-a", "app", "web-1");
    for annotations in [&[][..], &[(ROLE_ANNOTATION, "")], &[("other", ROLE)]] {
        let account = service_account(&token, annotations);
        fetch_as(&backend(Config::default(), &env), IMAGE, &account).unwrap();
    }
    assert_eq!(aws.sts_calls(), 0);
    assert_eq!(aws.ecr_principals(), ["node:AKIDNODE"; 3]);
}

#[test]
fn a_default_role_serves_service_accounts_without_the_annotation() {
    const DEFAULT: &str = "arn:aws:iam::444455556666:role/default-puller";
    let aws = Aws::start(Duration::ZERO);
    let token = projected_token("team-a", "app", "web-1");
    aws.grant(&token, DEFAULT);
    aws.grant(&token, ROLE);
    let env = fake_aws_env(&aws);
    let backend = backend(Config::default(), &env)
        .with_default_role(DEFAULT, "AWS_ECR_ROLE_ARN")
        .unwrap();
    fetch_as(&backend, IMAGE, &service_account(&token, &[])).unwrap();
    fetch_as(
        &backend,
        IMAGE,
        &service_account(&token, &[(ROLE_ANNOTATION, ROLE)]),
    )
    .unwrap();
    let roles: Vec<String> = aws.exchanges().into_iter().map(|e| e.role_arn).collect();
    assert_eq!(roles, [DEFAULT, ROLE], "the annotation wins");
    assert_eq!(aws.ecr_principals(), [DEFAULT, ROLE]);

    let refused = backend.with_default_role("arn:aws:iam::1:role/x", "AWS_ECR_ROLE_ARN");
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("AWS_ECR_ROLE_ARN"), "{message}");
}

#[test]
fn the_annotation_key_can_be_renamed() {
    let aws = Aws::start(Duration::ZERO);
    let token = projected_token("team-a", "app", "web-1");
    aws.grant(&token, ROLE);
    let env = fake_aws_env(&aws);
    let renamed = backend(
        Config {
            role_arn_annotation: Some("platform.example.io/ecr-role".into()),
            ..Config::default()
        },
        &env,
    );
    let official = service_account(&token, &[(ROLE_ANNOTATION, ROLE)]);
    fetch_as(&renamed, IMAGE, &official).unwrap();
    let own = service_account(&token, &[("platform.example.io/ecr-role", ROLE)]);
    fetch_as(&renamed, IMAGE, &own).unwrap();
    assert_eq!(aws.ecr_principals(), ["node:AKIDNODE", ROLE]);
}

#[test]
fn a_rejected_token_is_named_by_service_account_and_annotation() {
    let aws = Aws::start(Duration::ZERO);
    let token = projected_token("team-a", "app", "web-1");
    aws.grant(&token, "arn:aws:iam::111122223333:role/another-role");
    let env = fake_aws_env(&aws);
    let account = service_account(&token, &[(ROLE_ANNOTATION, ROLE)]);
    let error = fetch_as(&backend(Config::default(), &env), IMAGE, &account).unwrap_err();
    let Error::ServiceAccount { cause, .. } = &error else {
        panic!("{error}")
    };
    assert!(
        matches!(**cause, Error::AccessDenied { service: "STS", .. }),
        "{cause}"
    );
    let message = error.to_string();
    assert_eq!(
        message,
        "service account team-a/app, annotation eks.amazonaws.com/ecr-role-arn = \
         \"arn:aws:iam::111122223333:role/pod-puller\": access denied by STS: AccessDenied: \
         Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    for part in token.split('.') {
        assert!(!message.contains(part), "{message}");
    }
    assert_eq!(aws.sts_calls(), 1, "a refusal is not retried");
    assert_eq!(aws.ecr_calls(), 0);
}

#[test]
fn throttling_is_retried_within_the_budget_then_named() {
    let aws = Aws::start(Duration::ZERO);
    let token = projected_token("team-a", "app", "web-1");
    aws.grant(&token, ROLE);
    aws.throttle();
    let env = fake_aws_env(&aws);
    let account = service_account(&token, &[(ROLE_ANNOTATION, ROLE)]);
    let error = fetch_as(&backend(Config::default(), &env), IMAGE, &account).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("throttled by STS (gave up after 3 attempts): Throttling: Rate exceeded"),
        "{error}"
    );
    assert_eq!(aws.sts_calls(), quick_limits().attempts as usize);
    assert_eq!(aws.ecr_calls(), 0);
}

#[test]
fn a_hung_sts_is_abandoned_within_the_credentials_timeout() {
    let sts = Fake::start(|_, _| Reply::Hang);
    let env = aws_env(&[("AWS_ENDPOINT_URL_STS", &sts.url)]);
    let token = projected_token("team-a", "app", "web-1");
    let account = service_account(&token, &[(ROLE_ANNOTATION, ROLE)]);
    let started = std::time::Instant::now();
    let error = fetch_as(&backend(Config::default(), &env), IMAGE, &account).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("timeout: STS AssumeRoleWithWebIdentity took longer than 2s"),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_value_that_is_no_role_sends_nothing() {
    let aws = Aws::start(Duration::ZERO);
    let env = fake_aws_env(&aws);
    let token = projected_token("team-a", "app", "web-1");
    let account = service_account(&token, &[(ROLE_ANNOTATION, "my-role")]);
    let backend = backend(Config::default(), &env);
    let error = fetch_as(&backend, IMAGE, &account).unwrap_err();
    assert!(
        error.to_string().starts_with(
            "service account team-a/app, annotation eks.amazonaws.com/ecr-role-arn = \"my-role\": not an IAM role ARN"
        ),
        "{error}"
    );
    let image = ImageRef::parse(IMAGE).unwrap();
    let request = Request {
        image: &image,
        cache_key_type: CacheKeyType::Registry,
        service_account: Some(&account),
    };
    assert!(backend.token_key(&request).is_err());
    assert_eq!(aws.sts_calls() + aws.ecr_calls(), 0);
}

#[test]
fn token_keys_hold_the_service_account_and_role_and_fall_back_to_the_node() {
    let env = aws_env(&[NODE_KEYS[0]]);
    let backend = backend(Config::default(), &env);
    let image = ImageRef::parse(IMAGE).unwrap();
    let key = |token: &str, annotations: &[(&str, &str)]| {
        let account = service_account(token, annotations);
        let request = Request {
            image: &image,
            cache_key_type: CacheKeyType::Registry,
            service_account: Some(&account),
        };
        let key = backend.token_key(&request).unwrap();
        (account, key)
    };
    let role = [(ROLE_ANNOTATION, ROLE)];
    let (account, web_1) = key(&projected_token("team-a", "app", "web-1"), &role);
    assert!(
        web_1.identity.starts_with(&account.key(&[ROLE_ANNOTATION])),
        "{}",
        web_1.identity
    );
    assert!(web_1.identity.ends_with(&format!("roleArn={ROLE}")));
    let (_, web_2) = key(&projected_token("team-a", "app", "web-2"), &role);
    assert_eq!(web_1, web_2, "pods of one service account share");
    let (_, other_namespace) = key(&projected_token("team-b", "app", "web-1"), &role);
    let (_, other_account) = key(&projected_token("team-a", "batch", "job-1"), &role);
    let (_, other_role) = key(
        &projected_token("team-a", "app", "web-3"),
        &[(ROLE_ANNOTATION, "arn:aws:iam::111122223333:role/other")],
    );
    for other in [&other_namespace, &other_account, &other_role] {
        assert_ne!(web_1.identity, other.identity);
        assert_eq!(web_1.scope, other.scope);
    }
    let (_, unannotated) = key(&projected_token("team-a", "app", "web-4"), &[]);
    let node = backend.token_key(&Request::new(&image)).unwrap();
    assert_eq!(
        unannotated, node,
        "no annotation: the node's token, shareable"
    );
}

/// An HTTPS proxy that records which host each `CONNECT` asks for and refuses it. The SDK
/// takes it from the process's `HTTPS_PROXY` only: the test runs each case in a child
/// process started with it ([`run_child`]).
fn refusing_proxy() -> Fake {
    Fake::start(|_, _| Reply::Respond(403, "text/plain", String::new()))
}

#[test]
fn sts_is_asked_in_the_region_and_partition_of_the_image() {
    if let Some(image) = child_case() {
        let token = projected_token("team-a", "app", "web-1");
        let env = aws_env(&[]);
        let backend = backend(Config::default(), &env).with_limits(Limits {
            attempts: 1,
            ..quick_limits()
        });
        // A role of the registry's own partition: another is refused before STS is asked.
        let role = if image.contains(".cn/") {
            "arn:aws-cn:iam::111122223333:role/pod-puller"
        } else if image.contains(".us-gov-") {
            "arn:aws-us-gov:iam::111122223333:role/pod-puller"
        } else if image.contains(".amazonaws.eu/") {
            "arn:aws-eusc:iam::111122223333:role/pod-puller"
        } else {
            ROLE
        };
        let account = service_account(&token, &[(ROLE_ANNOTATION, role)]);
        let error = fetch_as(&backend, &image, &account).unwrap_err();
        assert!(
            error.to_string().contains("cannot reach STS"),
            "{image}: {error}"
        );
        return;
    }
    let cases = [
        (IMAGE, "sts.eu-west-1.amazonaws.com:443"),
        (
            "123456789012.dkr.ecr-fips.us-east-2.amazonaws.com/app",
            "sts-fips.us-east-2.amazonaws.com:443",
        ),
        (
            "123456789012.dkr-ecr.ap-south-1.on.aws/app",
            "sts.ap-south-1.amazonaws.com:443",
        ),
        (
            "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn/app",
            "sts.cn-northwest-1.amazonaws.com.cn:443",
        ),
        (
            "123456789012.dkr.ecr.us-gov-east-1.amazonaws.com/app",
            "sts.us-gov-east-1.amazonaws.com:443",
        ),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app",
            "sts.us-gov-west-1.amazonaws.com:443",
        ),
        (
            "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu/app",
            "sts.eusc-de-east-1.amazonaws.eu:443",
        ),
        ("public.ecr.aws/app", "sts.us-east-1.amazonaws.com:443"),
    ];
    let mut chosen = Vec::new();
    for (image, _) in cases {
        let proxy = refusing_proxy();
        run_child(
            "service_account::sts_is_asked_in_the_region_and_partition_of_the_image",
            image,
            &proxy.url,
        );
        let requests = proxy.requests();
        assert_eq!(requests.len(), 1, "{image}");
        assert_eq!(requests[0].method, "CONNECT");
        chosen.push((image, requests[0].target.clone()));
    }
    let expected: Vec<_> = cases
        .iter()
        .map(|(image, endpoint)| (*image, endpoint.to_string()))
        .collect();
    assert_eq!(chosen, expected);
}

#[test]
fn aws_endpoint_url_serves_sts_and_ecr_alike() {
    let aws = Aws::start(Duration::ZERO);
    let token = projected_token("team-a", "app", "web-1");
    aws.grant(&token, ROLE);
    let env = aws_env(&[("AWS_ENDPOINT_URL", &aws.url)]);
    let account = service_account(&token, &[(ROLE_ANNOTATION, ROLE)]);
    let fetched = fetch_as(&backend(Config::default(), &env), IMAGE, &account).unwrap();
    assert_eq!(fetched.password.expose(), ecr_password(1, ROLE));
    assert_eq!((aws.sts_calls(), aws.ecr_calls()), (1, 1));
}
