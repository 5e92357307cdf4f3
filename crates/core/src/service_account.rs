//! The pulling pod's service account, as the kubelet passes it in service-account-token
//! mode (KEP-4412): a projected token for the audience the kubelet config names, and the
//! service account annotations the config lists.
//!
//! The token's claims say which service account it belongs to. They are read, never
//! verified: the plugin only hands the token to a cloud, which verifies it against the
//! cluster's issuer. What the claims say is used to key caches, so that a credential
//! fetched with one service account's token is never served to another, and to name the
//! service account in messages. The token itself never appears in a key, a message or a
//! log line.

use std::collections::BTreeMap;
use std::fmt;

use crate::{Secret, names};

/// Why a token is not a Kubernetes service account token. Never quotes the token.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    /// Not three base64url parts, or a payload that is not a JSON object.
    #[error("the service account token is not a JWT")]
    NotJwt,
    /// A JWT without the `kubernetes.io` claims of a projected service account token.
    #[error("the service account token has no {0} claim")]
    MissingClaim(&'static str),
    /// A claim that cannot be what it names: a namespace that is no DNS label, a name that
    /// is no DNS subdomain, a uid with characters no uid has. Its value is not quoted: it
    /// was made to be shown.
    #[error("the service account token's {0} claim is not a Kubernetes {1}")]
    InvalidClaim(&'static str, &'static str),
}

/// The longest uid taken: Kubernetes uids are 36-character UUIDs.
const MAX_UID: usize = 128;

/// The pod's service account, its token, and the annotations passed on.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account's name.
    pub name: String,
    /// The service account's uid: a deleted and recreated account is another identity.
    pub uid: String,
    /// The projected token, for the cloud to verify and exchange.
    pub token: Secret,
    /// The annotations the kubelet passed on (those the kubelet config names).
    pub annotations: BTreeMap<String, String>,
}

