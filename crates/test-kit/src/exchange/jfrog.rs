//! JFrog Access's OIDC token exchange: `POST /access/api/v1/oidc/token` with a JSON
//! RFC 8693 request naming the integration (`provider_name`), answering
//! `{access_token, username, expires_in, ...}`, or `{"errors": [{code, message}]}`.

use super::{Knobs, TRUST, audience, check_subject};
use crate::{Recorded, Reply};

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string(),
    )
}

/// The exchange endpoint.
pub fn oidc_token(knobs: &Knobs, request: &Recorded) -> Reply {
    if request.method != "POST" {
        return error(405, "METHOD_NOT_ALLOWED", "Method not allowed");
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
        return error(400, "BAD_REQUEST", "Malformed JSON");
    };
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    if field("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange"
        || field("subject_token_type") != "urn:ietf:params:oauth:token-type:id_token"
    {
        return error(
            400,
            "BAD_REQUEST",
            "Unsupported grant or subject token type",
        );
    }
    let provider = field("provider_name");
    let Some((_, allowed)) = TRUST
        .jfrog_providers
        .iter()
        .find(|(name, _)| *name == provider)
    else {
        return error(
            404,
            "NOT_FOUND",
            &format!("OIDC integration {provider} was not found"),
        );
    };
    if body.get("audience").is_some() && field("audience") != audience::JFROG {
        return error(
            401,
            "UNAUTHORIZED",
            "The audience does not match the integration",
        );
    }
    match check_subject(&field("subject_token"), &[audience::JFROG], allowed) {
        Ok(subject) => {
            let username = format!("k8s-{}", subject.replace(':', "-"));
            Reply::json(
                200,
                serde_json::json!({
                    "token_id": format!("tid-{}", knobs.serial()),
                    "access_token": format!("jfrog-at-{}-{username}", knobs.serial()),
                    "expires_in": knobs.lifetime(),
                    "scope": "applied-permissions/groups:readers",
                    "token_type": "Bearer",
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "username": username,
                })
                .to_string(),
            )
        }
        Err(why) => error(
            401,
            "UNAUTHORIZED",
            &format!("Failed to verify the OIDC token: {why}"),
        ),
    }
}
