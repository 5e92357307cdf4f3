//! Per-pod identity (KEP-4412): which pulls use the pod's own service account token, how
//! it is exchanged, and as which Google identity, all settled without I/O so that the
//! token cache can key the result before anything is fetched.
//!
//! A service account that opted in (`iam.gke.io/enable-wi-image-pull: "true"`, unless the
//! rule asks for no opt-in) has its token exchanged at Google's Security Token Service for
//! a federated access token, as GKE's `auth-provider-gcp` does. When it also names a Google
//! service account (`iam.gke.io/gcp-service-account`), the federated token impersonates
//! that account through IAM Credentials and the answer is that account's token. Every other
//! pull keeps the node's identity.

use crate::fetch::Fetch;
use icp_core::{ServiceAccount, ServiceAccountTokenUse, Token};

use crate::config::WorkloadIdentity;
use crate::{Error, iam, sts};

/// The value of the opt-in annotation that opts in.
const OPTED_IN: &str = "true";

/// A rule's workload identity settings, checked.
#[derive(Debug, Clone)]
pub struct Workload {
    audience: String,
    /// The opt-in annotation, or `None` when every token is exchanged.
    enable_annotation: Option<String>,
    service_account_annotation: String,
}

/// One pull with a pod's identity: whose token, for which audience, as which Google
/// service account.
#[derive(Debug)]
pub struct Pod<'a> {
    /// The pod's service account and token.
    account: &'a ServiceAccount,
    /// The STS audience.
    audience: &'a str,
    /// The opt-in annotation, when the rule requires one.
    enable_annotation: Option<&'a str>,
    /// The impersonation annotation and the Google service account it names, checked.
    impersonate: Option<(&'a str, &'a str)>,
}

impl WorkloadIdentity {
    /// The Security Token Service audience these settings name, or what is wrong with
    /// them.
    pub fn sts_audience(&self) -> Result<String, String> {
        match (&self.audience, &self.project_id, &self.identity_provider) {
            (Some(audience), None, None) => {
                check_audience(audience)?;
                Ok(audience.clone())
            }
            (None, Some(project), Some(provider)) => {
                check_project_id(project)?;
                check_identity_provider(provider)?;
                Ok(format!(
                    "identitynamespace:{project}.svc.id.goog:{provider}"
                ))
            }
            (Some(_), _, _) => {
                Err("give audience, or projectId and identityProvider, not both".into())
            }
            (None, Some(_), None) => Err("projectId needs identityProvider".into()),
            (None, None, Some(_)) => Err("identityProvider needs projectId".into()),
            (None, None, None) => Err("needs audience, or projectId and identityProvider".into()),
        }
    }
}

impl Workload {
    /// The settings of `config`, checked.
    pub fn new(config: &WorkloadIdentity) -> Result<Workload, Error> {
        let invalid = |problem: String| Error::Config(format!("workloadIdentity: {problem}"));
        let audience = config.sts_audience().map_err(invalid)?;
        check_annotation_key(&config.enable_annotation)
            .map_err(|problem| invalid(format!("enableAnnotation {problem}")))?;
        check_annotation_key(&config.service_account_annotation)
            .map_err(|problem| invalid(format!("serviceAccountAnnotation {problem}")))?;
        Ok(Workload {
            audience,
            enable_annotation: config
                .require_opt_in
                .then(|| config.enable_annotation.clone()),
            service_account_annotation: config.service_account_annotation.clone(),
        })
    }

    /// What the kubelet must send: a token for the audience the exchange expects (GKE's
    /// workload identity pool `<project>.svc.id.goog`, or the pool provider's full name,
    /// which a provider allows by default), with the annotations read.
    pub fn token_use(&self) -> ServiceAccountTokenUse {
        let audience = match self.audience.strip_prefix("identitynamespace:") {
            Some(namespace) => namespace
                .split_once(':')
                .map_or(namespace, |(pool, _)| pool)
                .to_owned(),
            None => self.audience.clone(),
        };
        ServiceAccountTokenUse {
            audience,
            annotation_keys: self
                .enable_annotation
                .iter()
                .chain([&self.service_account_annotation])
                .cloned()
                .collect(),
        }
    }

