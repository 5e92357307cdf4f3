//! An ACR registry: the `/v2/` challenge and the exchange of an Azure AD token for a
//! refresh token.

use super::{Knobs, TENANT, jwt, now, take_one};
use crate::server::{Recorded, Reply};

fn throttled(knobs: &Knobs) -> Reply {
    let reply = Reply::json(
        429,
        r#"{"error":"too_many_requests","error_description":"Too many requests"}"#,
    );
    match knobs.retry_after.lock().unwrap().as_deref() {
        Some(after) => reply.header("Retry-After", after),
        None => reply,
    }
}

/// An ACR registry: the `/v2/` challenge and the token exchange.
pub(super) fn registry(knobs: &Knobs, request: &Recorded) -> Reply {
    let delay = *knobs.registry_delay.lock().unwrap();
    let host = request.header("host").unwrap_or_default().to_owned();
    let unauthorized = |message: &str| {
        Reply::json(
            401,
            format!(
                r#"{{"errors":[{{"code":"UNAUTHORIZED","message":"{message}","detail":null}}]}}"#
            ),
        )
    };
    let reply = match (request.method.as_str(), request.path()) {
        ("GET", "/v2/") => {
            if take_one(&knobs.challenge_throttle) {
                throttled(knobs)
            } else if let Some(reply) = knobs.challenge_reply.lock().unwrap().clone() {
                reply
            } else {
                unauthorized("authentication required, visit https://aka.ms/acr/authorization for more information.")
                    .header("Www-Authenticate", &format!(r#"Bearer realm="https://{host}/oauth2/token",service="{host}""#))
            }
        }
        ("POST", "/oauth2/exchange") => {
            if take_one(&knobs.exchange_throttle) {
                throttled(knobs)
            } else if let Some(reply) = knobs.exchange_reply.lock().unwrap().clone() {
                reply
            } else {
                let token = request.form("access_token").unwrap_or_default();
                let valid = token.starts_with("imds:") || token.starts_with("aad:");
                if request.form("grant_type").as_deref() != Some("access_token")
                    || request.form("service").as_deref() != Some(host.as_str())
                {
                    Reply::json(
                        400,
                        r#"{"errors":[{"code":"UNSUPPORTED","message":"unsupported grant type or service"}]}"#,
                    )
                } else if !valid {
                    unauthorized("invalid access token")
                } else {
                    let refresh = knobs.refresh_token.lock().unwrap().clone().unwrap_or_else(|| {
                        jwt(&format!(r#"{{"jti":"x","sub":"{token}","grant_type":"refresh_token","exp":{},"tenant":"{TENANT}","aud":"{host}"}}"#, now() + 3 * 3600))
                    });
                    Reply::json(200, format!(r#"{{"refresh_token":"{refresh}"}}"#))
                }
            }
        }
        _ => Reply::json(
            404,
            r#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#,
        ),
    };
    reply.delay(delay)
}
