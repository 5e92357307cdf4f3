//! The `gcp:` section of a rule, and the environment variables the backend reads.

use std::path::PathBuf;

use icp_core::Environment;
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
    /// Per-pod identity: when the kubelet passes the pulling pod's service account token
    /// (KEP-4412), the token is exchanged at Google's Security Token Service instead of
    /// using the credentials above, which stay the node's identity for every other pull.
    /// Not for the `dockercfg` sources.
    #[serde(default)]
    pub workload_identity: Option<WorkloadIdentity>,
}

/// The annotation by which a Kubernetes service account opts in to pulling images with its
/// own identity, as GKE's `auth-provider-gcp` reads it: its value must be `"true"`.
pub const ENABLE_ANNOTATION: &str = "iam.gke.io/enable-wi-image-pull";

/// The annotation naming the Google service account a Kubernetes service account acts
/// as, as GKE's Workload Identity reads it.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "iam.gke.io/gcp-service-account";

/// The `gcp.workloadIdentity` section of a rule: how a pod's service account token is
/// exchanged for a Google access token.
///
/// The Security Token Service audience is either `audience` (the full name of a workload
/// identity pool provider, for a self-managed cluster), or made from `projectId` and
/// `identityProvider` as GKE's `auth-provider-gcp` makes it from its `--project-id` and
/// `--identity-provider` flags: `identitynamespace:<projectId>.svc.id.goog:<identityProvider>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadIdentity {
    /// The whole STS audience:
    /// `//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`,
    /// or `identitynamespace:<pool>:<provider>`. Not with `projectId` and `identityProvider`.
    #[serde(default)]
    pub audience: Option<String>,
    /// GKE: the project whose workload identity pool (`<projectId>.svc.id.goog`) the
    /// cluster belongs to. With `identityProvider`.
    #[serde(default)]
    pub project_id: Option<String>,
    /// GKE: the cluster's identity provider,
    /// `https://container.googleapis.com/v1/projects/<project>/locations/<location>/clusters/<cluster>`.
    /// With `projectId`.
    #[serde(default)]
    pub identity_provider: Option<String>,
    /// The opt-in annotation: only a service account whose annotation is `"true"` pulls
    /// with its own identity. [`ENABLE_ANNOTATION`] when not set.
    #[serde(default = "default_enable_annotation")]
    pub enable_annotation: String,
    /// The annotation naming a Google service account to impersonate with the exchanged
    /// token (IAM Credentials `generateAccessToken`); without it the exchanged token
    /// itself is used. [`SERVICE_ACCOUNT_ANNOTATION`] when not set.
    #[serde(default = "default_service_account_annotation")]
    pub service_account_annotation: String,
    /// Whether a service account must opt in with `enableAnnotation`; `false` exchanges
    /// every service account token the kubelet passes. `true` when not set.
    #[serde(default = "default_require_opt_in")]
    pub require_opt_in: bool,
}

impl WorkloadIdentity {
    /// GKE's settings, as `auth-provider-gcp --project-id P --identity-provider I` gives
    /// them, with the official annotation keys.
    pub fn gke(project_id: &str, identity_provider: &str) -> WorkloadIdentity {
        WorkloadIdentity {
            audience: None,
            project_id: Some(project_id.to_owned()),
            identity_provider: Some(identity_provider.to_owned()),
            enable_annotation: default_enable_annotation(),
            service_account_annotation: default_service_account_annotation(),
            require_opt_in: true,
        }
    }
}

fn default_enable_annotation() -> String {
    ENABLE_ANNOTATION.to_owned()
}

fn default_service_account_annotation() -> String {
    SERVICE_ACCOUNT_ANNOTATION.to_owned()
}

fn default_require_opt_in() -> bool {
    true
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

/// The variables the backend reads, as Google's client libraries do; an empty one counts
/// as unset.
pub(crate) struct Variables {
    /// `GCE_METADATA_HOST`: the metadata server's `host[:port]`.
    pub metadata_host: Option<String>,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service account key or `authorized_user` file.
    pub application_credentials: Option<PathBuf>,
    /// gcloud's application default credentials file, where it would be: under
    /// `CLOUDSDK_CONFIG`, else under `HOME`'s `.config/gcloud`.
    pub well_known_file: Option<PathBuf>,
}

impl Variables {
    /// Reads them from `env`.
    pub(crate) fn read(env: &Environment) -> Variables {
        let var = |name: &str| env.get_os(name).filter(|value| !value.is_empty());
        let dir = match (var("CLOUDSDK_CONFIG"), var("HOME")) {
            (Some(dir), _) => Some(PathBuf::from(dir)),
            (None, Some(home)) => Some(PathBuf::from(home).join(".config").join("gcloud")),
            (None, None) => None,
        };
        Variables {
            metadata_host: var("GCE_METADATA_HOST").and_then(|v| v.into_string().ok()),
            application_credentials: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            well_known_file: dir.map(|dir| dir.join("application_default_credentials.json")),
        }
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
        let env = Environment::from_pairs([("HOME", "/root")]);
        assert_eq!(
            Variables::read(&env).well_known_file,
            Some(PathBuf::from(
                "/root/.config/gcloud/application_default_credentials.json"
            ))
        );
        let env = env.with("CLOUDSDK_CONFIG", "/etc/gcloud");
        assert_eq!(
            Variables::read(&env).well_known_file,
            Some(PathBuf::from(
                "/etc/gcloud/application_default_credentials.json"
            ))
        );
        let none = Environment::from_pairs([("HOME", "")]);
        assert_eq!(Variables::read(&none).well_known_file, None);
    }
}
