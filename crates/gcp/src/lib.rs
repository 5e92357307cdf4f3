//! Google Container Registry and Artifact Registry tokens for `image-credential-provider`.
//!
//! The backend answers for Google's registry hosts (see [`is_google_registry`]) with the registry
//! username `oauth2accesstoken` and a Google access token as password, expiring when
//! Google says it does. The token comes from one of the [`Source`]s a rule names:
//!
//! - the GCE metadata server (`GCE_METADATA_HOST`, else `169.254.169.254`): one of the
//!   instance's service accounts, its access scopes checked first;
//! - a service account key file: an RS256-signed assertion exchanged at the key's
//!   `token_uri`;
//! - application default credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's
//!   well-known file (a key or an `authorized_user` refresh token), else the metadata
//!   server;
//! - the official provider's `dockercfg` flows: a docker config kept in the instance
//!   attribute `google-dockercfg`, or at the URL in `google-dockercfg-url`.
//!
//! With [`WorkloadIdentity`] settings, a pull for which the kubelet passes the pod's
//! service account token (KEP-4412) uses the pod's own identity instead, when the service
//! account opted in: the token is exchanged at Google's Security Token Service, and the
//! federated token is answered, or used to impersonate the Google service account the
//! service account names (IAM Credentials). The token cache keys such a token by the
//! service account, so it is never served to another one.
//!
//! The binary uses [`Config`], [`Gcp::new`], [`Gcp::check`], [`DEFAULT_PATTERNS`] and the
//! [`TokenBackend`] implementation; [`Gcp::with_environment`] lets tests pass their own
//! [`Environment`].
//!
//! Every request goes through [`icp_http`] with short timeouts and a few retries, and a
//! whole fetch ends within [`FETCH_BUDGET`]. `gcp_auth` is not used: it cannot be pointed
//! at `GCE_METADATA_HOST`, reads `authorized_user` files from gcloud's directory only and
//! sends them to a fixed endpoint, and brings a second HTTP client without timeouts.

mod config;
mod dockercfg;
mod error;
mod host;
mod iam;
mod jwt;
mod key;
mod metadata;
mod oauth;
mod retry;
mod sts;
mod timestamp;
mod token;
mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use icp_core::{ImageRef, Request, ServiceAccountTokenUse, Token, TokenBackend, TokenKey};

pub use config::{
    Config, ENABLE_ANNOTATION, Environment, SERVICE_ACCOUNT_ANNOTATION, Source, WorkloadIdentity,
};
pub use error::Error;
pub use host::{DEFAULT_PATTERNS, is_google_registry};
use key::CredentialFile;
use metadata::Metadata;
use workload::{Pod, Workload};

/// Longest time one fetch may take, every request and retry included: well inside the
/// kubelet's one-minute limit on the plugin.
pub const FETCH_BUDGET: Duration = Duration::from_secs(20);

/// The token scope of every Google access token: one token serves every Google registry
/// host, so images on `gcr.io` and `us-docker.pkg.dev` share it.
pub const GOOGLE_SCOPE: &str = "google";

/// The instance attribute of the `dockercfg` flow.
pub const DOCKERCFG_ATTRIBUTE: &str = "google-dockercfg";
/// The instance attribute of the `dockercfg-url` flow.
pub const DOCKERCFG_URL_ATTRIBUTE: &str = "google-dockercfg-url";

/// The Google backend of one rule.
#[derive(Debug)]
pub struct Gcp {
    metadata: Metadata,
    credential: Credential,
    /// Per-pod identity, when the rule sets it up.
    workload: Option<Workload>,
}

/// Where the token comes from, resolved.
#[derive(Debug)]
enum Credential {
    /// A service account of the instance, from the metadata server.
    Metadata { account: String },
    /// A key or `authorized_user` file, read when the backend was made.
    File(CredentialFile),
    /// A docker config in an instance attribute, or at a URL in one.
    Dockercfg { url: bool },
    /// A credential file that is missing or unusable: reported by [`Gcp::check`] and by
    /// every fetch, so that one broken rule does not stop the rules file from loading.
    Unusable(Unusable),
}

/// Why a rule's credential file cannot be used.
#[derive(Debug, Clone)]
struct Unusable {
    /// The file, when one is named.
    path: Option<PathBuf>,
    problem: String,
}

impl Unusable {
    fn error(&self) -> Error {
        match &self.path {
            Some(path) => Error::CredentialFile {
                path: path.clone(),
                problem: self.problem.clone(),
            },
            None => Error::NoCredentials(self.problem.clone()),
        }
    }
}

