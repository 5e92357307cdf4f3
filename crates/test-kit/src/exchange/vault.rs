//! HashiCorp Vault: the Kubernetes auth method's login
//! (`POST /v1/auth/kubernetes/login {"role", "jwt"}`) and reads of KV v2
//! (`/v1/secret/data/registry/<namespace>/<name>`) and KV v1 (`/v1/registry/<namespace>`)
//! secrets, which a login token may read for its own namespace only; errors as Vault
//! writes them, `{"errors": [...]}`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// How many Vault tokens the test process issued: tests running at once each have their
/// own world, and a token one world issued must not name another world's account.
static ISSUED: AtomicU64 = AtomicU64::new(0);

use super::{Knobs, TRUST, audience, check_subject};
use crate::{Recorded, Reply};

fn errors(status: u16, message: &str) -> Reply {
    Reply::json(
        status,
        serde_json::json!({ "errors": [message] }).to_string(),
    )
}

/// Vault tokens issued, to the `namespace:name` they were issued to: one map for every
/// world of the test process, so each token is numbered across them ([`ISSUED`]).
fn tokens() -> &'static Mutex<BTreeMap<String, String>> {
    static TOKENS: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    TOKENS.get_or_init(Default::default)
}

/// The username and password stored for `namespace` (and `name`, for KV v2).
pub fn credentials(namespace: &str, name: Option<&str>) -> (String, String) {
    let who = match name {
        Some(name) => format!("{namespace}-{name}"),
        None => namespace.to_owned(),
    };
    (format!("robot-{who}"), format!("pw-{who}"))
}

/// Vault's API.
pub fn vault(knobs: &Knobs, request: &Recorded) -> Reply {
    let path = request.path();
    if request.method == "POST" && path == "/v1/auth/kubernetes/login" {
        return login(knobs, request);
    }
    if request.method != "GET" {
        return errors(405, "unsupported operation");
    }
    let Some(subject) = request
        .header("x-vault-token")
        .and_then(|token| tokens().lock().unwrap().get(token).cloned())
    else {
        return errors(403, "permission denied");
    };
    let namespace = subject.split(':').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let denied = Reply::json(
        403,
        r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
    );
    let lease = knobs.secret_lease.load(Ordering::SeqCst);
    match segments[..] {
        ["secret", "data", "registry", ns, sa] => {
            if ns != namespace {
                return denied;
            }
            let (username, password) = credentials(ns, Some(sa));
            Reply::json(
                200,
                serde_json::json!({
                    "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": lease,
                    "data": {"data": {"username": username, "password": password},
                             "metadata": {"version": 1, "destroyed": false}},
                })
                .to_string(),
            )
        }
        ["registry", ns] => {
            if ns != namespace {
                return denied;
            }
            let (username, password) = credentials(ns, None);
            Reply::json(
                200,
                serde_json::json!({
                    "request_id": "r", "lease_id": "", "renewable": false, "lease_duration": lease,
                    "data": {"username": username, "password": password},
                })
                .to_string(),
            )
        }
        _ => Reply::json(404, r#"{"errors":[]}"#),
    }
}

fn login(knobs: &Knobs, request: &Recorded) -> Reply {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&request.body) else {
        return errors(400, "failed to parse JSON input");
    };
    let role = body["role"].as_str().unwrap_or_default();
    let Some((_, allowed)) = TRUST.vault_roles.iter().find(|(name, _)| *name == role) else {
        return errors(400, &format!("invalid role name \"{role}\""));
    };
    match check_subject(
        body["jwt"].as_str().unwrap_or_default(),
        &[audience::VAULT],
        allowed,
    ) {
        Ok(subject) => {
            let token = format!("hvs.fake{}", ISSUED.fetch_add(1, Ordering::SeqCst) + 1);
            tokens()
                .lock()
                .unwrap()
                .insert(token.clone(), subject.clone());
            Reply::json(
                200,
                serde_json::json!({
                    "auth": {"client_token": token, "accessor": "a", "policies": ["default", role],
                             "metadata": {"role": role, "service_account_name": subject},
                             "lease_duration": knobs.lifetime(), "renewable": true},
                })
                .to_string(),
            )
        }
        Err(why) if why.contains("not trusted") => {
            errors(403, "service account name not authorized")
        }
        Err(_) => errors(403, "permission denied"),
    }
}
