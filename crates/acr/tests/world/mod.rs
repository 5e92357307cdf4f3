//! Fakes of Azure AD, IMDS and ACR registries on the loopback, behaving as the real
//! services do (errors and throttling included), reached under the real names through
//! `IMAGE_CREDENTIAL_PROVIDER_RESOLVE` and trusted through `SSL_CERT_FILE`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use icp_test_kit::{FakeServer, Recorded, Reply, TestCa};

/// Names the Azure AD fake answers for.
pub const AAD_HOSTS: &[&str] = &[
    "login.microsoftonline.com",
    "login.chinacloudapi.cn",
    "login.microsoftonline.us",
    "login.contoso.example",
];
/// Names the registry fake answers for.
pub const REGISTRY_HOSTS: &[&str] = &[
    "myacr.azurecr.io",
    "myacr.azurecr.cn",
    "myacr.azurecr.us",
    "myacr.eastus.geo.azurecr.io",
    "myacr-abc123.azurecr.io",
    "myacr.azurecr.contoso.example",
    "mirror.example",
];
/// Hosts that look like registries and must never see a request; they resolve to the
/// registry fake, which has a certificate for them, so a request would be counted.
pub const HOSTILE_HOSTS: &[&str] = &[
    "myacr.azurecr.io.evil.example",
    "evilazurecr.io",
    "myacr.evil.example",
    "azurecr.io",
    "abc.azurecr.io",
    "myacr.azurecr.iox",
    "myacr.eastus.data.azurecr.io",
    "a.b.myacr.azurecr.io",
];

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const SP_CLIENT: &str = "11111111-1111-1111-1111-111111111111";
pub const SP_SECRET: &str = "sp-secret-value-7d1f";
pub const WI_CLIENT: &str = "22222222-2222-2222-2222-222222222222";
pub const WI_ASSERTION: &str = "eyJhbGciOiJSUzI1NiJ9.federated-sa-token.sig";
pub const MI_CLIENT: &str = "33333333-3333-3333-3333-333333333333";
pub const MI_RESOURCE: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet";
pub const SCOPE: &str = "https://containerregistry.azure.net/.default";
pub const AUDIENCE: &str = "https://containerregistry.azure.net";

/// A second tenant, with an application of its own.
pub const TENANT_B: &str = "b0b0b0b0-0000-4000-8000-000000000000";
/// Applications that trust the cluster's service account tokens (federated identity
/// credentials), as service accounts name them in their annotations.
pub const POD_CLIENT: &str = "55555555-5555-5555-5555-555555555555";
/// An application of [`TENANT_B`].
pub const POD_CLIENT_B: &str = "66666666-6666-6666-6666-666666666666";
/// The issuer of the cluster's service account tokens, as the tests' tokens name it.
pub const CLUSTER_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The audience of a token exchanged with Azure AD.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The federated identity credentials: application, its tenant, and the service account
/// subjects it trusts (issuer [`CLUSTER_ISSUER`], audience [`TOKEN_EXCHANGE_AUDIENCE`]).
pub const FEDERATED: &[(&str, &str, &[&str])] = &[
    (
        POD_CLIENT,
        TENANT,
        &[
            "system:serviceaccount:team-a:app",
            "system:serviceaccount:team-b:app",
            "system:serviceaccount:team-a:batch",
        ],
    ),
    (
        POD_CLIENT_B,
        TENANT_B,
        &["system:serviceaccount:team-a:app"],
    ),
];

/// A JWT with `claims`, unsigned as far as anyone checks.
pub fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

