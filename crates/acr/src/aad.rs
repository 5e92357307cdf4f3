//! Azure AD access tokens for the registry audience: from the instance metadata service
//! for a managed identity, from the Azure AD token endpoint for workload identity (client
//! assertion) and for a service principal (client secret).

use std::path::Path;

use icp_core::{Environment, Secret};
use icp_http::{Request, Response, form_encode};
use serde::Deserialize;

use crate::Error;
use crate::cloud::Cloud;
use crate::fetch::{Fetch, error_detail, status_error};
use crate::identity::{ClientSecret, Identity, ManagedId};

/// Test-only override of the instance metadata service's base URL
/// (`http://169.254.169.254`), for tests that run a fake IMDS on the loopback.
pub const IMDS_ENDPOINT_ENV: &str = "IMAGE_CREDENTIAL_PROVIDER_AZURE_IMDS_ENDPOINT";

const IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// What to check when IMDS cannot be reached for a managed identity.
const MANAGED_IDENTITY_HINT: &str = "not on an Azure VM, or IMDS unreachable; else configure \
     acr.identity, an azure.json, or AZURE_FEDERATED_TOKEN_FILE with AZURE_CLIENT_ID and AZURE_TENANT_ID";
const IMDS_API_VERSION: &str = "2018-02-01";
/// The `client_assertion_type` of a JWT client assertion.
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
}

/// Where a node's token comes from: its identity, its cloud, the authority a workload
/// identity's client assertion goes to, and IMDS's base URL.
pub struct Node<'a> {
    /// The identity.
    pub identity: &'a Identity,
    /// The registry's cloud.
    pub cloud: &'a Cloud,
    /// The Azure AD authority of client assertions.
    pub assertion_authority: &'a str,
    /// IMDS's base URL.
    pub imds_endpoint: &'a str,
}

/// An Azure AD access token for the node's cloud's registry audience, as its identity.
pub async fn access_token(fetch: &Fetch<'_>, node: &Node<'_>) -> Result<Secret, Error> {
    let cloud = node.cloud;
    match node.identity {
        Identity::Managed { id, .. } => {
            let base = node.imds_endpoint;
            let mut query = vec![
                ("api-version", IMDS_API_VERSION),
                ("resource", cloud.registry_audience.as_str()),
            ];
            match id {
                ManagedId::System => {}
                ManagedId::ClientId(id) => query.push(("client_id", id)),
                ManagedId::ResourceId(id) => query.push(("msi_res_id", id)),
            }
            let url = format!(
                "{base}/metadata/identity/oauth2/token?{}",
                form_encode(&query)
            );
            // IMDS asks for retries on 404 and 410 while it starts, as on 429 and 5xx.
            let retry = fetch
                .retry
                .on_status(|s| matches!(s, 404 | 410 | 429 | 500..=599));
            let response = fetch
                .send_with(&retry, "IMDS", || {
                    Request::get(url.clone()).header("Metadata", "true")
                })
                .await
                .map_err(no_managed_identity)?;
            if response.status == 400
                && error_detail(&response.body)
                    .to_ascii_lowercase()
                    .contains("identity not found")
            {
                return Err(Error::NoCredentials(format!(
                    "IMDS: {} is not assigned to this VM",
                    managed_name(id)
                )));
            }
            parse_token("IMDS", &response)
        }
        Identity::Workload {
            client_id,
            tenant_id,
            token_file,
        } => {
            let assertion = read_secret_file(token_file, "federated token")?;
            let federated = Federated {
                authority: node.assertion_authority,
                tenant_id,
                client_id,
                assertion: &assertion,
            };
            client_assertion(fetch, &federated, cloud).await
        }
        Identity::ServicePrincipal {
            client_id,
            tenant_id,
            secret,
        } => {
            let secret = match secret {
                ClientSecret::Inline(secret) => secret.clone(),
                ClientSecret::File(path) => read_secret_file(path, "client secret")?,
            };
            let scope = cloud.registry_scope();
            let form = [
                ("client_id", client_id.as_str()),
                ("scope", scope.as_str()),
                ("grant_type", "client_credentials"),
                ("client_secret", secret.expose()),
            ];
            aad_token(fetch, &cloud.authority_host, tenant_id, &form).await
        }
    }
}

/// A workload identity federation: a Kubernetes service account token (read from a file,
/// or the pod's own in service-account-token mode) as the client assertion of an
/// application.
pub struct Federated<'a> {
    /// The Azure AD authority, an `https://` URL ending in `/`.
    pub authority: &'a str,
    /// The tenant, checked as a path segment.
    pub tenant_id: &'a str,
    /// The application (client) id.
    pub client_id: &'a str,
    /// The service account token.
    pub assertion: &'a Secret,
}

