//! Loopback fakes of Google's services for the backend's tests: the GCE metadata server
//! and the OAuth 2.0 token endpoint, which checks signed assertions as Google does.

#![allow(dead_code)] // Each test file uses part of the fakes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use icp_test_kit::{FakeServer, Recorded, Reply};

/// What the metadata fake answers for one service account.
#[derive(Clone)]
pub struct Account {
    pub scopes: Vec<String>,
    pub expires_in: u64,
}

impl Account {
    /// An account with the scope of a GKE node's default service account.
    pub fn cloud_platform() -> Account {
        Account {
            scopes: vec!["https://www.googleapis.com/auth/cloud-platform".into()],
            expires_in: 3599,
        }
    }
}

/// How the metadata fake behaves.
#[derive(Clone, Default)]
pub struct Instance {
    pub accounts: BTreeMap<String, Account>,
    pub attributes: BTreeMap<String, String>,
    /// When set, token requests get this status (and an error body) instead.
    pub token_status: Option<u16>,
    /// How many token requests fail with 503 before one succeeds.
    pub token_unavailable: usize,
    /// A delay before every answer.
    pub delay: Duration,
}

impl Instance {
    /// An instance with its `default` account and the given email alias for it.
    pub fn gke_node() -> Instance {
        let mut instance = Instance::default();
        instance
            .accounts
            .insert("default".into(), Account::cloud_platform());
        instance.accounts.insert(
            "node@project.iam.gserviceaccount.com".into(),
            Account::cloud_platform(),
        );
        instance
    }
}

/// A fake GCE metadata server on `127.0.0.1`: it refuses requests without
/// `Metadata-Flavor: Google` (403) and marks every answer with it, as Google's does.
/// Tokens are `ya29.metadata-<account>-<n>`.
pub struct MetadataFake {
    pub server: FakeServer,
}

impl MetadataFake {
    pub fn start(instance: Instance) -> MetadataFake {
        let issued = Arc::new(AtomicUsize::new(0));
        let unavailable = Arc::new(AtomicUsize::new(instance.token_unavailable));
        let server = FakeServer::http(move |request| {
            let reply = metadata_reply(&instance, request, &issued, &unavailable);
            reply
                .header("Metadata-Flavor", "Google")
                .header("Server", "Metadata Server for VM")
                .delay(instance.delay)
        });
        MetadataFake { server }
    }

    /// The value for `GCE_METADATA_HOST`.
    pub fn host(&self) -> String {
        self.server.address().to_string()
    }

    pub fn request_count(&self) -> usize {
        self.server.request_count()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

fn metadata_reply(
    instance: &Instance,
    request: &Recorded,
    issued: &AtomicUsize,
    unavailable: &AtomicUsize,
) -> Reply {
    if request.header("Metadata-Flavor") != Some("Google") {
        return Reply::status(403)
            .header("Content-Type", "text/html")
            .body("Missing required header");
    }
    if request.method != "GET" {
        return Reply::status(405);
    }
    let Some(path) = request.path().strip_prefix("/computeMetadata/v1/instance/") else {
        return Reply::status(404);
    };
    if let Some(name) = path.strip_prefix("attributes/") {
        return match instance.attributes.get(name) {
            Some(value) => Reply::status(200)
                .header("Content-Type", "application/text")
                .body(value.clone()),
            None => Reply::status(404).body("not found"),
        };
    }
    let Some((account, what)) = path
        .strip_prefix("service-accounts/")
        .and_then(|p| p.split_once('/'))
    else {
        return Reply::status(404);
    };
    let Some(details) = instance.accounts.get(account) else {
        return Reply::status(404).body("not found");
    };
    match what {
        "scopes" => Reply::status(200).body(
            details
                .scopes
                .iter()
                .map(|s| format!("{s}\n"))
                .collect::<String>(),
        ),
        "token" => {
            if let Some(status) = instance.token_status {
                return Reply::json(status, r#"{"error":"failed"}"#);
            }
            if unavailable
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Reply::status(503).body("try again");
            }
            let n = issued.fetch_add(1, Ordering::SeqCst);
            Reply::json(
                200,
                format!(
                    r#"{{"access_token":"ya29.metadata-{account}-{n}","expires_in":{},"token_type":"Bearer"}}"#,
                    details.expires_in
                ),
            )
        }
        _ => Reply::status(404),
    }
}

/// An RSA key pair made with the openssl CLI for one test: the private half as PKCS#8
/// PEM (as in a Google key file), the public half as PKCS#1 DER (for the fake to verify
/// with, derived by openssl, not by the code under test).
pub struct TestKey {
    pub private_pem: String,
    pub public_der: Vec<u8>,
}

impl TestKey {
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
            private_pem: std::fs::read_to_string(&private).unwrap(),
            public_der: std::fs::read(&public).unwrap(),
        }
    }
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap()
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

/// Writes a service account key file for `key` naming `token_uri`; returns its path.
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
    std::fs::write(&path, json.to_string()).unwrap();
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

/// A fake of Google's OAuth 2.0 token endpoint at `http://127.0.0.1:<port>/token`. For
/// the JWT bearer grant it checks the assertion as Google does: RS256 signature by the
/// named account's key, issuer, audience (the endpoint's own URL), scope and lifetime.
/// Tokens are `ya29.key-<n>` and `ya29.user-<n>`; `verified` counts good assertions.
pub struct TokenFake {
    pub server: FakeServer,
    pub verified: Arc<AtomicUsize>,
}

impl TokenFake {
    pub fn start(accounts: Accounts) -> TokenFake {
        let verified = Arc::new(AtomicUsize::new(0));
        let counter = verified.clone();
        let issued = AtomicUsize::new(0);
        let server = FakeServer::http(move |request| {
            if let Some(status) = accounts.status {
                return Reply::json(status, r#"{"error":"rate_limit_exceeded"}"#);
            }
            // The endpoint's own URL, as the client reached it.
            let audience = format!(
                "http://{}/token",
                request.header("host").unwrap_or_default()
            );
            token_reply(&accounts, request, &audience, &counter, &issued)
        });
        TokenFake { server, verified }
    }

    /// The `token_uri` to put in key files.
    pub fn uri(&self) -> String {
        format!("http://{}/token", self.server.address())
    }

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

fn token_reply(
    accounts: &Accounts,
    request: &Recorded,
    audience: &str,
    verified: &AtomicUsize,
    issued: &AtomicUsize,
) -> Reply {
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
            match check_assertion(accounts, &assertion, audience) {
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
            let known = accounts.users.iter().any(|(id, secret, refresh)| {
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

fn check_assertion(
    accounts: &Accounts,
    assertion: &str,
    audience: &str,
) -> Result<(), &'static str> {
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
    let key = accounts.keys.get(email).ok_or("Invalid issuer.")?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| "Malformed JWT.")?;
    let signed = &assertion[..assertion.rfind('.').unwrap()];
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.")?;
    if claims["aud"] != audience {
        return Err("Invalid JWT audience.");
    }
    if claims["scope"] != "https://www.googleapis.com/auth/cloud-platform" {
        return Err("Invalid scope.");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
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

/// The kubelet's request for `image`, as the binary hands it to a backend.
pub fn request(image: &icp_core::ImageRef) -> icp_core::Request<'_> {
    icp_core::Request::new(image)
}

/// An environment that points at `metadata` and names no credential file.
pub fn environment(metadata: &MetadataFake) -> icp_gcp::Environment {
    icp_gcp::Environment {
        metadata_host: Some(metadata.host()),
        ..icp_gcp::Environment::default()
    }
}
