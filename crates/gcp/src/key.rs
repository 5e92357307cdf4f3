//! Google credential files: service account keys and gcloud's `authorized_user` files.

use std::path::{Path, PathBuf};

use icp_core::Secret;
use serde::Deserialize;

use crate::Error;

/// Google's OAuth 2.0 token endpoint, for files that name none.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Largest credential file read; a key file is about 2 KiB.
const MAX_FILE_SIZE: u64 = 64 * 1024;

/// A parsed credential file.
#[derive(Debug, Clone)]
pub enum CredentialFile {
    /// `"type": "service_account"`.
    ServiceAccount(ServiceAccountKey),
    /// `"type": "authorized_user"`: a user's refresh token, as `gcloud auth
    /// application-default login` writes it.
    AuthorizedUser(AuthorizedUser),
}

/// A service account key file.
#[derive(Debug, Clone)]
pub struct ServiceAccountKey {
    /// The file it was read from.
    pub path: PathBuf,
    /// The service account's email, the assertion's issuer.
    pub client_email: String,
    /// The key's id, sent as the assertion's `kid`.
    pub private_key_id: Option<String>,
    /// The RSA private key, PEM.
    pub private_key: Secret,
    /// Where the assertion is exchanged for an access token, and its audience.
    pub token_uri: String,
}

/// A user's OAuth client and refresh token.
#[derive(Debug, Clone)]
pub struct AuthorizedUser {
    /// The file it was read from.
    pub path: PathBuf,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: Secret,
    /// The refresh token.
    pub refresh_token: Secret,
    /// Where the refresh token is exchanged for an access token.
    pub token_uri: String,
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    token_uri: Option<String>,
}

impl CredentialFile {
    /// Reads and checks `path`. Messages name the file and the field, never a value.
    pub fn load(path: &Path) -> Result<CredentialFile, Error> {
        let bad = |problem: String| Error::CredentialFile {
            path: path.to_owned(),
            problem,
        };
        let bytes = icp_core::io::read_file(path, MAX_FILE_SIZE).map_err(|e| bad(e.to_string()))?;
        let raw: RawFile = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "not a JSON credential file (line {} column {})",
                e.line(),
                e.column()
            ))
        })?;
        let field = |value: Option<String>, name: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(format!("no {name:?}")))
        };
        let token_uri = match raw.token_uri {
            Some(uri) => {
                check_token_uri(&uri).map_err(|problem| bad(format!("token_uri: {problem}")))?;
                uri
            }
            None => GOOGLE_TOKEN_URI.to_owned(),
        };
        match raw.kind.as_deref() {
            Some("service_account") => Ok(CredentialFile::ServiceAccount(ServiceAccountKey {
                path: path.to_owned(),
                client_email: field(raw.client_email, "client_email")?,
                private_key_id: raw.private_key_id.filter(|id| !id.is_empty()),
                private_key: Secret::new(field(raw.private_key, "private_key")?),
                token_uri,
            })),
            Some("authorized_user") => Ok(CredentialFile::AuthorizedUser(AuthorizedUser {
                path: path.to_owned(),
                client_id: field(raw.client_id, "client_id")?,
                client_secret: Secret::new(field(raw.client_secret, "client_secret")?),
                refresh_token: Secret::new(field(raw.refresh_token, "refresh_token")?),
                token_uri,
            })),
            Some(other) => Err(bad(format!(
                "credential type {} is not supported (use \"service_account\" or \"authorized_user\")",
                icp_core::quote(other)
            ))),
            None => Err(bad("no \"type\"".to_owned())),
        }
    }

    /// The file's identity, for the token cache: its path and the account it names
    /// (client email and key id, or OAuth client id). Never a secret.
    pub fn identity(&self) -> String {
        match self {
            CredentialFile::ServiceAccount(key) => format!(
                "gcp:key:{}:{}:{}",
                key.path.display(),
                key.client_email,
                key.private_key_id.as_deref().unwrap_or("")
            ),
            CredentialFile::AuthorizedUser(user) => {
                format!("gcp:user:{}:{}", user.path.display(), user.client_id)
            }
        }
    }
}

