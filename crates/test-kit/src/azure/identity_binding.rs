//! An AKS identity-binding endpoint, as the official `acr-credential-provider` speaks to it:
//! `POST https://<sni name>/` (reached at the API server, [`IB_API_SERVER`]) under a
//! certificate of the cluster's own CA, form-encoded client credentials whose client
//! assertion is a pod's service account token for [`IDENTITY_BINDING_AUDIENCE`], answering
//! `{"access_token", "expires_in"}`. A token is
//! granted only to the identities a binding maps the token's service account to; refusals
//! are Microsoft Entra's error answers, throttling a 429 with `Retry-After`.

use super::aad::{aad_error, jwt_claims};
use super::{CLUSTER_ISSUER, Knobs, SCOPE, now, take_one};
use crate::server::{Recorded, Reply};

/// The TLS server name of the endpoint (`--ib-sni-name`).
pub const IB_SNI_NAME: &str = "ib.prod-dns-1a2b3c.hcp.eastus.azmk8s.io";
/// The API server's host name, where the endpoint is reached (`--ib-apiserver-ip`, as
/// AKS passes it); the [`World`](super::World)'s environment resolves it to the endpoint,
/// and nothing resolves [`IB_SNI_NAME`].
pub const IB_API_SERVER: &str = "myaks-dns-1a2b3c.hcp.eastus.azmk8s.io";
/// The audience the endpoint takes pods' tokens for, as AKS asks the kubelet for them.
pub const IDENTITY_BINDING_AUDIENCE: &str = "api://AKSIdentityBinding";
/// A user-assigned managed identity bound to the cluster.
pub const IB_CLIENT: &str = "77777777-7777-7777-7777-777777777777";
/// Another one.
pub const IB_CLIENT_B: &str = "88888888-8888-8888-8888-888888888888";
/// The identities bound to the cluster and the service accounts each one serves.
pub const BINDINGS: &[(&str, &[&str])] = &[
    (
        IB_CLIENT,
        &[
            "system:serviceaccount:team-a:app",
            "system:serviceaccount:team-b:app",
        ],
    ),
    (IB_CLIENT_B, &["system:serviceaccount:team-a:batch"]),
];

/// The endpoint's answer to `request`.
pub(super) fn identity_binding(knobs: &Knobs, request: &Recorded) -> Reply {
    if take_one(&knobs.ib_throttle) {
        let after = knobs
            .retry_after
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| "1".to_owned());
        return aad_error(
            429,
            "temporarily_unavailable",
            90055,
            "There are too many incoming requests.",
        )
        .header("Retry-After", &after);
    }
    if take_one(&knobs.ib_failures) {
        return Reply::status(503).body("upstream unavailable");
    }
    if request.method != "POST"
        || request.path() != "/"
        || request.header("host") != Some(IB_SNI_NAME)
        || request.form("grant_type").as_deref() != Some("client_credentials")
        || request.form("client_assertion_type").as_deref()
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        || request.form("scope").as_deref() != Some(SCOPE)
    {
        return aad_error(400, "invalid_request", 900144, "The request is malformed.");
    }
    let client = request.form("client_id").unwrap_or_default();
    let Some((_, subjects)) = BINDINGS.iter().find(|(id, _)| *id == client) else {
        return aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!("No identity binding for the identity '{client}' in this cluster."),
        );
    };
    let Some(claims) = request
        .form("client_assertion")
        .as_deref()
        .and_then(jwt_claims)
    else {
        return aad_error(
            400,
            "invalid_client",
            50027,
            "JWT token is invalid or is malformed.",
        );
    };
    let audience_ok = match &claims["aud"] {
        serde_json::Value::String(one) => one == IDENTITY_BINDING_AUDIENCE,
        serde_json::Value::Array(all) => all.iter().any(|a| a == IDENTITY_BINDING_AUDIENCE),
        _ => false,
    };
    let subject = claims["sub"].as_str().unwrap_or_default().to_owned();
    if claims["iss"] != CLUSTER_ISSUER || !audience_ok {
        return aad_error(
            400,
            "invalid_client",
            700211,
            "The service account token's issuer or audience is not the cluster's.",
        );
    }
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now()) {
        return aad_error(
            400,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        );
    }
    if !subjects.contains(&subject.as_str()) {
        return aad_error(
            400,
            "invalid_client",
            700213,
            &format!("The identity '{client}' is not bound to '{subject}'."),
        );
    }
    Reply::json(
        200,
        format!(
            r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"aad:{client}@identity-binding;sub={subject}"}}"#
        ),
    )
}
