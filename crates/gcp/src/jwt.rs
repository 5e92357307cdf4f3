//! The signed assertion of OAuth 2.0's JWT bearer grant (RFC 7523), as Google's token
//! endpoint takes it from a service account key: RS256 with the key's private half.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Serialize;

use crate::Error;
use crate::key::ServiceAccountKey;

/// The OAuth scope requested with a key: every Google API the account may use, which
/// Artifact Registry needs (Container Registry would do with `devstorage.read_only`).
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How long the assertion is valid: Google takes at most an hour.
const LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// The assertion for `key`, issued at `now`: `header.claims.signature`, each part
/// base64url without padding.
pub fn assertion(key: &ServiceAccountKey, now: SystemTime) -> Result<String, Error> {
    // aws-lc's CPU feature detection, which the build leaves to its first user.
    aws_lc_rs::init();
    let key_pair = parse_private_key(key)?;
    let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let header = Header {
        alg: "RS256",
        typ: "JWT",
        kid: key.private_key_id.as_deref(),
    };
    let claims = Claims {
        iss: &key.client_email,
        scope: CLOUD_PLATFORM_SCOPE,
        aud: &key.token_uri,
        iat,
        exp: iat + LIFETIME.as_secs(),
    };
    let signing_input = format!("{}.{}", encode_json(&header), encode_json(&claims));
    let mut signature = vec![0; key_pair.public_modulus_len()];
    key_pair
        .sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| key_error(key, "signing with the private key failed"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// base64url of the JSON of a header or claims (plain structs of strings and numbers,
/// which always serialize).
fn encode_json(value: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// The key's `private_key`: PEM of a PKCS#8 `PRIVATE KEY` (what Google issues) or a
/// PKCS#1 `RSA PRIVATE KEY`.
fn parse_private_key(key: &ServiceAccountKey) -> Result<KeyPair, Error> {
    let pem = key.private_key.expose();
    let block = |label: &str| {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let start = pem.find(&begin)? + begin.len();
        let stop = start + pem[start..].find(&end)?;
        Some(
            pem[start..stop]
                .split_ascii_whitespace()
                .collect::<String>(),
        )
    };
    let (der, pkcs8) = match (block("PRIVATE KEY"), block("RSA PRIVATE KEY")) {
        (Some(body), _) => (body, true),
        (None, Some(body)) => (body, false),
        (None, None) => return Err(key_error(key, "private_key is not a PEM private key")),
    };
    let der = STANDARD
        .decode(der)
        .map_err(|_| key_error(key, "private_key has invalid base64"))?;
    let parsed = if pkcs8 {
        KeyPair::from_pkcs8(&der)
    } else {
        KeyPair::from_der(&der)
    };
    parsed.map_err(|_| key_error(key, "private_key is not a usable RSA key"))
}

fn key_error(key: &ServiceAccountKey, problem: &str) -> Error {
    Error::CredentialFile {
        path: key.path.clone(),
        problem: problem.to_owned(),
    }
}
