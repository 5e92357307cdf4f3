//! Which cloud tokens are fetched in: a named cloud, a custom one (from the rule or
//! `AZURE_ENVIRONMENT_FILEPATH`), or the one whose registry suffix the image has.

use icp_core::quote;

use crate::Error;
use crate::azure_json::{AzureJson, read_environment_file};
use crate::cloud::{Cloud, REGISTRY_AUDIENCE, normalise_authority};
use crate::config::Config;
use crate::host::{is_login_server, is_valid_suffix};

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

/// The cloud `config` (or `azure.json`) names, with `env` giving
/// `AZURE_ENVIRONMENT_FILEPATH`.
pub fn resolve_cloud(
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
                path: icp_core::quote::path(path),
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
    let file = read_environment_file(&path)?;
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

#[cfg(test)]
mod tests {
    use icp_core::Environment;

    use crate::settings::testing::{no_env, resolve_yaml};

    #[test]
    fn custom_clouds() {
        let settings = resolve_yaml(
            r#"{"authorityHost": "https://login.contoso.example", "registrySuffix": "azurecr.contoso.example"}"#,
            &no_env(),
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
        let env = Environment::from_pairs([("AZURE_ENVIRONMENT_FILEPATH", env_file.as_os_str())]);
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
            assert!(resolve_yaml(bad, &no_env()).is_err(), "{bad}");
        }
    }
}
