//! The claims of a JWT, read without verifying its signature: the service that issued the
//! token, or the one it is sent to, checks that. Errors never contain the token.

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The claims of a JWT as a JSON object, or what is malformed about it.
pub fn claims(token: &str) -> Result<serde_json::Map<String, serde_json::Value>, &'static str> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a JWT (header.payload.signature)");
    };
    let payload = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| "the JWT payload is not base64url")?;
    match serde_json::from_slice(&payload) {
        Ok(serde_json::Value::Object(claims)) => Ok(claims),
        Ok(_) => Err("the JWT payload is not a JSON object"),
        Err(_) => Err("the JWT payload is not JSON"),
    }
}

/// When `token` expires, from its numeric `exp` claim (fractions of a second dropped).
pub fn expiry(token: &str) -> Result<SystemTime, &'static str> {
    let exp = claims(token)?
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .ok_or("the JWT has no numeric exp claim")?;
    crate::expiry::from_unix_seconds(exp.trunc()).ok_or("the JWT exp claim is out of range")
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

    #[test]
    fn errors_never_hold_the_token() {
        let token = jwt("[1]");
        let error = claims(&token).unwrap_err();
        assert!(!error.contains(token.split('.').nth(1).unwrap()));
    }
}
