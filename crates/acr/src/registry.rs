//! The registry side: the `/v2/` challenge, the realm check, and the exchange of an Azure
//! AD access token for an ACR refresh token.

use icp_core::Secret;
use icp_http::Request;
use serde::Deserialize;

use crate::Error;
use crate::challenge::{self, Bearer};
use crate::fetch::{Fetch, status_error};

/// Asks the login server `registry` for its bearer challenge, and checks that its realm is
/// on the same host over HTTPS: the Azure AD token will go there and nowhere else.
pub async fn challenge(fetch: &Fetch<'_>, registry: &str) -> Result<Bearer, Error> {
    let url = format!("https://{registry}/v2/");
    let response = fetch.send(registry, || Request::get(url.clone())).await?;
    let bad = |reason: String| Error::Challenge {
        registry: registry.to_owned(),
        reason,
    };
    if response.status != 401 {
        return Err(match response.status {
            200..=299 => bad(format!(
                "/v2/ answered HTTP {} without asking for a token",
                response.status
            )),
            _ => status_error(registry, &response),
        });
    }
    let bearer = challenge::bearer(response.header_all("www-authenticate"))
        .ok_or_else(|| bad("/v2/ sent no Bearer challenge with a realm".into()))?;
    check_realm(&bearer.realm, registry).map_err(bad)?;
    Ok(bearer)
}

/// Checks that `realm` is an `https://` URL on `registry` itself (default port, no user
/// information).
pub fn check_realm(realm: &str, registry: &str) -> Result<(), String> {
    let rest = realm
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .map(|_| &realm[8..])
        .ok_or_else(|| "the challenge's realm is not an https:// URL".to_owned())?;
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    let host = authority.strip_suffix(":443").unwrap_or(authority);
    if host.eq_ignore_ascii_case(registry) {
        Ok(())
    } else {
        let shown: String = authority
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        Err(format!(
            "the challenge's realm is on {shown:?}, not on the registry itself; no token sent"
        ))
    }
}

#[derive(Deserialize)]
struct ExchangeResponse {
    refresh_token: Option<String>,
}

/// Exchanges the Azure AD `access_token` for an ACR refresh token at
/// `https://<registry>/oauth2/exchange`.
pub async fn exchange(
    fetch: &Fetch<'_>,
    registry: &str,
    bearer: &Bearer,
    tenant: Option<&str>,
    access_token: &Secret,
) -> Result<Secret, Error> {
    let url = format!("https://{registry}/oauth2/exchange");
    let service = bearer.service.as_deref().unwrap_or(registry);
    let mut form = vec![("grant_type", "access_token"), ("service", service)];
    if let Some(tenant) = tenant {
        form.push(("tenant", tenant));
    }
    form.push(("access_token", access_token.expose()));
    let response = fetch
        .send(registry, || Request::post(url.clone()).form(&form))
        .await?;
    if response.status != 200 {
        return Err(status_error(registry, &response));
    }
    let bad = |reason: &str| Error::BadResponse {
        service: registry.to_owned(),
        reason: reason.to_owned(),
    };
    let body: ExchangeResponse = serde_json::from_slice(&response.body)
        .map_err(|_| bad("the exchange response is not JSON"))?;
    match body.refresh_token {
        Some(token) if !token.is_empty() => Ok(Secret::new(token)),
        _ => Err(bad("the exchange response has no refresh_token")),
    }
}

#[cfg(test)]
mod tests {
    use super::check_realm;

    #[test]
    fn realm_must_be_on_the_registry() {
        for ok in [
            "https://myacr.azurecr.io/oauth2/token",
            "HTTPS://MyAcr.azurecr.io/oauth2/token",
            "https://myacr.azurecr.io:443/oauth2/token",
            "https://myacr.azurecr.io",
            "https://myacr.azurecr.io?x",
        ] {
            assert_eq!(check_realm(ok, "myacr.azurecr.io"), Ok(()), "{ok}");
        }
        for bad in [
            "http://myacr.azurecr.io/oauth2/token",
            "https://myacr.azurecr.io.evil.example/oauth2/token",
            "https://evil.example/oauth2/token",
            "https://myacr.azurecr.io@evil.example/",
            "https://evil.example\\@myacr.azurecr.io/",
            "https://myacr.azurecr.io:8443/oauth2/token",
            "https://other.azurecr.io/oauth2/token",
            "//myacr.azurecr.io/oauth2/token",
            "/oauth2/token",
            "https:/myacr.azurecr.io/",
            "",
            "https://",
            "https://myacr.azurecr.io\u{0}.evil/",
        ] {
            assert!(check_realm(bad, "myacr.azurecr.io").is_err(), "{bad}");
        }
    }
}
