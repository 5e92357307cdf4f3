//! Google's OAuth 2.0 token endpoint: a service account's signed assertion (JWT bearer
//! grant) or a user's refresh token, exchanged for an access token.

use std::time::{Duration, SystemTime};

use icp_core::Token;
use icp_http::{Client, Request};
use serde::Deserialize;

use crate::key::{AuthorizedUser, ServiceAccountKey};
use crate::retry::{self, Retry};
use crate::{Error, jwt, token};

/// The grant type of a signed assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Time to connect to a Google token service (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for one request to a Google token service, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of one request to a Google token service.
pub const RETRY: Retry = Retry {
    attempts: 3,
    backoff: Duration::from_millis(250),
    unreachable: true,
};

/// An access token for the service account of `key`.
pub async fn service_account(client: &Client, key: &ServiceAccountKey) -> Result<Token, Error> {
    let asked_at = SystemTime::now();
    let assertion = jwt::assertion(key, asked_at)?;
    exchange(
        client,
        &key.token_uri,
        asked_at,
        &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
    )
    .await
}

/// An access token for the user of `user`.
pub async fn authorized_user(client: &Client, user: &AuthorizedUser) -> Result<Token, Error> {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", user.client_id.as_str()),
        ("client_secret", user.client_secret.expose()),
        ("refresh_token", user.refresh_token.expose()),
    ];
    exchange(client, &user.token_uri, SystemTime::now(), &form).await
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

async fn exchange(
    client: &Client,
    uri: &str,
    asked_at: SystemTime,
    form: &[(&str, &str)],
) -> Result<Token, Error> {
    let endpoint = format!("the token endpoint {uri}");
    token_answer(client, &endpoint, asked_at, || {
        Request::post(uri)
            .form(form)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
    })
    .await
}

/// Sends the token request `build` makes (retried on 429, 5xx and network errors) and
/// reads the OAuth 2.0 token answer (`access_token`, `expires_in`) or error answer
/// (`error`, `error_description`) of `endpoint`, as Google's token endpoint and Security
/// Token Service both give them.
pub async fn token_answer(
    client: &Client,
    endpoint: &str,
    asked_at: SystemTime,
    build: impl Fn() -> Request,
) -> Result<Token, Error> {
    let response = retry::send_to(client, RETRY, endpoint, build).await?;
    match response.status {
        200 => token::parse(&response.body, asked_at, endpoint),
        status @ (400 | 401 | 403) => Err(Error::AccessDenied {
            endpoint: endpoint.to_owned(),
            status,
            detail: oauth_detail(&response.body),
        }),
        429 => Err(Error::Throttled {
            endpoint: endpoint.to_owned(),
        }),
        status => Err(Error::Status {
            endpoint: endpoint.to_owned(),
            status,
        }),
    }
}

/// `: code (description)` from an OAuth error answer, shortened and printable, or
/// nothing when the body is not one.
pub fn oauth_detail(body: &[u8]) -> String {
    let Ok(OAuthError {
        error: Some(code),
        error_description,
    }) = serde_json::from_slice(body)
    else {
        return String::new();
    };
    match error_description {
        Some(description) => format!(": {} ({})", printable(&code), printable(&description)),
        None => format!(": {}", printable(&code)),
    }
}

/// A cloud's error text as a message quotes it: control characters dropped, cut after
/// 200 characters.
pub fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::oauth_detail;

    #[test]
    fn oauth_errors_are_summarised() {
        assert_eq!(
            oauth_detail(
                br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#
            ),
            ": invalid_grant (Invalid JWT Signature.)"
        );
        assert_eq!(
            oauth_detail(br#"{"error":"unauthorized_client"}"#),
            ": unauthorized_client"
        );
        assert_eq!(oauth_detail(b"<html>"), "");
    }
}
