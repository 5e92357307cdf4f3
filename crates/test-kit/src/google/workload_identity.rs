//! TLS fakes of Google's Security Token Service (`https://sts.googleapis.com/v1/token`) and
//! IAM Credentials (`generateAccessToken`), reached under their real names through
//! `IMAGE_CREDENTIAL_PROVIDER_RESOLVE` and trusted through a test CA.
//!
//! They check what they are sent as the real services do: STS takes a token exchange (a
//! JSON body, with proto or JSON field names, or a form), refuses an `Authorization`
//! header, an unknown audience, and a subject token that is not a JWT for the expected
//! audience with a good signature (`invalid_grant`); IAM Credentials takes only federated
//! tokens STS issued, as a bearer token, and only for a Google service account the token's
//! Kubernetes service account is bound to (`PERMISSION_DENIED` otherwise). Both can be
//! told to throttle (HTTP 429), and both count what they get.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::time::{now, rfc3339};
use crate::{FakeServer, Recorded, Reply, TestCa};

/// The scope every exchange must ask for.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// What the fakes know and how they behave; tests change it between runs.
#[derive(Default)]
pub struct Knobs {
    /// STS audience -> the audience the Kubernetes token must carry for it.
    pub audiences: BTreeMap<String, String>,
    /// Google service account email -> the Kubernetes service accounts
    /// (`namespace/name`) allowed to impersonate it (`roles/iam.workloadIdentityUser`).
    pub bindings: BTreeMap<String, BTreeSet<String>>,
    /// How many STS requests get HTTP 429 before the next is served.
    pub sts_throttled: AtomicUsize,
    /// How many IAM Credentials requests get HTTP 429 before the next is served.
    pub iam_throttled: AtomicUsize,
    /// Seconds an STS token lives (`expires_in`).
    pub sts_lifetime: u64,
    /// Seconds an impersonated token lives (`expireTime` from now).
    pub iam_lifetime: u64,
}

/// Both fakes, their shared state and the CA they trust.
pub struct Google {
    /// STS, as `sts.googleapis.com`.
    pub sts: FakeServer,
    /// IAM Credentials, as `iamcredentials.googleapis.com`.
    pub iam: FakeServer,
    /// What both know and how they behave.
    pub knobs: Arc<Mutex<Knobs>>,
    /// Federated tokens STS issued -> the Kubernetes service account they stand for.
    issued: Arc<Mutex<BTreeMap<String, String>>>,
    /// The test CA's certificate file, for `SSL_CERT_FILE`.
    pub ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Google {
    /// Both fakes, with `knobs`.
    pub fn start(knobs: Knobs) -> Google {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let knobs = Arc::new(Mutex::new(knobs));
        let issued = Arc::new(Mutex::new(BTreeMap::new()));
        let (k, i, n) = (knobs.clone(), issued.clone(), AtomicUsize::new(0));
        let sts = FakeServer::https(ca.server_config(&["sts.googleapis.com"]), move |request| {
            sts_reply(&k.lock().unwrap(), &i, &n, request)
        });
        let (k, i, n) = (knobs.clone(), issued.clone(), AtomicUsize::new(0));
        let iam = FakeServer::https(
            ca.server_config(&["iamcredentials.googleapis.com"]),
            move |request| iam_reply(&k.lock().unwrap(), &i, &n, request),
        );
        Google {
            sts,
            iam,
            knobs,
            issued,
            ca_file,
            _dir: dir,
        }
    }

    /// The value of `IMAGE_CREDENTIAL_PROVIDER_RESOLVE` that sends both names here.
    pub fn resolve(&self) -> String {
        format!(
            "sts.googleapis.com:443:{},iamcredentials.googleapis.com:443:{}",
            self.sts.address(),
            self.iam.address()
        )
    }

    /// The federated tokens STS issued.
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().keys().cloned().collect()
    }

    /// The token exchange requests STS received, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.sts
            .requests()
            .iter()
            .filter_map(|request| Exchange::read(request).ok())
            .collect()
    }
}

/// A token exchange request, as STS reads it.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The fields, by their proto names.
    pub fields: BTreeMap<String, String>,
}

impl Exchange {
    /// The request's fields by their proto names (`subject_token`), whatever the body's
    /// form: JSON with proto or JSON (`subjectToken`) names, or a form.
    fn read(request: &Recorded) -> Result<Exchange, &'static str> {
        const NAMES: [(&str, &str); 6] = [
            ("grant_type", "grantType"),
            ("audience", "audience"),
            ("scope", "scope"),
            ("requested_token_type", "requestedTokenType"),
            ("subject_token", "subjectToken"),
            ("subject_token_type", "subjectTokenType"),
        ];
        let content_type = request.header("content-type").unwrap_or_default();
        let mut fields = BTreeMap::new();
        if content_type.starts_with("application/json") {
            let body: Value =
                serde_json::from_slice(&request.body).map_err(|_| "Invalid JSON payload.")?;
            for (proto, json) in NAMES {
                if let Some(value) = body.get(proto).or_else(|| body.get(json)) {
                    let text = value.as_str().ok_or("Invalid JSON payload.")?;
                    fields.insert(proto.to_owned(), text.to_owned());
                }
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            for (proto, _) in NAMES {
                if let Some(value) = request.form(proto) {
                    fields.insert(proto.to_owned(), value);
                }
            }
        } else {
            return Err("Unsupported content type.");
        }
        Ok(Exchange { fields })
    }

