//! The `acr:` section of a rule, the node's `azure.json`, and how they resolve into one
//! identity, one cloud and the registry mirrors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use icp_core::{Secret, quote};
use serde::Deserialize;

use crate::Error;
use crate::cloud::{Cloud, REGISTRY_AUDIENCE, normalise_authority};
use crate::host::{is_login_server, is_valid_suffix};
use crate::identity::{ClientSecret, Identity, ManagedId, is_valid_id, is_valid_tenant};
use crate::service_account::AnnotationKeys;

/// The `acr:` section of a rule. Every field is optional: with none, the identity is
/// workload identity when `AZURE_FEDERATED_TOKEN_FILE` is set and the VM's
/// system-assigned managed identity otherwise, and the cloud is the one whose registry
/// suffix the image has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The node's `azure.json` (relative to the rules file), read as the official
    /// `acr-credential-provider` reads it: `cloud`, `tenantId`, `aadClientId`,
    /// `aadClientSecret`, `useManagedIdentityExtension`, `userAssignedIdentityID`,
    /// `useFederatedWorkloadIdentityExtension`, `aadFederatedTokenFile`. The fields below
    /// override it.
    pub azure_config: Option<PathBuf>,
    /// The kind of identity; when unset it comes from `azure.json`, or else from the
    /// environment as described above.
    pub identity: Option<IdentityKind>,
    /// The application (client) id: of a user-assigned managed identity, of the workload
    /// identity (default `AZURE_CLIENT_ID`), or of the service principal.
    pub client_id: Option<String>,
    /// The ARM resource id of a user-assigned managed identity (instead of `clientId`).
    pub resource_id: Option<String>,
    /// The Azure AD tenant (for workload identity, default `AZURE_TENANT_ID`).
    pub tenant_id: Option<String>,
    /// The workload identity's federated token file (relative to the rules file; default
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    pub federated_token_file: Option<PathBuf>,
    /// A file holding the service principal's client secret (relative to the rules file),
    /// read at each fetch.
    pub client_secret_file: Option<PathBuf>,
    /// The cloud: `AzurePublicCloud`, `AzureChinaCloud`, `AzureUSGovernmentCloud`, or
    /// `AzureStackCloud` with its endpoints in the file named by
    /// `AZURE_ENVIRONMENT_FILEPATH`. Unset (and not in `azure.json`): the cloud whose
    /// registry suffix the image has.
    pub cloud: Option<String>,
    /// A custom cloud's Azure AD authority, as in `https://login.contoso.example/`; needs
    /// `registrySuffix`.
    pub authority_host: Option<String>,
    /// A custom cloud's registry DNS suffix, as in `azurecr.contoso.example`; needs
    /// `authorityHost`.
    pub registry_suffix: Option<String>,
    /// A custom cloud's registry token audience (default
    /// `https://containerregistry.azure.net`).
    pub registry_audience: Option<String>,
    /// The service account annotation holding the client id of a pod's own identity, when
    /// the kubelet sends the pod's token (default `kubernetes.azure.com/acr-client-id`).
    pub client_id_annotation: Option<String>,
    /// The service account annotation holding the tenant of a pod's own identity (default
    /// `kubernetes.azure.com/acr-tenant-id`).
    pub tenant_id_annotation: Option<String>,
    /// Registry mirrors: mirror host to ACR login server. Images on a mirror get the
    /// credentials of its login server, returned under both names, as the official
    /// provider's `--registry-mirror mirror.example:myacr.azurecr.io` does.
    #[serde(default)]
    pub registry_mirrors: BTreeMap<String, String>,
}

/// The kinds of Azure identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IdentityKind {
    /// The VM's managed identity, through the instance metadata service: system-assigned,
    /// or user-assigned with `clientId` or `resourceId`.
    ManagedIdentity,
    /// Workload identity federation (`clientId`, `tenantId`, `federatedTokenFile`, and
    /// `AZURE_AUTHORITY_HOST`).
    WorkloadIdentity,
    /// A service principal with a client secret (`clientId`, `tenantId`,
    /// `clientSecretFile` or `azure.json`'s `aadClientSecret`).
    ServicePrincipal,
}

