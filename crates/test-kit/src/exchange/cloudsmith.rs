//! Cloudsmith's OIDC: `POST /openid/<org>/` with `{"oidc_token", "service_slug"}`,
//! answering `{"token": ...}` (an opaque API token), or `{"detail": ...}`.

use super::{Knobs, TRUST, audience, check_subject};
use crate::{Recorded, Reply};

fn detail(status: u16, message: &str) -> Reply {
    Reply::json(status, serde_json::json!({ "detail": message }).to_string())
}

/// The OIDC endpoint.
pub fn openid(knobs: &Knobs, request: &Recorded) -> Reply {
    let org = request
        .path()
        .strip_prefix("/openid/")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_default();
    if request.method != "POST" {
        return detail(405, "Method not allowed.");
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
        return detail(400, "Missing or invalid parameters (see detail).");
    };
    let (Some(token), Some(slug)) = (body["oidc_token"].as_str(), body["service_slug"].as_str())
    else {
        return detail(400, "Missing or invalid parameters (see detail).");
    };
    let service = format!("{org}/{slug}");
    let Some((_, allowed)) = TRUST
        .cloudsmith_services
        .iter()
        .find(|(name, _)| *name == service)
    else {
        return detail(401, "OIDC token cannot be authenticated.");
    };
    match check_subject(token, &[audience::CLOUDSMITH], allowed) {
        Ok(subject) => Reply::json(
            200,
            serde_json::json!({
                "token": format!("cs-{}-{}-{}", knobs.serial(), slug, subject.replace(':', "-"))
            })
            .to_string(),
        ),
        Err(_) => detail(401, "OIDC token cannot be authenticated."),
    }
}
