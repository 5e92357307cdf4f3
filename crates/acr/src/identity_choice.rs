//! Which identity the node fetches as: the rule's, `azure.json`'s, or the environment's
//! (workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set, else the VM's managed
//! identity), with every id checked.

use std::path::{Path, PathBuf};

use icp_core::{Secret, quote};

use crate::Error;
use crate::azure_json::AzureJson;
use crate::config::{Config, IdentityKind};
use crate::identity::{ClientSecret, Identity, ManagedId, is_valid_id, is_valid_tenant};

/// The identity `config` (or `azure.json`) names, with defaults from `env`; relative
/// paths against `base_dir`.
pub fn resolve_identity(
    config: &Config,
    azure_json: Option<&AzureJson>,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Identity, Error> {
    let json = azure_json.filter(|_| config.identity.is_none());
    let kind = match (config.identity, json) {
        (Some(kind), _) => kind,
        (None, Some(json)) if json.use_managed_identity_extension => IdentityKind::ManagedIdentity,
        (None, Some(json)) if json.use_federated_workload_identity_extension => {
            IdentityKind::WorkloadIdentity
        }
        (None, Some(json)) if !json.aad_client_secret.is_empty() => IdentityKind::ServicePrincipal,
        (None, Some(json)) if !json.aad_client_cert_path.is_empty() => {
            return Err(azure_json_error(
                config,
                "client certificate credentials (aadClientCertPath) are not supported",
            ));
        }
        (None, Some(_)) => {
            return Err(azure_json_error(
                config,
                "names no identity (useManagedIdentityExtension, useFederatedWorkloadIdentityExtension or aadClientSecret)",
            ));
        }
        (None, None)
            if config.federated_token_file.is_some()
                || env("AZURE_FEDERATED_TOKEN_FILE").is_some() =>
        {
            IdentityKind::WorkloadIdentity
        }
        (None, None) => IdentityKind::ManagedIdentity,
    };
    // Settings from the rule win over azure.json.
    let file = |value: Option<&String>| {
        value
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_owned())
    };
    let client_id = config
        .client_id
        .clone()
        .or_else(|| file(azure_json.map(|j| &j.aad_client_id)));
    let tenant_id = config
        .tenant_id
        .clone()
        .or_else(|| file(azure_json.map(|j| &j.tenant_id)));
    let check_client = |id: &String| {
        if is_valid_id(id) {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "client id {} is not a valid id",
                quote(id)
            )))
        }
    };
    let check_tenant = |tenant: &String| {
        if is_valid_tenant(tenant) {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "tenant id {} is not a valid tenant",
                quote(tenant)
            )))
        }
    };
    let unused = |field: &str, present: bool| {
        if present {
            Err(Error::Config(format!(
                "{field} is not used by identity {kind:?}"
            )))
        } else {
            Ok(())
        }
    };
    match kind {
        IdentityKind::ManagedIdentity => {
            unused("federatedTokenFile", config.federated_token_file.is_some())?;
            unused("clientSecretFile", config.client_secret_file.is_some())?;
            let from_json = azure_json
                .map(|j| j.user_assigned_identity_id.trim())
                .filter(|id| !id.is_empty());
            let id = match (&config.client_id, &config.resource_id, from_json) {
                (Some(_), Some(_), _) => {
                    return Err(Error::Config(
                        "give clientId or resourceId, not both".into(),
                    ));
                }
                (Some(id), None, _) => ManagedId::ClientId(id.clone()),
                (None, Some(id), _) => ManagedId::ResourceId(id.clone()),
                // As the official provider: an id with a subscription path is a resource id.
                (None, None, Some(id)) if id.to_ascii_lowercase().contains("/subscriptions/") => {
                    ManagedId::ResourceId(id.to_owned())
                }
                (None, None, Some(id)) => ManagedId::ClientId(id.to_owned()),
                (None, None, None) => ManagedId::System,
            };
            if let ManagedId::ClientId(id) | ManagedId::ResourceId(id) = &id
                && !is_valid_id(id)
            {
                return Err(Error::Config(format!(
                    "managed identity id {} is not a valid id",
                    quote(id)
                )));
            }
            if let Some(tenant) = &tenant_id {
                check_tenant(tenant)?;
            }
            Ok(Identity::Managed { id, tenant_id })
        }
        IdentityKind::WorkloadIdentity => {
            unused("resourceId", config.resource_id.is_some())?;
            unused("clientSecretFile", config.client_secret_file.is_some())?;
            let client_id = client_id
                .or_else(|| env("AZURE_CLIENT_ID"))
                .ok_or_else(|| {
                    Error::Config("workload identity needs clientId or AZURE_CLIENT_ID".into())
                })?;
            let tenant_id = tenant_id
                .or_else(|| env("AZURE_TENANT_ID"))
                .ok_or_else(|| {
                    Error::Config("workload identity needs tenantId or AZURE_TENANT_ID".into())
                })?;
            check_client(&client_id)?;
            check_tenant(&tenant_id)?;
            let token_file = config
                .federated_token_file
                .as_ref()
                .map(|path| base_dir.join(path))
                .or_else(|| {
                    file(azure_json.map(|j| &j.aad_federated_token_file)).map(PathBuf::from)
                })
                .or_else(|| env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from))
                .ok_or_else(|| {
                    Error::Config(
                        "workload identity needs federatedTokenFile or AZURE_FEDERATED_TOKEN_FILE"
                            .into(),
                    )
                })?;
            Ok(Identity::Workload {
                client_id,
                tenant_id,
                token_file,
            })
        }
        IdentityKind::ServicePrincipal => {
            unused("resourceId", config.resource_id.is_some())?;
            unused("federatedTokenFile", config.federated_token_file.is_some())?;
            let client_id = client_id
                .ok_or_else(|| Error::Config("a service principal needs clientId".into()))?;
            let tenant_id = tenant_id
                .ok_or_else(|| Error::Config("a service principal needs tenantId".into()))?;
            check_client(&client_id)?;
            check_tenant(&tenant_id)?;
            let inline = azure_json
                .map(|j| j.aad_client_secret.as_str())
                .filter(|s| !s.is_empty());
            let secret = match (&config.client_secret_file, inline) {
                (Some(path), _) => ClientSecret::File(base_dir.join(path)),
                (None, Some(secret)) => ClientSecret::Inline(Secret::new(secret)),
                (None, None) => {
                    return Err(Error::Config("a service principal needs clientSecretFile or azure.json's aadClientSecret".into()));
                }
            };
            Ok(Identity::ServicePrincipal {
                client_id,
                tenant_id,
                secret,
            })
        }
    }
}

