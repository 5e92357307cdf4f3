//! IAM Credentials `generateAccessToken`: a token of a Google service account, asked for
//! with a token allowed to impersonate it (`roles/iam.workloadIdentityUser` or
//! `roles/iam.serviceAccountTokenCreator`).

use std::time::SystemTime;

use icp_core::{Secret, Token, expiry};
use icp_http::{Request, Shape, Summary};
use serde::Deserialize;

use crate::fetch::Fetch;
use crate::oauth::detail;
use crate::sts::CLOUD_PLATFORM_SCOPE;
use crate::token::USERNAME;
use crate::{Error, timestamp};

/// An access token of the service account `email` (checked by the caller to be one, as it
/// goes into the URL's path), asked for with `bearer`, expiring at the stated
/// `expireTime`.
pub async fn generate_access_token(
    fetch: &Fetch<'_>,
    bearer: &Secret,
    email: &str,
) -> Result<Token, Error> {
    let url = format!(
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{email}:generateAccessToken"
    );
    let endpoint = format!("IAM Credentials generateAccessToken for {email}");
    let body = serde_json::json!({ "scope": [CLOUD_PLATFORM_SCOPE] }).to_string();
    let request = || {
        Request::post(url.as_str())
            .header("Authorization", format!("Bearer {}", bearer.expose()))
            .body("application/json", body.as_bytes())
    };
    let response = fetch.send_to(&fetch.retry(), &endpoint, request).await?;
    match response.status {
        200 => parse(&response.body, SystemTime::now(), &endpoint),
        status @ (400 | 401 | 403 | 404) => Err(Error::AccessDenied {
            detail: google_error_detail(&response.body),
            endpoint,
            status,
        }),
        429 => Err(Error::Throttled {
            endpoint,
            retry_after: response.retry_after(SystemTime::now()),
        }),
        status => Err(Error::Status { endpoint, status }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    access_token: Option<String>,
    expire_time: Option<String>,
}

/// The token in a `generateAccessToken` answer, `{"accessToken": ..., "expireTime":
/// "2025-01-31T12:00:00Z"}`, read at `now`.
fn parse(body: &[u8], now: SystemTime, endpoint: &str) -> Result<Token, Error> {
    let bad = |problem: &str| Error::BadResponse {
        endpoint: endpoint.to_owned(),
        problem: problem.to_owned(),
    };
    let answer: Answer = serde_json::from_slice(body).map_err(|_| bad("not a JSON answer"))?;
    let access_token = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| bad("no accessToken"))?;
    let expires_at = match answer.expire_time {
        Some(text) => Some(
            timestamp::parse(&text)
                .map(|stated| expiry::at(stated, now))
                .ok_or_else(|| bad("expireTime is not an RFC 3339 time"))?,
        ),
        None => None,
    };
    Ok(Token {
        username: USERNAME.to_owned(),
        password: Secret::new(access_token),
        expires_at,
    })
}

/// `: STATUS (message)` from a Google API error answer
/// (`{"error": {"code": 403, "message": ..., "status": "PERMISSION_DENIED"}}`), as the kit
/// summarises it, or nothing when the body is not one.
fn google_error_detail(body: &[u8]) -> String {
    detail(Summary::read(body, &[Shape::Google]))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_answer_expires_when_it_says() {
        let now = timestamp::parse("2025-01-31T11:00:00Z").unwrap();
        let token = parse(
            br#"{"accessToken":"ya29.impersonated","expireTime":"2025-01-31T12:00:00Z"}"#,
            now,
            "e",
        )
        .unwrap();
        assert_eq!(token.username, "oauth2accesstoken");
        assert_eq!(token.password.expose(), "ya29.impersonated");
        assert_eq!(token.expires_at, Some(now + Duration::from_secs(3600)));
        let far = parse(
            br#"{"accessToken":"t","expireTime":"2999-01-01T00:00:00Z"}"#,
            now,
            "e",
        )
        .unwrap();
        assert_eq!(far.expires_at, Some(now + expiry::MAX_LIFETIME));
        let unstated = parse(br#"{"accessToken":"t"}"#, now, "e").unwrap();
        assert_eq!(unstated.expires_at, None);
    }

    #[test]
    fn bad_answers_name_the_problem_not_the_body() {
        for (body, problem) in [
            (&b"<html>ya29.secret</html>"[..], "not a JSON answer"),
            (
                br#"{"expireTime":"2025-01-31T12:00:00Z"}"#,
                "no accessToken",
            ),
            (
                br#"{"accessToken":"ya29.secret","expireTime":"tomorrow"}"#,
                "expireTime is not an RFC 3339 time",
            ),
        ] {
            let message = parse(body, SystemTime::now(), "e").unwrap_err().to_string();
            assert_eq!(message, format!("invalid answer from e: {problem}"));
        }
    }

    #[test]
    fn google_errors_are_summarised() {
        assert_eq!(
            google_error_detail(
                br#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied","status":"PERMISSION_DENIED"}}"#
            ),
            ": PERMISSION_DENIED (Permission 'iam.serviceAccounts.getAccessToken' denied)"
        );
        assert_eq!(
            google_error_detail(br#"{"error":{"code":404,"status":"NOT_FOUND"}}"#),
            ": NOT_FOUND"
        );
        assert_eq!(google_error_detail(b"<html>"), "");
        assert_eq!(google_error_detail(br#"{"error":"invalid_grant"}"#), "");
    }
}