impl ServiceAccount {
    /// The token's audiences: its `aud` claim, a string or a list of strings; empty when
    /// it has none (or the token is no JWT).
    pub fn audiences(&self) -> Vec<String> {
        let Ok(claims) = crate::jwt::claims(self.token.expose()) else {
            return Vec::new();
        };
        match claims.get("aud") {
            Some(serde_json::Value::String(audience)) => vec![audience.clone()],
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The service account `token` belongs to, from its `kubernetes.io` claims, with the
    /// `annotations` the kubelet passed on.
    pub fn from_token(
        token: Secret,
        annotations: BTreeMap<String, String>,
    ) -> Result<ServiceAccount, ServiceAccountError> {
        let claims = crate::jwt::claims(token.expose()).map_err(|_| ServiceAccountError::NotJwt)?;
        let kubernetes = claims
            .get("kubernetes.io")
            .ok_or(ServiceAccountError::MissingClaim("kubernetes.io"))?;
        let text = |value: Option<&serde_json::Value>, claim: &'static str| {
            value
                .and_then(serde_json::Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
                .ok_or(ServiceAccountError::MissingClaim(claim))
        };
        let account = kubernetes.get("serviceaccount");
        let namespace = text(kubernetes.get("namespace"), "kubernetes.io.namespace")?;
        let name = text(
            account.and_then(|a| a.get("name")),
            "kubernetes.io.serviceaccount.name",
        )?;
        let uid = text(
            account.and_then(|a| a.get("uid")),
            "kubernetes.io.serviceaccount.uid",
        )?;
        // The claims key caches and name the account in messages: what no Kubernetes
        // object can be called is refused, so that forged claims can neither collide in a
        // key (`a/b` + `c` against `a` + `b/c`) nor put escape sequences on a line.
        if !names::is_dns1123_label(&namespace) {
            return Err(ServiceAccountError::InvalidClaim(
                "kubernetes.io.namespace",
                "namespace name",
            ));
        }
        if !names::is_dns1123_subdomain(&name) {
            return Err(ServiceAccountError::InvalidClaim(
                "kubernetes.io.serviceaccount.name",
                "service account name",
            ));
        }
        let uid_ok = uid.len() <= MAX_UID
            && uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !uid_ok {
            return Err(ServiceAccountError::InvalidClaim(
                "kubernetes.io.serviceaccount.uid",
                "uid",
            ));
        }
        Ok(ServiceAccount {
            namespace,
            name,
            uid,
            token,
            annotations,
        })
    }

    /// The annotation `key`, if the kubelet passed it on and it is not empty.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .get(key)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// A cache key part for this service account and the values of the annotation `keys`
    /// a backend used: namespace, name, uid and those values; never the token.
    pub fn key(&self, keys: &[&str]) -> String {
        let mut key = format!("sa={}/{}/{}", self.namespace, self.name, self.uid);
        for name in keys {
            if let Some(value) = self.annotation(name) {
                key.push_str(&format!(";{name}={value}"));
            }
        }
        key
    }
}

/// `namespace/name`, as messages name a service account.
impl fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("uid", &self.uid)
            .field("token", &self.token)
            .field("annotations", &self.annotations)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt(claims: &str) -> Secret {
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        Secret::new(format!(
            "{}.{}.{}",
            encode(r#"{"alg":"RS256"}"#),
            encode(claims),
            encode("sig")
        ))
    }

    const CLAIMS: &str = r#"{"aud":["sts.amazonaws.com"],"sub":"system:serviceaccount:team-a:app",
        "kubernetes.io":{"namespace":"team-a","pod":{"name":"web-1","uid":"p1"},
        "serviceaccount":{"name":"app","uid":"sa-uid-1"}}}"#;

    #[test]
    fn reads_the_service_account_from_the_claims() {
        let annotations = BTreeMap::from([("role".to_owned(), "arn:r".to_owned())]);
        let account = ServiceAccount::from_token(jwt(CLAIMS), annotations).unwrap();
        assert_eq!(account.to_string(), "team-a/app");
        assert_eq!(account.uid, "sa-uid-1");
        assert_eq!(account.annotation("role"), Some("arn:r"));
        assert_eq!(account.annotation("other"), None);
        assert_eq!(
            account.key(&["role", "other"]),
            "sa=team-a/app/sa-uid-1;role=arn:r"
        );
    }

    #[test]
    fn never_shows_the_token() {
        let token = jwt(CLAIMS);
        let secret = token.expose().to_owned();
        let account = ServiceAccount::from_token(token, BTreeMap::new()).unwrap();
        for shown in [
            format!("{account}"),
            format!("{account:?}"),
            account.key(&[]),
        ] {
            assert!(!shown.contains(&secret), "{shown}");
            assert!(
                !shown.contains(secret.split('.').nth(1).unwrap()),
                "{shown}"
            );
        }
    }

    #[test]
    fn claims_that_no_kubernetes_object_has_are_refused_unquoted() {
        let claims = |namespace: &str, name: &str, uid: &str| {
            serde_json::json!({"kubernetes.io": {"namespace": namespace,
                "serviceaccount": {"name": name, "uid": uid}}})
            .to_string()
        };
        let good = ServiceAccount::from_token(
            jwt(&claims("team-a", "app.v1", "0b1c-2d_3.e")),
            BTreeMap::new(),
        );
        assert_eq!(good.unwrap().key(&[]), "sa=team-a/app.v1/0b1c-2d_3.e");
        for (namespace, name, uid, claim) in [
            ("a/b", "c", "u", "namespace"),
            ("a", "b/c", "u", "serviceaccount.name"),
            ("a", "b", "u;role=x", "serviceaccount.uid"),
            ("a\u{1b}[31m", "b", "u", "namespace"),
            ("a", "B", "u", "serviceaccount.name"),
            ("a", "b", "u\n", "serviceaccount.uid"),
            ("team.a", "b", "u", "namespace"),
            ("a", "b", &"u".repeat(129), "serviceaccount.uid"),
        ] {
            let error =
                ServiceAccount::from_token(jwt(&claims(namespace, name, uid)), BTreeMap::new())
                    .unwrap_err()
                    .to_string();
            assert!(
                error.contains(&format!("kubernetes.io.{claim} claim is not a Kubernetes")),
                "{error}"
            );
            assert!(
                !error.contains('\u{1b}') && !error.contains('\n') && !error.contains(';'),
                "{error}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_projected_token() {
        for (token, expected) in [
            (Secret::new("opaque"), "not a JWT"),
            (Secret::new("a.b"), "not a JWT"),
            (Secret::new("a.!!.c"), "not a JWT"),
            (jwt("[1]"), "not a JWT"),
            (jwt(r#"{"sub":"x"}"#), "no kubernetes.io claim"),
            (
                jwt(r#"{"kubernetes.io":{"namespace":"n","serviceaccount":{"name":"a"}}}"#),
                "no kubernetes.io.serviceaccount.uid claim",
            ),
        ] {
            let error = ServiceAccount::from_token(token, BTreeMap::new()).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }
}