fn azure_json_error(config: &Config, reason: &str) -> Error {
    let path = config
        .azure_config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Error::AzureConfig {
        path,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use icp_core::Environment;

    use crate::cloud::Cloud;
    use crate::cloud_choice::CloudChoice;
    use crate::config::Config;
    use crate::identity::{ClientSecret, Identity, ManagedId};
    use crate::settings::resolve;
    use crate::settings::testing::{no_env, resolve_yaml};

    #[test]
    fn default_is_system_managed_identity_in_the_image_cloud() {
        let settings = resolve(&Config::default(), Path::new("/"), &no_env()).unwrap();
        assert_eq!(
            settings.identity,
            Identity::Managed {
                id: ManagedId::System,
                tenant_id: None
            }
        );
        assert_eq!(settings.cloud, CloudChoice::BySuffix);
        assert_eq!(
            settings.cloud.cloud_of("myacr.azurecr.cn"),
            Some(Cloud::china())
        );
        assert_eq!(
            settings.cloud.cloud_of("myacr.azurecr.io.evil.example"),
            None
        );
    }

    #[test]
    fn workload_identity_from_the_environment() {
        let env = Environment::from_pairs([
            ("AZURE_CLIENT_ID", "app-id"),
            ("AZURE_TENANT_ID", "tenant-id"),
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                "/var/run/secrets/azure/tokens/azure-identity-token",
            ),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com"),
        ]);
        let settings = resolve(&Config::default(), Path::new("/"), &env).unwrap();
        assert_eq!(
            settings.identity,
            Identity::Workload {
                client_id: "app-id".into(),
                tenant_id: "tenant-id".into(),
                token_file: "/var/run/secrets/azure/tokens/azure-identity-token".into(),
            }
        );
        assert_eq!(
            settings.authority_host.as_deref(),
            Some("https://login.microsoftonline.com/")
        );
        // The rule's fields win, and relative paths are against the rules file's directory.
        let settings =
            resolve_yaml(r#"{"identity": "workloadIdentity", "clientId": "other", "federatedTokenFile": "token"}"#, &env).unwrap();
        let Identity::Workload {
            client_id,
            token_file,
            ..
        } = settings.identity
        else {
            panic!()
        };
        assert_eq!(
            (client_id.as_str(), token_file),
            ("other", PathBuf::from("/rules/token"))
        );
        let error = resolve_yaml(r#"{"identity": "workloadIdentity"}"#, &no_env()).unwrap_err();
        assert!(error.to_string().contains("AZURE_CLIENT_ID"), "{error}");
    }

    #[test]
    fn identity_settings_are_checked() {
        for bad in [
            r#"{"clientId": "a", "resourceId": "b"}"#,
            r#"{"identity": "managedIdentity", "clientSecretFile": "s"}"#,
            r#"{"identity": "servicePrincipal", "clientId": "a", "tenantId": "t"}"#,
            r#"{"identity": "servicePrincipal", "clientSecretFile": "s", "tenantId": "t"}"#,
            r#"{"identity": "servicePrincipal", "clientId": "a", "tenantId": "../x", "clientSecretFile": "s"}"#,
            r#"{"clientId": "a&b"}"#,
        ] {
            assert!(resolve_yaml(bad, &no_env()).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Config>(r#"{"identity": "certificate"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"clientSecret": "inline"}"#).is_err());
        let settings = resolve_yaml(
            r#"{"identity": "servicePrincipal", "clientId": "a", "tenantId": "t", "clientSecretFile": "secret"}"#,
            &no_env(),
        )
        .unwrap();
        assert_eq!(
            settings.identity,
            Identity::ServicePrincipal {
                client_id: "a".into(),
                tenant_id: "t".into(),
                secret: ClientSecret::File("/rules/secret".into())
            }
        );
    }
}
