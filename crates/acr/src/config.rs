//! The `acr:` section of a rule, as the rules file and the official provider's command
//! line give it; [`crate::settings`] resolves it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use icp_core::quote;
use serde::Deserialize;

use crate::Error;
pub use crate::identity_binding::IdentityBindingsConfig;

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
    /// `useFederatedWorkloadIdentityExtension`, `aadFederatedTokenFile`, matched in any
    /// case as Go's `encoding/json` matches them. The fields below override it.
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
    /// The audience pods' service account tokens must carry (a federated credential's
    /// audience); defaults to `api://AzureADTokenExchange`, with `identityBindings` to
    /// `api://AKSIdentityBinding`.
    pub audience: Option<String>,
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
    /// Whether an image on a mirror is fetched as the pulling pod's own identity when the
    /// kubelet sends its service account token with the annotations. Default `false`: as
    /// with the official provider, mirrored images are always fetched as the node's
    /// identity (a cluster mirrors public images, such as `mcr.microsoft.com`, into its own
    /// registry, and every pod must be able to pull them).
    #[serde(default)]
    pub mirrors_use_pod_identity: bool,
    /// AKS identity bindings: a pod's service account token is exchanged at the cluster's
    /// identity-binding endpoint instead of Azure AD, as the official provider's `--ib-*`
    /// flags do; see [`IdentityBindingsConfig`].
    pub identity_bindings: Option<IdentityBindingsConfig>,
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
