//! A rule's `acr:` section resolved against `azure.json` and the environment: one
//! identity, one cloud choice, the mirrors, and the annotations of pods' own identities.

use std::collections::BTreeMap;
use std::path::Path;

use icp_core::{Environment, quote};

use crate::Error;
use crate::aad::imds_endpoint;
use crate::azure_json::read_azure_json;
use crate::cloud::normalise_authority;
use crate::cloud_choice::{CloudChoice, resolve_cloud};
use crate::config::Config;
use crate::host::is_valid_suffix;
use crate::identity::Identity;
use crate::identity_binding::IdentityBindings;
use crate::identity_choice::resolve_identity;
use crate::service_account::AnnotationKeys;

/// A configuration resolved against `azure.json` and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The identity.
    pub identity: Identity,
    /// The cloud.
    pub cloud: CloudChoice,
    /// Mirror host to login server.
    pub mirrors: BTreeMap<String, String>,
    /// Whether images on a mirror are fetched as a pod's own identity.
    pub mirrors_use_pod_identity: bool,
    /// The Azure AD authority of client assertions from `AZURE_AUTHORITY_HOST`, overriding
    /// the cloud's.
    pub authority_host: Option<String>,
    /// The annotations naming a pod's own identity.
    pub annotations: AnnotationKeys,
    /// The instance metadata service's base URL, for a managed identity.
    pub imds_endpoint: String,
    /// AKS identity bindings, when the rule has them.
    pub identity_bindings: Option<IdentityBindings>,
}

/// Resolves `config`: reads `azure.json` (and a custom cloud's environment file) if named,
/// takes defaults from `env` (where a blank variable counts as unset), and validates the
/// whole.
pub fn resolve(config: &Config, base_dir: &Path, env: &Environment) -> Result<Settings, Error> {
    let var = |name: &str| env.get(name).filter(|value| !value.trim().is_empty());
    let azure_json = match &config.azure_config {
        Some(path) => Some(read_azure_json(&base_dir.join(path))?),
        None => None,
    };
    let cloud = resolve_cloud(config, azure_json.as_ref(), &var)?;
    let identity = resolve_identity(config, azure_json.as_ref(), base_dir, &var)?;
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
    let authority_host = match var("AZURE_AUTHORITY_HOST") {
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
    let imds_endpoint = imds_endpoint(&identity, env)?;
    let identity_bindings = match &config.identity_bindings {
        Some(section) => Some(IdentityBindings::resolve(section, base_dir)?),
        None => None,
    };
    Ok(Settings {
        identity,
        cloud,
        mirrors,
        mirrors_use_pod_identity: config.mirrors_use_pod_identity,
        authority_host,
        annotations,
        imds_endpoint,
        identity_bindings,
    })
}

fn is_single_label(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
pub(crate) mod testing {
    //! What the resolution tests of every module share.

    use std::path::Path;

    use icp_core::Environment;

    use super::{Settings, resolve};
    use crate::Error;
    use crate::config::Config;

    /// An environment with no variable at all.
    pub fn no_env() -> Environment {
        Environment::from_pairs(Vec::<(String, String)>::new())
    }

    /// Resolves the section `json` of a rules file in `/rules`.
    pub fn resolve_yaml(json: &str, env: &Environment) -> Result<Settings, Error> {
        let config: Config = serde_json::from_str(json).unwrap();
        resolve(&config, Path::new("/rules"), env)
    }

    /// Writes `azure.json` in `dir`, and gives the section naming it.
    pub fn write_azure_json(dir: &Path, body: &str) -> String {
        let path = dir.join("azure.json");
        std::fs::write(&path, body).unwrap();
        format!(r#"{{"azureConfig": {:?}}}"#, path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use icp_core::Environment;

    use super::testing::{no_env, resolve_yaml};
    use crate::Error;
    use crate::config::parse_registry_mirrors;
    use crate::service_account::AnnotationKeys;

    #[test]
    fn annotation_keys_and_the_authority_of_pod_identities() {
        let settings = resolve_yaml("{}", &no_env()).unwrap();
        assert_eq!(settings.annotations, AnnotationKeys::default());
        assert_eq!(settings.authority_host, None);
        let settings = resolve_yaml(
            r#"{"clientIdAnnotation": "example.com/client", "tenantIdAnnotation": "example.com/tenant"}"#,
            &Environment::from_pairs([("AZURE_AUTHORITY_HOST", "https://login.example")]),
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
            let error = resolve_yaml(bad, &no_env()).unwrap_err();
            assert!(matches!(error, Error::Config(_)), "{bad}: {error}");
        }
        let error = resolve_yaml(
            "{}",
            &Environment::from_pairs([("AZURE_AUTHORITY_HOST", "http://login.example")]),
        )
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
            &no_env(),
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
            assert!(resolve_yaml(bad, &no_env()).is_err(), "{bad}");
        }
    }
}
