//! Which AWS identity a fetch would run as, told from the configuration and the
//! environment alone, without reading a secret or doing any I/O.

use icp_core::Environment;

use crate::Config;

/// The environment variables that choose the identity of the default credential chain.
/// Only names, paths, URIs and the access key id are read: none of them is a secret
/// (`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_CONTAINER_AUTHORIZATION_TOKEN`
/// are deliberately absent; the token files are named by path).
const IDENTITY_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
];

/// A fingerprint of the identity: the rule's role and every identity-choosing variable
/// that is set, as `name=value` pairs joined by `;`. Two processes with the same
/// fingerprint fetch tokens as the same principal.
pub(crate) fn fingerprint(config: &Config, env: &Environment) -> String {
    let mut parts = vec!["aws".to_owned()];
    for name in IDENTITY_VARIABLES {
        if let Some(value) = env.non_empty(name) {
            parts.push(format!("{name}={value}"));
        }
    }
    if let Some(role) = &config.role_arn {
        parts.push(format!("roleArn={role}"));
        parts.push(format!("roleSessionName={}", config.session_name()));
    }
    parts.join(";")
}

/// Whether the environment names credentials of its own (keys, a profile, a web identity
/// token, a container endpoint), so that the default chain does not reach the instance
/// metadata service.
pub(crate) fn names_credentials(env: &Environment) -> bool {
    IDENTITY_VARIABLES
        .iter()
        .filter(|name| **name != "AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .any(|name| env.non_empty(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment::from_pairs(vars.iter().copied())
    }

    #[test]
    fn names_the_identity_and_never_a_secret() {
        let vars = [
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
            ("AWS_SESSION_TOKEN", "session-secret"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-secret"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/irsa"),
        ];
        let print = fingerprint(&Config::default(), &env(&vars));
        assert_eq!(
            print,
            "aws;AWS_ACCESS_KEY_ID=AKIDEXAMPLE;AWS_ROLE_ARN=arn:aws:iam::123456789012:role/irsa;\
             AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/secrets/token"
        );
        for secret in ["very-secret", "session-secret", "pod-secret"] {
            assert!(!print.contains(secret), "{print}");
        }
    }

    #[test]
    fn differs_by_role_and_profile() {
        let plain = fingerprint(&Config::default(), &env(&[]));
        let profile = fingerprint(&Config::default(), &env(&[("AWS_PROFILE", "team")]));
        let role = Config {
            role_arn: Some("arn:aws:iam::123456789012:role/p".into()),
            ..Config::default()
        };
        let assumed = fingerprint(&role, &env(&[]));
        assert_eq!(plain, "aws");
        assert_ne!(plain, profile);
        assert_ne!(plain, assumed);
        assert_eq!(
            assumed,
            "aws;roleArn=arn:aws:iam::123456789012:role/p;roleSessionName=image-credential-provider"
        );
    }
}