    /// How `account`'s pull is made with its own identity, or `None` when it keeps the
    /// node's (it did not opt in). An impersonation annotation that is not a Google
    /// service account's email is an error: it never goes into a URL.
    pub fn pod<'a>(&'a self, account: &'a ServiceAccount) -> Result<Option<Pod<'a>>, Error> {
        if let Some(key) = &self.enable_annotation
            && account.annotation(key) != Some(OPTED_IN)
        {
            tracing::debug!(%account, annotation = %key, "the service account has not opted in; using the node's identity");
            return Ok(None);
        }
        let key = self.service_account_annotation.as_str();
        let impersonate = match account.annotation(key) {
            None => None,
            Some(email) if is_service_account_email(email) => Some((key, email)),
            Some(value) => {
                return Err(Error::Annotation {
                    account: account.to_string(),
                    annotation: key.to_owned(),
                    value: icp_core::quote(value),
                    problem: "not a Google service account email",
                });
            }
        };
        Ok(Some(Pod {
            account,
            audience: &self.audience,
            enable_annotation: self.enable_annotation.as_deref(),
            impersonate,
        }))
    }
}

impl Pod<'_> {
    /// The token cache identity: the service account, the annotation values used, the
    /// audience and the impersonated account. Never the token.
    pub fn identity(&self) -> String {
        let mut keys: Vec<&str> = self.enable_annotation.into_iter().collect();
        keys.extend(self.impersonate.map(|(key, _)| key));
        let mut identity = format!("{};gcp:sts:{}", self.account.key(&keys), self.audience);
        if let Some((_, email)) = self.impersonate {
            identity.push_str(&format!(";gcp:impersonate:{email}"));
        }
        identity
    }

    /// The token to answer with: the pod's token exchanged at STS, then, when the service
    /// account names a Google service account, that account's token.
    pub async fn fetch(&self, fetch: &Fetch<'_>) -> Result<Token, Error> {
        tracing::debug!(account = %self.account, audience = %self.audience, "exchanging the service account token at Google STS");
        let federated = sts::exchange(fetch, &self.account.token, self.audience)
            .await
            .map_err(|cause| self.failed(self.sts_context(), cause))?;
        let Some((key, email)) = self.impersonate else {
            return Ok(federated);
        };
        tracing::debug!(account = %self.account, google_service_account = %email, "impersonating");
        iam::generate_access_token(fetch, &federated.password, email)
            .await
            .map_err(|cause| self.failed(format!("annotation {key} = {email:?}"), cause))
    }

    /// `cause`, naming the service account and what was used: for a fetch that took too
    /// long as a whole.
    pub fn timed_out(&self, cause: Error) -> Error {
        self.failed(self.sts_context(), cause)
    }

    fn failed(&self, context: String, cause: Error) -> Error {
        Error::ServiceAccount {
            account: self.account.to_string(),
            context,
            cause: Box::new(cause),
        }
    }

    fn sts_context(&self) -> String {
        match self.enable_annotation {
            Some(key) => format!(
                "annotation {key} = {OPTED_IN:?}, STS audience {:?}",
                self.audience
            ),
            None => format!("STS audience {:?}", self.audience),
        }
    }
}

/// A Google Cloud project id: 6 to 30 lowercase letters, digits and hyphens, starting
/// with a letter and not ending with a hyphen.
fn check_project_id(project: &str) -> Result<(), String> {
    let valid = (6..=30).contains(&project.len())
        && project.starts_with(|c: char| c.is_ascii_lowercase())
        && !project.ends_with('-')
        && project
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "project id {} is not a Google Cloud project id (6 to 30 lowercase letters, digits and hyphens, starting with a letter)",
            icp_core::quote(project)
        ))
    }
}

/// An identity provider: an `https://` URL of printable ASCII.
fn check_identity_provider(provider: &str) -> Result<(), String> {
    let valid = provider.len() <= 1024
        && provider
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && provider.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "identity provider {} is not an https:// URL",
            icp_core::quote(provider)
        ))
    }
}

/// A full STS audience: a workload identity pool provider's resource name, or GKE's
/// `identitynamespace:<pool>.svc.id.goog:<identity provider>`.
fn check_audience(audience: &str) -> Result<(), String> {
    let segment = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let provider = audience
        .strip_prefix("//iam.googleapis.com/projects/")
        .map(|rest| rest.split('/').collect::<Vec<_>>())
        .is_some_and(|parts| {
            matches!(
                parts[..],
                [project, "locations", location, "workloadIdentityPools", pool, "providers", provider]
                    if [project, location, pool, provider].into_iter().all(segment)
            )
        });
    let namespace = audience
        .strip_prefix("identitynamespace:")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(pool, provider)| {
            pool.strip_suffix(".svc.id.goog")
                .is_some_and(|project| check_project_id(project).is_ok())
                && check_identity_provider(provider).is_ok()
        });
    if provider || namespace {
        Ok(())
    } else {
        Err(format!(
            "audience {} is neither //iam.googleapis.com/projects/<number>/locations/<location>/workloadIdentityPools/<pool>/providers/<provider> nor identitynamespace:<project>.svc.id.goog:<identity provider>",
            icp_core::quote(audience)
        ))
    }
}