/// A projected service account token of `namespace/name` for `audience`, from
/// [`CLUSTER_ISSUER`], expiring at `exp`.
pub fn service_account_token(namespace: &str, name: &str, audience: &str, exp: u64) -> String {
    jwt(&serde_json::json!({
        "aud": [audience],
        "exp": exp,
        "iat": now(),
        "iss": CLUSTER_ISSUER,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": format!("{namespace}-{name}-uid")},
        },
    })
    .to_string())
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Knobs a test turns to make the fakes misbehave.
#[derive(Default)]
pub struct Knobs {
    /// Answer this many `/v2/` requests with 429 first.
    pub challenge_throttle: AtomicU32,
    /// Answer this many exchanges with 429 first.
    pub exchange_throttle: AtomicU32,
    /// Answer this many Azure AD requests with 429 first.
    pub aad_throttle: AtomicU32,
    /// Delays every Azure AD answer.
    pub aad_delay: Mutex<Duration>,
    /// Answer this many IMDS requests with 500 first.
    pub imds_failures: AtomicU32,
    /// The `Retry-After` of 429 answers.
    pub retry_after: Mutex<Option<String>>,
    /// Replaces the `/v2/` answer.
    pub challenge_reply: Mutex<Option<Reply>>,
    /// Replaces the exchange answer.
    pub exchange_reply: Mutex<Option<Reply>>,
    /// Replaces the refresh token.
    pub refresh_token: Mutex<Option<String>>,
    /// Delays every registry answer.
    pub registry_delay: Mutex<Duration>,
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// One set of fakes, made fresh for each test so request counts are its own.
pub struct World {
    pub aad: FakeServer,
    pub imds: FakeServer,
    pub registry: FakeServer,
    pub knobs: Arc<Knobs>,
    pub dir: tempfile::TempDir,
}

struct Shared {
    ca: TestCa,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// The test CA, trusted through `SSL_CERT_FILE`, made once per test binary.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Shared {
            ca,
            ca_file,
            _dir: dir,
        }
    })
}

/// The file `SSL_CERT_FILE` names: the test CA, which issued every fake's certificate.
pub fn ca_file() -> PathBuf {
    shared().ca_file.clone()
}

static ENV_LOCK: Mutex<()> = Mutex::new(());

/// Environment variables set for the time of one closure; the lock keeps tests that set
/// them from running those closures at the same time.
pub struct EnvGuard {
    names: Vec<String>,
    _lock: MutexGuard<'static, ()>,
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for name in &self.names {
            // SAFETY: the environment lock is held; no other test reads or writes it now.
            unsafe { std::env::remove_var(name) };
        }
    }
}

/// Sets `vars` (and `SSL_CERT_FILE`) until the guard is dropped.
pub fn set_env(vars: &[(&str, String)]) -> EnvGuard {
    let lock = ENV_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut names = Vec::new();
    let ca_file = shared().ca_file.display().to_string();
    for (name, value) in vars.iter().cloned().chain([("SSL_CERT_FILE", ca_file)]) {
        // SAFETY: the environment lock is held; no other test reads or writes it now.
        unsafe { std::env::set_var(name, value) };
        names.push(name.to_owned());
    }
    EnvGuard { names, _lock: lock }
}

impl World {
    pub fn new() -> World {
        let shared = shared();
        let knobs = Arc::new(Knobs::default());
        let k = knobs.clone();
        let aad = FakeServer::https(shared.ca.server_config(AAD_HOSTS), move |request| {
            aad(&k, request)
        });
        let k = knobs.clone();
        let imds = FakeServer::http(move |request| imds(&k, request));
        let k = knobs.clone();
        let names: Vec<&str> = REGISTRY_HOSTS
            .iter()
            .chain(HOSTILE_HOSTS)
            .copied()
            .collect();
        let registry = FakeServer::https(shared.ca.server_config(&names), move |request| {
            registry(&k, request)
        });
        World {
            aad,
            imds,
            registry,
            knobs,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The variables that send the backend to these fakes.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut resolve: Vec<String> = AAD_HOSTS
            .iter()
            .map(|h| format!("{h}:443:{}", self.aad.address()))
            .collect();
        resolve.extend(
            REGISTRY_HOSTS
                .iter()
                .chain(HOSTILE_HOSTS)
                .map(|h| format!("{h}:443:{}", self.registry.address())),
        );
        vec![
            ("IMAGE_CREDENTIAL_PROVIDER_RESOLVE", resolve.join(",")),
            (
                "IMAGE_CREDENTIAL_PROVIDER_AZURE_IMDS_ENDPOINT",
                format!("http://{}", self.imds.address()),
            ),
        ]
    }

    /// Writes `contents` to `name` in the world's directory.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every request any fake received.
    pub fn request_count(&self) -> usize {
        self.aad.request_count() + self.imds.request_count() + self.registry.request_count()
    }

    /// The registry's requests for one host.
    pub fn registry_requests(&self, host: &str) -> Vec<Recorded> {
        self.registry
            .requests()
            .into_iter()
            .filter(|r| r.header("host") == Some(host))
            .collect()
    }
}

fn throttled(knobs: &Knobs) -> Reply {
    let reply = Reply::json(
        429,
        r#"{"error":"too_many_requests","error_description":"Too many requests"}"#,
    );
    match knobs.retry_after.lock().unwrap().as_deref() {
        Some(after) => reply.header("Retry-After", after),
        None => reply,
    }
}

/// Azure AD's error answer: the error code, the `AADSTS` description with the trace lines
/// Azure AD appends, and the numeric code.
fn aad_error(status: u16, error: &str, code: u32, description: &str) -> Reply {
    let body = serde_json::json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description} Trace ID: 0000\r\nCorrelation ID: 1111\r\nTimestamp: 2025-01-01 00:00:00Z"
        ),
        "error_codes": [code],
        "timestamp": "2025-01-01 00:00:00Z",
        "trace_id": "0000",
        "correlation_id": "1111",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    Reply::json(status, body.to_string())
}

