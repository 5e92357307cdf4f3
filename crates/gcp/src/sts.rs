//! Google's Security Token Service: a pod's service account token exchanged for a
//! federated access token (OAuth 2.0 token exchange, RFC 8693), with the JSON body GKE's
//! `auth-provider-gcp` sends.

use std::time::SystemTime;

use icp_core::{Secret, Token};
use icp_http::Request;

use crate::Error;
use crate::fetch::Fetch;
use crate::oauth;

/// The token exchange endpoint.
pub const STS_URL: &str = "https://sts.googleapis.com/v1/token";

/// The scope of every token asked for: what Google's registries accept.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A federated access token for `subject_token` (the pod's service account token) and
/// `audience`, expiring when STS says (`expires_in`).
pub async fn exchange(
    fetch: &Fetch<'_>,
    subject_token: &Secret,
    audience: &str,
) -> Result<Token, Error> {
    let body = serde_json::json!({
        "audience": audience,
        "grant_type": TOKEN_EXCHANGE,
        "requested_token_type": ACCESS_TOKEN,
        "scope": CLOUD_PLATFORM_SCOPE,
        "subject_token": subject_token.expose(),
        "subject_token_type": JWT,
    })
    .to_string();
    let endpoint = format!("Google STS {STS_URL}");
    oauth::token_answer(fetch, &endpoint, SystemTime::now(), || {
        Request::post(STS_URL).body("application/json", body.as_bytes())
    })
    .await
}
