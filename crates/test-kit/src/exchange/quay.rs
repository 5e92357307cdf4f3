//! Quay's robot federation: `GET /oauth2/federation/robot/token` with HTTP Basic
//! authentication `<robot>:<the pod's token>`, answering `{"token": ...}`, or 401 with
//! `{"error": ...}`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Knobs, TRUST, audience, check_subject, jwt, now};
use crate::{Recorded, Reply};

fn unauthorized(message: &str) -> Reply {
    Reply::json(401, serde_json::json!({ "error": message }).to_string())
}

/// The federation endpoint.
pub fn robot_token(knobs: &Knobs, request: &Recorded) -> Reply {
    if request.method != "GET" {
        return Reply::json(405, r#"{"error":"Method not allowed"}"#);
    }
    let Some((robot, token)) = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|basic| STANDARD.decode(basic).ok())
        .and_then(|pair| String::from_utf8(pair).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(r, t)| (r.to_owned(), t.to_owned()))
        })
    else {
        return unauthorized("Missing or invalid authentication");
    };
    let Some((_, allowed)) = TRUST.quay_robots.iter().find(|(name, _)| *name == robot) else {
        return unauthorized(&format!(
            "Could not find robot with specified username {robot}"
        ));
    };
    match check_subject(&token, &[audience::QUAY], allowed) {
        Ok(subject) => {
            let token = jwt(&serde_json::json!({
                "sub": robot, "for": subject, "jti": knobs.serial(),
                "exp": now() + knobs.lifetime(), "iss": "quay",
            })
            .to_string());
            Reply::json(200, serde_json::json!({ "token": token }).to_string())
        }
        Err(why) => unauthorized(&format!("Invalid federated token for robot {robot}: {why}")),
    }
}