/// Parses the official provider's `--registry-mirror` value:
/// `mirror:loginserver[,mirror:loginserver...]`.
pub fn parse_registry_mirrors(value: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut mirrors = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (mirror, target) = entry.split_once(':').ok_or_else(|| {
            Error::Config(format!(
                "registry mirror {} is not mirror:loginserver",
                quote(entry)
            ))
        })?;
        mirrors.insert(mirror.trim().to_owned(), target.trim().to_owned());
    }
    Ok(mirrors)
}

/// The node file `azure.json`, as far as ACR credentials go. Unknown fields are ignored:
/// the file configures the whole cloud provider.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AzureJson {
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    aad_client_id: String,
    #[serde(default)]
    aad_client_secret: String,
    #[serde(default)]
    aad_client_cert_path: String,
    #[serde(default)]
    use_managed_identity_extension: bool,
    #[serde(default, rename = "userAssignedIdentityID")]
    user_assigned_identity_id: String,
    #[serde(default)]
    use_federated_workload_identity_extension: bool,
    #[serde(default)]
    aad_federated_token_file: String,
}

/// The custom cloud's environment file (`AZURE_ENVIRONMENT_FILEPATH`), as go-autorest
/// writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvironmentFile {
    #[serde(default)]
    active_directory_endpoint: String,
    #[serde(default, rename = "containerRegistryDNSSuffix")]
    container_registry_dns_suffix: String,
}

/// Which cloud tokens are fetched in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudChoice {
    /// One cloud, named by the configuration.
    Fixed(Cloud),
    /// The known cloud whose registry suffix the image has.
    BySuffix,
}

impl CloudChoice {
    /// The cloud `host` is a login server of, if any.
    pub fn cloud_of(&self, host: &str) -> Option<Cloud> {
        match self {
            CloudChoice::Fixed(cloud) => {
                is_login_server(host, &cloud.registry_suffix).then(|| cloud.clone())
            }
            CloudChoice::BySuffix => Cloud::all_known()
                .into_iter()
                .find(|c| is_login_server(host, &c.registry_suffix)),
        }
    }
}

/// A configuration resolved against `azure.json` and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The identity.
    pub identity: Identity,
    /// The cloud.
    pub cloud: CloudChoice,
    /// Mirror host to login server.
    pub mirrors: BTreeMap<String, String>,
    /// The Azure AD authority of client assertions from `AZURE_AUTHORITY_HOST`, overriding
    /// the cloud's.
    pub authority_host: Option<String>,
    /// The annotations naming a pod's own identity.
    pub annotations: AnnotationKeys,
}

impl Settings {
    /// Stands in for the settings of a rule whose environment cannot be used: serves the
    /// default hosts, so that the error is reported when a token is asked for.
    pub fn unusable() -> Settings {
        Settings {
            identity: Identity::Managed {
                id: ManagedId::System,
                tenant_id: None,
            },
            cloud: CloudChoice::BySuffix,
            mirrors: BTreeMap::new(),
            authority_host: None,
            annotations: AnnotationKeys::default(),
        }
    }
}

