//! The ECR backend against moto's server on 127.0.0.1 as the ECR and STS APIs, through
//! `AWS_ENDPOINT_URL_ECR` and `AWS_ENDPOINT_URL_STS`: static keys, web identity (IRSA)
//! and an assumed role. moto answers each token as `AWS:<account>-auth-token` for the
//! account of the credentials that signed the request, so the password shows which
//! identity the token was fetched as. (moto has no ECR Public; the fakes test covers it.)

use std::time::{Duration, SystemTime};

use icp_core::Environment;
use icp_ecr::{Config, Error};
use icp_test_kit::aws::moto;

use crate::support::{aws_env, backend, fetch};

const IMAGE: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1";
/// The expiry moto states for every token: 2015-01-01T00:00:00Z.
const MOTO_EXPIRY: u64 = 1_420_070_400;

fn moto_env(extra: &[(&str, &str)]) -> Environment {
    let url = moto();
    let mut vars = vec![("AWS_ENDPOINT_URL_ECR", url), ("AWS_ENDPOINT_URL_STS", url)];
    vars.extend_from_slice(extra);
    aws_env(&vars)
}

#[test]
fn static_keys() {
    let env = moto_env(&[
        ("AWS_ACCESS_KEY_ID", "AKIDMOTOSTATIC"),
        ("AWS_SECRET_ACCESS_KEY", "moto-secret"),
    ]);
    let token = fetch(&backend(Config::default(), &env), IMAGE).unwrap();
    assert_eq!(token.username, "AWS");
    assert_eq!(token.password.expose(), "123456789012-auth-token");
    assert_eq!(
        token.expires_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(MOTO_EXPIRY))
    );
}

#[test]
fn web_identity_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(
        &token_file,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2ln",
    )
    .unwrap();
    let env = moto_env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/irsa-puller"),
        ("AWS_ROLE_SESSION_NAME", "irsa-test"),
    ]);
    let token = fetch(&backend(Config::default(), &env), IMAGE).unwrap();
    assert_eq!(token.password.expose(), "111122223333-auth-token");
}

#[test]
fn web_identity_token_file_that_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let env = moto_env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", missing.to_str().unwrap()),
        ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/irsa-puller"),
    ]);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert!(matches!(err, Error::Credentials(_)), "{err}");
    assert!(
        err.to_string().contains("No such file or directory"),
        "{err}"
    );
}

#[test]
fn assumed_role_from_the_rule() {
    let env = moto_env(&[
        ("AWS_ACCESS_KEY_ID", "AKIDMOTOBASE"),
        ("AWS_SECRET_ACCESS_KEY", "moto-secret"),
    ]);
    let config = Config {
        role_arn: Some("arn:aws:iam::444455556666:role/puller".into()),
        role_session_name: Some("node-1".into()),
        ..Config::default()
    };
    let token = fetch(&backend(config, &env), IMAGE).unwrap();
    assert_eq!(token.password.expose(), "444455556666-auth-token");
}

#[test]
fn no_credentials_at_all() {
    let env = moto_env(&[]);
    let err = fetch(&backend(Config::default(), &env), IMAGE).unwrap_err();
    assert!(matches!(err, Error::NoCredentials(_)), "{err}");
}

#[test]
fn fips_and_dual_stack_hosts_follow_an_endpoint_override() {
    let env = moto_env(&[
        ("AWS_ACCESS_KEY_ID", "AKIDMOTOSTATIC"),
        ("AWS_SECRET_ACCESS_KEY", "moto-secret"),
    ]);
    for image in [
        "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/app",
        "123456789012.dkr-ecr.eu-west-1.on.aws/app",
        "123456789012.dkr-ecr-fips.us-west-2.on.aws/app",
    ] {
        let token = fetch(&backend(Config::default(), &env), image).unwrap();
        assert_eq!(
            token.password.expose(),
            "123456789012-auth-token",
            "{image}"
        );
    }
}