impl Gcp {
    /// The backend for a rule's `config`, reading the process environment; relative key
    /// file paths are taken from `base_dir`. Fails only on a `config` that contradicts
    /// itself; a key file named by the rule or the environment is read here, and a
    /// problem with it is reported by [`Gcp::check`] and by each fetch.
    pub fn new(config: Config, base_dir: &Path) -> Result<Gcp, Error> {
        Gcp::with_environment(config, base_dir, &Environment::from_process())
    }

    /// [`Gcp::new`] with the environment variables given.
    pub fn with_environment(
        config: Config,
        base_dir: &Path,
        env: &Environment,
    ) -> Result<Gcp, Error> {
        if config.service_account.is_some() && config.source != Source::Metadata {
            return Err(Error::Config(format!(
                "serviceAccount is for source metadata, not {}",
                config.source.as_str()
            )));
        }
        if config.key_file.is_some() && config.source != Source::ServiceAccountKey {
            return Err(Error::Config(format!(
                "keyFile is for source serviceAccountKey, not {}",
                config.source.as_str()
            )));
        }
        let workload = match &config.workload_identity {
            Some(_) if matches!(config.source, Source::Dockercfg | Source::DockercfgUrl) => {
                return Err(Error::Config(format!(
                    "workloadIdentity is not for source {}",
                    config.source.as_str()
                )));
            }
            Some(settings) => Some(Workload::new(settings)?),
            None => None,
        };
        let credential = match config.source {
            Source::Metadata => {
                let account = config
                    .service_account
                    .unwrap_or_else(|| "default".to_owned());
                check_account(&account)?;
                Credential::Metadata { account }
            }
            Source::ServiceAccountKey => match (&config.key_file, &env.application_credentials) {
                (Some(path), _) => service_account_key(&base_dir.join(path)),
                (None, Some(path)) => service_account_key(path),
                (None, None) => Credential::Unusable(Unusable {
                    path: None,
                    problem:
                        "source serviceAccountKey needs keyFile or GOOGLE_APPLICATION_CREDENTIALS"
                            .into(),
                }),
            },
            Source::ApplicationDefault => match application_default_file(env) {
                Some(path) => load(&path).map_or_else(Credential::Unusable, Credential::File),
                None => Credential::Metadata {
                    account: "default".to_owned(),
                },
            },
            Source::Dockercfg => Credential::Dockercfg { url: false },
            Source::DockercfgUrl => Credential::Dockercfg { url: true },
        };
        Ok(Gcp {
            metadata: Metadata::new(env.metadata_host.as_deref()),
            credential,
            workload,
        })
    }

    /// How `request` is fetched with the pod's own identity, or `None` for the node's:
    /// no workload identity settings, no service account token, or no opt-in.
    fn pod<'a>(&'a self, request: &Request<'a>) -> Result<Option<Pod<'a>>, Error> {
        match (&self.workload, request.service_account) {
            (Some(workload), Some(account)) => workload.pod(account),
            _ => Ok(None),
        }
    }

    async fn fetch_async(&self, image: &ImageRef, pod: Option<&Pod<'_>>) -> Result<Token, Error> {
        let client = icp_http::Client::new(icp_http::Options::default())
            .map_err(|e| Error::Config(e.to_string()))?;
        if let Some(pod) = pod {
            return pod.fetch(&client).await;
        }
        match &self.credential {
            Credential::Metadata { account } => self.metadata.token(&client, account).await,
            Credential::File(CredentialFile::ServiceAccount(key)) => {
                oauth::service_account(&client, key).await
            }
            Credential::File(CredentialFile::AuthorizedUser(user)) => {
                oauth::authorized_user(&client, user).await
            }
            Credential::Dockercfg { url: false } => {
                let config = self
                    .metadata
                    .attribute(&client, DOCKERCFG_ATTRIBUTE)
                    .await?;
                let origin = format!("instance attribute {DOCKERCFG_ATTRIBUTE}");
                dockercfg::lookup(&config, &origin, image)
            }
            Credential::Dockercfg { url: true } => {
                let url = self
                    .metadata
                    .attribute(&client, DOCKERCFG_URL_ATTRIBUTE)
                    .await?;
                let url = String::from_utf8(url).unwrap_or_default();
                let (config, origin) = dockercfg::download(&client, url.trim()).await?;
                dockercfg::lookup(&config, &origin, image)
            }
            Credential::Unusable(unusable) => Err(unusable.error()),
        }
    }
}

