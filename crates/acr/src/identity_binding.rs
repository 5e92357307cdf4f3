//! AKS identity bindings (`acr.identityBindings`), as the official `acr-credential-provider`
//! does them with `--ib-sni-name`, `--ib-apiserver-ip`, `--ib-default-client-id` and
//! `--ib-default-tenant-id`: the pulling pod's service account token is the client assertion
//! of a token request sent to the cluster's identity-binding endpoint instead of Azure AD.
//!
//! The request is `POST https://<sniName>/`, form-encoded `grant_type=client_credentials`,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion=<pod token>`, `client_id`, and the registry `scope`; it answers
//! `{"access_token", "expires_in"}`. The connection goes to `<apiServerIp>:443` (an IP
//! address, or a host name looked up when connecting, as AKS passes the API server's name),
//! never through a proxy, with `sniName` as the TLS server name, verified against the
//! cluster's CA (`caFile`, default [`DEFAULT_CA_FILE`]) and nothing else. The pod's token
//! must be for [`IDENTITY_BINDING_AUDIENCE`]. The client id is the service account's
//! [`CLIENT_ID_ANNOTATION`], else `defaultClientId`; the tenant (sent to the registry's
//! exchange) its [`TENANT_ID_ANNOTATION`], else `defaultTenantId`: the annotations the
//! official provider reads (its `consts.go`), the same as for a pod's own identity.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use icp_core::{Environment, Secret, ServiceAccount, quote};
use icp_http::Request;
use serde::Deserialize;

use crate::Error;
use crate::aad::{ASSERTION_TYPE, token_answer};
use crate::cloud::Cloud;
use crate::fetch::Fetch;
use crate::identity::{is_valid_id, is_valid_tenant};
pub use crate::service_account::{CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION};

/// The audience of the pods' tokens the identity-binding endpoint takes, as AKS asks the
/// kubelet for them (`tokenAttributes.serviceAccountTokenAudience`).
pub const IDENTITY_BINDING_AUDIENCE: &str = "api://AKSIdentityBinding";
/// Where AKS puts the cluster's CA on a node, and the official provider reads it.
pub const DEFAULT_CA_FILE: &str = "/etc/kubernetes/certs/ca.crt";
/// The port of the identity-binding endpoint (the URL's, `https://<sniName>`).
const PORT: u16 = 443;
/// The service as errors name it.
const SERVICE: &str = "the identity-binding endpoint";

/// The `acr.identityBindings` section of a rule.
///
/// ```yaml
/// acr:
///   identityBindings:
///     sniName: <the identity-binding endpoint's TLS server name>
///     apiServerIp: 10.0.0.1                 # or the API server's host name
///     defaultClientId: 00000000-0000-0000-0000-000000000000   # optional
///     defaultTenantId: 00000000-0000-0000-0000-000000000000   # optional
///     caFile: /etc/kubernetes/certs/ca.crt                    # the default
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityBindingsConfig {
    /// The TLS server name (and `Host`) of the identity-binding endpoint, without a scheme
    /// (`--ib-sni-name`).
    pub sni_name: String,
    /// Where the endpoint is reached: the API server's IP address or host name
    /// (`--ib-apiserver-ip`).
    pub api_server_ip: String,
    /// The client id of a service account without [`CLIENT_ID_ANNOTATION`]
    /// (`--ib-default-client-id`).
    pub default_client_id: Option<String>,
    /// The tenant of a service account without [`TENANT_ID_ANNOTATION`]
    /// (`--ib-default-tenant-id`).
    pub default_tenant_id: Option<String>,
    /// The PEM file of the CA the endpoint's certificate is verified against (relative to
    /// the rules file); default [`DEFAULT_CA_FILE`].
    pub ca_file: Option<PathBuf>,
}

/// Identity bindings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityBindings {
    sni_name: String,
    /// An IP address or a DNS name.
    api_server: String,
    default_client_id: Option<String>,
    default_tenant_id: Option<String>,
    ca_file: PathBuf,
}