/// A token endpoint gets a signed assertion or a refresh token, so it must be HTTPS; plain
/// HTTP is allowed to a loopback address only (local test endpoints).
fn check_token_uri(uri: &str) -> Result<(), String> {
    if let Some(rest) = uri.strip_prefix("https://") {
        return if rest.is_empty() || rest.starts_with('/') {
            Err("no host".into())
        } else {
            Ok(())
        };
    }
    let Some(rest) = uri.strip_prefix("http://") else {
        return Err("must be an https:// URL".into());
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err("must be an https:// URL (http:// only to a loopback address)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<CredentialFile, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.json");
        std::fs::write(&path, json).unwrap();
        CredentialFile::load(&path)
    }

    #[test]
    fn reads_a_service_account_key() {
        let file = load(
            r#"{"type":"service_account","project_id":"p","private_key_id":"kid1",
                "private_key":"-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n",
                "client_email":"puller@p.iam.gserviceaccount.com","client_id":"1",
                "token_uri":"https://oauth2.googleapis.com/token"}"#,
        )
        .unwrap();
        let CredentialFile::ServiceAccount(key) = &file else {
            panic!("not a service account: {file:?}")
        };
        assert_eq!(key.client_email, "puller@p.iam.gserviceaccount.com");
        assert_eq!(key.private_key_id.as_deref(), Some("kid1"));
        assert_eq!(key.token_uri, GOOGLE_TOKEN_URI);
        assert!(
            file.identity()
                .ends_with(":puller@p.iam.gserviceaccount.com:kid1")
        );
        assert!(!file.identity().contains("PRIVATE"));
    }

    #[test]
    fn reads_an_authorized_user_with_the_default_endpoint() {
        let file = load(
            r#"{"type":"authorized_user","client_id":"cid.apps.googleusercontent.com",
                "client_secret":"s3cret","refresh_token":"1//refresh"}"#,
        )
        .unwrap();
        let CredentialFile::AuthorizedUser(user) = &file else {
            panic!("not a user: {file:?}")
        };
        assert_eq!(user.token_uri, GOOGLE_TOKEN_URI);
        assert_eq!(user.refresh_token.expose(), "1//refresh");
        let identity = file.identity();
        assert!(identity.contains("cid.apps.googleusercontent.com"));
        assert!(!identity.contains("s3cret") && !identity.contains("refresh"));
    }

    #[test]
    fn refuses_bad_files_without_echoing_values() {
        let cases = [
            ("{", "not a JSON credential file"),
            (
                r#"{"type":"service_account","private_key":"SECRETKEY"}"#,
                "no \"client_email\"",
            ),
            (
                r#"{"type":"service_account","client_email":"a@b"}"#,
                "no \"private_key\"",
            ),
            (
                r#"{"type":"external_account","audience":"x"}"#,
                "\"external_account\" is not supported",
            ),
            (r#"{"client_email":"a@b"}"#, "no \"type\""),
            (
                r#"{"type":"authorized_user","client_id":"c","client_secret":"SECRETKEY","refresh_token":"r","token_uri":"http://oauth.evil.example/token"}"#,
                "token_uri: must be an https:// URL",
            ),
        ];
        for (json, expected) in cases {
            let message = load(json).unwrap_err().to_string();
            assert!(message.contains(expected), "{json}: {message}");
            assert!(!message.contains("SECRETKEY"), "{message}");
        }
        let missing = CredentialFile::load(Path::new("/nonexistent/key.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("/nonexistent/key.json"), "{missing}");
    }

    #[test]
    fn token_uri_must_be_https_or_loopback_http() {
        for ok in [
            "https://oauth2.googleapis.com/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/t",
            "http://[::1]:9/t",
        ] {
            assert_eq!(check_token_uri(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/token",
            "ftp://x/y",
            "oauth2.googleapis.com/token",
            "https://",
            "http://127.0.0.1.evil.example/t",
        ] {
            assert!(check_token_uri(bad).is_err(), "{bad}");
        }
    }
}
