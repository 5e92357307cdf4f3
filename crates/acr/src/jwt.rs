//! The `exp` claim of a JWT, read without verifying the signature: the registry that
//! issued the token checks it; we only need to know how long to cache it.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// When `token` expires, from its `exp` claim. The error says what is malformed and never
/// contains the token.
pub fn expiry(token: &str) -> Result<SystemTime, &'static str> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a JWT (header.payload.signature)");
    };
    let payload = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the JWT payload is not base64url")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| "the JWT payload is not JSON")?;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .ok_or("the JWT has no numeric exp claim")?;
    icp_core::expiry::from_unix_seconds(exp.trunc()).ok_or("the JWT exp claim is out of range")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn reads_exp() {
        assert_eq!(
            expiry(&jwt(
                r#"{"exp": 1700000000, "grant_type": "refresh_token"}"#
            )),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(
            expiry(&jwt(r#"{"exp": 1700000000.5}"#)),
            Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        // Padding is tolerated.
        let padded = format!("a.{}==.b", URL_SAFE_NO_PAD.encode(r#"{"exp":1}"#));
        assert!(expiry(&padded).is_ok());
    }

    #[test]
    fn refuses_malformed_tokens() {
        for token in [
            "",
            "opaque-token",
            "a.b",
            "a.b.c.d",
            "a.!!!.c",
            &jwt("not json"),
            &jwt(r#"{"iat": 1}"#),
            &jwt(r#"{"exp": "1700000000"}"#),
            &jwt(r#"{"exp": -5}"#),
            &jwt(r#"{"exp": 1e300}"#),
            &jwt("[]"),
        ] {
            assert!(expiry(token).is_err(), "{token}");
        }
    }
}
