//! The node's files: `azure.json`, as the official `acr-credential-provider` reads it, and
//! a custom cloud's environment file (`AZURE_ENVIRONMENT_FILEPATH`).

use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// The node file `azure.json`, as far as ACR credentials go. Unknown fields are ignored:
/// the file configures the whole cloud provider.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AzureJson {
    #[serde(default)]
    pub cloud: String,
    #[serde(default)]
    pub tenant_id: String,
    #[serde(default)]
    pub aad_client_id: String,
    #[serde(default)]
    pub aad_client_secret: String,
    #[serde(default)]
    pub aad_client_cert_path: String,
    #[serde(default)]
    pub use_managed_identity_extension: bool,
    #[serde(default, rename = "userAssignedIdentityID")]
    pub user_assigned_identity_id: String,
    #[serde(default)]
    pub use_federated_workload_identity_extension: bool,
    #[serde(default)]
    pub aad_federated_token_file: String,
}

/// The custom cloud's environment file (`AZURE_ENVIRONMENT_FILEPATH`), as go-autorest
/// writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentFile {
    #[serde(default)]
    pub active_directory_endpoint: String,
    #[serde(default, rename = "containerRegistryDNSSuffix")]
    pub container_registry_dns_suffix: String,
}

/// Reads `azure.json` at `path`; a problem names the file, never a value in it.
pub fn read_azure_json(path: &Path) -> Result<AzureJson, Error> {
    let bad = |reason: String| Error::AzureConfig {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let text = text.trim_start_matches('\u{feff}');
    // serde_json's message names a line and column, never the value found there.
    serde_json::from_str(text).map_err(|e| bad(format!("not valid azure.json: {e}")))
}

/// Reads the custom cloud's environment file at `path`.
pub fn read_environment_file(path: &str) -> Result<EnvironmentFile, Error> {
    let bad = |reason: String| Error::AzureConfig {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("not a cloud environment file: {e}")))
}

#[cfg(test)]
mod tests {
    use crate::cloud::Cloud;
    use crate::cloud_choice::CloudChoice;
    use crate::identity::{ClientSecret, Identity, ManagedId};
    use crate::settings::testing::{no_env, resolve_yaml, write_azure_json};
    use icp_core::Secret;

    #[test]
    fn azure_json_as_the_official_provider_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&str, Identity)] = &[
            (
                r#"{"cloud": "AzurePublicCloud", "tenantId": "t", "useManagedIdentityExtension": true, "userAssignedIdentityID": "", "subscriptionId": "s", "vmType": "vmss"}"#,
                Identity::Managed { id: ManagedId::System, tenant_id: Some("t".into()) },
            ),
            (
                r#"{"useManagedIdentityExtension": true, "userAssignedIdentityID": "11111111-2222-3333-4444-555555555555"}"#,
                Identity::Managed { id: ManagedId::ClientId("11111111-2222-3333-4444-555555555555".into()), tenant_id: None },
            ),
            (
                r#"{"useManagedIdentityExtension": true, "userAssignedIdentityID": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet"}"#,
                Identity::Managed {
                    id: ManagedId::ResourceId(
                        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet".into(),
                    ),
                    tenant_id: None,
                },
            ),
            (
                r#"{"tenantId": "t", "aadClientId": "app", "aadClientSecret": "s3cret", "useManagedIdentityExtension": false}"#,
                Identity::ServicePrincipal {
                    client_id: "app".into(),
                    tenant_id: "t".into(),
                    secret: ClientSecret::Inline(Secret::new("s3cret")),
                },
            ),
            (
                r#"{"tenantId": "t", "aadClientId": "app", "useFederatedWorkloadIdentityExtension": true, "aadFederatedTokenFile": "/tok"}"#,
                Identity::Workload { client_id: "app".into(), tenant_id: "t".into(), token_file: "/tok".into() },
            ),
        ];
        for (body, expected) in cases {
            let settings = resolve_yaml(&write_azure_json(dir.path(), body), &no_env()).unwrap();
            assert_eq!(&settings.identity, expected, "{body}");
            assert_eq!(settings.cloud, CloudChoice::Fixed(Cloud::public()));
        }
        let settings = resolve_yaml(
            &write_azure_json(
                dir.path(),
                r#"{"cloud": "AzureChinaCloud", "useManagedIdentityExtension": true}"#,
            ),
            &no_env(),
        )
        .unwrap();
        assert_eq!(settings.cloud, CloudChoice::Fixed(Cloud::china()));
        assert_eq!(settings.cloud.cloud_of("myacr.azurecr.io"), None);
        for (body, message) in [
            (r#"{"aadClientId": "app"}"#, "names no identity"),
            (r#"{"aadClientCertPath": "/c.pfx"}"#, "not supported"),
            (
                r#"{"cloud": "Mars", "useManagedIdentityExtension": true}"#,
                "unknown cloud",
            ),
            ("not json", "not valid azure.json"),
            (
                r#"{"useManagedIdentityExtension": "yes", "aadClientSecret": "s3cret"}"#,
                "not valid azure.json",
            ),
        ] {
            let error = resolve_yaml(&write_azure_json(dir.path(), body), &no_env()).unwrap_err();
            assert!(error.to_string().contains(message), "{body}: {error}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        let error =
            resolve_yaml(r#"{"azureConfig": "/nonexistent/azure.json"}"#, &no_env()).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/azure.json"),
            "{error}"
        );
    }
}