    /// The field `name` (proto name), or `""`.
    pub fn get(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }

    /// `namespace/name` of the subject token's service account.
    pub fn account(&self) -> String {
        claims(self.get("subject_token"))
            .map(|claims| {
                let k8s = &claims["kubernetes.io"];
                format!(
                    "{}/{}",
                    k8s["namespace"].as_str().unwrap_or_default(),
                    k8s["serviceaccount"]["name"].as_str().unwrap_or_default()
                )
            })
            .unwrap_or_default()
    }
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn oauth_error(error: &str, description: &str) -> Reply {
    Reply::json(
        400,
        serde_json::json!({"error": error, "error_description": description}).to_string(),
    )
}

fn google_error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(
        code,
        serde_json::json!({"error": {"code": code, "message": message, "status": status}})
            .to_string(),
    )
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn sts_reply(
    knobs: &Knobs,
    issued: &Mutex<BTreeMap<String, String>>,
    n: &AtomicUsize,
    request: &Recorded,
) -> Reply {
    if request.header("host") != Some("sts.googleapis.com")
        || request.method != "POST"
        || request.path() != "/v1/token"
    {
        return google_error(404, "NOT_FOUND", "Not found.");
    }
    if take_one(&knobs.sts_throttled) {
        return google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.");
    }
    if request.header("authorization").is_some() {
        return oauth_error(
            "invalid_request",
            "The request must not carry an Authorization header.",
        );
    }
    let exchange = match Exchange::read(request) {
        Ok(exchange) => exchange,
        Err(problem) => return oauth_error("invalid_request", problem),
    };
    if exchange.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
        return oauth_error("unsupported_grant_type", "Unsupported grant type.");
    }
    if exchange.get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
        || exchange.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt"
    {
        return oauth_error("invalid_request", "Invalid token type.");
    }
    if !exchange
        .get("scope")
        .split(' ')
        .any(|s| s == CLOUD_PLATFORM)
    {
        return oauth_error("invalid_scope", "Invalid scope.");
    }
    let Some(token_audience) = knobs.audiences.get(exchange.get("audience")) else {
        return oauth_error(
            "invalid_target",
            "The target service indicated by the \"audience\" parameters is invalid.",
        );
    };
    if let Err(problem) = check_subject(exchange.get("subject_token"), token_audience) {
        return oauth_error("invalid_grant", problem);
    }
    let account = exchange.account();
    let token = format!(
        "ya29.sts-{}-{}",
        account.replace('/', "-"),
        n.fetch_add(1, Ordering::SeqCst)
    );
    issued.lock().unwrap().insert(token.clone(), account);
    Reply::json(
        200,
        serde_json::json!({
            "access_token": token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": knobs.sts_lifetime,
        })
        .to_string(),
    )
}

/// Checks a Kubernetes service account token as a workload identity provider does: its
/// audience, and its signature (the tests' tokens are signed `signature-of-<pod uid>`).
fn check_subject(token: &str, audience: &str) -> Result<(), &'static str> {
    let claims = claims(token).ok_or("Unable to parse the ID Token.")?;
    let audiences = match &claims["aud"] {
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
        Value::String(one) => vec![one.as_str()],
        _ => Vec::new(),
    };
    if !audiences.contains(&audience) {
        return Err("The audience in ID Token does not match the expected audience.");
    }
    let pod = claims["kubernetes.io"]["pod"]["uid"]
        .as_str()
        .unwrap_or_default();
    let signature = URL_SAFE_NO_PAD.encode(format!("signature-of-{pod}"));
    if token.rsplit('.').next() != Some(signature.as_str()) {
        return Err("Invalid JWT signature.");
    }
    Ok(())
}

fn iam_reply(
    knobs: &Knobs,
    issued: &Mutex<BTreeMap<String, String>>,
    n: &AtomicUsize,
    request: &Recorded,
) -> Reply {
    let email = request
        .path()
        .strip_prefix("/v1/projects/-/serviceAccounts/")
        .and_then(|rest| rest.strip_suffix(":generateAccessToken"));
    let (Some(email), "POST", Some("iamcredentials.googleapis.com")) =
        (email, request.method.as_str(), request.header("host"))
    else {
        return google_error(404, "NOT_FOUND", "Not found.");
    };
    if take_one(&knobs.iam_throttled) {
        return google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.");
    }
    let principal = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .and_then(|token| issued.lock().unwrap().get(token).cloned());
    let Some(principal) = principal else {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        );
    };
    let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
    let scoped = body["scope"]
        .as_array()
        .is_some_and(|scopes| scopes.iter().any(|s| s == CLOUD_PLATFORM));
    if request.header("content-type") != Some("application/json") || !scoped {
        return google_error(400, "INVALID_ARGUMENT", "Invalid scope.");
    }
    if !knobs
        .bindings
        .get(email)
        .is_some_and(|members| members.contains(&principal))
    {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let expire = now() + knobs.iam_lifetime;
    let local = email.split('@').next().unwrap_or_default();
    Reply::json(
        200,
        serde_json::json!({
            "accessToken": format!("ya29.iam-{local}-{}", n.fetch_add(1, Ordering::SeqCst)),
            "expireTime": rfc3339(expire),
        })
        .to_string(),
    )
}
