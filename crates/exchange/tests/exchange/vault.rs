//! Vault's Kubernetes auth and KV reads.

use std::sync::atomic::Ordering;
use std::time::Duration;

use icp_core::{BackendError, ErrorKind};
use icp_exchange::Vault;
use icp_test_kit::exchange::vault::credentials;
use icp_test_kit::exchange::{VAULT_HOST, VAULT_PORT, World, audience};
use serde_json::json;

use crate::*;

const IMAGE: &str = "registry.internal.example/team/app:1";
const ROLE_ANNOTATION: &str = "vault.hashicorp.com/role";

fn vault(world: &World, section: serde_json::Value) -> Vault {
    build::<Vault>(world, section)
        .unwrap()
        .with_limits(quick_limits())
}

fn v2() -> serde_json::Value {
    json!({
        "address": format!("https://{VAULT_HOST}:{VAULT_PORT}"),
        "authMount": "kubernetes",
        "role": "image-pull",
        "roleAnnotation": ROLE_ANNOTATION,
        "secretPath": "secret/data/registry/{namespace}/{serviceAccount}",
    })
}

fn host() -> String {
    format!("{VAULT_HOST}:{VAULT_PORT}")
}

#[test]
fn login_then_a_kv2_read_with_the_vault_token() {
    let world = World::new();
    let backend = vault(&world, v2());
    let pod = account("team-a", "app", audience::VAULT, &[]);
    let token = fetch(&backend, IMAGE, Some(&pod)).unwrap();
    let (username, password) = credentials("team-a", Some("app"));
    assert_eq!(token.username, username);
    assert_eq!(token.password.expose(), password);
    // The login lease (1h); the KV v2 secret has none.
    assert_expires_in(&token, 3600);
    let requests = world.requests(&host());
    assert_eq!(requests.len(), 2);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path()),
        ("POST", "/v1/auth/kubernetes/login")
    );
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        body,
        json!({"role": "image-pull", "jwt": pod.token.expose()})
    );
    assert_eq!(
        (requests[1].method.as_str(), requests[1].path()),
        ("GET", "/v1/secret/data/registry/team-a/app")
    );
    assert!(
        requests[1]
            .header("x-vault-token")
            .unwrap()
            .starts_with("hvs.")
    );
    assert_eq!(requests[1].header("x-vault-namespace"), None);
}

#[test]
fn kv1_and_the_shorter_lease_and_the_default() {
    let world = World::new();
    let backend = vault(
        &world,
        json!({"address": format!("https://{}", host()), "role": "image-pull", "kvVersion": 1,
               "secretPath": "registry/{namespace}", "namespace": "ops"}),
    );
    let pod = account("team-b", "app", audience::VAULT, &[]);
    world.knobs.secret_lease.store(600, Ordering::SeqCst);
    let token = fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(
        (token.username, token.password.expose().to_owned()),
        credentials("team-b", None)
    );
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 600);
    assert_eq!(world.requests(&host())[1].path(), "/v1/registry/team-b");
    assert_eq!(
        world.requests(&host())[0].header("x-vault-namespace"),
        Some("ops")
    );
    // Neither lease says: the default lifetime.
    world.knobs.secret_lease.store(0, Ordering::SeqCst);
    world.knobs.lifetime.store(0, Ordering::SeqCst);
    let backend = backend.with_default_lifetime(Duration::from_secs(120));
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 120);
}

#[test]
fn each_service_account_gets_its_own_login_and_secret() {
    let world = World::new();
    let backend = vault(&world, v2());
    let a = account("team-a", "app", audience::VAULT, &[]);
    let a_again = account("team-a", "app", audience::VAULT, &[]);
    let b = account("team-b", "app", audience::VAULT, &[]);
    let (token_a, token_b) = assert_isolation(&backend, IMAGE, &a, &a_again, &b);
    assert_eq!(token_a.username, credentials("team-a", Some("app")).0);
    assert_eq!(token_b.username, credentials("team-b", Some("app")).0);
    assert_eq!(world.requests(&host()).len(), 4);
}

#[test]
fn refusals_name_the_role_and_vaults_error() {
    let world = World::new();
    let backend = vault(&world, v2());
    let pod = account(
        "team-b",
        "app",
        audience::VAULT,
        &[(ROLE_ANNOTATION, "builder")],
    );
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_refusal(
        &error,
        &pod,
        "annotation vault.hashicorp.com/role = \"builder\"",
        "HTTP 403: service account name not authorized",
    );
    let pod = account(
        "team-a",
        "app",
        audience::VAULT,
        &[(ROLE_ANNOTATION, "nope")],
    );
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("answered HTTP 400: invalid role name \"nope\""),
        "{error}"
    );
    // A policy that denies the secret: Vault's multi-line error on one line.
    let backend = vault(
        &world,
        json!({"address": format!("https://{}", host()), "role": "image-pull",
               "secretPath": "secret/data/registry/team-b/{serviceAccount}"}),
    );
    let pod = account("team-a", "app", audience::VAULT, &[]);
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_refusal(
        &error,
        &pod,
        "rule field vault.role = \"image-pull\"",
        "(secret \"secret/data/registry/team-b/app\"): HTTP 403: 1 error occurred: * permission denied",
    );
}

#[test]
fn sections_are_checked() {
    let world = World::new();
    for (change, why) in [
        (
            json!({"address": "http://vault.internal.example:8200"}),
            "only sent over TLS",
        ),
        (json!({"secretPath": "secret/../sys/{namespace}"}), "'..'"),
        (json!({"secretPath": "secret/{pod}"}), "placeholder"),
        (
            json!({"authMount": "k8s/{namespace}"}),
            "cannot have placeholders",
        ),
        (json!({"kvVersion": 3}), "neither 1 nor 2"),
        (json!({"role": "a b"}), "printable"),
        (
            json!({"roleAnnotation": "not a key"}),
            "not an annotation key",
        ),
    ] {
        let mut section = v2();
        for (k, v) in change.as_object().unwrap() {
            section[k] = v.clone();
        }
        let error = refused::<Vault>(&world, section);
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn an_unavailable_vault_is_retried() {
    let world = World::new();
    let backend = vault(&world, v2());
    let pod = account("team-a", "app", audience::VAULT, &[]);
    world.knobs.unavailable.store(2, Ordering::SeqCst);
    fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(world.requests(&host()).len(), 4);
    world.knobs.unavailable.store(10, Ordering::SeqCst);
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadResponse);
    assert!(
        error
            .to_string()
            .ends_with("answered HTTP 503: Vault is sealed"),
        "{error}"
    );
}

#[test]
fn throttling_and_plain_http_on_the_loopback() {
    let world = World::new();
    let backend = vault(&world, v2());
    let pod = account("team-a", "app", audience::VAULT, &[]);
    assert_retries(&world, &backend, IMAGE, &pod, &host(), 2);
    let http = world.http();
    let mut section = v2();
    section["address"] = format!("http://{}", http.address()).into();
    let error = refused::<Vault>(&world, section.clone());
    assert!(error.contains("only sent over TLS"), "{error}");
    section["insecure"] = true.into();
    let backend = vault(&world, section);
    fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(http.request_count(), 2);
}
