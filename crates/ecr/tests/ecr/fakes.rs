//! The ECR backend against small fakes of AWS on 127.0.0.1: retries on throttling and 5xx,
//! the deadline on a hang, how errors are named, ECR Public, instance metadata (IMDSv2),
//! the FIPS and dual-stack endpoints, and look-alike hosts that must cause no request.

use std::time::{Duration, SystemTime};

use icp_core::{Environment, ImageRef, TokenBackend};
use icp_ecr::{Config, Error};
use icp_http::Limits;
use icp_test_kit::aws::{self, Fake, Reply, aws_error, ecr_answer, imds};

use crate::support::{aws_env, backend, child_case, fetch, quick_limits, run_child};

const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1";
const STATIC_KEYS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "AKIDSTATIC"),
    ("AWS_SECRET_ACCESS_KEY", "static-secret"),
];

fn ecr_env(fake: &Fake) -> Environment {
    aws_env(&[
        STATIC_KEYS[0],
        STATIC_KEYS[1],
        ("AWS_ENDPOINT_URL_ECR", &fake.url),
    ])
}

/// Seconds since the epoch, `hours` from now.
fn in_hours(hours: u64) -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + hours * 3600
}

#[test]
fn signs_with_the_host_region_and_returns_the_stated_expiry() {
    let expires = in_hours(12);
    let fake = Fake::start(move |_, _| ecr_answer("AWS:ecr-password", expires));
    let env = ecr_env(&fake);
    let token = fetch(&backend(Config::default(), &env), IMAGE).unwrap();
    assert_eq!(token.username, "AWS");
    assert_eq!(token.password.expose(), "ecr-password");
    assert_eq!(
        token.expires_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(expires))
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("x-amz-target"),
        Some("AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken")
    );
    let authorization = request.header("authorization").unwrap();
    assert!(
        authorization.contains("Credential=AKIDSTATIC/"),
        "{authorization}"
    );
    assert!(
        authorization.contains("/eu-west-1/ecr/aws4_request"),
        "{authorization}"
    );
}

#[test]
fn retries_throttling_then_answers() {
    let fake = Fake::start(|_, n| {
        if n < 2 {
            aws_error(400, "ThrottlingException", "Rate exceeded")
        } else {
            ecr_answer("AWS:p", 1_900_000_000)
        }
    });
    let env = ecr_env(&fake);
    let token = fetch(&backend(Config::default(), &env), IMAGE).unwrap();
    assert_eq!(token.password.expose(), "p");
    assert_eq!(fake.count(), 3);
}

#[test]
fn retries_server_errors_then_answers() {
    let fake = Fake::start(|_, n| {
        if n == 0 {
            aws_error(500, "ServerException", "internal failure")
        } else {
            ecr_answer("AWS:p", 1_900_000_000)
        }
    });
    let env = ecr_env(&fake);
    fetch(&backend(Config::default(), &env), IMAGE).unwrap();
    assert_eq!(fake.count(), 2);
}

#[test]
fn gives_up_on_endless_throttling_within_the_attempt_budget() {
    let fake = Fake::start(|_, _| aws_error(400, "ThrottlingException", "Rate exceeded"));
    let env = ecr_env(&fake);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "throttled by ECR (gave up after 3 attempts): ThrottlingException: Rate exceeded"
    );
    assert_eq!(fake.count(), quick_limits().attempts as usize);
}

#[test]
fn a_hanging_service_ends_in_a_timeout() {
    let fake = Fake::start(|_, _| Reply::Hang);
    let env = ecr_env(&fake);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.to_string().starts_with("timeout: "), "{err}");
    let attempts = fake.count();
    assert!(
        (1..=quick_limits().attempts as usize).contains(&attempts),
        "{attempts} attempts"
    );
}