/// A Kubernetes annotation key, as apimachinery judges one.
fn check_annotation_key(key: &str) -> Result<(), String> {
    if icp_core::names::is_annotation_key(key) {
        Ok(())
    } else {
        Err(format!("{} is not an annotation key", icp_core::quote(key)))
    }
}

/// Whether `email` is a Google service account's email, strictly: it goes into the path
/// of an IAM Credentials URL. A local part of lowercase letters, digits and hyphens, and a
/// domain of such labels ending in `gserviceaccount.com`
/// (`puller@project.iam.gserviceaccount.com`, `123-compute@developer.gserviceaccount.com`).
fn is_service_account_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let label = |text: &str| {
        !text.is_empty()
            && text.len() <= 63
            && !text.starts_with('-')
            && !text.ends_with('-')
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    email.len() <= 254
        && label(local)
        && (domain == "gserviceaccount.com"
            || domain
                .strip_suffix(".gserviceaccount.com")
                .is_some_and(|rest| rest.split('.').all(label)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::Engine;
    use icp_core::Secret;

    use super::*;
    use crate::config::{ENABLE_ANNOTATION, SERVICE_ACCOUNT_ANNOTATION};

    const PROVIDER: &str =
        "https://container.googleapis.com/v1/projects/my-project/locations/us-central1/clusters/c1";
    const POOL_PROVIDER: &str = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/k8s-pool/providers/cluster-1";

    fn account(annotations: &[(&str, &str)]) -> ServiceAccount {
        let encode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let token = format!(
            "{}.{}.{}",
            encode(r#"{"alg":"RS256"}"#),
            encode(
                r#"{"kubernetes.io":{"namespace":"team-a","serviceaccount":{"name":"app","uid":"u1"}}}"#
            ),
            encode("signature")
        );
        let annotations: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServiceAccount::from_token(Secret::new(token), annotations).unwrap()
    }

    fn gke() -> Workload {
        Workload::new(&WorkloadIdentity::gke("my-project", PROVIDER)).unwrap()
    }

    #[test]
    fn the_gke_flags_make_the_official_audience() {
        assert_eq!(
            WorkloadIdentity::gke("my-project", PROVIDER).sts_audience(),
            Ok(format!(
                "identitynamespace:my-project.svc.id.goog:{PROVIDER}"
            ))
        );
    }

    #[test]
    fn only_an_opted_in_account_uses_its_identity() {
        let workload = gke();
        for annotations in [
            &[][..],
            &[(ENABLE_ANNOTATION, "false")],
            &[(ENABLE_ANNOTATION, "True")],
            &[(SERVICE_ACCOUNT_ANNOTATION, "a@p.iam.gserviceaccount.com")],
        ] {
            let account = account(annotations);
            assert!(workload.pod(&account).unwrap().is_none(), "{annotations:?}");
        }
        let account = account(&[(ENABLE_ANNOTATION, "true")]);
        let pod = workload.pod(&account).unwrap().unwrap();
        assert_eq!(
            pod.identity(),
            format!(
                "sa=team-a/app/u1;{ENABLE_ANNOTATION}=true;gcp:sts:identitynamespace:my-project.svc.id.goog:{PROVIDER}"
            )
        );
        let mut config = WorkloadIdentity::gke("my-project", PROVIDER);
        config.require_opt_in = false;
        let everyone = Workload::new(&config).unwrap();
        let plain = self::account(&[]);
        assert!(everyone.pod(&plain).unwrap().is_some());
    }

    #[test]
    fn the_identity_names_the_impersonated_account_and_never_the_token() {
        let workload = gke();
        let email = "puller@other-project.iam.gserviceaccount.com";
        let account = account(&[
            (ENABLE_ANNOTATION, "true"),
            (SERVICE_ACCOUNT_ANNOTATION, email),
        ]);
        let identity = workload.pod(&account).unwrap().unwrap().identity();
        assert!(
            identity.starts_with(&account.key(&[ENABLE_ANNOTATION, SERVICE_ACCOUNT_ANNOTATION]))
        );
        assert!(
            identity.ends_with(&format!(";gcp:impersonate:{email}")),
            "{identity}"
        );
        for part in account.token.expose().split('.') {
            assert!(!identity.contains(part), "{identity}");
        }
    }

    #[test]
    fn renamed_annotations_are_the_ones_read() {
        let mut config = WorkloadIdentity::gke("my-project", PROVIDER);
        config.enable_annotation = "example.com/pull-as-me".into();
        config.service_account_annotation = "example.com/google-account".into();
        let workload = Workload::new(&config).unwrap();
        let official = account(&[(ENABLE_ANNOTATION, "true")]);
        assert!(workload.pod(&official).unwrap().is_none());
        let renamed = account(&[
            ("example.com/pull-as-me", "true"),
            ("example.com/google-account", "a@p.iam.gserviceaccount.com"),
            (SERVICE_ACCOUNT_ANNOTATION, "b@p.iam.gserviceaccount.com"),
        ]);
        let identity = workload.pod(&renamed).unwrap().unwrap().identity();
        assert!(
            identity.ends_with(";gcp:impersonate:a@p.iam.gserviceaccount.com"),
            "{identity}"
        );
    }

    #[test]
    fn an_impersonation_annotation_that_is_no_email_is_refused() {
        let workload = gke();
        for value in [
            "puller@p.iam.gserviceaccount.com/../../x",
            "puller@p.iam.gserviceaccount.com:signBlob",
            "puller@evil.example",
            "Puller@p.iam.gserviceaccount.com",
            "puller@p.iam.gserviceaccount.com?x=1",
            "@p.iam.gserviceaccount.com",
            "puller",
            "a b@p.iam.gserviceaccount.com",
            "puller@p..iam.gserviceaccount.com",
            "puller@.gserviceaccount.com",
            "puller@p.iam.gserviceaccount.com.evil.example",
            "puller%40p@p.iam.gserviceaccount.com",
        ] {
            let account = account(&[
                (ENABLE_ANNOTATION, "true"),
                (SERVICE_ACCOUNT_ANNOTATION, value),
            ]);
            let error = workload.pod(&account).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!(
                    "service account team-a/app: annotation {SERVICE_ACCOUNT_ANNOTATION} = "
                )) && error.ends_with("is not a Google service account email"),
                "{value}: {error}"
            );
        }
        for email in [
            "puller@my-project.iam.gserviceaccount.com",
            "123456789-compute@developer.gserviceaccount.com",
            "my-project@appspot.gserviceaccount.com",
            "service-123@gcp-sa-artifactregistry.iam.gserviceaccount.com",
        ] {
            assert!(is_service_account_email(email), "{email}");
        }
    }

    #[test]
    fn bad_settings_name_the_problem() {
        let with = |audience: Option<&str>, project: Option<&str>, provider: Option<&str>| {
            let mut config = WorkloadIdentity::gke("unused", "unused");
            config.audience = audience.map(str::to_owned);
            config.project_id = project.map(str::to_owned);
            config.identity_provider = provider.map(str::to_owned);
            Workload::new(&config).map(drop).unwrap_err().to_string()
        };
        for (message, expected) in [
            (
                with(None, None, None),
                "needs audience, or projectId and identityProvider",
            ),
            (
                with(Some(POOL_PROVIDER), Some("my-project"), None),
                "not both",
            ),
            (
                with(None, Some("my-project"), None),
                "projectId needs identityProvider",
            ),
            (
                with(None, None, Some(PROVIDER)),
                "identityProvider needs projectId",
            ),
            (
                with(None, Some("My_Project"), Some(PROVIDER)),
                "project id \"My_Project\" is not",
            ),
            (
                with(None, Some("my-project"), Some("http://x")),
                "identity provider \"http://x\" is not an https:// URL",
            ),
            (
                with(None, Some("my-project"), Some("https://a b")),
                "is not an https:// URL",
            ),
            (
                with(
                    Some(
                        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p",
                    ),
                    None,
                    None,
                ),
                "is neither",
            ),
            (
                with(
                    Some(
                        "https://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
                    ),
                    None,
                    None,
                ),
                "is neither",
            ),
        ] {
            assert!(
                message.starts_with("invalid gcp configuration: workloadIdentity: "),
                "{message}"
            );
            assert!(message.contains(expected), "{message} lacks {expected}");
        }
        let good = |audience: &str| {
            let mut config = WorkloadIdentity::gke("unused", "unused");
            (config.audience, config.project_id, config.identity_provider) =
                (Some(audience.to_owned()), None, None);
            config.sts_audience()
        };
        assert_eq!(good(POOL_PROVIDER), Ok(POOL_PROVIDER.to_owned()));
        let namespace = format!("identitynamespace:my-project.svc.id.goog:{PROVIDER}");
        assert_eq!(good(&namespace), Ok(namespace.clone()));
        let mut config = WorkloadIdentity::gke("my-project", PROVIDER);
        config.enable_annotation = "bad key".into();
        assert!(
            Workload::new(&config)
                .unwrap_err()
                .to_string()
                .contains("enableAnnotation \"bad key\" is not an annotation key")
        );
    }
}
