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
//! The binary builds the backend as a [`Build`] row of its backend table (or with
//! [`Gcp::new`]) from [`Config`] and the [`Environment`] it passes, which is all the
//! backend reads (`GCE_METADATA_HOST`, `GOOGLE_APPLICATION_CREDENTIALS`,
//! `CLOUDSDK_CONFIG`, `HOME`, and the overrides and proxies of [`icp_http`]); a problem
//! with the settings or a credential file is the constructor's error. It then uses the
//! [`TokenBackend`] implementation.
//!
//! Every request goes through [`icp_http`] with short timeouts and the kit's retry policy,
//! and a whole fetch ends within [`LIMITS`]' total ([`Gcp::with_limits`] sets others). `gcp_auth` is not used: it cannot be pointed
//! at `GCE_METADATA_HOST`, reads `authorized_user` files from gcloud's directory only and
//! sends them to a fixed endpoint, and brings a second HTTP client without timeouts.

mod config;
mod dockercfg;
mod error;
mod fetch;
mod host;
mod iam;
mod jwt;
mod key;
mod metadata;
mod oauth;
mod sts;
mod timestamp;
mod token;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use icp_core::{
    Build, Context, Environment, ImageRef, Request, ServiceAccountTokenUse, Token, TokenBackend,
    TokenKey,
};
use icp_http::{Deadline, RunError};

use config::Variables;
pub use config::{Config, ENABLE_ANNOTATION, SERVICE_ACCOUNT_ANNOTATION, Source, WorkloadIdentity};
pub use error::Error;
use fetch::Fetch;
pub use host::{DEFAULT_PATTERNS, is_google_registry};
pub use icp_http::Limits;
use key::CredentialFile;
use metadata::Metadata;
use workload::{Pod, Workload};

/// The bounds of one fetch: 20 s in all (well inside the kubelet's one-minute limit on the
/// plugin), 5 s per request, 3 s to connect (1 s to the metadata server), 3 attempts
/// (2 for a docker config download), waits from 0.25 s (0.1 s for the metadata server),
/// a `Retry-After` of at most 5 s.
pub const LIMITS: Limits = Limits {
    total: Duration::from_secs(20),
    request: Duration::from_secs(5),
    connect: Duration::from_secs(3),
    attempts: 3,
    backoff: Duration::from_millis(250),
    max_wait: Duration::from_secs(5),
};

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
    limits: Limits,
    /// The environment the backend was built with, for its clients' overrides and proxies.
    env: Environment,
}

/// Where the token comes from, resolved.
#[derive(Debug)]
enum Credential {
    /// A service account of the instance, from the metadata server.
    Metadata { account: String },
    /// A key or `authorized_user` file.
    File(KeyFile),
    /// A docker config in an instance attribute, or at a URL in one.
    Dockercfg { url: bool },
}

/// The node's credential file: read when the node's identity first needs it (a pod
/// pulling as itself never does), then kept for the backend's life. What is wrong with it
/// is the error of every use that needs it, and of `check`.
#[derive(Debug)]
struct KeyFile {
    path: PathBuf,
    /// A service account key is required (source `serviceAccountKey`); an
    /// `authorized_user` file is refused.
    key_only: bool,
    read: OnceLock<Result<CredentialFile, String>>,
}

impl KeyFile {
    /// The credential of the file at `path`, not read yet.
    fn credential(path: PathBuf, key_only: bool) -> Credential {
        Credential::File(KeyFile {
            path,
            key_only,
            read: OnceLock::new(),
        })
    }

    /// The file, read and checked on first use.
    fn get(&self) -> Result<&CredentialFile, Error> {
        self.read
            .get_or_init(|| match load(&self.path) {
                Ok(CredentialFile::AuthorizedUser(_)) if self.key_only => Err(
                    "is an authorized_user file, not a service account key (use source applicationDefault)"
                        .to_owned(),
                ),
                Ok(file) => Ok(file),
                Err(Error::CredentialFile { problem, .. }) => Err(problem),
                Err(other) => Err(other.to_string()),
            })
            .as_ref()
            .map_err(|problem| Error::CredentialFile {
                path: self.path.clone(),
                problem: problem.clone(),
            })
    }
}

impl Gcp {
    /// The backend for a rule's `config`, with the variables of `env`; relative key file
    /// paths are taken from `base_dir`. A `config` that contradicts itself is the error; a
    /// credential file is read when the node's identity first needs it.
    pub fn new(config: Config, base_dir: &Path, env: &Environment) -> Result<Gcp, Error> {
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
        let vars = Variables::read(env);
        let credential = match config.source {
            Source::Metadata => {
                let account = config
                    .service_account
                    .unwrap_or_else(|| "default".to_owned());
                check_account(&account)?;
                Credential::Metadata { account }
            }
            Source::ServiceAccountKey => match (&config.key_file, &vars.application_credentials) {
                (Some(path), _) => KeyFile::credential(base_dir.join(path), true),
                (None, Some(path)) => KeyFile::credential(path.clone(), true),
                (None, None) => {
                    return Err(Error::NoCredentials(
                        "source serviceAccountKey needs keyFile or GOOGLE_APPLICATION_CREDENTIALS"
                            .into(),
                    ));
                }
            },
            Source::ApplicationDefault => match application_default_file(&vars) {
                Some(path) => KeyFile::credential(path, false),
                None => Credential::Metadata {
                    account: "default".to_owned(),
                },
            },
            Source::Dockercfg => Credential::Dockercfg { url: false },
            Source::DockercfgUrl => Credential::Dockercfg { url: true },
        };
        Ok(Gcp {
            metadata: Metadata::new(vars.metadata_host.as_deref()),
            credential,
            workload,
            limits: LIMITS,
            env: env.clone(),
        })
    }