#[test]
fn access_denied_is_named_and_not_retried() {
    let message = "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:GetAuthorizationToken";
    let fake = Fake::start(move |_, _| aws_error(400, "AccessDeniedException", message));
    let env = ecr_env(&fake);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert!(
        matches!(err, Error::AccessDenied { service: "ECR", .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("access denied by ECR: AccessDeniedException: {message}")
    );
    assert_eq!(fake.count(), 1);
}

#[test]
fn no_credentials_is_named_and_sends_nothing() {
    let fake = Fake::start(|_, _| ecr_answer("AWS:p", 1_900_000_000));
    let env = aws_env(&[("AWS_ENDPOINT_URL_ECR", &fake.url)]);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert!(matches!(err, Error::NoCredentials(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "no AWS credentials found (looked in: environment variables, shared config and \
         credentials files, web identity token file, ECS/EKS container endpoint, EC2 instance metadata)"
    );
    assert_eq!(fake.count(), 0);
}

#[test]
fn errors_without_an_aws_code_name_the_http_status_and_429_is_retried() {
    let private = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app";
    let public = "public.ecr.aws/team/app";
    let cases = [
        (
            private,
            "ECR",
            429,
            "throttled by ECR (gave up after 3 attempts): HTTP 429 with no AWS error code",
        ),
        (
            private,
            "ECR",
            503,
            "ECR error: HTTP 503 with no AWS error code",
        ),
        (
            public,
            "ECR_PUBLIC",
            429,
            "throttled by ECR Public (gave up after 3 attempts): HTTP 429 with no AWS error code",
        ),
        (
            public,
            "ECR_PUBLIC",
            503,
            "ECR Public error: HTTP 503 with no AWS error code",
        ),
        (
            public,
            "ECR_PUBLIC",
            500,
            "ECR Public error: HTTP 500 with no AWS error code",
        ),
    ];
    for (image, endpoint, status, expected) in cases {
        for (content_type, body) in [("text/plain", ""), ("text/html", "<html>busy</html>")] {
            let fake = Fake::start(move |_, _| Reply::Respond(status, content_type, body.into()));
            let variable = format!("AWS_ENDPOINT_URL_{endpoint}");
            let env = aws_env(&[STATIC_KEYS[0], STATIC_KEYS[1], (&variable, &fake.url)]);
            let err = fetch(&backend(Config::default(), &env), image).unwrap_err();
            assert_eq!(err.to_string(), expected, "{image} {status} {content_type}");
            assert_eq!(
                fake.count(),
                3,
                "{image} {status}: every attempt of the budget"
            );
        }
    }
}

#[test]
fn a_refused_connection_is_a_network_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = aws_env(&[
        STATIC_KEYS[0],
        STATIC_KEYS[1],
        ("AWS_ENDPOINT_URL_ECR", &url),
    ]);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert!(
        matches!(err, Error::Network { service: "ECR", .. }),
        "{err}"
    );
}

#[test]
fn malformed_answers_are_errors_that_do_not_echo_the_token() {
    let fake = Fake::start(|_, _| {
        Reply::Respond(
            200,
            aws::AMZ_JSON,
            r#"{"authorizationData":[{"authorizationToken":"bm90LWEtcGFpcg=="}]}"#.into(),
        )
    });
    let env = ecr_env(&fake);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed ECR answer: the authorizationToken is not user:password"
    );
    let empty = Fake::start(|_, _| {
        Reply::Respond(200, aws::AMZ_JSON, r#"{"authorizationData":[]}"#.into())
    });
    let env = ecr_env(&empty);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed ECR answer: no authorizationData"
    );
}

#[test]
fn a_missing_expiry_is_none_not_an_error() {
    let fake = Fake::start(|_, _| {
        let token = aws::base64("AWS:p");
        Reply::Respond(
            200,
            aws::AMZ_JSON,
            format!(r#"{{"authorizationData":[{{"authorizationToken":"{token}"}}]}}"#),
        )
    });
    let env = ecr_env(&fake);
    let token = fetch(&backend(Config::default(), &env), IMAGE).unwrap();
    assert_eq!(token.expires_at, None);
}

#[test]
fn an_expiry_centuries_away_is_bounded_to_a_day() {
    for stated in ["1e11", "100000000000", "9223372036854775807", "1e300"] {
        let token = aws::base64("AWS:p");
        let body = format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":{stated}}}]}}"#
        );
        let fake = Fake::start(move |_, _| Reply::Respond(200, aws::AMZ_JSON, body.clone()));
        let env = ecr_env(&fake);
        let before = SystemTime::now();
        match fetch(&backend(Config::default(), &env), IMAGE) {
            Ok(token) => {
                if let Some(expires_at) = token.expires_at {
                    let left = expires_at.duration_since(before).unwrap();
                    assert!(
                        left <= icp_core::expiry::MAX_LIFETIME + Duration::from_secs(5),
                        "{stated}: {left:?}"
                    );
                }
            }
            Err(err) => panic!("{stated}: {err}"),
        }
    }
}

#[test]
fn ecr_public_asks_ecr_public_in_us_east_1() {
    let expires = in_hours(1);
    let fake = Fake::start(move |request, _| {
        if request.header("x-amz-target") != Some("SpencerFrontendService.GetAuthorizationToken") {
            return aws_error(400, "UnknownOperationException", "unexpected operation");
        }
        let token = aws::base64("AWS:public-password");
        Reply::Respond(
            200,
            aws::AMZ_JSON,
            format!(
                r#"{{"authorizationData":{{"authorizationToken":"{token}","expiresAt":{expires}.5}}}}"#
            ),
        )
    });
    let env = aws_env(&[
        STATIC_KEYS[0],
        STATIC_KEYS[1],
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", &fake.url),
    ]);
    for image in ["public.ecr.aws/team/app:v1", "ecr-public.aws.com/team/app"] {
        let token = fetch(&backend(Config::default(), &env), image).unwrap();
        assert_eq!(
            (token.username.as_str(), token.password.expose()),
            ("AWS", "public-password")
        );
        assert_eq!(
            token.expires_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(expires * 1000 + 500))
        );
    }
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    for request in requests {
        let authorization = request.header("authorization").unwrap();
        assert!(
            authorization.contains("/us-east-1/ecr-public/aws4_request"),
            "{authorization}"
        );
    }
}

#[test]
fn instance_metadata_credentials_through_imdsv2() {
    let metadata = imds();
    let fake = Fake::start(|_, _| ecr_answer("AWS:p", 1_900_000_000));
    let env = aws_env(&[
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &metadata.url),
        ("AWS_ENDPOINT_URL_ECR", &fake.url),
    ]);
    fetch(&backend(Config::default(), &env), IMAGE).unwrap();
    let authorization = fake.requests()[0]
        .header("authorization")
        .unwrap()
        .to_owned();
    assert!(
        authorization.contains("Credential=ASIAIMDSNODE/"),
        "{authorization}"
    );
    assert_eq!(
        fake.requests()[0].header("x-amz-security-token"),
        Some("imds-session-token")
    );
    let metadata_requests = metadata.requests();
    assert_eq!(
        metadata_requests[0].method, "PUT",
        "the session token comes first (IMDSv2)"
    );
    assert!(
        metadata_requests
            .iter()
            .any(|r| r.target == "/latest/meta-data/iam/security-credentials/node-role")
    );
    assert!(
        metadata_requests
            .iter()
            .skip(1)
            .all(|r| r.header("x-aws-ec2-metadata-token") == Some("imds-session"))
    );
}