impl IdentityBindings {
    /// Checks `config` as the official provider checks its flags (no scheme in the SNI
    /// name, an IP address or a host name for the API server), and more: the SNI name and
    /// a host name are DNS names, the ids are ids. A host name is not looked up here but
    /// when connecting, within the fetch's deadline.
    pub fn resolve(config: &IdentityBindingsConfig, base_dir: &Path) -> Result<Self, Error> {
        let invalid = |message: String| Err(Error::Config(message));
        let sni = &config.sni_name;
        if sni.contains("://") {
            return invalid(format!(
                "identityBindings.sniName {} must not have a scheme (https://)",
                quote(sni)
            ));
        }
        if !is_dns_name(sni) {
            return invalid(format!(
                "identityBindings.sniName {} is not a DNS name",
                quote(sni)
            ));
        }
        let api_server = &config.api_server_ip;
        if !is_api_server(api_server) {
            return invalid(format!(
                "identityBindings.apiServerIp {} is neither an IP address nor a DNS name",
                quote(api_server)
            ));
        }
        if let Some(id) = &config.default_client_id
            && !is_valid_id(id)
        {
            return invalid(format!(
                "identityBindings.defaultClientId {} is not a client id",
                quote(id)
            ));
        }
        if let Some(tenant) = &config.default_tenant_id
            && !is_valid_tenant(tenant)
        {
            return invalid(format!(
                "identityBindings.defaultTenantId {} is not a tenant id",
                quote(tenant)
            ));
        }
        let ca_file = match &config.ca_file {
            Some(path) => base_dir.join(path),
            None => PathBuf::from(DEFAULT_CA_FILE),
        };
        Ok(IdentityBindings {
            sni_name: sni.to_ascii_lowercase(),
            api_server: api_server.to_ascii_lowercase(),
            default_client_id: config.default_client_id.clone(),
            default_tenant_id: config.default_tenant_id.clone(),
            ca_file,
        })
    }

    /// The identity `account` is bound to: its annotations, else the defaults. No client id
    /// at all is an error naming the annotation and the setting, as with the official
    /// provider.
    pub fn bind<'a>(&'a self, account: &'a ServiceAccount) -> Result<Bound<'a>, Error> {
        let client_id = match account.annotation(CLIENT_ID_ANNOTATION) {
            Some(id) => id,
            None => self.default_client_id.as_deref().ok_or_else(|| {
                Error::NoCredentials(format!(
                    "service account {account} has no annotation {CLIENT_ID_ANNOTATION} and \
                     identityBindings.defaultClientId is not set"
                ))
            })?,
        };
        let tenant_id = account
            .annotation(TENANT_ID_ANNOTATION)
            .or(self.default_tenant_id.as_deref());
        let invalid = |what: &str, value: &str| {
            Error::NoCredentials(format!(
                "service account {account}: {what} {} is not valid",
                quote(value)
            ))
        };
        if !is_valid_id(client_id) {
            return Err(invalid("client id", client_id));
        }
        if let Some(tenant) = tenant_id
            && !is_valid_tenant(tenant)
        {
            return Err(invalid("tenant", tenant));
        }
        Ok(Bound {
            account,
            client_id,
            tenant_id,
            bindings: self,
        })
    }

    /// Reads the CA file, to report a missing or empty one at `check-config`.
    pub fn check(&self) -> Result<(), Error> {
        self.ca().map(drop)
    }

    fn ca(&self) -> Result<Vec<u8>, Error> {
        let pem = std::fs::read(&self.ca_file).map_err(|e| {
            Error::Config(format!(
                "identityBindings.caFile {}: {e}",
                self.ca_file.display()
            ))
        })?;
        if pem.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Config(format!(
                "identityBindings.caFile {} is empty",
                self.ca_file.display()
            )));
        }
        Ok(pem)
    }
}

/// What `--ib-apiserver-ip` may be: an IP address or a DNS name.
pub fn is_api_server(value: &str) -> bool {
    value.parse::<IpAddr>().is_ok() || is_dns_name(value)
}

/// A DNS name: dot-separated labels of letters, digits and `-`, neither starting nor
/// ending with `-`, at most 253 characters.
fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A pod's identity through identity bindings: its service account (whose token is the
/// client assertion), the client id and the tenant.
#[derive(Debug, Clone, Copy)]
pub struct Bound<'a> {
    /// The service account, with its token.
    pub account: &'a ServiceAccount,
    /// The client id the token is exchanged for.
    pub client_id: &'a str,
    /// The tenant, sent to the registry's exchange.
    pub tenant_id: Option<&'a str>,
    bindings: &'a IdentityBindings,
}

