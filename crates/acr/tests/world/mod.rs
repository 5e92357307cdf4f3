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
use icp_http::testing::{FakeServer, Recorded, Reply, TestCa};

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

/// A JWT with `claims`, unsigned as far as anyone checks.
pub fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
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

/// Azure AD's v2.0 token endpoint: client credentials with a secret or an assertion.
fn aad(knobs: &Knobs, request: &Recorded) -> Reply {
    if take_one(&knobs.aad_throttle) {
        return throttled(knobs);
    }
    let aad_error = |status, code: &str, description: &str| {
        Reply::json(
            status,
            format!(
                r#"{{"error":"{code}","error_description":"{description} Trace ID: 0000\r\nCorrelation ID: 1111","error_codes":[7000215]}}"#
            ),
        )
    };
    if request.method != "POST" || request.path() != format!("/{TENANT}/oauth2/v2.0/token") {
        return aad_error(400, "invalid_request", "AADSTS90002: Tenant not found.");
    }
    if request.form("grant_type").as_deref() != Some("client_credentials")
        || request.form("scope").as_deref() != Some(SCOPE)
    {
        return aad_error(
            400,
            "invalid_scope",
            "AADSTS70011: The provided request must include a valid scope.",
        );
    }
    let client = request.form("client_id").unwrap_or_default();
    let authenticated = match client.as_str() {
        SP_CLIENT => request.form("client_secret").as_deref() == Some(SP_SECRET),
        WI_CLIENT => {
            request.form("client_assertion_type").as_deref()
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                && request.form("client_assertion").as_deref() == Some(WI_ASSERTION)
        }
        _ => {
            return aad_error(
                400,
                "unauthorized_client",
                "AADSTS700016: Application not found in the directory.",
            );
        }
    };
    if !authenticated {
        return aad_error(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    let host = request.header("host").unwrap_or_default();
    Reply::json(
        200,
        format!(
            r#"{{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"aad:{client}@{host}"}}"#
        ),
    )
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
