//! Loopback fakes of Google's services for the binary's GCP tests: the GCE metadata
//! server, and the OAuth 2.0 token endpoint over TLS, which checks each signed assertion
//! with OpenSSL and the key's public half.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use icp_test_kit::{FakeServer, Recorded, Reply, TestCa};

/// A fake GCE metadata server: `default` service account with the cloud-platform scope,
/// tokens `ya29.metadata-<n>` for 3599 s, the given instance attributes; requests without
/// `Metadata-Flavor: Google` get 403.
pub fn metadata(attributes: BTreeMap<String, String>) -> FakeServer {
    let issued = AtomicUsize::new(0);
    FakeServer::http(move |request| {
        let reply = if request.header("Metadata-Flavor") != Some("Google") {
            Reply::status(403)
        } else {
            match request.path().strip_prefix("/computeMetadata/v1/instance/") {
                Some("service-accounts/default/scopes") => {
                    Reply::status(200).body("https://www.googleapis.com/auth/cloud-platform\n")
                }
                Some("service-accounts/default/token") => {
                    let n = issued.fetch_add(1, Ordering::SeqCst);
                    Reply::json(
                        200,
                        format!(
                            r#"{{"access_token":"ya29.metadata-{n}","expires_in":3599,"token_type":"Bearer"}}"#
                        ),
                    )
                }
                Some(path) => match path
                    .strip_prefix("attributes/")
                    .and_then(|name| attributes.get(name))
                {
                    Some(value) => Reply::status(200).body(value.clone()),
                    None => Reply::status(404),
                },
                None => Reply::status(404),
            }
        };
        reply.header("Metadata-Flavor", "Google")
    })
}

/// Runs openssl, failing with the setup command when it is missing.
pub fn openssl(args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run openssl ({error}); install it with .ci/setup"));
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An RSA key made by openssl in `dir`: `key.pem` (PKCS#8, as in a Google key file) and
/// `key.pub.pem`. Returns the private key's PEM.
pub fn rsa_key(dir: &Path) -> String {
    let private = dir.join("key.pem");
    let public = dir.join("key.pub.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    std::fs::read_to_string(private).unwrap()
}

/// The TLS fake of `https://oauth2.googleapis.com/token`, with a certificate for that
/// name from `ca`. A JWT bearer grant gets `ya29.key-<n>` when `openssl dgst -verify`
/// accepts its RS256 signature with `dir/key.pub.pem` and it names `email` and the
/// endpoint; a refresh token grant gets `ya29.user-<n>` when it names `refresh_token`.
pub struct TokenEndpoint {
    pub server: FakeServer,
    pub verified: Arc<AtomicUsize>,
}

impl TokenEndpoint {
    pub fn start(ca: &TestCa, dir: &Path, email: &str, refresh_token: &str) -> TokenEndpoint {
        let verified = Arc::new(AtomicUsize::new(0));
        let (counter, dir, email, refresh) = (
            verified.clone(),
            dir.to_owned(),
            email.to_owned(),
            refresh_token.to_owned(),
        );
        let issued = AtomicUsize::new(0);
        let server = FakeServer::https(
            ca.server_config(&["oauth2.googleapis.com"]),
            move |request| {
                let n = issued.fetch_add(1, Ordering::SeqCst);
                let denied = |why: &str| {
                    Reply::json(
                        400,
                        format!(r#"{{"error":"invalid_grant","error_description":"{why}"}}"#),
                    )
                };
                if request.path() != "/token"
                    || request.header("host") != Some("oauth2.googleapis.com")
                {
                    return Reply::status(404);
                }
                match request.form("grant_type").as_deref() {
                    Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                        match check_jwt(request, &dir, &email, n) {
                            Ok(()) => {
                                counter.fetch_add(1, Ordering::SeqCst);
                                Reply::json(
                                    200,
                                    format!(
                                        r#"{{"access_token":"ya29.key-{n}","expires_in":3599}}"#
                                    ),
                                )
                            }
                            Err(why) => denied(why),
                        }
                    }
                    Some("refresh_token")
                        if request.form("refresh_token").as_deref() == Some(refresh.as_str()) =>
                    {
                        Reply::json(
                            200,
                            format!(r#"{{"access_token":"ya29.user-{n}","expires_in":3599}}"#),
                        )
                    }
                    _ => denied("Bad grant."),
                }
            },
        );
        TokenEndpoint { server, verified }
    }

    /// The value for `IMAGE_CREDENTIAL_PROVIDER_RESOLVE`.
    pub fn resolve(&self) -> String {
        format!("oauth2.googleapis.com:443:{}", self.server.address())
    }
}

fn check_jwt(request: &Recorded, dir: &Path, email: &str, n: usize) -> Result<(), &'static str> {
    let assertion = request.form("assertion").ok_or("No assertion.")?;
    let (signed, signature) = assertion.rsplit_once('.').ok_or("Malformed JWT.")?;
    let claims = signed.split('.').nth(1).ok_or("Malformed JWT.")?;
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| "Malformed JWT.")?,
    )
    .map_err(|_| "Malformed JWT.")?;
    if claims["iss"] != email || claims["aud"] != "https://oauth2.googleapis.com/token" {
        return Err("Invalid JWT claims.");
    }
    let data = dir.join(format!("signed-{n}"));
    let sig = dir.join(format!("signature-{n}"));
    std::fs::write(&data, signed).unwrap();
    std::fs::write(
        &sig,
        URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "Malformed JWT.")?,
    )
    .unwrap();
    let public = dir.join("key.pub.pem");
    let output = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&public)
        .arg("-signature")
        .arg(&sig)
        .arg(&data)
        .output()
        .expect("openssl runs");
    if output.status.success() {
        Ok(())
    } else {
        Err("Invalid JWT Signature.")
    }
}
