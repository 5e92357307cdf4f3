//! A fake of the EC2 instance metadata service that insists on IMDSv2 session tokens: a
//! `PUT /latest/api/token` with a TTL gets the session token `imds-session`, and only
//! requests carrying it get the role `node-role` and its credentials (access key id
//! `ASIAIMDSNODE`, session token `imds-session-token`).

use super::server::{Fake, Reply};

/// Starts the fake; point `AWS_EC2_METADATA_SERVICE_ENDPOINT` at its `url`.
pub fn imds() -> Fake {
    Fake::start(|request, _| {
        let text = |body: &str| Reply::Respond(200, "text/plain", body.to_owned());
        let authorized = request.header("x-aws-ec2-metadata-token") == Some("imds-session");
        match (request.method.as_str(), request.target.as_str()) {
            ("PUT", "/latest/api/token") => {
                match request.header("x-aws-ec2-metadata-token-ttl-seconds") {
                    Some(ttl) => Reply::WithHeaders(
                        200,
                        vec![("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_owned())],
                        "imds-session".into(),
                    ),
                    None => Reply::Respond(400, "text/plain", String::new()),
                }
            }
            (_, _) if !authorized => Reply::Respond(401, "text/plain", String::new()),
            ("GET", "/latest/meta-data/iam/security-credentials/") => text("node-role"),
            ("GET", "/latest/meta-data/iam/security-credentials/node-role") => text(
                r#"{"Code":"Success","LastUpdated":"2026-01-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDSNODE","SecretAccessKey":"imds-secret","Token":"imds-session-token","Expiration":"2099-01-01T00:00:00Z"}"#,
            ),
            _ => Reply::Respond(404, "text/plain", String::new()),
        }
    })
}
