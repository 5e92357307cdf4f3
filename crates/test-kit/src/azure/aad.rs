//! Azure AD's v2.0 token endpoint: client credentials with a secret or an assertion, and
//! federated identity credentials checked as Azure AD checks them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{
    CLUSTER_ISSUER, FEDERATED, Knobs, SCOPE, SP_CLIENT, SP_SECRET, TENANT, TENANT_B,
    TOKEN_EXCHANGE_AUDIENCE, WI_ASSERTION, WI_CLIENT, now, take_one,
};
use crate::server::{Recorded, Reply};

/// Azure AD's error answer: the error code, the `AADSTS` description with the trace lines
/// Azure AD appends, and the numeric code.
pub(super) fn aad_error(status: u16, error: &str, code: u32, description: &str) -> Reply {
    let body = serde_json::json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description} Trace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2025-01-01 00:00:00Z"
        ),
        "error_codes": [code],
        "timestamp": "2025-01-01 00:00:00Z",
        "trace_id": "0000",
        "correlation_id": "1111",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    Reply::json(status, body.to_string())
}

/// Azure AD's v2.0 token endpoint: client credentials with a secret or an assertion. A
/// service account token is checked as a federated identity credential is: the tenant and
/// the application, then the token's issuer, audience, subject and expiry.
pub(super) fn aad(knobs: &Knobs, request: &Recorded) -> Reply {
    let delay = *knobs.aad_delay.lock().unwrap();
    aad_answer(knobs, request).delay(delay)
}

fn aad_answer(knobs: &Knobs, request: &Recorded) -> Reply {
    if take_one(&knobs.aad_throttle) {
        // As Azure AD throttles client credentials: 429 with a Retry-After (60 s).
        let after = knobs
            .retry_after
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| "60".to_owned());
        return aad_error(
            429,
            "temporarily_unavailable",
            90055,
            "There are too many incoming requests.",
        )
        .header("Retry-After", &after);
    }
    let tenant = request
        .path()
        .strip_suffix("/oauth2/v2.0/token")
        .and_then(|t| t.strip_prefix('/'))
        .unwrap_or_default()
        .to_owned();
    if request.method != "POST" || ![TENANT, TENANT_B].contains(&tenant.as_str()) {
        return aad_error(
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    if request.form("grant_type").as_deref() != Some("client_credentials")
        || request.form("scope").as_deref() != Some(SCOPE)
    {
        return aad_error(
            400,
            "invalid_scope",
            70011,
            "The provided request must include a valid scope.",
        );
    }
    let client = request.form("client_id").unwrap_or_default();
    let not_found = || {
        aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client}' was not found in the directory '{tenant}'."
            ),
        )
    };
    let host = request.header("host").unwrap_or_default();
    let assertion = || {
        (request.form("client_assertion_type").as_deref()
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"))
        .then(|| request.form("client_assertion"))
        .flatten()
    };
    let access_token = match client.as_str() {
        SP_CLIENT | WI_CLIENT if tenant != TENANT => return not_found(),
        SP_CLIENT if request.form("client_secret").as_deref() == Some(SP_SECRET) => {
            format!("aad:{client}@{host}")
        }
        WI_CLIENT if assertion().as_deref() == Some(WI_ASSERTION) => {
            format!("aad:{client}@{host}")
        }
        SP_CLIENT | WI_CLIENT => {
            return aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided.",
            );
        }
        _ => {
            let Some((_, _, subjects)) = FEDERATED
                .iter()
                .find(|(id, home, _)| *id == client && *home == tenant)
            else {
                return not_found();
            };
            let Some(claims) = assertion().as_deref().and_then(jwt_claims) else {
                return aad_error(
                    400,
                    "invalid_client",
                    50027,
                    "JWT token is invalid or is malformed.",
                );
            };
            match federated_subject(&claims, subjects) {
                Ok(subject) => format!("aad:{client}@{host};sub={subject}"),
                Err(reply) => return reply,
            }
        }
    };
    Reply::json(
        200,
        format!(
            r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{access_token}"}}"#
        ),
    )
}

/// The claims of a JWT, unverified: the fake checks what Azure AD checks against a federated
/// identity credential, not the cluster's signature.
pub(super) fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The token's subject when a federated identity credential of the application trusts it.
fn federated_subject(claims: &serde_json::Value, subjects: &[&str]) -> Result<String, Reply> {
    let text = |name: &str| claims[name].as_str().unwrap_or_default().to_owned();
    let issuer = text("iss");
    if issuer != CLUSTER_ISSUER {
        return Err(aad_error(
            400,
            "invalid_client",
            700211,
            &format!(
                "No matching federated identity record found for presented assertion issuer '{issuer}'."
            ),
        ));
    }
    let audiences: Vec<String> = match &claims["aud"] {
        serde_json::Value::String(one) => vec![one.clone()],
        serde_json::Value::Array(all) => all
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| a == TOKEN_EXCHANGE_AUDIENCE) {
        return Err(aad_error(
            400,
            "invalid_client",
            700212,
            &format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                audiences.join(",")
            ),
        ));
    }
    let subject = text("sub");
    if !subjects.contains(&subject.as_str()) {
        return Err(aad_error(
            400,
            "invalid_client",
            700213,
            &format!(
                "No matching federated identity record found for presented assertion subject '{subject}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        ));
    }
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now()) {
        return Err(aad_error(
            400,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(subject)
}