    /// The same backend with other time and retry bounds.
    pub fn with_limits(mut self, limits: Limits) -> Gcp {
        self.limits = limits;
        self
    }

    /// How `request` is fetched with the pod's own identity, or `None` for the node's:
    /// no workload identity settings, no service account token, or no opt-in.
    fn pod<'a>(&'a self, request: &Request<'a>) -> Result<Option<Pod<'a>>, Error> {
        match (&self.workload, request.service_account) {
            (Some(workload), Some(account)) => workload.pod(account),
            _ => Ok(None),
        }
    }

    async fn fetch_async(
        &self,
        deadline: Deadline,
        image: &ImageRef,
        pod: Option<&Pod<'_>>,
    ) -> Result<Token, Error> {
        let client = icp_http::Client::new(icp_http::Options::default(), &self.env)
            .map_err(|e| Error::Config(e.to_string()))?;
        let fetch = Fetch {
            client: &client,
            limits: self.limits,
            deadline,
        };
        if let Some(pod) = pod {
            return pod.fetch(&fetch).await;
        }
        match &self.credential {
            Credential::Metadata { account } => self.metadata.token(&fetch, account).await,
            Credential::File(file) => match file.get()? {
                CredentialFile::ServiceAccount(key) => oauth::service_account(&fetch, key).await,
                CredentialFile::AuthorizedUser(user) => oauth::authorized_user(&fetch, user).await,
            },
            Credential::Dockercfg { url: false } => {
                let config = self.metadata.attribute(&fetch, DOCKERCFG_ATTRIBUTE).await?;
                let origin = format!("instance attribute {DOCKERCFG_ATTRIBUTE}");
                dockercfg::lookup(&config, &origin, image)
            }
            Credential::Dockercfg { url: true } => {
                let url = self
                    .metadata
                    .attribute(&fetch, DOCKERCFG_URL_ATTRIBUTE)
                    .await?;
                let url = String::from_utf8(url).unwrap_or_default();
                let (config, origin) = dockercfg::download(&fetch, url.trim()).await?;
                dockercfg::lookup(&config, &origin, image)
            }
        }
    }
}

/// Reads a credential file; what is wrong with it names the file.
fn load(path: &Path) -> Result<CredentialFile, Error> {
    CredentialFile::load(path).map_err(|error| match error {
        error @ Error::CredentialFile { .. } => error,
        other => Error::CredentialFile {
            path: path.to_owned(),
            problem: other.to_string(),
        },
    })
}

/// The `gcp` row of the binary's backend table: the rule section is [`Config`], every
/// field optional.
impl Build for Gcp {
    const NAME: &'static str = "gcp";
    const DEFAULT_PATTERNS: &'static [&'static str] = DEFAULT_PATTERNS;
    const POD_IDENTITY_ANNOTATIONS: &'static [&'static str] = &[ENABLE_ANNOTATION];
    type Config = Config;
    type Error = Error;

    fn default_config() -> Option<Config> {
        Some(Config::default())
    }

    fn build(config: Config, context: &Context<'_>) -> Result<Gcp, Error> {
        Gcp::new(config, context.base_dir, context.env)
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
            Credential::File(file) => file.get().map(|_| ()),
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
            Credential::File(file) => google(file.get()?.identity()),
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

    /// The metadata server, when the token (or the docker config) comes from it rather than
    /// from a pod's identity or a credential file.
    fn metadata_service(&self, request: &Request<'_>) -> Option<&'static str> {
        let node = matches!(self.pod(request), Ok(None));
        (node && !matches!(self.credential, Credential::File(_))).then_some("gce-metadata")
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Error> {
        let pod = self.pod(request)?;
        icp_http::run(Deadline::after(self.limits.total), |deadline| {
            self.fetch_async(deadline, request.image, pod.as_ref())
        })
        .unwrap_or_else(|error| {
            let timeout = match error {
                RunError::Runtime(cause) => return Err(Error::Runtime(cause)),
                RunError::Elapsed(budget) => Error::Timeout(budget),
            };
            Err(match &pod {
                Some(pod) => pod.timed_out(timeout),
                None => timeout,
            })
        })
    }
}

/// The file application default credentials use: `GOOGLE_APPLICATION_CREDENTIALS`, else
/// gcloud's well-known file if it exists; `None` means the metadata server.
fn application_default_file(vars: &Variables) -> Option<PathBuf> {
    vars.application_credentials
        .clone()
        .or_else(|| vars.well_known_file.clone().filter(|path| path.is_file()))
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
