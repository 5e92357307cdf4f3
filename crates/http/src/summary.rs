//! The one summary of an error answer's body: its error code and the first sentence of its
//! description, from the JSON shapes clouds answer errors in, and nothing from any other
//! body, so no unknown content reaches a log.

use std::fmt;

use serde_json::Value;

/// A JSON shape of error answers that [`Summary::read`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// OAuth 2.0 (RFC 6749 section 5.2): `{"error": "invalid_grant", "error_description":
    /// "..."}`, as Azure AD, IMDS, Google's token endpoint and STS answer.
    OAuth,
    /// The registry API: `{"errors": [{"code": "UNAUTHORIZED", "message": "..."}]}`.
    Registry,
    /// Google APIs: `{"error": {"code": 403, "status": "PERMISSION_DENIED", "message":
    /// "..."}}`.
    Google,
    /// A list of messages: `{"errors": ["permission denied"]}`, as HashiCorp Vault
    /// answers; the first message is kept, its lines joined (Vault writes
    /// `1 error occurred:\n\t* permission denied\n\n`).
    Messages,
    /// A bare description: `{"detail": "..."}`, as Django REST framework APIs
    /// (Cloudsmith) answer, or `{"error": "..."}`, as Quay answers.
    Detail,
}

/// The error code and description of an error answer, each on one line and short: the
/// code at most 60 characters, the description its first line, without Azure AD's trace
/// and correlation ids, cut to the sentences that fit in 200 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The error code (`invalid_client`, `UNAUTHORIZED`, `PERMISSION_DENIED`), or empty.
    pub code: String,
    /// The description, or empty.
    pub message: String,
}

/// Longest code kept.
const MAX_CODE: usize = 60;
/// Longest description kept.
const MAX_MESSAGE: usize = 200;

impl Summary {
    /// The summary of `body` when it is an error answer of one of `shapes` (tried in
    /// order) with a code or a description; `None` for any other body.
    pub fn read(body: &[u8], shapes: &[Shape]) -> Option<Summary> {
        let json = serde_json::from_slice::<Value>(body).ok()?;
        let text =
            |value: Option<&Value>| value.and_then(Value::as_str).unwrap_or_default().to_owned();
        let (code, message) = shapes.iter().find_map(|shape| match shape {
            Shape::Registry => {
                let first = json.get("errors")?.get(0).filter(|e| e.is_object())?;
                Some((text(first.get("code")), text(first.get("message"))))
            }
            Shape::Google => {
                let error = json.get("error").filter(|e| e.is_object())?;
                Some((text(error.get("status")), text(error.get("message"))))
            }
            Shape::Messages => {
                let first = json.get("errors")?.get(0)?.as_str()?;
                Some((
                    String::new(),
                    first.split_whitespace().collect::<Vec<_>>().join(" "),
                ))
            }
            Shape::Detail => {
                let detail = json.get("detail").or_else(|| json.get("error"))?;
                Some((String::new(), detail.as_str()?.to_owned()))
            }
            Shape::OAuth => {
                let code = json.get("error");
                let message = json.get("error_description");
                if code.is_some_and(|c| !c.is_string()) || (code.is_none() && message.is_none()) {
                    return None;
                }
                Some((text(code), text(message)))
            }
        })?;
        let message = message
            .lines()
            .next()
            .unwrap_or_default()
            .split(" Trace ID:")
            .next()
            .unwrap_or_default();
        let message: String = message.chars().filter(|c| !c.is_control()).collect();
        let summary = Summary {
            code: code
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_CODE)
                .collect(),
            message: shorten(&message, MAX_MESSAGE),
        };
        (!summary.code.is_empty() || !summary.message.is_empty()).then_some(summary)
    }
}

/// `code: message`, or whichever of the two there is.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (false, false) => write!(f, "{}: {}", self.code, self.message),
            (false, true) => f.write_str(&self.code),
            _ => f.write_str(&self.message),
        }
    }
}