/// Azure AD's v2.0 token endpoint: client credentials with a secret or an assertion. A
/// service account token is checked as a federated identity credential is: the tenant and
/// the application, then the token's issuer, audience, subject and expiry.
fn aad(knobs: &Knobs, request: &Recorded) -> Reply {
    let delay = *knobs.aad_delay.lock().unwrap();
    aad_answer(knobs, request).delay(delay)
}

fn aad_answer(knobs: &Knobs, request: &Recorded) -> Reply {
    if take_one(&knobs.aad_throttle) {
        // As Azure AD throttles client credentials: 429 with a Retry-After (60 s).
        let after = knobs
            .retry_after
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_else(|| "60".to_owned());
        return aad_error(
            429,
            "temporarily_unavailable",
            90055,
            "There are too many incoming requests.",
        )
        .header("Retry-After", &after);
    }
    let tenant = request
        .path()
        .strip_suffix("/oauth2/v2.0/token")
        .and_then(|t| t.strip_prefix('/'))
        .unwrap_or_default()
        .to_owned();
    if request.method != "POST" || ![TENANT, TENANT_B].contains(&tenant.as_str()) {
        return aad_error(
            400,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    if request.form("grant_type").as_deref() != Some("client_credentials")
        || request.form("scope").as_deref() != Some(SCOPE)
    {
        return aad_error(
            400,
            "invalid_scope",
            70011,
            "The provided request must include a valid scope.",
        );
    }
    let client = request.form("client_id").unwrap_or_default();
    let not_found = || {
        aad_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client}' was not found in the directory '{tenant}'."
            ),
        )
    };
    let host = request.header("host").unwrap_or_default();
    let assertion = || {
        (request.form("client_assertion_type").as_deref()
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"))
        .then(|| request.form("client_assertion"))
        .flatten()
    };
    let access_token = match client.as_str() {
        SP_CLIENT | WI_CLIENT if tenant != TENANT => return not_found(),
        SP_CLIENT if request.form("client_secret").as_deref() == Some(SP_SECRET) => {
            format!("aad:{client}@{host}")
        }
        WI_CLIENT if assertion().as_deref() == Some(WI_ASSERTION) => {
            format!("aad:{client}@{host}")
        }
        SP_CLIENT | WI_CLIENT => {
            return aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided.",
            );
        }
        _ => {
            let Some((_, _, subjects)) = FEDERATED
                .iter()
                .find(|(id, home, _)| *id == client && *home == tenant)
            else {
                return not_found();
            };
            let Some(claims) = assertion().as_deref().and_then(jwt_claims) else {
                return aad_error(
                    400,
                    "invalid_client",
                    50027,
                    "JWT token is invalid or is malformed.",
                );
            };
            match federated_subject(&claims, subjects) {
                Ok(subject) => format!("aad:{client}@{host};sub={subject}"),
                Err(reply) => return reply,
            }
        }
    };
    Reply::json(
        200,
        format!(
            r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"{access_token}"}}"#
        ),
    )
}