/// Resolves `config`: reads `azure.json` (and a custom cloud's environment file) if named,
/// takes defaults from `env`, and validates the whole.
pub fn resolve(
    config: &Config,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, Error> {
    let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    let azure_json = match &config.azure_config {
        Some(path) => Some(read_azure_json(&base_dir.join(path))?),
        None => None,
    };
    let cloud = resolve_cloud(config, azure_json.as_ref(), &env)?;
    let identity = resolve_identity(config, azure_json.as_ref(), base_dir, &env)?;
    let mut mirrors = BTreeMap::new();
    for (mirror, target) in &config.registry_mirrors {
        if !is_valid_suffix(mirror) && !is_single_label(mirror) {
            return Err(Error::Config(format!(
                "registry mirror {} is not a lowercase host name",
                quote(mirror)
            )));
        }
        if cloud.cloud_of(target).is_none() {
            return Err(Error::Config(format!(
                "registry mirror {} points at {}, which is not an ACR login server of the configured cloud",
                quote(mirror),
                quote(target)
            )));
        }
        mirrors.insert(mirror.clone(), target.clone());
    }
    let authority_host = match env("AZURE_AUTHORITY_HOST") {
        Some(url) => Some(
            normalise_authority(url.trim())
                .map_err(|e| Error::Config(format!("AZURE_AUTHORITY_HOST: {e}")))?,
        ),
        None => None,
    };
    let annotations = AnnotationKeys::resolve(
        config.client_id_annotation.as_deref(),
        config.tenant_id_annotation.as_deref(),
    )?;
    Ok(Settings {
        identity,
        cloud,
        mirrors,
        authority_host,
        annotations,
    })
}

fn is_single_label(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn read_azure_json(path: &Path) -> Result<AzureJson, Error> {
    let bad = |reason: String| Error::AzureConfig {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let text = text.trim_start_matches('\u{feff}');
    // serde_json's message names a line and column, never the value found there.
    serde_json::from_str(text).map_err(|e| bad(format!("not valid azure.json: {e}")))
}

fn resolve_cloud(
    config: &Config,
    azure_json: Option<&AzureJson>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CloudChoice, Error> {
    if config.authority_host.is_some() || config.registry_suffix.is_some() {
        let (Some(authority), Some(suffix)) = (&config.authority_host, &config.registry_suffix)
        else {
            return Err(Error::Config(
                "a custom cloud needs both authorityHost and registrySuffix".into(),
            ));
        };
        if config
            .cloud
            .as_deref()
            .is_some_and(|name| Cloud::by_name(name).is_some())
        {
            return Err(Error::Config(
                "authorityHost and registrySuffix are for a custom cloud, not a named one".into(),
            ));
        }
        return custom_cloud(authority, suffix, config.registry_audience.as_deref())
            .map_err(Error::Config);
    }
    if config.registry_audience.is_some() {
        return Err(Error::Config(
            "registryAudience is only for a custom cloud".into(),
        ));
    }
    let (name, from_file) = match (&config.cloud, azure_json) {
        (Some(name), _) => (name.as_str(), false),
        (None, Some(json)) if json.cloud.trim().is_empty() => {
            return Ok(CloudChoice::Fixed(Cloud::public()));
        }
        (None, Some(json)) => (json.cloud.trim(), true),
        (None, None) => return Ok(CloudChoice::BySuffix),
    };
    if let Some(cloud) = Cloud::by_name(name) {
        return Ok(CloudChoice::Fixed(cloud));
    }
    let unknown = || {
        let reason = format!("unknown cloud {}", quote(name));
        match (from_file, &config.azure_config) {
            (true, Some(path)) => Error::AzureConfig {
                path: path.display().to_string(),
                reason,
            },
            _ => Error::Config(reason),
        }
    };
    if !name.eq_ignore_ascii_case("AzureStackCloud") {
        return Err(unknown());
    }
    let path = env("AZURE_ENVIRONMENT_FILEPATH").ok_or_else(|| {
        Error::Config("cloud AzureStackCloud needs AZURE_ENVIRONMENT_FILEPATH".into())
    })?;
    let bad = |reason: String| Error::AzureConfig {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let file: EnvironmentFile = serde_json::from_str(&text)
        .map_err(|e| bad(format!("not a cloud environment file: {e}")))?;
    custom_cloud(
        &file.active_directory_endpoint,
        &file.container_registry_dns_suffix,
        None,
    )
    .map_err(bad)
}

fn custom_cloud(
    authority: &str,
    suffix: &str,
    audience: Option<&str>,
) -> Result<CloudChoice, String> {
    let suffix = suffix.trim().trim_start_matches('.');
    if !is_valid_suffix(suffix) {
        return Err(format!(
            "registry suffix {} is not a lowercase DNS suffix",
            quote(suffix)
        ));
    }
    let audience = match audience {
        Some(audience) => normalise_authority(audience).map_err(|_| {
            format!(
                "registry audience {} is not an https:// URL",
                quote(audience)
            )
        })?,
        None => REGISTRY_AUDIENCE.to_owned(),
    };
    Ok(CloudChoice::Fixed(Cloud {
        name: "custom".to_owned(),
        authority_host: normalise_authority(authority.trim())?,
        registry_suffix: suffix.to_owned(),
        registry_audience: audience.trim_end_matches('/').to_owned(),
    }))
}

fn resolve_identity(
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
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve_yaml(json: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let config: Config = serde_json::from_str(json).unwrap();
        resolve(&config, Path::new("/rules"), env)
    }

    fn write_azure_json(dir: &Path, body: &str) -> String {
        let path = dir.join("azure.json");
        std::fs::write(&path, body).unwrap();
        format!(r#"{{"azureConfig": {:?}}}"#, path.display().to_string())
    }

    #[test]
    fn default_is_system_managed_identity_in_the_image_cloud() {
        let settings = resolve(&Config::default(), Path::new("/"), &no_env).unwrap();
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
        let env = |name: &str| match name {
            "AZURE_CLIENT_ID" => Some("app-id".to_owned()),
            "AZURE_TENANT_ID" => Some("tenant-id".to_owned()),
            "AZURE_FEDERATED_TOKEN_FILE" => {
                Some("/var/run/secrets/azure/tokens/azure-identity-token".to_owned())
            }
            "AZURE_AUTHORITY_HOST" => Some("https://login.microsoftonline.com".to_owned()),
            _ => None,
        };
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
        let error = resolve_yaml(r#"{"identity": "workloadIdentity"}"#, &no_env).unwrap_err();
        assert!(error.to_string().contains("AZURE_CLIENT_ID"), "{error}");
    }

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
            let settings = resolve_yaml(&write_azure_json(dir.path(), body), &no_env).unwrap();
            assert_eq!(&settings.identity, expected, "{body}");
            assert_eq!(settings.cloud, CloudChoice::Fixed(Cloud::public()));
        }
        let settings = resolve_yaml(
            &write_azure_json(
                dir.path(),
                r#"{"cloud": "AzureChinaCloud", "useManagedIdentityExtension": true}"#,
            ),
            &no_env,
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
            let error = resolve_yaml(&write_azure_json(dir.path(), body), &no_env).unwrap_err();
            assert!(error.to_string().contains(message), "{body}: {error}");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        let error =
            resolve_yaml(r#"{"azureConfig": "/nonexistent/azure.json"}"#, &no_env).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/azure.json"),
            "{error}"
        );
    }

    #[test]
    fn custom_clouds() {
        let settings = resolve_yaml(
            r#"{"authorityHost": "https://login.contoso.example", "registrySuffix": "azurecr.contoso.example"}"#,
            &no_env,
        )
        .unwrap();
        let cloud = settings
            .cloud
            .cloud_of("myacr.azurecr.contoso.example")
            .unwrap();
        assert_eq!(cloud.authority_host, "https://login.contoso.example/");
        assert_eq!(settings.cloud.cloud_of("myacr.azurecr.io"), None);
        let dir = tempfile::tempdir().unwrap();
        let env_file = dir.path().join("env.json");
        std::fs::write(&env_file, r#"{"name": "AzureStackCloud", "activeDirectoryEndpoint": "https://login.stack.example/", "containerRegistryDNSSuffix": "azurecr.stack.example"}"#).unwrap();
        let env = |name: &str| {
            (name == "AZURE_ENVIRONMENT_FILEPATH").then(|| env_file.display().to_string())
        };
        let settings = resolve_yaml(r#"{"cloud": "AzureStackCloud"}"#, &env).unwrap();
        assert_eq!(
            settings
                .cloud
                .cloud_of("myacr.azurecr.stack.example")
                .unwrap()
                .authority_host,
            "https://login.stack.example/"
        );
        for bad in [
            r#"{"authorityHost": "https://login.contoso.example"}"#,
            r#"{"authorityHost": "http://login.contoso.example", "registrySuffix": "azurecr.contoso.example"}"#,
            r#"{"authorityHost": "https://login.contoso.example", "registrySuffix": "example"}"#,
            r#"{"cloud": "AzureStackCloud"}"#,
            r#"{"cloud": "AzurePublicCloud", "authorityHost": "https://l.example", "registrySuffix": "a.example"}"#,
            r#"{"registryAudience": "https://aud.example"}"#,
        ] {
            assert!(resolve_yaml(bad, &no_env).is_err(), "{bad}");
        }
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
            assert!(resolve_yaml(bad, &no_env).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Config>(r#"{"identity": "certificate"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"clientSecret": "inline"}"#).is_err());
        let settings = resolve_yaml(
            r#"{"identity": "servicePrincipal", "clientId": "a", "tenantId": "t", "clientSecretFile": "secret"}"#,
            &no_env,
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

    #[test]
    fn annotation_keys_and_the_authority_of_pod_identities() {
        let settings = resolve_yaml("{}", &no_env).unwrap();
        assert_eq!(settings.annotations, AnnotationKeys::default());
        assert_eq!(settings.authority_host, None);
        let settings = resolve_yaml(
            r#"{"clientIdAnnotation": "example.com/client", "tenantIdAnnotation": "example.com/tenant"}"#,
            &|name: &str| {
                (name == "AZURE_AUTHORITY_HOST").then(|| "https://login.example".to_owned())
            },
        )
        .unwrap();
        assert_eq!(settings.annotations.client_id, "example.com/client");
        assert_eq!(settings.annotations.tenant_id, "example.com/tenant");
        assert_eq!(
            settings.authority_host.as_deref(),
            Some("https://login.example/")
        );
        for bad in [
            r#"{"clientIdAnnotation": ""}"#,
            r#"{"tenantIdAnnotation": "kubernetes.azure.com/acr-client-id"}"#,
            r#"{"clientIdAnnotation": "not a key"}"#,
        ] {
            let error = resolve_yaml(bad, &no_env).unwrap_err();
            assert!(matches!(error, Error::Config(_)), "{bad}: {error}");
        }
        let error = resolve_yaml("{}", &|name: &str| {
            (name == "AZURE_AUTHORITY_HOST").then(|| "http://login.example".to_owned())
        })
        .unwrap_err();
        assert!(
            error.to_string().contains("AZURE_AUTHORITY_HOST"),
            "{error}"
        );
    }

    #[test]
    fn registry_mirrors() {
        assert_eq!(
            parse_registry_mirrors(
                "mirror.example:myacr.azurecr.io, mcr.microsoft.com:other1.azurecr.io"
            )
            .unwrap(),
            BTreeMap::from([
                ("mirror.example".to_owned(), "myacr.azurecr.io".to_owned()),
                (
                    "mcr.microsoft.com".to_owned(),
                    "other1.azurecr.io".to_owned()
                ),
            ])
        );
        assert!(parse_registry_mirrors("nocolon").is_err());
        assert!(parse_registry_mirrors("").unwrap().is_empty());
        let settings = resolve_yaml(
            r#"{"registryMirrors": {"mirror.example": "myacr.azurecr.io"}}"#,
            &no_env,
        )
        .unwrap();
        assert_eq!(
            settings.mirrors.get("mirror.example").map(String::as_str),
            Some("myacr.azurecr.io")
        );
        for bad in [
            r#"{"registryMirrors": {"mirror.example": "myacr.azurecr.io.evil.example"}}"#,
            r#"{"registryMirrors": {"Mirror.example": "myacr.azurecr.io"}}"#,
            r#"{"registryMirrors": {"mirror.example:5000": "myacr.azurecr.io"}}"#,
            r#"{"cloud": "AzureChinaCloud", "registryMirrors": {"mirror.example": "myacr.azurecr.io"}}"#,
        ] {
            assert!(resolve_yaml(bad, &no_env).is_err(), "{bad}");
        }
    }
}
