//! A pulling pod's own AWS identity (the kubelet's service-account-token mode): which IAM
//! role its service account token is exchanged for, the session it is assumed with, and
//! the key its tokens are cached under. Nothing here does I/O, and nothing shows the token.

use icp_core::{ServiceAccount, quote};

use crate::Error;
use crate::config::{is_role_arn, is_session_name_char};

/// The longest role session name STS accepts.
const MAX_SESSION_NAME: usize = 64;

/// A role the backend falls back to for a service account token whose service account has
/// no role annotation, and where the setting came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefaultRole {
    /// The role ARN.
    pub arn: String,
    /// Where it was set, as in `AWS_ECR_ROLE_ARN`.
    pub source: &'static str,
}

/// Where a pod's role came from.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    /// The service account's annotation of this key.
    Annotation(&'a str),
    /// The backend's [`DefaultRole`], set by this setting.
    Default(&'static str),
}

/// The role a pod's service account token is exchanged for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PodRole<'a> {
    /// The pod's service account, its token and annotations.
    pub account: &'a ServiceAccount,
    /// The IAM role ARN to assume.
    pub role_arn: &'a str,
    origin: Origin<'a>,
    annotation_key: &'a str,
}

impl<'a> PodRole<'a> {
    /// The role for `account`: its annotation `annotation_key`, else `default`; `None`
    /// when it has neither (the node's identity is used then). A value that is no IAM role
    /// ARN is an error naming the service account and the annotation.
    pub fn resolve(
        account: &'a ServiceAccount,
        annotation_key: &'a str,
        default: Option<&'a DefaultRole>,
    ) -> Result<Option<PodRole<'a>>, Error> {
        let (role_arn, origin) = match (account.annotation(annotation_key), default) {
            (Some(arn), _) => (arn, Origin::Annotation(annotation_key)),
            (None, Some(default)) => (default.arn.as_str(), Origin::Default(default.source)),
            (None, None) => return Ok(None),
        };
        let role = PodRole {
            account,
            role_arn,
            origin,
            annotation_key,
        };
        if !is_role_arn(role_arn) {
            return Err(role.error(Error::InvalidRole));
        }
        Ok(Some(role))
    }

    /// The role session name: `<namespace>.<name>` of the service account, so that
    /// CloudTrail shows which one pulled. Both parts are Kubernetes names, whose
    /// characters STS accepts (any other would become `-`); cut at STS's 64 characters.
    pub fn session_name(&self) -> String {
        format!("{}.{}", self.account.namespace, self.account.name)
            .chars()
            .map(|c| if is_session_name_char(c) { c } else { '-' })
            .take(MAX_SESSION_NAME)
            .collect()
    }

    /// The identity part of the token cache key: the service account (namespace, name,
    /// uid and the annotation's value) and the role; never the token.
    pub fn key(&self) -> String {
        format!(
            "{};aws:web-identity;roleArn={}",
            self.account.key(&[self.annotation_key]),
            self.role_arn
        )
    }

    /// Where the role was named: `annotation <key>`, or the default role's setting.
    pub fn origin(&self) -> String {
        match self.origin {
            Origin::Annotation(key) => format!("annotation {key}"),
            Origin::Default(source) => source.to_owned(),
        }
    }

    /// `cause`, said of this service account and role.
    pub fn error(&self, cause: Error) -> Error {
        Error::ServiceAccount {
            account: self.account.to_string(),
            origin: self.origin(),
            role: quote(self.role_arn),
            cause: Box::new(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use icp_core::Secret;

    use super::*;
    use crate::config::ROLE_ANNOTATION;

    fn account(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
        ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("{namespace}-{name}-uid"),
            token: Secret::new("header.payload.signature"),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    const ROLE: &str = "arn:aws:iam::111122223333:role/puller";

    #[test]
    fn the_annotation_wins_over_the_default_and_neither_means_the_node() {
        let default = DefaultRole {
            arn: "arn:aws:iam::444455556666:role/default".into(),
            source: "AWS_ECR_ROLE_ARN",
        };
        let annotated = account("team-a", "app", &[(ROLE_ANNOTATION, ROLE)]);
        let role = PodRole::resolve(&annotated, ROLE_ANNOTATION, Some(&default))
            .unwrap()
            .unwrap();
        assert_eq!(role.role_arn, ROLE);
        let bare = account("team-a", "app", &[]);
        let role = PodRole::resolve(&bare, ROLE_ANNOTATION, Some(&default))
            .unwrap()
            .unwrap();
        assert_eq!(role.role_arn, default.arn);
        assert!(
            PodRole::resolve(&bare, ROLE_ANNOTATION, None)
                .unwrap()
                .is_none()
        );
        let renamed = account("team-a", "app", &[("example.io/role", ROLE)]);
        assert!(
            PodRole::resolve(&renamed, ROLE_ANNOTATION, None)
                .unwrap()
                .is_none()
        );
        assert!(
            PodRole::resolve(&renamed, "example.io/role", None)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_value_that_is_no_role_is_an_error_naming_the_account_and_annotation() {
        let hostile = account(
            "team-a",
            "app",
            &[(ROLE_ANNOTATION, "arn:aws:iam::1:user/x\n")],
        );
        let error = PodRole::resolve(&hostile, ROLE_ANNOTATION, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "service account team-a/app, annotation eks.amazonaws.com/ecr-role-arn = \
             \"arn:aws:iam::1:user/x\\n\": not an IAM role ARN \
             (arn:<partition>:iam::<12-digit account>:role/<name>)"
        );
        assert!(!error.contains("header.payload"), "{error}");
    }

    #[test]
    fn session_names_are_valid_for_sts() {
        let name = |namespace: &str, account_name: &str| {
            let account = account(namespace, account_name, &[(ROLE_ANNOTATION, ROLE)]);
            PodRole::resolve(&account, ROLE_ANNOTATION, None)
                .unwrap()
                .unwrap()
                .session_name()
        };
        assert_eq!(name("team-a", "app"), "team-a.app");
        assert_eq!(name("kube-system", "a.b.c"), "kube-system.a.b.c");
        assert_eq!(name("ns", "odd/name:x"), "ns.odd-name-x");
        let long = name(&"n".repeat(20), &"a".repeat(253));
        assert_eq!(long, format!("{}.{}", "n".repeat(20), "a".repeat(43)));
    }

    #[test]
    fn the_key_names_the_account_annotation_and_role_never_the_token() {
        let key = |namespace: &str, role: &str| {
            let account = account(namespace, "app", &[(ROLE_ANNOTATION, role)]);
            PodRole::resolve(&account, ROLE_ANNOTATION, None)
                .unwrap()
                .unwrap()
                .key()
        };
        let a = key("team-a", ROLE);
        assert_eq!(
            a,
            "sa=team-a/app/team-a-app-uid;eks.amazonaws.com/ecr-role-arn=\
             arn:aws:iam::111122223333:role/puller;aws:web-identity;\
             roleArn=arn:aws:iam::111122223333:role/puller"
        );
        assert_ne!(a, key("team-b", ROLE));
        assert_ne!(a, key("team-a", "arn:aws:iam::111122223333:role/other"));
        assert!(!a.contains("payload"));
    }
}