/// Reads a credential file, keeping what is wrong with it for later.
fn load(path: &Path) -> Result<CredentialFile, Unusable> {
    CredentialFile::load(path).map_err(|error| match error {
        Error::CredentialFile { path, problem } => Unusable {
            path: Some(path),
            problem,
        },
        other => Unusable {
            path: Some(path.to_owned()),
            problem: other.to_string(),
        },
    })
}

/// A service account key file: a credential file that must not be an `authorized_user`.
fn service_account_key(path: &Path) -> Credential {
    match load(path) {
        Ok(file @ CredentialFile::ServiceAccount(_)) => Credential::File(file),
        Ok(CredentialFile::AuthorizedUser(_)) => Credential::Unusable(Unusable {
            path: Some(path.to_owned()),
            problem: "is an authorized_user file, not a service account key (use source applicationDefault)".into(),
        }),
        Err(unusable) => Credential::Unusable(unusable),
    }
}

impl TokenBackend for Gcp {
    type Error = Error;

    /// With workload identity settings: tokens for Google STS, with the opt-in and
    /// impersonation annotations.
    fn service_account_token(&self) -> Option<ServiceAccountTokenUse> {
        self.workload.as_ref().map(Workload::token_use)
    }

    /// Whether the backend can fetch at all, as far as can be told without the network:
    /// its credential file is usable, and `GCE_METADATA_HOST` is valid where it is used.
    fn check(&self) -> Result<(), Error> {
        match &self.credential {
            Credential::Unusable(unusable) => Err(unusable.error()),
            Credential::File(_) => Ok(()),
            Credential::Metadata { .. } | Credential::Dockercfg { .. } => self.metadata.check(),
        }
    }

    /// Google's registry hosts only, strictly (see [`is_google_registry`]); a `dockercfg`
    /// source serves whatever registries the rule sends it, as its docker config names
    /// them.
    fn serves(&self, image: &ImageRef) -> bool {
        match self.credential {
            Credential::Dockercfg { .. } => true,
            _ => is_google_registry(image),
        }
    }

    /// A Google token serves every Google registry: scope [`GOOGLE_SCOPE`], identity the
    /// metadata server and service account, or the credential file and its account; with
    /// the pod's identity, the service account, the annotation values used, the STS
    /// audience and the impersonated account. A docker config's entry is per image.
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Error> {
        let image = request.image;
        let google = |identity: String| TokenKey {
            identity,
            scope: GOOGLE_SCOPE.to_owned(),
        };
        if let Some(pod) = self.pod(request)? {
            return Ok(google(pod.identity()));
        }
        Ok(match &self.credential {
            Credential::Metadata { account } => {
                google(format!("gcp:metadata:{}:{account}", self.metadata.host()))
            }
            Credential::File(file) => google(file.identity()),
            Credential::Unusable(unusable) => return Err(unusable.error()),
            Credential::Dockercfg { url } => TokenKey {
                identity: format!(
                    "gcp:{}:{}",
                    if *url {
                        DOCKERCFG_URL_ATTRIBUTE
                    } else {
                        DOCKERCFG_ATTRIBUTE
                    },
                    self.metadata.host()
                ),
                scope: image.name(),
            },
        })
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let pod = self.pod(request)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        runtime
            .block_on(async {
                tokio::time::timeout(FETCH_BUDGET, self.fetch_async(request.image, pod.as_ref()))
                    .await
            })
            .unwrap_or_else(|_| {
                let timeout = Error::Timeout(FETCH_BUDGET);
                Err(match &pod {
                    Some(pod) => pod.timed_out(timeout),
                    None => timeout,
                })
            })
    }
}

/// The file application default credentials use: `GOOGLE_APPLICATION_CREDENTIALS`, else
/// gcloud's well-known file if it exists; `None` means the metadata server.
fn application_default_file(env: &Environment) -> Option<PathBuf> {
    env.application_credentials
        .clone()
        .or_else(|| env.well_known_file().filter(|path| path.is_file()))
}

/// A service account name goes into metadata URLs: an email or an alias, nothing else.
fn check_account(account: &str) -> Result<(), Error> {
    let valid = !account.is_empty()
        && account.len() <= 256
        && !account.starts_with('.')
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'-' | b'_'));
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "serviceAccount {} is not an email or alias",
            icp_core::quote(account)
        )))
    }
}