/// `text` when it has at most `max` characters; else its sentences that fit (Azure AD
/// descriptions run on with advice and links), or its first `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let Some((cut, _)) = text.char_indices().nth(max) else {
        return text.to_owned();
    };
    match text[..cut].rfind(". ") {
        Some(end) => text[..=end].to_owned(),
        None => text[..cut].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What acr shows: the registry's and Azure AD's shapes, `code: message`.
    fn error_detail(body: &[u8]) -> String {
        Summary::read(body, &[Shape::Registry, Shape::OAuth])
            .map(|summary| summary.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn error_details_are_short_and_known_shapes_only() {
        assert_eq!(
            error_detail(br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Trace ID: 1\r\nCorrelation ID: 2"}"#),
            "invalid_client: AADSTS7000215: Invalid client secret provided."
        );
        assert_eq!(
            error_detail(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
            ),
            "UNAUTHORIZED: authentication required"
        );
        assert_eq!(
            error_detail(br#"{"error":"invalid_request"}"#),
            "invalid_request"
        );
        assert_eq!(error_detail(b"<html>secret</html>"), "");
        assert_eq!(error_detail(br#"{"other":"x"}"#), "");
        assert_eq!(error_detail(&[0xff, 0xfe]), "");
        assert_eq!(
            error_detail(format!(r#"{{"error":"{}"}}"#, "x".repeat(500)).as_bytes()).len(),
            60
        );
        // A long description keeps the sentences that fit, or is cut.
        let long = format!(
            r#"{{"error":"invalid_client","error_description":"AADSTS700213: No match for 'a'. {} Trace ID: 1"}}"#,
            "More advice. ".repeat(30)
        );
        let detail = error_detail(long.as_bytes());
        assert!(detail.starts_with("invalid_client: AADSTS700213: No match for 'a'. More advice."));
        assert!(
            detail.ends_with("advice.") && detail.len() <= 218,
            "{detail}"
        );
        let detail =
            error_detail(format!(r#"{{"error_description":"{}"}}"#, "é".repeat(300)).as_bytes());
        assert_eq!(detail.chars().count(), 200);
    }

    #[test]
    fn each_shape_reads_only_its_own_answers() {
        let google = br#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#;
        assert_eq!(
            Summary::read(google, &[Shape::Google]),
            Some(Summary {
                code: "PERMISSION_DENIED".into(),
                message: "denied".into()
            })
        );
        assert_eq!(
            Summary::read(google, &[Shape::OAuth, Shape::Registry]),
            None
        );
        let oauth = br#"{"error":"invalid_grant"}"#;
        assert_eq!(Summary::read(oauth, &[Shape::Google]), None);
        let vault = br#"{"errors":["permission denied"]}"#;
        assert_eq!(
            Summary::read(vault, &[Shape::Registry, Shape::Messages]).map(|s| s.to_string()),
            Some("permission denied".to_owned())
        );
        assert_eq!(Summary::read(vault, &[Shape::Detail, Shape::OAuth]), None);
        assert_eq!(Summary::read(br#"{"errors":[]}"#, &[Shape::Messages]), None);
        let lines = br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#;
        assert_eq!(
            Summary::read(lines, &[Shape::Messages]).map(|s| s.to_string()),
            Some("1 error occurred: * permission denied".to_owned())
        );
        let detail = br#"{"detail":"OIDC token cannot be authenticated."}"#;
        assert_eq!(
            Summary::read(detail, &[Shape::Detail]).map(|s| s.to_string()),
            Some("OIDC token cannot be authenticated.".to_owned())
        );
        assert_eq!(Summary::read(detail, &[Shape::Messages]), None);
        let quay = format!(r#"{{"error":"Invalid token: {}"}}"#, "x".repeat(80));
        let summary = Summary::read(quay.as_bytes(), &[Shape::Detail]).unwrap();
        assert_eq!((summary.code.as_str(), summary.message.len()), ("", 95));
        assert_eq!(
            Summary::read(br#"{"error":{"code":404}}"#, &[Shape::Google]),
            None
        );
    }
}
