//! A fake of Google's OAuth 2.0 token endpoint, and the service account keys it knows:
//! RSA keys made by the openssl CLI, and key files naming them.
//!
//! The endpoint checks a JWT bearer grant as Google does: the RS256 signature, verified by
//! `openssl dgst` with the named account's public key (not by the code under test's
//! crypto), the issuer, the audience (the endpoint's own URL), the scope and the lifetime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::time::now;
use crate::{FakeServer, Recorded, Reply, TestCa};

/// The name of Google's token endpoint, which [`TokenFake::https`] answers under.
pub const TOKEN_HOST: &str = "oauth2.googleapis.com";

/// An RSA key pair made with the openssl CLI for one test: the private half as PKCS#8
/// PEM (as in a Google key file), the public half as PKCS#1 DER (for the fake to verify
/// with, derived by openssl, not by the code under test).
pub struct TestKey {
    /// The private key, PKCS#8 PEM.
    pub private_pem: String,
    /// The public key, PKCS#1 DER.
    pub public_der: Vec<u8>,
}

impl TestKey {
    /// Makes a 2048-bit key in `dir`.
    pub fn generate(dir: &Path) -> TestKey {
        let private = dir.join("test-key.pem");
        let public = dir.join("test-key.pub.der");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path(&private),
        ]);
        openssl(&[
            "rsa",
            "-in",
            path(&private),
            "-RSAPublicKey_out",
            "-outform",
            "DER",
            "-out",
            path(&public),
        ]);
        TestKey {
            private_pem: std::fs::read_to_string(&private).expect("the private key openssl wrote"),
            public_der: std::fs::read(&public).expect("the public key openssl wrote"),
        }
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run openssl ({error}); install it with .ci/setup (apt-get install openssl)"
            )
        });
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes a service account key file (key id `kid-1`) for `key` naming `token_uri`;
/// returns its path.
pub fn write_key_file(
    dir: &Path,
    name: &str,
    key: &TestKey,
    email: &str,
    token_uri: &str,
) -> PathBuf {
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "project",
        "private_key_id": "kid-1",
        "private_key": key.private_pem,
        "client_email": email,
        "client_id": "123",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    });
    let path = dir.join(name);
    std::fs::write(&path, json.to_string()).expect("the key file is written");
    path
}

/// What the token endpoint fake knows: the service accounts' public keys, and the
/// users' refresh tokens.
#[derive(Clone, Default)]
pub struct Accounts {
    /// client_email -> public key (PKCS#1 DER).
    pub keys: BTreeMap<String, Vec<u8>>,
    /// (client_id, client_secret, refresh_token).
    pub users: Vec<(String, String, String)>,
    /// A status every request gets instead (429, 500).
    pub status: Option<u16>,
}

/// A fake of Google's OAuth 2.0 token endpoint, at `http://127.0.0.1:<port>/token`
/// ([`TokenFake::start`]) or under its real name over TLS ([`TokenFake::https`]). Tokens
/// are `ya29.key-<n>` and `ya29.user-<n>`; `verified` counts good assertions.
pub struct TokenFake {
    /// The server, for its address and its requests.
    pub server: FakeServer,
    /// How many assertions passed every check.
    pub verified: Arc<AtomicUsize>,
    tls: bool,
    _dir: tempfile::TempDir,
}

impl TokenFake {
    /// Starts the endpoint in plain HTTP; key files name it with [`TokenFake::uri`].
    pub fn start(accounts: Accounts) -> TokenFake {
        TokenFake::serve(None, accounts)
    }

    /// Starts the endpoint as `https://oauth2.googleapis.com/token`, with a certificate
    /// from `ca`; a client reaches it through [`TokenFake::resolve`].
    pub fn https(ca: &TestCa, accounts: Accounts) -> TokenFake {
        TokenFake::serve(Some(ca), accounts)
    }

