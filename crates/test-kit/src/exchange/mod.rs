//! Fakes of the services the token-exchange backends send a pod's service account token
//! to, on the loopback over TLS, behaving as the vendors document them (errors and
//! throttling included), reached under their real names through
//! `IMAGE_CREDENTIAL_PROVIDER_RESOLVE` and trusted through `SSL_CERT_FILE`:
//!
//! - [`quay`]: Quay's robot federation, `GET /oauth2/federation/robot/token`;
//! - [`jfrog`]: JFrog Access, `POST /access/api/v1/oidc/token`;
//! - [`cloudsmith`]: Cloudsmith's OIDC, `POST /openid/<org>/`;
//! - [`vault`]: Vault's Kubernetes auth login and KV v1 and v2 reads;
//! - [`sts`]: an RFC 8693 token endpoint and a bearer-token exchange (as Chainguard's).
//!
//! One server answers for every name, routing by path; each fake checks the pod's token
//! as its service would (a JWT for its audience, not expired, of a service account its
//! configuration trusts), unverified. A [`World`] holds the server, what the fakes trust
//! ([`TRUST`]) and the [`Knobs`] that make them misbehave.

pub mod cloudsmith;
pub mod jfrog;
pub mod quay;
pub mod sts;
pub mod vault;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{FakeServer, Recorded, Reply};

pub use crate::azure::{jwt, service_account_token};
pub use crate::time::now;

/// The Quay server's name.
pub const QUAY_HOST: &str = "quay.example.com";
/// The JFrog platform's name.
pub const JFROG_HOST: &str = "acme.jfrog.io";
/// Cloudsmith's API.
pub const CLOUDSMITH_HOST: &str = "api.cloudsmith.io";
/// Vault's name; it listens on [`VAULT_PORT`].
pub const VAULT_HOST: &str = "vault.internal.example";
/// Vault's port.
pub const VAULT_PORT: u16 = 8200;
/// The RFC 8693 token endpoint's host (`POST /token`).
pub const STS_HOST: &str = "sts.example.com";
/// The bearer-token exchange's host (`/sts/exchange`).
pub const ISSUER_HOST: &str = "issuer.example";
/// A host that must never see a request; it resolves to the fakes too, which have a
/// certificate for it, so a request would be counted.
pub const ELSEWHERE_HOST: &str = "elsewhere.example";

/// Every name the fakes answer for on port 443.
pub const HOSTS: &[&str] = &[
    QUAY_HOST,
    JFROG_HOST,
    CLOUDSMITH_HOST,
    STS_HOST,
    ISSUER_HOST,
    ELSEWHERE_HOST,
];

/// Who each fake trusts: the audience the pod's token must carry, and the service
/// accounts (`namespace:name`) allowed, per robot, integration, service, role or client.
pub struct Trust {
    /// Quay robots and the service accounts federated with each.
    pub quay_robots: &'static [(&'static str, &'static [&'static str])],
    /// JFrog OIDC integrations (`provider_name`) and the service accounts each maps.
    pub jfrog_providers: &'static [(&'static str, &'static [&'static str])],
    /// Cloudsmith organizations' services (`org/slug`) and their service accounts.
    pub cloudsmith_services: &'static [(&'static str, &'static [&'static str])],
    /// Vault Kubernetes auth roles and their bound service accounts.
    pub vault_roles: &'static [(&'static str, &'static [&'static str])],
    /// Service accounts the token endpoints accept.
    pub sts_subjects: &'static [&'static str],
}

/// What the fakes trust.
pub const TRUST: Trust = Trust {
    quay_robots: &[
        ("acme+puller", &["team-a:app", "team-b:app", "team-a:batch"]),
        ("acme+builder", &["team-a:app"]),
    ],
    jfrog_providers: &[("k8s-prod", &["team-a:app", "team-b:app", "team-a:batch"])],
    cloudsmith_services: &[
        ("acme/puller", &["team-a:app", "team-b:app", "team-a:batch"]),
        ("acme/builder", &["team-a:app"]),
    ],
    vault_roles: &[
        ("image-pull", &["team-a:app", "team-b:app", "team-a:batch"]),
        ("builder", &["team-a:app"]),
    ],
    sts_subjects: &["team-a:app", "team-b:app", "team-a:batch"],
};

/// The audience each fake expects of the pod's token.
pub mod audience {
    /// Quay's.
    pub const QUAY: &str = "quay";
    /// JFrog's (the integration's audience).
    pub const JFROG: &str = "jfrog";
    /// Cloudsmith's.
    pub const CLOUDSMITH: &str = "cloudsmith";
    /// Vault's role audience.
    pub const VAULT: &str = "vault";
    /// The token endpoints'.
    pub const STS: &[&str] = &["registry.te.example", super::STS_HOST, "cgr.example"];
}

/// The client the token endpoint knows, and its secret.
pub const STS_CLIENT: (&str, &str) = ("registry-client", "client-secret-5f2a");