/// An Azure AD access token for `cloud`'s registry audience by client assertion
/// (`client_credentials` with a `jwt-bearer` assertion) at
/// `<authority><tenant>/oauth2/v2.0/token`.
pub async fn client_assertion(
    fetch: &Fetch<'_>,
    federated: &Federated<'_>,
    cloud: &Cloud,
) -> Result<Secret, Error> {
    let scope = cloud.registry_scope();
    let form = [
        ("client_id", federated.client_id),
        ("scope", scope.as_str()),
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", federated.assertion.expose()),
    ];
    aad_token(fetch, federated.authority, federated.tenant_id, &form).await
}

async fn aad_token(
    fetch: &Fetch<'_>,
    authority: &str,
    tenant: &str,
    form: &[(&str, &str)],
) -> Result<Secret, Error> {
    let url = format!("{authority}{tenant}/oauth2/v2.0/token");
    let response = fetch
        .send("Azure AD", || Request::post(url.clone()).form(form))
        .await?;
    token_answer("Azure AD", &response)
}

/// The access token of a token endpoint's answer; bad credentials (a 400 with
/// `invalid_client`, `unauthorized_client` or `invalid_grant`, as Azure AD refuses them) are
/// [`Error::AccessDenied`].
pub(crate) fn token_answer(service: &str, response: &Response) -> Result<Secret, Error> {
    if response.status == 400 {
        let detail = error_detail(&response.body);
        if ["invalid_client", "unauthorized_client", "invalid_grant"]
            .iter()
            .any(|code| detail.starts_with(code))
        {
            return Err(Error::AccessDenied {
                service: service.to_owned(),
                detail: format!("HTTP 400: {detail}"),
            });
        }
    }
    parse_token(service, response)
}

fn parse_token(service: &str, response: &Response) -> Result<Secret, Error> {
    if response.status != 200 {
        return Err(status_error(service, response));
    }
    let bad = |reason: &str| Error::BadResponse {
        service: service.to_owned(),
        reason: reason.to_owned(),
    };
    let token: TokenResponse = serde_json::from_slice(&response.body)
        .map_err(|_| bad("the token response is not JSON"))?;
    match token.access_token {
        Some(token) if !token.is_empty() => Ok(Secret::new(token)),
        _ => Err(bad("the token response has no access_token")),
    }
}

/// IMDS out of reach means no managed identity here: said so, with what to configure.
fn no_managed_identity(error: Error) -> Error {
    match error {
        Error::Network { service, cause } if service == "IMDS" => Error::NoCredentials(format!(
            "no managed identity: cannot reach IMDS ({MANAGED_IDENTITY_HINT}): {cause}"
        )),
        Error::Timeout(service) if service == "IMDS" => Error::NoCredentials(format!(
            "no managed identity: IMDS did not answer in time ({MANAGED_IDENTITY_HINT})"
        )),
        other => other,
    }
}

/// The instance metadata service's base URL: [`IMDS_ENDPOINT_ENV`] in `env`, checked
/// when `identity` is a managed identity (the only one that asks IMDS), else IMDS's own.
pub fn imds_endpoint(identity: &Identity, env: &Environment) -> Result<String, Error> {
    match env.get(IMDS_ENDPOINT_ENV) {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(url.trim_end_matches('/').to_owned())
        }
        Some(_) if matches!(identity, Identity::Managed { .. }) => Err(Error::Config(format!(
            "{IMDS_ENDPOINT_ENV} must be an http:// or https:// URL"
        ))),
        _ => Ok(IMDS_ENDPOINT.to_owned()),
    }
}

fn managed_name(id: &ManagedId) -> String {
    match id {
        ManagedId::System => "the system-assigned managed identity".to_owned(),
        ManagedId::ClientId(id) => format!("managed identity with client id {id}"),
        ManagedId::ResourceId(id) => format!("managed identity {id}"),
    }
}

/// Reads the files `identity` reads at each fetch, to report a missing or empty one.
pub fn check_files(identity: &Identity) -> Result<(), Error> {
    match identity {
        Identity::Workload { token_file, .. } => {
            read_secret_file(token_file, "federated token").map(drop)
        }
        Identity::ServicePrincipal {
            secret: ClientSecret::File(path),
            ..
        } => read_secret_file(path, "client secret").map(drop),
        _ => Ok(()),
    }
}

fn read_secret_file(path: &Path, what: &str) -> Result<Secret, Error> {
    let text = crate::azure_json::read_text(path).map_err(|e| {
        Error::NoCredentials(format!(
            "cannot read the {what} file {}: {e}",
            icp_core::quote::path(path)
        ))
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::NoCredentials(format!(
            "the {what} file {} is empty",
            icp_core::quote::path(path)
        )));
    }
    Ok(Secret::new(text))
}