    fn serve(ca: Option<&TestCa>, accounts: Accounts) -> TokenFake {
        let dir = tempfile::tempdir().expect("a directory for the fake's files");
        let verified = Arc::new(AtomicUsize::new(0));
        let (counter, files) = (verified.clone(), dir.path().to_owned());
        let issued = AtomicUsize::new(0);
        let tls = ca.is_some();
        let handler = move |request: &Recorded| {
            let host = request.header("host").unwrap_or_default();
            if tls && host != TOKEN_HOST {
                return Reply::status(404);
            }
            if let Some(status) = accounts.status {
                return Reply::json(status, r#"{"error":"rate_limit_exceeded"}"#);
            }
            // The endpoint's own URL, as the client reached it.
            let scheme = if tls { "https" } else { "http" };
            let audience = format!("{scheme}://{host}/token");
            let endpoint = Endpoint {
                accounts: &accounts,
                audience: &audience,
                files: &files,
            };
            endpoint.reply(request, &counter, &issued)
        };
        let server = match ca {
            Some(ca) => FakeServer::https(ca.server_config(&[TOKEN_HOST]), handler),
            None => FakeServer::http(handler),
        };
        TokenFake {
            server,
            verified,
            tls,
            _dir: dir,
        }
    }

    /// The `token_uri` to put in key files.
    pub fn uri(&self) -> String {
        if self.tls {
            format!("https://{TOKEN_HOST}/token")
        } else {
            format!("http://{}/token", self.server.address())
        }
    }

    /// The value of `IMAGE_CREDENTIAL_PROVIDER_RESOLVE` that sends Google's name here.
    pub fn resolve(&self) -> String {
        format!("{TOKEN_HOST}:443:{}", self.server.address())
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }
}

fn denied(description: &str) -> Reply {
    Reply::json(
        400,
        format!(r#"{{"error":"invalid_grant","error_description":"{description}"}}"#),
    )
}

/// What one request is checked against.
struct Endpoint<'a> {
    accounts: &'a Accounts,
    audience: &'a str,
    /// Where the signed data and signatures go for openssl to read.
    files: &'a Path,
}

impl Endpoint<'_> {
    fn reply(&self, request: &Recorded, verified: &AtomicUsize, issued: &AtomicUsize) -> Reply {
        if request.method != "POST" || request.path() != "/token" {
            return Reply::status(404);
        }
        if request.header("content-type") != Some("application/x-www-form-urlencoded") {
            return Reply::json(400, r#"{"error":"invalid_request"}"#);
        }
        let n = issued.fetch_add(1, Ordering::SeqCst);
        match request.form("grant_type").as_deref() {
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                let Some(assertion) = request.form("assertion") else {
                    return denied("No assertion.");
                };
                match self.check_assertion(&assertion, n) {
                    Ok(()) => {
                        verified.fetch_add(1, Ordering::SeqCst);
                        Reply::json(
                            200,
                            format!(
                                r#"{{"access_token":"ya29.key-{n}","expires_in":3599,"token_type":"Bearer"}}"#
                            ),
                        )
                    }
                    Err(problem) => denied(problem),
                }
            }
            Some("refresh_token") => {
                let given = (
                    request.form("client_id"),
                    request.form("client_secret"),
                    request.form("refresh_token"),
                );
                let known = self.accounts.users.iter().any(|(id, secret, refresh)| {
                    given
                        == (
                            Some(id.clone()),
                            Some(secret.clone()),
                            Some(refresh.clone()),
                        )
                });
                if known {
                    Reply::json(
                        200,
                        format!(
                            r#"{{"access_token":"ya29.user-{n}","expires_in":3599,"token_type":"Bearer"}}"#
                        ),
                    )
                } else {
                    denied("Token has been expired or revoked.")
                }
            }
            _ => Reply::json(400, r#"{"error":"unsupported_grant_type"}"#),
        }
    }

    fn check_assertion(&self, assertion: &str, n: usize) -> Result<(), &'static str> {
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err("Malformed JWT.");
        };
        let json = |part: &str| -> Result<serde_json::Value, &'static str> {
            let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| "Malformed JWT.")?;
            serde_json::from_slice(&bytes).map_err(|_| "Malformed JWT.")
        };
        let (header, claims) = (json(header)?, json(claims)?);
        if header["alg"] != "RS256" || header["typ"] != "JWT" || header["kid"] != "kid-1" {
            return Err("Invalid JWT header.");
        }
        let email = claims["iss"].as_str().ok_or("No issuer.")?;
        let key = self.accounts.keys.get(email).ok_or("Invalid issuer.")?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "Malformed JWT.")?;
        let signed = &assertion[..assertion.rfind('.').expect("three parts")];
        if !self.openssl_verifies(key, signed.as_bytes(), &signature, n) {
            return Err("Invalid JWT Signature.");
        }
        if claims["aud"] != self.audience {
            return Err("Invalid JWT audience.");
        }
        if claims["scope"] != "https://www.googleapis.com/auth/cloud-platform" {
            return Err("Invalid scope.");
        }
        let now = now();
        let (iat, exp) = (
            claims["iat"].as_u64().ok_or("No iat.")?,
            claims["exp"].as_u64().ok_or("No exp.")?,
        );
        if iat > now + 300 || iat + 300 < now || exp <= iat || exp - iat > 3600 {
            return Err(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            );
        }
        Ok(())
    }

    /// Whether `openssl dgst` finds `signature` an RS256 signature of `signed` by `key`
    /// (PKCS#1 DER); `n` names the request's files.
    fn openssl_verifies(&self, key: &[u8], signed: &[u8], signature: &[u8], n: usize) -> bool {
        let file = |name: &str, contents: &[u8]| {
            let path = self.files.join(format!("{name}-{n}"));
            std::fs::write(&path, contents).expect("the fake's file is written");
            path
        };
        let (key, data, signature) = (
            file("key.der", key),
            file("signed", signed),
            file("signature", signature),
        );
        let output = Command::new("openssl")
            .args(["dgst", "-sha256", "-keyform", "DER", "-verify"])
            .arg(&key)
            .arg("-signature")
            .arg(&signature)
            .arg(&data)
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run openssl ({error}); install it with .ci/setup (apt-get install openssl)"
                )
            });
        output.status.success()
    }
}