impl Bound<'_> {
    /// The identity part of the token cache key: the service account (namespace, name,
    /// uid, the annotations), the client id and tenant used, and the endpoint; never the
    /// token.
    pub fn cache_identity(&self) -> String {
        format!(
            "{};acr-identity-binding;client={};tenant={};sni={}",
            self.account
                .key(&[CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION]),
            self.client_id,
            self.tenant_id.unwrap_or_default(),
            self.bindings.sni_name
        )
    }

    /// `error` of a fetch as this identity, naming the service account, the client id and
    /// where it came from.
    pub fn context(&self, error: Error) -> Error {
        let origin = if self.account.annotation(CLIENT_ID_ANNOTATION).is_some() {
            CLIENT_ID_ANNOTATION
        } else {
            "identityBindings.defaultClientId"
        };
        Error::ServiceAccount {
            account: self.account.to_string(),
            identity: format!(
                "identity binding {}, {origin} = {}",
                self.bindings.sni_name, self.client_id
            ),
            error: Box::new(error),
        }
    }

    /// An access token for `cloud`'s registry scope from the identity-binding endpoint.
    pub async fn access_token(
        &self,
        fetch: &Fetch<'_>,
        cloud: &Cloud,
        env: &Environment,
    ) -> Result<Secret, Error> {
        let bindings = self.bindings;
        let ca = bindings.ca()?;
        let client = icp_http::Client::new(*fetch.client.options(), env)
            .and_then(|client| {
                client
                    .route(&bindings.sni_name, PORT, &bindings.api_server)
                    .trusting(&ca, &bindings.ca_file.display().to_string())
            })
            .map_err(|e| Error::Config(e.to_string()))?;
        let through = Fetch {
            client: &client,
            retry: fetch.retry,
            deadline: fetch.deadline,
        };
        let url = format!("https://{}/", bindings.sni_name);
        let scope = cloud.registry_scope();
        let form = [
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", self.account.token.expose()),
            ("client_id", self.client_id),
            ("scope", scope.as_str()),
        ];
        let response = through
            .send(SERVICE, || Request::post(url.clone()).form(&form))
            .await?;
        token_answer(SERVICE, &response)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(json: &str) -> IdentityBindingsConfig {
        serde_json::from_str(json).unwrap()
    }

    fn bindings(json: &str) -> Result<IdentityBindings, Error> {
        IdentityBindings::resolve(&config(json), Path::new("/rules"))
    }

    fn account(annotations: &[(&str, &str)]) -> ServiceAccount {
        ServiceAccount {
            namespace: "team-a".into(),
            name: "app".into(),
            uid: "u1".into(),
            token: Secret::new("header.payload.signature"),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    const BASE: &str = r#""sniName": "ib.example.azmk8s.io", "apiServerIp": "10.0.0.1""#;

    #[test]
    fn the_section_is_checked_as_the_official_flags_are() {
        let good = bindings(&format!(
            r#"{{{BASE}, "defaultClientId": "c1", "defaultTenantId": "t1", "caFile": "ca.pem"}}"#
        ))
        .unwrap();
        assert_eq!(good.ca_file, Path::new("/rules/ca.pem"));
        assert_eq!(good.api_server, "10.0.0.1");
        assert_eq!(
            bindings(&format!("{{{BASE}}}")).unwrap().ca_file,
            Path::new(DEFAULT_CA_FILE)
        );
        assert!(bindings(r#"{"sniName": "a.example", "apiServerIp": "fd00::1"}"#).is_ok());
        // AKS passes the API server's name: looked up when connecting, as the official
        // provider's dialer does.
        let named = bindings(
            r#"{"sniName": "a.example", "apiServerIp": "MyAKS-1a2b3c.hcp.eastus.azmk8s.io"}"#,
        )
        .unwrap();
        assert_eq!(named.api_server, "myaks-1a2b3c.hcp.eastus.azmk8s.io");
        let refused = [
            (
                r#"{"sniName": "https://a.example", "apiServerIp": "10.0.0.1"}"#,
                "must not have a scheme",
            ),
            (
                r#"{"sniName": "a.example:443", "apiServerIp": "10.0.0.1"}"#,
                "is not a DNS name",
            ),
            (
                r#"{"sniName": "a.example", "apiServerIp": "10.0.0.1:443"}"#,
                "identityBindings.apiServerIp \"10.0.0.1:443\" is neither an IP address nor a DNS name",
            ),
            (
                r#"{"sniName": "a.example", "apiServerIp": "https://apiserver.local"}"#,
                "is neither an IP address nor a DNS name",
            ),
            (
                r#"{"sniName": "a.example", "apiServerIp": "10.0.0.1", "defaultClientId": "a&b"}"#,
                "identityBindings.defaultClientId",
            ),
            (
                r#"{"sniName": "a.example", "apiServerIp": "10.0.0.1", "defaultTenantId": "../t"}"#,
                "identityBindings.defaultTenantId",
            ),
        ];
        for (json, expected) in refused {
            let error = bindings(json).unwrap_err().to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
        assert!(
            serde_json::from_str::<IdentityBindingsConfig>(r#"{"sniName": "a.example"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<IdentityBindingsConfig>(&format!(
                r#"{{{BASE}, "apiserverIp": "10.0.0.1"}}"#
            ))
            .is_err()
        );
    }

    #[test]
    fn the_annotations_win_over_the_defaults_and_no_client_id_is_an_error() {
        let with_defaults = bindings(&format!(
            r#"{{{BASE}, "defaultClientId": "c-default", "defaultTenantId": "t-default"}}"#
        ))
        .unwrap();
        let bare = account(&[]);
        let bound = with_defaults.bind(&bare).unwrap();
        assert_eq!(
            (bound.client_id, bound.tenant_id),
            ("c-default", Some("t-default"))
        );
        let annotated = account(&[(CLIENT_ID_ANNOTATION, "c1"), (TENANT_ID_ANNOTATION, "t1")]);
        let bound = with_defaults.bind(&annotated).unwrap();
        assert_eq!((bound.client_id, bound.tenant_id), ("c1", Some("t1")));

        let without = bindings(&format!("{{{BASE}}}")).unwrap();
        let error = without.bind(&bare).unwrap_err().to_string();
        assert_eq!(
            error,
            "no Azure credentials: service account team-a/app has no annotation \
             kubernetes.azure.com/acr-client-id and identityBindings.defaultClientId is not set"
        );
        let client_only = account(&[(CLIENT_ID_ANNOTATION, "c1")]);
        assert_eq!(without.bind(&client_only).unwrap().tenant_id, None);
        let hostile = account(&[(CLIENT_ID_ANNOTATION, "c1&scope=x")]);
        assert!(without.bind(&hostile).is_err());
    }

    #[test]
    fn keys_and_errors_name_the_account_and_the_client_never_the_token() {
        let with_defaults =
            bindings(&format!(r#"{{{BASE}, "defaultClientId": "c-default"}}"#)).unwrap();
        let bare = account(&[]);
        let bound = with_defaults.bind(&bare).unwrap();
        assert_eq!(
            bound.cache_identity(),
            "sa=team-a/app/u1;acr-identity-binding;client=c-default;tenant=;sni=ib.example.azmk8s.io"
        );
        let annotated = account(&[(CLIENT_ID_ANNOTATION, "c1")]);
        let other = with_defaults.bind(&annotated).unwrap();
        assert_ne!(other.cache_identity(), bound.cache_identity());
        assert_eq!(
            bound
                .context(Error::Throttled(SERVICE.into(), None))
                .to_string(),
            "service account team-a/app (identity binding ib.example.azmk8s.io, \
             identityBindings.defaultClientId = c-default): throttled by the identity-binding \
             endpoint; try again later"
        );
        assert!(
            other
                .context(Error::Throttled(SERVICE.into(), None))
                .to_string()
                .contains("kubernetes.azure.com/acr-client-id = c1")
        );
        assert!(!bound.cache_identity().contains("payload"));
    }
}
