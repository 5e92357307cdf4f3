//! The `gcp:` section of a rule, and the environment variables the backend reads.

use std::path::PathBuf;

use serde::Deserialize;

/// The `gcp:` section of a rule in the rules file. Every field is optional: the default
/// is the metadata server's default service account, as with the official
/// `auth-provider-gcp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where the credentials come from; `metadata` when not set.
    #[serde(default)]
    pub source: Source,
    /// With `source: metadata`: the instance's service account whose token is used, by
    /// email or alias, as in the metadata server's `instance/service-accounts/` listing.
    /// `default` when not set.
    #[serde(default)]
    pub service_account: Option<String>,
    /// With `source: serviceAccountKey`: the service account key file (JSON) to sign
    /// token requests with; a relative path is taken from the rules file's directory.
    /// When not set, the file named by `GOOGLE_APPLICATION_CREDENTIALS`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// Where a rule's credentials come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// An access token of one of the instance's service accounts, from the metadata
    /// server (`GCE_METADATA_HOST`, else `169.254.169.254`); the official provider's `gcr`
    /// flow.
    #[default]
    Metadata,
    /// An access token for a service account key file, exchanged at the key's `token_uri`
    /// with a signed assertion (`keyFile`, else `GOOGLE_APPLICATION_CREDENTIALS`).
    ServiceAccountKey,
    /// Application default credentials, in Google's order: the file named by
    /// `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's
    /// `application_default_credentials.json` (a service account key or an
    /// `authorized_user`), else the metadata server's default service account.
    ApplicationDefault,
    /// The docker config stored in the instance metadata attribute `google-dockercfg`;
    /// the official provider's `dockercfg` flow. Serves whatever registries it names.
    Dockercfg,
    /// The docker config at the URL stored in the instance metadata attribute
    /// `google-dockercfg-url`; the official provider's `dockercfg-url` flow.
    DockercfgUrl,
}

impl Source {
    /// The source the official `auth-provider-gcp`'s `--authFlow` value asks for: `gcr`,
    /// `dockercfg` or `dockercfg-url`.
    pub fn from_auth_flow(flow: &str) -> Option<Source> {
        match flow {
            "gcr" => Some(Source::Metadata),
            "dockercfg" => Some(Source::Dockercfg),
            "dockercfg-url" => Some(Source::DockercfgUrl),
            _ => None,
        }
    }

    /// The name of the source as written in the rules file.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Metadata => "metadata",
            Source::ServiceAccountKey => "serviceAccountKey",
            Source::ApplicationDefault => "applicationDefault",
            Source::Dockercfg => "dockercfg",
            Source::DockercfgUrl => "dockercfgUrl",
        }
    }
}

/// The environment variables the backend reads, as Google's client libraries do.
/// [`Gcp::new`](crate::Gcp::new) takes them from the process; tests pass their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    /// `GCE_METADATA_HOST`: the metadata server's `host[:port]`.
    pub metadata_host: Option<String>,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service account key or `authorized_user` file.
    pub application_credentials: Option<PathBuf>,
    /// `CLOUDSDK_CONFIG`: gcloud's configuration directory.
    pub gcloud_config: Option<PathBuf>,
    /// `HOME`, under which gcloud's configuration directory is `.config/gcloud`.
    pub home: Option<PathBuf>,
}

impl Environment {
    /// Reads the variables from the process environment; an empty variable counts as unset.
    pub fn from_process() -> Environment {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        Environment {
            metadata_host: var("GCE_METADATA_HOST").and_then(|v| v.into_string().ok()),
            application_credentials: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            gcloud_config: var("CLOUDSDK_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }

    /// gcloud's application default credentials file, where it would be.
    pub fn well_known_file(&self) -> Option<PathBuf> {
        let dir = match (&self.gcloud_config, &self.home) {
            (Some(dir), _) => dir.clone(),
            (None, Some(home)) => home.join(".config").join("gcloud"),
            (None, None) => return None,
        };
        Some(dir.join("application_default_credentials.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_source_and_refuses_unknown_fields() {
        let config: Config =
            serde_json::from_str(r#"{"source":"serviceAccountKey","keyFile":"k.json"}"#).unwrap();
        assert_eq!(config.source, Source::ServiceAccountKey);
        assert_eq!(config.key_file, Some(PathBuf::from("k.json")));
        for source in [
            Source::Metadata,
            Source::ServiceAccountKey,
            Source::ApplicationDefault,
            Source::Dockercfg,
            Source::DockercfgUrl,
        ] {
            let config: Config =
                serde_json::from_str(&format!(r#"{{"source":"{}"}}"#, source.as_str())).unwrap();
            assert_eq!(config.source, source);
        }
        assert_eq!(
            serde_json::from_str::<Config>("{}").unwrap(),
            Config::default()
        );
        assert!(serde_json::from_str::<Config>(r#"{"serviceaccount":"x"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"source":"gcr"}"#).is_err());
    }

    #[test]
    fn well_known_file_prefers_cloudsdk_config() {
        let mut env = Environment {
            home: Some("/root".into()),
            ..Environment::default()
        };
        assert_eq!(
            env.well_known_file(),
            Some(PathBuf::from(
                "/root/.config/gcloud/application_default_credentials.json"
            ))
        );
        env.gcloud_config = Some("/etc/gcloud".into());
        assert_eq!(
            env.well_known_file(),
            Some(PathBuf::from(
                "/etc/gcloud/application_default_credentials.json"
            ))
        );
        assert_eq!(Environment::default().well_known_file(), None);
    }
}