/// Knobs a test turns to make the fakes misbehave or answer otherwise.
pub struct Knobs {
    /// Answer this many requests with 429 first.
    pub throttle: AtomicU32,
    /// The `Retry-After` of 429 answers.
    pub retry_after: Mutex<Option<String>>,
    /// Answer this many requests with 503 first.
    pub unavailable: AtomicU32,
    /// Seconds a token lives (`expires_in`, Vault's login lease, JWT `exp` from now).
    pub lifetime: AtomicU64,
    /// The lease of Vault secrets (0: none, as KV v2 answers).
    pub secret_lease: AtomicU64,
    /// Whether the token endpoint requires [`STS_CLIENT`]'s authentication.
    pub require_client: Mutex<bool>,
    /// Replaces every answer.
    pub reply: Mutex<Option<Reply>>,
    /// How many tokens were issued, to make each one different.
    issued: AtomicU64,
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            throttle: AtomicU32::new(0),
            retry_after: Mutex::new(None),
            unavailable: AtomicU32::new(0),
            lifetime: AtomicU64::new(3600),
            secret_lease: AtomicU64::new(0),
            require_client: Mutex::new(false),
            reply: Mutex::new(None),
            issued: AtomicU64::new(0),
        }
    }
}

impl Knobs {
    /// Seconds a token lives.
    pub fn lifetime(&self) -> u64 {
        self.lifetime.load(Ordering::SeqCst)
    }

    /// A number never given before, for a new token.
    pub fn serial(&self) -> u64 {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// What is wrong with a pod's token for a service expecting `audience` and trusting
/// `allowed` (`namespace:name`), or the `namespace:name` it stands for.
pub fn check_subject(token: &str, audience: &[&str], allowed: &[&str]) -> Result<String, String> {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p).ok())
        .ok_or("the token is not a JWT")?;
    let audiences: Vec<&str> = match &payload["aud"] {
        serde_json::Value::String(one) => vec![one.as_str()],
        serde_json::Value::Array(many) => many.iter().filter_map(|a| a.as_str()).collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| audience.contains(a)) {
        return Err(format!(
            "the token's audience {audiences:?} is not expected"
        ));
    }
    if payload["exp"].as_u64().is_none_or(|exp| exp <= now()) {
        return Err("the token has expired".into());
    }
    let subject = payload["sub"]
        .as_str()
        .and_then(|s| s.strip_prefix("system:serviceaccount:"))
        .ok_or("the token's subject is not a service account")?;
    if !allowed.contains(&subject) {
        return Err(format!("subject {subject} is not trusted"));
    }
    Ok(subject.to_owned())
}

/// The one set of fakes of a test, made fresh for each so request counts are its own.
pub struct World {
    /// The HTTPS server answering for every name.
    pub server: FakeServer,
    /// What makes the fakes misbehave.
    pub knobs: Arc<Knobs>,
    /// A directory for the test's files.
    pub dir: tempfile::TempDir,
}

/// The file `SSL_CERT_FILE` names: the test CA, which issued the fakes' certificates (the
/// same CA as the [`azure`](crate::azure) fakes', so one test binary trusts one CA).
pub fn ca_file() -> PathBuf {
    crate::azure::ca_file()
}

/// Every fake, by the request's path.
pub fn route(knobs: &Knobs, request: &Recorded) -> Reply {
    if take_one(&knobs.throttle) {
        let reply = Reply::json(429, r#"{"errors":["rate limit quota exceeded"]}"#);
        return match knobs.retry_after.lock().unwrap().as_deref() {
            Some(after) => reply.header("Retry-After", after),
            None => reply,
        };
    }
    if take_one(&knobs.unavailable) {
        return Reply::json(503, r#"{"errors":["Vault is sealed"]}"#);
    }
    if let Some(reply) = knobs.reply.lock().unwrap().clone() {
        return reply;
    }
    let path = request.path();
    if path == "/oauth2/federation/robot/token" {
        quay::robot_token(knobs, request)
    } else if path == "/access/api/v1/oidc/token" {
        jfrog::oidc_token(knobs, request)
    } else if path.starts_with("/openid/") {
        cloudsmith::openid(knobs, request)
    } else if path.starts_with("/v1/") {
        vault::vault(knobs, request)
    } else if path == "/token" {
        sts::exchange(knobs, request)
    } else if path == "/sts/exchange" {
        sts::bearer(knobs, request)
    } else {
        Reply::json(404, r#"{"error":"not_found"}"#)
    }
}

impl World {
    /// Starts the fakes.
    pub fn new() -> World {
        let shared = crate::azure::shared();
        let knobs = Arc::new(Knobs::default());
        let k = knobs.clone();
        let mut names: Vec<&str> = HOSTS.to_vec();
        names.push(VAULT_HOST);
        let server = FakeServer::https(shared.ca.server_config(&names), move |request| {
            route(&k, request)
        });
        World {
            server,
            knobs,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A plain HTTP server with the same fakes and knobs, for `insecure: true` tests.
    pub fn http(&self) -> FakeServer {
        let k = self.knobs.clone();
        FakeServer::http(move |request| route(&k, request))
    }

    /// The variables that send the backends to these fakes, for the environment they are
    /// built with.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let address = self.server.address();
        let mut resolve: Vec<String> = HOSTS
            .iter()
            .map(|host| format!("{host}:443:{address}"))
            .collect();
        resolve.push(format!("{VAULT_HOST}:{VAULT_PORT}:{address}"));
        vec![("IMAGE_CREDENTIAL_PROVIDER_RESOLVE", resolve.join(","))]
    }

    /// Writes `contents` to `name` in the world's directory.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The requests received for `host` (as the `Host` header names it, port included
    /// when not 443).
    pub fn requests(&self, host: &str) -> Vec<Recorded> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.header("host") == Some(host))
            .collect()
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}
