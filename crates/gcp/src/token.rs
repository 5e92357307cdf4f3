//! Google's access token answers, as registry credentials.

use std::time::{Duration, SystemTime};

use icp_core::{Secret, Token, expiry};
use serde::Deserialize;

use crate::Error;

/// The registry username that goes with a Google access token.
pub const USERNAME: &str = "oauth2accesstoken";

#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// The token in a token answer (`{"access_token": ..., "expires_in": ...}`) from
/// `endpoint`, asked for at `asked_at`: it expires `expires_in` seconds after the
/// question, which errs on the early side, bounded by [`icp_core::expiry`].
pub fn parse(body: &[u8], asked_at: SystemTime, endpoint: &str) -> Result<Token, Error> {
    let bad = |problem: &str| Error::BadResponse {
        endpoint: endpoint.to_owned(),
        problem: problem.to_owned(),
    };
    let answer: Answer =
        serde_json::from_slice(body).map_err(|_| bad("not a JSON token answer"))?;
    let access_token = answer
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no access_token"))?;
    Ok(Token {
        username: USERNAME.to_owned(),
        password: Secret::new(access_token),
        expires_at: answer
            .expires_in
            .map(|seconds| expiry::after(asked_at, Duration::from_secs(seconds))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_counts_from_the_question() {
        let asked_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let token = parse(
            br#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#,
            asked_at,
            "e",
        )
        .unwrap();
        assert_eq!(token.username, "oauth2accesstoken");
        assert_eq!(token.password.expose(), "ya29.x");
        assert_eq!(token.expires_at, Some(asked_at + Duration::from_secs(3599)));
        let token = parse(br#"{"access_token":"ya29.x"}"#, asked_at, "e").unwrap();
        assert_eq!(token.expires_at, None);
    }

    #[test]
    fn a_huge_expires_in_is_bounded_not_a_crash() {
        let asked_at = SystemTime::now();
        for seconds in [u64::MAX, 1 << 63, 100 * 365 * 86400] {
            let body = format!(r#"{{"access_token":"ya29.x","expires_in":{seconds}}}"#);
            let token = parse(body.as_bytes(), asked_at, "e").unwrap();
            assert_eq!(token.expires_at, Some(asked_at + expiry::MAX_LIFETIME));
        }
    }

    #[test]
    fn bad_answers_name_the_problem_not_the_body() {
        for (body, problem) in [
            (&b"<html>ya29.secret</html>"[..], "not a JSON token answer"),
            (br#"{"expires_in":5}"#, "no access_token"),
            (br#"{"access_token":"","expires_in":5}"#, "no access_token"),
            (
                br#"{"access_token":"ya29.secret","expires_in":-1}"#,
                "not a JSON token answer",
            ),
        ] {
            let message = parse(body, SystemTime::now(), "e").unwrap_err().to_string();
            assert_eq!(message, format!("invalid answer from e: {problem}"));
        }
    }
}
