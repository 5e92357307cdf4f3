//! The pulling pod's own Azure identity in the kubelet's service-account-token mode
//! (KEP-4412), as the official `acr-credential-provider` takes it: the client id and the
//! tenant from two annotations of the pod's service account, and the pod's projected token
//! as the client assertion of a workload identity federation.
//!
//! A service account with both annotations is fetched for as itself. With neither, the
//! node's identity is used, as when the kubelet sends no token at all (so one kubelet
//! configuration serves pods with and without an identity of their own). With only one,
//! the fetch fails and says which annotation is missing: half an identity is a mistake,
//! and falling back to the node's identity would hide it.

use icp_core::names::is_annotation_key;
use icp_core::{ServiceAccount, quote};

use crate::Error;
use crate::identity::{is_valid_id, is_valid_tenant};

/// The official annotation holding the client id of the pod's identity.
pub const CLIENT_ID_ANNOTATION: &str = "kubernetes.azure.com/acr-client-id";
/// The official annotation holding the tenant of the pod's identity.
pub const TENANT_ID_ANNOTATION: &str = "kubernetes.azure.com/acr-tenant-id";

/// The annotation keys the client id and the tenant are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationKeys {
    /// The client id's key.
    pub client_id: String,
    /// The tenant's key.
    pub tenant_id: String,
}

impl Default for AnnotationKeys {
    fn default() -> Self {
        AnnotationKeys {
            client_id: CLIENT_ID_ANNOTATION.to_owned(),
            tenant_id: TENANT_ID_ANNOTATION.to_owned(),
        }
    }
}

impl AnnotationKeys {
    /// The keys a rule names, or the official ones, checked.
    pub fn resolve(client_id: Option<&str>, tenant_id: Option<&str>) -> Result<Self, Error> {
        let keys = AnnotationKeys {
            client_id: client_id.unwrap_or(CLIENT_ID_ANNOTATION).to_owned(),
            tenant_id: tenant_id.unwrap_or(TENANT_ID_ANNOTATION).to_owned(),
        };
        for (field, key) in [
            ("clientIdAnnotation", &keys.client_id),
            ("tenantIdAnnotation", &keys.tenant_id),
        ] {
            if !is_annotation_key(key) {
                return Err(Error::Config(format!(
                    "{field} {} is not an annotation key",
                    quote(key)
                )));
            }
        }
        if keys.client_id == keys.tenant_id {
            return Err(Error::Config(
                "clientIdAnnotation and tenantIdAnnotation must be different keys".into(),
            ));
        }
        Ok(keys)
    }

    /// The identity `account` asks for: `None` when it has neither annotation (the node's
    /// identity then), an error when it has one only or a value that is not an id.
    pub fn pod_identity<'a>(
        &'a self,
        account: &'a ServiceAccount,
    ) -> Result<Option<PodIdentity<'a>>, Error> {
        let client_id = account.annotation(&self.client_id);
        let tenant_id = account.annotation(&self.tenant_id);
        let (client_id, tenant_id) = match (client_id, tenant_id) {
            (None, None) => return Ok(None),
            (Some(client_id), Some(tenant_id)) => (client_id, tenant_id),
            (Some(_), None) => return Err(half(account, &self.tenant_id, &self.client_id)),
            (None, Some(_)) => return Err(half(account, &self.client_id, &self.tenant_id)),
        };
        let invalid = |key: &str, value: &str, what: &str| {
            Error::NoCredentials(format!(
                "service account {account}: annotation {key} = {} is not a valid {what}",
                quote(value)
            ))
        };
        if !is_valid_id(client_id) {
            return Err(invalid(&self.client_id, client_id, "client id"));
        }
        if !is_valid_tenant(tenant_id) {
            return Err(invalid(&self.tenant_id, tenant_id, "tenant"));
        }
        Ok(Some(PodIdentity {
            account,
            client_id,
            tenant_id,
            keys: self,
        }))
    }
}

fn half(account: &ServiceAccount, missing: &str, present: &str) -> Error {
    Error::NoCredentials(format!(
        "service account {account}: annotation {missing} is missing or empty while {present} is set; \
         set both (and list both in the kubelet's tokenAttributes) for the pod's own identity, \
         or neither for the node's"
    ))
}

/// A pod's own identity: its service account (whose token is the client assertion) and the
/// client id and tenant its annotations name.
#[derive(Debug, Clone, Copy)]
pub struct PodIdentity<'a> {
    /// The service account, with its token.
    pub account: &'a ServiceAccount,
    /// The application (client) id.
    pub client_id: &'a str,
    /// The tenant.
    pub tenant_id: &'a str,
    keys: &'a AnnotationKeys,
}