/// The claims of a JWT, unverified: the fake checks what Azure AD checks against a federated
/// identity credential, not the cluster's signature.
fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The token's subject when a federated identity credential of the application trusts it.
fn federated_subject(claims: &serde_json::Value, subjects: &[&str]) -> Result<String, Reply> {
    let text = |name: &str| claims[name].as_str().unwrap_or_default().to_owned();
    let issuer = text("iss");
    if issuer != CLUSTER_ISSUER {
        return Err(aad_error(
            400,
            "invalid_client",
            700211,
            &format!(
                "No matching federated identity record found for presented assertion issuer '{issuer}'."
            ),
        ));
    }
    let audiences: Vec<String> = match &claims["aud"] {
        serde_json::Value::String(one) => vec![one.clone()],
        serde_json::Value::Array(all) => all
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if !audiences.iter().any(|a| a == TOKEN_EXCHANGE_AUDIENCE) {
        return Err(aad_error(
            400,
            "invalid_client",
            700212,
            &format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                audiences.join(",")
            ),
        ));
    }
    let subject = text("sub");
    if !subjects.contains(&subject.as_str()) {
        return Err(aad_error(
            400,
            "invalid_client",
            700213,
            &format!(
                "No matching federated identity record found for presented assertion subject '{subject}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        ));
    }
    if claims["exp"].as_u64().is_none_or(|exp| exp <= now()) {
        return Err(aad_error(
            400,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    Ok(subject)
}

/// The instance metadata service's identity endpoint.
fn imds(knobs: &Knobs, request: &Recorded) -> Reply {
    if request.header("metadata") != Some("true") {
        return Reply::json(
            400,
            r#"{"error":"invalid_request","error_description":"Required metadata header not specified"}"#,
        );
    }
    if take_one(&knobs.imds_failures) {
        return Reply::json(
            500,
            r#"{"error":"unknown","error_description":"Internal error"}"#,
        );
    }
    if request.path() != "/metadata/identity/oauth2/token" || request.query("api-version").is_none()
    {
        return Reply::json(
            400,
            r#"{"error":"invalid_request","error_description":"Invalid request"}"#,
        );
    }
    if request.query("resource").as_deref() != Some(AUDIENCE) {
        return Reply::json(
            400,
            r#"{"error":"invalid_resource","error_description":"AADSTS500011: resource principal not found"}"#,
        );
    }
    let identity = match (request.query("client_id"), request.query("msi_res_id")) {
        (None, None) => "system".to_owned(),
        (Some(id), None) if id == MI_CLIENT => format!("client:{id}"),
        (None, Some(id)) if id == MI_RESOURCE => "resource:kubelet".to_owned(),
        _ => {
            return Reply::json(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            );
        }
    };
    Reply::json(
        200,
        format!(
            r#"{{"access_token":"imds:{identity}","expires_in":"86399","expires_on":"{}","resource":"{AUDIENCE}","token_type":"Bearer"}}"#,
            now() + 86399
        ),
    )
}

/// An ACR registry: the `/v2/` challenge and the token exchange.
fn registry(knobs: &Knobs, request: &Recorded) -> Reply {
    let delay = *knobs.registry_delay.lock().unwrap();
    let host = request.header("host").unwrap_or_default().to_owned();
    let unauthorized = |message: &str| {
        Reply::json(
            401,
            format!(
                r#"{{"errors":[{{"code":"UNAUTHORIZED","message":"{message}","detail":null}}]}}"#
            ),
        )
    };
    let reply = match (request.method.as_str(), request.path()) {
        ("GET", "/v2/") => {
            if take_one(&knobs.challenge_throttle) {
                throttled(knobs)
            } else if let Some(reply) = knobs.challenge_reply.lock().unwrap().clone() {
                reply
            } else {
                unauthorized("authentication required, visit https://aka.ms/acr/authorization for more information.")
                    .header("Www-Authenticate", &format!(r#"Bearer realm="https://{host}/oauth2/token",service="{host}""#))
            }
        }
        ("POST", "/oauth2/exchange") => {
            if take_one(&knobs.exchange_throttle) {
                throttled(knobs)
            } else if let Some(reply) = knobs.exchange_reply.lock().unwrap().clone() {
                reply
            } else {
                let token = request.form("access_token").unwrap_or_default();
                let valid = token.starts_with("imds:") || token.starts_with("aad:");
                if request.form("grant_type").as_deref() != Some("access_token")
                    || request.form("service").as_deref() != Some(host.as_str())
                {
                    Reply::json(
                        400,
                        r#"{"errors":[{"code":"UNSUPPORTED","message":"unsupported grant type or service"}]}"#,
                    )
                } else if !valid {
                    unauthorized("invalid access token")
                } else {
                    let refresh = knobs.refresh_token.lock().unwrap().clone().unwrap_or_else(|| {
                        jwt(&format!(r#"{{"jti":"x","sub":"{token}","grant_type":"refresh_token","exp":{},"tenant":"{TENANT}","aud":"{host}"}}"#, now() + 3 * 3600))
                    });
                    Reply::json(200, format!(r#"{{"refresh_token":"{refresh}"}}"#))
                }
            }
        }
        _ => Reply::json(
            404,
            r#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#,
        ),
    };
    reply.delay(delay)
}