#[test]
fn another_metadata_server_at_the_address_means_no_aws_credentials() {
    use icp_test_kit::server::{FakeServer, Reply as Answer};
    let fake = Fake::start(|_, _| ecr_answer("AWS:p", 1_900_000_000));
    type Answers = fn(&str, &str) -> Answer;
    let servers: [(&str, Answers); 5] = [
        // GCE's metadata server and proxies refuse what they do not know.
        ("403 everywhere", |_, _| Answer::status(403)),
        ("400 everywhere", |_, _| Answer::status(400)),
        ("404 everywhere", |_, _| {
            Answer::status(404).body("<html>\nnot found\n</html>")
        }),
        // A token without the TTL header, then credentials paths refused.
        ("no TTL header", |method, _| match method {
            "PUT" => Answer::status(200).body("a-token"),
            _ => Answer::status(403),
        }),
        (
            "token, then 400 on the credential paths",
            |method, _| match method {
                "PUT" => Answer::status(200)
                    .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                    .body("a-token"),
                _ => Answer::status(400),
            },
        ),
    ];
    for (case, answer) in servers {
        let metadata = FakeServer::http(move |request| answer(&request.method, request.path()));
        let url = format!("http://{}", metadata.address());
        let env = aws_env(&[
            ("AWS_EC2_METADATA_DISABLED", "false"),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &url),
            ("AWS_ENDPOINT_URL_ECR", &fake.url),
        ]);
        let error = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
        assert!(matches!(error, Error::NoCredentials(_)), "{case}: {error}");
        let message = error.to_string();
        assert!(
            message.starts_with("no AWS credentials found (looked in: "),
            "{case}: {message}"
        );
        assert!(
            !message.contains("SDK bug") && !message.contains("TTL"),
            "{case}: {message}"
        );
        assert!(
            metadata.request_count() > 0,
            "{case}: the address was asked"
        );
    }
    assert_eq!(
        fake.requests().len(),
        0,
        "ECR is never asked without credentials"
    );
}