impl PodIdentity<'_> {
    /// The identity part of the token cache key: the service account (namespace, name,
    /// uid), the two annotation values, and the Azure AD `authority`; never the token.
    pub fn cache_identity(&self, authority: &str) -> String {
        format!(
            "{};acr-client-assertion;authority={authority}",
            self.account
                .key(&[self.keys.client_id.as_str(), self.keys.tenant_id.as_str()])
        )
    }

    /// `error` of a fetch as this identity, naming the service account and the annotations.
    pub fn context(&self, error: Error) -> Error {
        Error::ServiceAccount {
            account: self.account.to_string(),
            identity: format!(
                "{} = {}, {} = {}",
                self.keys.client_id, self.client_id, self.keys.tenant_id, self.tenant_id
            ),
            error: Box::new(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine;
    use icp_core::Secret;

    use super::*;

    fn account(annotations: &[(&str, &str)]) -> ServiceAccount {
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let claims = r#"{"kubernetes.io":{"namespace":"team-a","serviceaccount":{"name":"app","uid":"u1"}}}"#;
        let token = format!("{}.{}.{}", encode("{}"), encode(claims), encode("sig"));
        let annotations: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServiceAccount::from_token(Secret::new(token), annotations).unwrap()
    }

    #[test]
    fn both_annotations_name_the_pod_identity() {
        let keys = AnnotationKeys::default();
        let account = account(&[
            (CLIENT_ID_ANNOTATION, "c1"),
            (TENANT_ID_ANNOTATION, "t1"),
            ("other", "x"),
        ]);
        let identity = keys.pod_identity(&account).unwrap().unwrap();
        assert_eq!((identity.client_id, identity.tenant_id), ("c1", "t1"));
        assert_eq!(
            identity.cache_identity("https://login.example/"),
            "sa=team-a/app/u1;kubernetes.azure.com/acr-client-id=c1;\
             kubernetes.azure.com/acr-tenant-id=t1;acr-client-assertion;authority=https://login.example/"
        );
        let error = identity.context(Error::Throttled("Azure AD".into(), None));
        assert_eq!(
            error.to_string(),
            "service account team-a/app (kubernetes.azure.com/acr-client-id = c1, \
             kubernetes.azure.com/acr-tenant-id = t1): throttled by Azure AD; try again later"
        );
        assert!(!error.to_string().contains(account.token.expose()));
    }

    #[test]
    fn neither_is_the_node_identity_and_one_is_an_error_naming_the_other() {
        let keys = AnnotationKeys::default();
        assert!(keys.pod_identity(&account(&[])).unwrap().is_none());
        assert!(
            keys.pod_identity(&account(&[
                (CLIENT_ID_ANNOTATION, ""),
                (TENANT_ID_ANNOTATION, "")
            ]))
            .unwrap()
            .is_none()
        );
        let error = keys
            .pod_identity(&account(&[(CLIENT_ID_ANNOTATION, "c1")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "no Azure credentials: service account team-a/app: annotation \
                 kubernetes.azure.com/acr-tenant-id is missing or empty while \
                 kubernetes.azure.com/acr-client-id is set"
            ),
            "{error}"
        );
        let error = keys
            .pod_identity(&account(&[(TENANT_ID_ANNOTATION, "t1")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("annotation kubernetes.azure.com/acr-client-id is missing"),
            "{error}"
        );
        for (client, tenant) in [("a&b", "t1"), ("c1", "../evil"), ("c1", "t/1")] {
            let error = keys
                .pod_identity(&account(&[
                    (CLIENT_ID_ANNOTATION, client),
                    (TENANT_ID_ANNOTATION, tenant),
                ]))
                .unwrap_err()
                .to_string();
            assert!(error.contains("is not a valid"), "{error}");
        }
    }

    #[test]
    fn keys_can_be_renamed_and_are_checked() {
        let keys = AnnotationKeys::resolve(Some("example.com/client"), Some("tenant")).unwrap();
        let account = account(&[("example.com/client", "c2"), ("tenant", "t2")]);
        let identity = keys.pod_identity(&account).unwrap().unwrap();
        assert_eq!((identity.client_id, identity.tenant_id), ("c2", "t2"));
        assert_eq!(
            AnnotationKeys::resolve(None, None).unwrap(),
            AnnotationKeys::default()
        );
        // Judged as apimachinery judges annotation keys (icp_core::names): case is
        // lowered first, so an upper-case prefix is a key.
        assert!(AnnotationKeys::resolve(Some("Example.com/client"), None).is_ok());
        for (client, tenant) in [
            (Some(""), None),
            (None, Some("a/b/c")),
            (None, Some("/name")),
            (None, Some("example.com/")),
            (Some("x;y=z"), None),
            (Some(TENANT_ID_ANNOTATION), None),
        ] {
            assert!(
                AnnotationKeys::resolve(client, tenant).is_err(),
                "{client:?} {tenant:?}"
            );
        }
    }
}
