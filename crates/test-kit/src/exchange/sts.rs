//! Token endpoints: an RFC 8693 exchange (`POST /token`, a form, an optional client in
//! HTTP Basic authentication) answering `{access_token, issued_token_type, token_type,
//! expires_in}` or OAuth's `{"error", "error_description"}`; and a bearer-token exchange
//! (`/sts/exchange?aud=...` with `Authorization: Bearer <pod token>`, as Chainguard's
//! STS) answering `{"token": ...}`, a JWT.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Knobs, STS_CLIENT, TRUST, audience, check_subject, jwt, now};
use crate::{Recorded, Reply};

fn oauth(status: u16, code: &str, description: &str) -> Reply {
    Reply::json(
        status,
        serde_json::json!({"error": code, "error_description": description}).to_string(),
    )
}

/// The RFC 8693 endpoint.
pub fn exchange(knobs: &Knobs, request: &Recorded) -> Reply {
    if request.method != "POST"
        || request.header("content-type") != Some("application/x-www-form-urlencoded")
    {
        return oauth(400, "invalid_request", "POST a form");
    }
    if request.form("grant_type").as_deref()
        != Some("urn:ietf:params:oauth:grant-type:token-exchange")
    {
        return oauth(400, "unsupported_grant_type", "token exchange only");
    }
    if request.form("subject_token_type").as_deref() != Some("urn:ietf:params:oauth:token-type:jwt")
    {
        return oauth(400, "invalid_request", "unsupported subject_token_type");
    }
    let client = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|basic| STANDARD.decode(basic).ok())
        .and_then(|pair| String::from_utf8(pair).ok());
    let expected = format!("{}:{}", STS_CLIENT.0, STS_CLIENT.1);
    match client {
        Some(client) if client != expected => {
            return oauth(401, "invalid_client", "Client authentication failed");
        }
        None if *knobs.require_client.lock().unwrap() => {
            return oauth(401, "invalid_client", "Client authentication required");
        }
        _ => {}
    }
    let token = request.form("subject_token").unwrap_or_default();
    match check_subject(&token, audience::STS, TRUST.sts_subjects) {
        Ok(subject) => Reply::json(
            200,
            serde_json::json!({
                "access_token": format!("sts-{}-{}", knobs.serial(), subject.replace(':', "-")),
                "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "token_type": "Bearer",
                "expires_in": knobs.lifetime(),
                "scope": request.form("scope"),
            })
            .to_string(),
        ),
        Err(why) => oauth(
            400,
            "invalid_grant",
            &format!("The subject token is invalid: {why}"),
        ),
    }
}

/// The bearer-token exchange.
pub fn bearer(knobs: &Knobs, request: &Recorded) -> Reply {
    let Some(token) = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return oauth(401, "unauthenticated", "no bearer token");
    };
    match check_subject(token, audience::STS, TRUST.sts_subjects) {
        Ok(subject) => {
            let token = jwt(&serde_json::json!({
                "sub": subject, "aud": request.query("aud"), "jti": knobs.serial(),
                "exp": now() + knobs.lifetime(),
            })
            .to_string());
            Reply::json(200, serde_json::json!({ "token": token }).to_string())
        }
        Err(why) => oauth(403, "permission_denied", &why),
    }
}