#[test]
fn eks_pod_identity_credentials_from_the_container_endpoint() {
    let agent = Fake::start(|request, _| {
        match request.header("authorization") {
        Some("pod-identity-token") => Reply::Respond(
            200,
            "application/json",
            r#"{"AccessKeyId":"ASIAPODIDENTITY","SecretAccessKey":"pod-secret","Token":"pod-session-token","Expiration":"2099-01-01T00:00:00Z","AccountId":"123456789012"}"#.into(),
        ),
        _ => Reply::Respond(401, "application/json", "{}".into()),
    }
    });
    let fake = Fake::start(|_, _| ecr_answer("AWS:p", 1_900_000_000));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token").unwrap();
    let env = aws_env(&[
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            &format!("{}/v1/credentials", agent.url),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.to_str().unwrap(),
        ),
        ("AWS_ENDPOINT_URL_ECR", &fake.url),
    ]);
    fetch(&backend(Config::default(), &env), IMAGE).unwrap();
    assert_eq!(agent.requests()[0].target, "/v1/credentials");
    let authorization = fake.requests()[0]
        .header("authorization")
        .unwrap()
        .to_owned();
    assert!(
        authorization.contains("Credential=ASIAPODIDENTITY/"),
        "{authorization}"
    );
}

/// An HTTPS proxy that records which host each `CONNECT` asks for and refuses it, so a
/// test sees the API endpoint the SDK chose without any traffic leaving the machine. The
/// SDK takes it from the process's `HTTPS_PROXY` only: the test runs each case in a child
/// process started with it ([`run_child`]).
fn refusing_proxy() -> Fake {
    Fake::start(|_, _| Reply::Respond(403, "text/plain", String::new()))
}

#[test]
fn fips_and_dual_stack_hosts_use_the_matching_api_endpoint() {
    if let Some(image) = child_case() {
        let env = aws_env(&STATIC_KEYS);
        let backend = backend(Config::default(), &env).with_limits(Limits {
            attempts: 1,
            ..quick_limits()
        });
        let err = fetch(&backend, &image).unwrap_err();
        assert!(matches!(err, Error::Network { .. }), "{image}: {err}");
        return;
    }
    let cases = [
        (
            "123456789012.dkr.ecr.us-east-2.amazonaws.com/app",
            "api.ecr.us-east-2.amazonaws.com:443",
        ),
        (
            "123456789012.dkr.ecr-fips.us-east-2.amazonaws.com/app",
            "api.ecr-fips.us-east-2.amazonaws.com:443",
        ),
        (
            "123456789012.dkr-ecr.eu-west-1.on.aws/app",
            "ecr.eu-west-1.api.aws:443",
        ),
        (
            "123456789012.dkr-ecr-fips.us-west-2.on.aws/app",
            "ecr-fips.us-west-2.api.aws:443",
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app",
            "api.ecr.cn-north-1.amazonaws.com.cn:443",
        ),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app",
            "api.ecr-fips.us-gov-west-1.amazonaws.com:443",
        ),
        (
            "public.ecr.aws/app",
            "api.ecr-public.us-east-1.amazonaws.com:443",
        ),
        ("ecr-public.aws.com/app", "ecr-public.us-east-1.api.aws:443"),
    ];
    let mut chosen = Vec::new();
    for (image, _) in cases {
        let proxy = refusing_proxy();
        run_child(
            "fakes::fips_and_dual_stack_hosts_use_the_matching_api_endpoint",
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
fn the_sdk_sends_through_the_proxy_of_the_backend_environment() {
    let proxy = refusing_proxy();
    let env = aws_env(&[STATIC_KEYS[0], STATIC_KEYS[1], ("HTTPS_PROXY", &proxy.url)]);
    let backend = backend(Config::default(), &env).with_limits(Limits {
        attempts: 1,
        ..quick_limits()
    });
    let err = fetch(&backend, IMAGE).unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err}");
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].target.as_str()),
        ("CONNECT", "api.ecr.eu-west-1.amazonaws.com:443")
    );
}

