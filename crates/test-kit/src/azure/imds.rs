//! The instance metadata service's identity endpoint: the system-assigned identity, and
//! the user-assigned identity [`MI_CLIENT`](super::MI_CLIENT) by client or resource id.

use super::{AUDIENCE, Knobs, MI_CLIENT, MI_RESOURCE, now, take_one};
use crate::server::{Recorded, Reply};

/// The instance metadata service's identity endpoint.
pub(super) fn imds(knobs: &Knobs, request: &Recorded) -> Reply {
    if request.header("metadata") != Some("true") {
        return Reply::json(
            400,
            r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#,
        );
    }
    if take_one(&knobs.imds_failures) {
        return Reply::json(
            500,
            r#"{"error":"unknown","error_description":"Internal error"}"#,
        );
    }
    if request.path() != "/metadata/identity/oauth2/token" || request.query("api-version").is_none()
    {
        return Reply::json(
            400,
            r#"{"error":"invalid_request","error_description":"Invalid request"}"#,
        );
    }
    if request.query("resource").as_deref() != Some(AUDIENCE) {
        return Reply::json(
            400,
            r#"{"error":"invalid_resource","error_description":"AADSTS500011: resource principal not found"}"#,
        );
    }
    let identity = match (request.query("client_id"), request.query("msi_res_id")) {
        (None, None) => "system".to_owned(),
        (Some(id), None) if id == MI_CLIENT => format!("client:{id}"),
        (None, Some(id)) if id == MI_RESOURCE => "resource:kubelet".to_owned(),
        _ => {
            return Reply::json(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            );
        }
    };
    Reply::json(
        200,
        format!(
            r#"{{"access_token":"imds:{identity}","expires_in":"86399","expires_on":"{}","resource":"{AUDIENCE}","token_type":"Bearer"}}"#,
            now() + 86399
        ),
    )
}
