//! The Azure identity tokens are fetched as, once the configuration is resolved.

use std::path::PathBuf;

use icp_core::Secret;

/// Which managed identity of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedId {
    /// The VM's system-assigned identity.
    System,
    /// A user-assigned identity, by client id.
    ClientId(String),
    /// A user-assigned identity, by ARM resource id.
    ResourceId(String),
}

/// Where a service principal's client secret is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSecret {
    /// Read from `azure.json` (`aadClientSecret`).
    Inline(Secret),
    /// In a file, read at each fetch so a rotated secret is picked up.
    File(PathBuf),
}

/// An Azure identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A managed identity, through the instance metadata service.
    Managed {
        /// Which one.
        id: ManagedId,
        /// The tenant, sent to the registry when known.
        tenant_id: Option<String>,
    },
    /// Workload identity federation: a Kubernetes service account token, read from a file,
    /// exchanged with Azure AD as a client assertion.
    Workload {
        /// The application (client) id.
        client_id: String,
        /// The tenant.
        tenant_id: String,
        /// The file holding the federated token.
        token_file: PathBuf,
    },
    /// A service principal with a client secret.
    ServicePrincipal {
        /// The application (client) id.
        client_id: String,
        /// The tenant.
        tenant_id: String,
        /// The secret.
        secret: ClientSecret,
    },
}

impl Identity {
    /// A fingerprint naming the identity: its kind and ids, never a secret.
    pub fn fingerprint(&self) -> String {
        match self {
            Identity::Managed { id, tenant_id } => {
                let id = match id {
                    ManagedId::System => "system".to_owned(),
                    ManagedId::ClientId(id) => format!("client-id={id}"),
                    ManagedId::ResourceId(id) => format!("resource-id={id}"),
                };
                match tenant_id {
                    Some(tenant) => format!("managed-identity:{id}:tenant={tenant}"),
                    None => format!("managed-identity:{id}"),
                }
            }
            Identity::Workload {
                client_id,
                tenant_id,
                token_file,
                ..
            } => format!(
                "workload-identity:tenant={tenant_id}:client-id={client_id}:token-file={}",
                token_file.display()
            ),
            Identity::ServicePrincipal {
                client_id,
                tenant_id,
                secret,
            } => {
                let source = match secret {
                    ClientSecret::Inline(_) => "azure.json".to_owned(),
                    ClientSecret::File(path) => path.display().to_string(),
                };
                format!(
                    "service-principal:tenant={tenant_id}:client-id={client_id}:secret-from={source}"
                )
            }
        }
    }

    /// The tenant, when known.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Identity::Managed { tenant_id, .. } => tenant_id.as_deref(),
            Identity::Workload { tenant_id, .. } | Identity::ServicePrincipal { tenant_id, .. } => {
                Some(tenant_id)
            }
        }
    }
}

/// Whether `id` is safe as a client id, tenant or resource id: it goes into URLs.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 512
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._/".contains(&b))
}

/// Whether `tenant` is safe as a path segment of the Azure AD token URL.
pub fn is_valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 256
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b))
        && !tenant.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_name_ids_never_secrets() {
        let sp = Identity::ServicePrincipal {
            client_id: "app".into(),
            tenant_id: "tenant".into(),
            secret: ClientSecret::Inline(Secret::new("hunter2")),
        };
        assert_eq!(
            sp.fingerprint(),
            "service-principal:tenant=tenant:client-id=app:secret-from=azure.json"
        );
        assert!(!format!("{sp:?}").contains("hunter2"));
        let mi = Identity::Managed {
            id: ManagedId::ResourceId("/subscriptions/s/x".into()),
            tenant_id: None,
        };
        assert_eq!(
            mi.fingerprint(),
            "managed-identity:resource-id=/subscriptions/s/x"
        );
        let with_tenant = Identity::Managed {
            id: ManagedId::System,
            tenant_id: Some("t".into()),
        };
        assert_eq!(
            with_tenant.fingerprint(),
            "managed-identity:system:tenant=t"
        );
        assert_ne!(
            Identity::Managed {
                id: ManagedId::System,
                tenant_id: None
            }
            .fingerprint(),
            Identity::Managed {
                id: ManagedId::ClientId("c".into()),
                tenant_id: None
            }
            .fingerprint()
        );
    }

    #[test]
    fn ids_and_tenants_are_checked() {
        assert!(is_valid_tenant("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        assert!(is_valid_tenant("contoso.onmicrosoft.com"));
        for bad in ["", "../x", "a/b", "a?b", ".hidden", "a b"] {
            assert!(!is_valid_tenant(bad), "{bad}");
        }
        assert!(is_valid_id(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
        ));
        assert!(!is_valid_id("a&b=c"));
    }
}
