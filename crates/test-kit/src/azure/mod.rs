//! Fakes of Azure AD, IMDS, ACR registries and an AKS identity-binding endpoint on the
//! loopback, behaving as the real
//! services do (errors and throttling included), reached under the real names through
//! `IMAGE_CREDENTIAL_PROVIDER_RESOLVE` and trusted through `SSL_CERT_FILE`: a [`World`]
//! of the three, the identities they know, and the knobs that make them misbehave. The
//! ACR crate's tests, the binary's and the `fake_azure` example of the ACR crate (which
//! `bench/run` times the binary against) run on them.

mod aad;
pub mod identity_binding;
mod imds;
mod registry;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{FakeServer, Recorded, Reply, TestCa};

pub use crate::time::now;

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

/// The tenant the identities below belong to.
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// A service principal, which signs in with [`SP_SECRET`].
pub const SP_CLIENT: &str = "11111111-1111-1111-1111-111111111111";
/// The secret of [`SP_CLIENT`].
pub const SP_SECRET: &str = "sp-secret-value-7d1f";
/// An application of workload identity, which signs in with [`WI_ASSERTION`].
pub const WI_CLIENT: &str = "22222222-2222-2222-2222-222222222222";
/// The federated token [`WI_CLIENT`] signs in with.
pub const WI_ASSERTION: &str = "eyJhbGciOiJSUzI1NiJ9.federated-sa-token.sig";
/// The client id of the user-assigned managed identity IMDS knows.
pub const MI_CLIENT: &str = "33333333-3333-3333-3333-333333333333";
/// The resource id of that managed identity.
pub const MI_RESOURCE: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet";
/// The scope Azure AD requires of a token for ACR.
pub const SCOPE: &str = "https://containerregistry.azure.net/.default";
/// The resource IMDS requires of a token for ACR.
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
    /// Answer this many identity-binding requests with 429 first.
    pub ib_throttle: AtomicU32,
    /// Answer this many identity-binding requests with 503 first.
    pub ib_failures: AtomicU32,
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// One set of fakes, made fresh for each test so request counts are its own.
pub struct World {
    /// Azure AD, under every name of [`AAD_HOSTS`].
    pub aad: FakeServer,
    /// The instance metadata service, in plain HTTP as Azure's.
    pub imds: FakeServer,
    /// The registries, under every name of [`REGISTRY_HOSTS`] and [`HOSTILE_HOSTS`].
    pub registry: FakeServer,
    /// The identity-binding endpoint, under [`identity_binding::IB_SNI_NAME`], with a
    /// certificate of the cluster's CA ([`cluster_ca_file`]), not the test CA, reached at
    /// [`identity_binding::IB_API_SERVER`].
    pub identity_binding: FakeServer,
    /// What makes the three misbehave.
    pub knobs: Arc<Knobs>,
    /// A directory for the test's files.
    pub dir: tempfile::TempDir,
}

/// The test CA of the test binary, shared with the [`exchange`](crate::exchange) fakes.
pub(crate) struct Shared {
    pub(crate) ca: TestCa,
    ca_file: PathBuf,
    cluster_ca: TestCa,
    cluster_ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// The test CA, made once per test binary, and trusted through `SSL_CERT_FILE`: set here,
/// once, in the process's environment, since `rustls-native-certs` reads it from there.
/// Every other variable a backend reads is passed to it ([`World::env`]).
pub(crate) fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        // SAFETY: set once, inside this initialiser, before any client of a test reads the
        // environment: every test that sends a request starts by making a `World`, which
        // waits here. The value never changes afterwards.
        unsafe { std::env::set_var("SSL_CERT_FILE", &ca_file) };
        let cluster_ca = TestCa::new();
        let cluster_ca_file = dir.path().join("cluster-ca.crt");
        std::fs::write(&cluster_ca_file, cluster_ca.pem()).unwrap();
        Shared {
            ca,
            ca_file,
            cluster_ca,
            cluster_ca_file,
            _dir: dir,
        }
    })
}

/// The file `SSL_CERT_FILE` names: the test CA, which issued every fake's certificate but
/// the identity-binding endpoint's.
pub fn ca_file() -> PathBuf {
    shared().ca_file.clone()
}

/// The cluster's CA (as AKS puts it in `/etc/kubernetes/certs/ca.crt`), which issued the
/// identity-binding endpoint's certificate and no other.
pub fn cluster_ca_file() -> PathBuf {
    shared().cluster_ca_file.clone()
}

impl World {
    /// Starts the three fakes.
    pub fn new() -> World {
        let shared = shared();
        let knobs = Arc::new(Knobs::default());
        let k = knobs.clone();
        let aad = FakeServer::https(shared.ca.server_config(AAD_HOSTS), move |request| {
            aad::aad(&k, request)
        });
        let k = knobs.clone();
        let imds = FakeServer::http(move |request| imds::imds(&k, request));
        let k = knobs.clone();
        let names: Vec<&str> = REGISTRY_HOSTS
            .iter()
            .chain(HOSTILE_HOSTS)
            .copied()
            .collect();
        let registry = FakeServer::https(shared.ca.server_config(&names), move |request| {
            registry::registry(&k, request)
        });
        let k = knobs.clone();
        let identity_binding = FakeServer::https(
            shared
                .cluster_ca
                .server_config(&[identity_binding::IB_SNI_NAME]),
            move |request| identity_binding::identity_binding(&k, request),
        );
        World {
            aad,
            imds,
            registry,
            identity_binding,
            knobs,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The variables that send the backend to these fakes, for the environment it is
    /// built with.
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
        resolve.push(format!(
            "{}:443:{}",
            identity_binding::IB_API_SERVER,
            self.identity_binding.address()
        ));
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

    /// The world's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every request any fake received.
    pub fn request_count(&self) -> usize {
        self.aad.request_count()
            + self.imds.request_count()
            + self.registry.request_count()
            + self.identity_binding.request_count()
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

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}