#[test]
fn look_alike_hosts_are_not_served_and_cause_no_request() {
    let fake = Fake::start(|_, _| ecr_answer("AWS:p", 1_900_000_000));
    let env = aws_env(&[
        STATIC_KEYS[0],
        STATIC_KEYS[1],
        ("AWS_ENDPOINT_URL_ECR", &fake.url),
        ("AWS_ENDPOINT_URL_ECR_PUBLIC", &fake.url),
    ]);
    let hostile = [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example/app",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com:8443/app",
        "evil.dkr.ecr.us-east-1.amazonaws.com/app",
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com/app",
        "x.123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        "123456789012.dkr.ecr.us-east-1.evil.example/app",
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com/app",
        "123456789012.dkr.ecrx.us-east-1.amazonaws.com/app",
        "123456789012.dkr-ecr.us-east-1.on.aws.evil.example/app",
        "public.ecr.aws.evil.example/app",
        "evil.public.ecr.aws/app",
        "public.ecr.aws:444/app",
        "123456789012.dkr.ecr.evil.amazonaws.com/app",
        "ecr-public.aws.com.evil.example/app",
    ];
    let backend = backend(Config::default(), &env);
    for reference in hostile {
        let image = ImageRef::parse(reference).unwrap();
        assert!(!backend.serves(&image), "{reference} must not be served");
        assert!(
            matches!(
                backend.token_key(&icp_core::Request::new(&image)),
                Err(Error::NotServed(_))
            ),
            "{reference}"
        );
        let request = icp_core::Request::new(&image);
        assert!(
            matches!(backend.fetch(&request), Err(Error::NotServed(_))),
            "{reference}"
        );
    }
    assert_eq!(fake.count(), 0);
}

#[test]
fn a_rule_region_sends_a_proxy_host_to_ecr_in_that_region() {
    let fake = Fake::start(|_, _| ecr_answer("AWS:p", 1_900_000_000));
    let env = ecr_env(&fake);
    let config = Config {
        region: Some("ap-south-1".into()),
        ..Config::default()
    };
    fetch(
        &backend(config, &env),
        "registry.corp.example:5000/mirror/app",
    )
    .unwrap();
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
fn a_refused_role_is_access_denied_by_sts_and_no_token_is_asked() {
    let sts = Fake::start(|request, _| {
        assert!(
            request.body.contains("Action=AssumeRole"),
            "{}",
            request.body
        );
        Reply::Respond(
            403,
            "text/xml",
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error>\
             <RequestId>1</RequestId></ErrorResponse>"
                .into(),
        )
    });
    let ecr = Fake::start(|_, _| ecr_answer("AWS:p", 1_900_000_000));
    let env = aws_env(&[
        STATIC_KEYS[0],
        STATIC_KEYS[1],
        ("AWS_ENDPOINT_URL_ECR", &ecr.url),
        ("AWS_ENDPOINT_URL_STS", &sts.url),
    ]);
    let config = Config {
        role_arn: Some("arn:aws:iam::444455556666:role/puller".into()),
        ..Config::default()
    };
    let err = fetch(&backend(config, &env), IMAGE).unwrap_err();
    assert!(
        matches!(err, Error::AccessDenied { service: "STS", .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "access denied by STS: AccessDenied: not authorized to perform sts:AssumeRole"
    );
    assert_eq!(sts.count(), 1);
    assert_eq!(ecr.count(), 0);
}

#[test]
fn a_rejected_web_identity_token_is_access_denied_by_sts() {
    let sts = Fake::start(|request, _| {
        let action = request.body.contains("Action=AssumeRoleWithWebIdentity");
        let (code, message) = if action {
            (
                "InvalidIdentityToken",
                "Couldn't retrieve verification key from your identity provider",
            )
        } else {
            ("InvalidAction", "unexpected action")
        };
        Reply::Respond(
            400,
            "text/xml",
            format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                 <Code>{code}</Code><Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
            ),
        )
    });
    let ecr = Fake::start(|_, _| ecr_answer("AWS:p", 1_900_000_000));
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln").unwrap();
    let env = aws_env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/irsa"),
        ("AWS_ENDPOINT_URL_ECR", &ecr.url),
        ("AWS_ENDPOINT_URL_STS", &sts.url),
    ]);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert_eq!(
        err.to_string(),
        "access denied by STS: InvalidIdentityToken: Couldn't retrieve verification key from your identity provider"
    );
    assert_eq!(ecr.count(), 0);
}
