//! Google's OAuth 2.0 token endpoint: a service account's signed assertion (JWT bearer
//! grant) or a user's refresh token, exchanged for an access token.

use std::time::SystemTime;

use icp_core::Token;
use icp_http::{Request, Shape, Summary};

use crate::fetch::Fetch;
use crate::key::{AuthorizedUser, ServiceAccountKey};
use crate::{Error, jwt, token};

/// The grant type of a signed assertion (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// An access token for the service account of `key`.
pub async fn service_account(fetch: &Fetch<'_>, key: &ServiceAccountKey) -> Result<Token, Error> {
    let asked_at = SystemTime::now();
    let assertion = jwt::assertion(key, asked_at)?;
    exchange(
        fetch,
        &key.token_uri,
        asked_at,
        &[("grant_type", JWT_BEARER), ("assertion", &assertion)],
    )
    .await
}

/// An access token for the user of `user`.
pub async fn authorized_user(fetch: &Fetch<'_>, user: &AuthorizedUser) -> Result<Token, Error> {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", user.client_id.as_str()),
        ("client_secret", user.client_secret.expose()),
        ("refresh_token", user.refresh_token.expose()),
    ];
    exchange(fetch, &user.token_uri, SystemTime::now(), &form).await
}

async fn exchange(
    fetch: &Fetch<'_>,
    uri: &str,
    asked_at: SystemTime,
    form: &[(&str, &str)],
) -> Result<Token, Error> {
    let endpoint = format!("the token endpoint {uri}");
    token_answer(fetch, &endpoint, asked_at, || Request::post(uri).form(form)).await
}

/// Sends the token request `build` makes (retried on 429, 5xx and network errors) and
/// reads the OAuth 2.0 token answer (`access_token`, `expires_in`) or error answer
/// (`error`, `error_description`) of `endpoint`, as Google's token endpoint and Security
/// Token Service both give them.
pub async fn token_answer(
    fetch: &Fetch<'_>,
    endpoint: &str,
    asked_at: SystemTime,
    build: impl Fn() -> Request,
) -> Result<Token, Error> {
    let response = fetch.send_to(&fetch.retry(), endpoint, build).await?;
    match response.status {
        200 => token::parse(&response.body, asked_at, endpoint),
        status @ (400 | 401 | 403) => Err(Error::AccessDenied {
            endpoint: endpoint.to_owned(),
            status,
            detail: oauth_detail(&response.body),
        }),
        429 => Err(Error::Throttled {
            endpoint: endpoint.to_owned(),
            retry_after: response.retry_after(SystemTime::now()),
        }),
        status => Err(Error::Status {
            endpoint: endpoint.to_owned(),
            status,
        }),
    }
}

/// `: code (description)` from an OAuth error answer, as the kit summarises it, or
/// nothing when the body is not one.
pub fn oauth_detail(body: &[u8]) -> String {
    detail(Summary::read(body, &[Shape::OAuth]))
}

/// `: code (description)`, `: code` or `: description` of an error answer's summary, or
/// nothing.
pub fn detail(summary: Option<Summary>) -> String {
    match summary {
        None => String::new(),
        Some(Summary { code, message }) if code.is_empty() => format!(": {message}"),
        Some(Summary { code, message }) if message.is_empty() => format!(": {code}"),
        Some(Summary { code, message }) => format!(": {code} ({message})"),
    }
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
