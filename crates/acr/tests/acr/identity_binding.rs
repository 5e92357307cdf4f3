//! AKS identity bindings (`acr.identityBindings`) against the loopback identity-binding
//! endpoint of `icp_test_kit::azure::identity_binding`: the pod's token (for
//! `api://AKSIdentityBinding`) sent as the client assertion to `https://<sniName>/`, reached
//! at the API server's host name as AKS passes it, verified with the cluster's CA only; the
//! official annotation's client id, else the default; the node's identity without a token;
//! refusals, throttling and failures named by service account; one key per service account.

use std::sync::atomic::Ordering;
use std::time::Duration;

use icp_acr::identity_binding::{CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION};
use icp_acr::{Acr, Config, Error, IDENTITY_BINDING_AUDIENCE, Limits, TOKEN_EXCHANGE_AUDIENCE};
use icp_core::{Environment, ImageRef, Request, Secret, ServiceAccount, Token, TokenBackend};
use icp_test_kit::azure::identity_binding::{IB_API_SERVER, IB_CLIENT, IB_CLIENT_B, IB_SNI_NAME};
use icp_test_kit::azure::*;

const IMAGE: &str = "myacr.azurecr.io/app:1";

/// A rule with identity bindings at the world's endpoint (the API server's host name, as
/// AKS passes it), trusting `ca_file`, with `extra` fields (JSON, with a leading comma).
fn config(ca_file: &std::path::Path, extra: &str) -> Config {
    serde_json::from_str(&format!(
        r#"{{"identityBindings": {{"sniName": "{IB_SNI_NAME}", "apiServerIp": "{IB_API_SERVER}",
             "caFile": "{}"{extra}}}}}"#,
        ca_file.display()
    ))
    .unwrap()
}

fn backend(world: &World, config: Config) -> Acr {
    Acr::new(config, world.dir(), &Environment::from_pairs(world.env()))
        .unwrap()
        .with_limits(Limits {
            max_wait: Duration::from_secs(2),
            ..Limits::default()
        })
}

fn account(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> ServiceAccount {
    account_for(IDENTITY_BINDING_AUDIENCE, namespace, name, annotations)
}

fn account_for(
    audience: &str,
    namespace: &str,
    name: &str,
    annotations: &[(&str, &str)],
) -> ServiceAccount {
    let token = service_account_token(namespace, name, audience, now() + 3600);
    let annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ServiceAccount::from_token(Secret::new(token), annotations).unwrap()
}

fn fetch_as(backend: &Acr, account: Option<&ServiceAccount>) -> Result<Token, Error> {
    let image = ImageRef::parse(IMAGE).unwrap();
    backend.fetch(&Request {
        service_account: account,
        ..Request::new(&image)
    })
}

/// The `sub` of the refresh token: the access token the registry exchanged.
fn exchanged(token: &Token) -> String {
    let claims = token.password.expose().split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

fn assert_no_token(text: &str, account: &ServiceAccount) {
    for part in account.token.expose().split('.') {
        assert!(!text.contains(part), "{text}");
    }
    assert!(!text.contains("aad:"), "{text}");
}

#[test]
fn the_pod_token_goes_to_the_identity_binding_endpoint_under_its_sni_name() {
    let world = World::new();
    let backend = backend(&world, config(&cluster_ca_file(), ""));
    let app = account("team-a", "app", &[(CLIENT_ID_ANNOTATION, IB_CLIENT)]);
    let token = fetch_as(&backend, Some(&app)).unwrap();
    assert_eq!(
        exchanged(&token),
        format!("aad:{IB_CLIENT}@identity-binding;sub=system:serviceaccount:team-a:app")
    );
    let sent = world.identity_binding.requests();
    assert_eq!(sent.len(), 1);
    let form = |name: &str| sent[0].form(name);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].path(), "/");
    assert_eq!(sent[0].header("host"), Some(IB_SNI_NAME));
    assert_eq!(form("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(
        form("client_assertion_type").as_deref(),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    assert_eq!(
        form("client_assertion").as_deref(),
        Some(app.token.expose())
    );
    assert_eq!(form("client_id").as_deref(), Some(IB_CLIENT));
    assert_eq!(form("scope").as_deref(), Some(SCOPE));
    assert_eq!(world.aad.request_count() + world.imds.request_count(), 0);
    // No tenant annotation and no default: the registry's exchange names none.
    let registry = world.registry_requests("myacr.azurecr.io");
    assert_eq!(registry[1].form("tenant"), None);
}

#[test]
fn the_defaults_serve_a_service_account_without_the_annotations() {
    let world = World::new();
    let extra = format!(r#", "defaultClientId": "{IB_CLIENT_B}", "defaultTenantId": "{TENANT}""#);
    let backend = backend(&world, config(&cluster_ca_file(), &extra));
    let batch = account("team-a", "batch", &[]);
    let token = fetch_as(&backend, Some(&batch)).unwrap();
    assert!(exchanged(&token).starts_with(&format!("aad:{IB_CLIENT_B}@")));
    let app = account(
        "team-a",
        "app",
        &[
            (CLIENT_ID_ANNOTATION, IB_CLIENT),
            (TENANT_ID_ANNOTATION, TENANT_B),
        ],
    );
    fetch_as(&backend, Some(&app)).unwrap();
    let clients: Vec<_> = world
        .identity_binding
        .requests()
        .iter()
        .map(|r| r.form("client_id").unwrap())
        .collect();
    assert_eq!(clients, [IB_CLIENT_B, IB_CLIENT], "the annotation wins");
    let tenants: Vec<_> = world
        .registry_requests("myacr.azurecr.io")
        .iter()
        .filter_map(|r| r.form("tenant"))
        .collect();
    assert_eq!(tenants, [TENANT, TENANT_B]);
}

#[test]
fn no_token_is_the_node_identity_and_no_client_id_an_error_before_any_request() {
    let world = World::new();
    let backend = backend(&world, config(&cluster_ca_file(), ""));
    let token = fetch_as(&backend, None).unwrap();
    assert_eq!(exchanged(&token), "imds:system");
    assert_eq!(world.identity_binding.request_count(), 0);
    let bare = account("team-a", "app", &[]);
    let error = fetch_as(&backend, Some(&bare)).unwrap_err().to_string();
    assert_eq!(
        error,
        "no Azure credentials: service account team-a/app has no annotation \
         kubernetes.azure.com/acr-client-id and identityBindings.defaultClientId is not set"
    );
    assert_eq!(world.identity_binding.request_count(), 0);
}

#[test]
fn the_official_annotations_name_the_identity_not_the_workload_identity_ones() {
    let world = World::new();
    let backend = backend(&world, config(&cluster_ca_file(), ""));
    assert_eq!(CLIENT_ID_ANNOTATION, "kubernetes.azure.com/acr-client-id");
    assert_eq!(TENANT_ID_ANNOTATION, "kubernetes.azure.com/acr-tenant-id");
    // The workload identity webhook's annotations are not the official provider's: an
    // account with only those has no client id.
    let webhook = account(
        "team-a",
        "app",
        &[
            ("azure.workload.identity/client-id", IB_CLIENT),
            ("azure.workload.identity/tenant-id", TENANT),
        ],
    );
    let error = fetch_as(&backend, Some(&webhook)).unwrap_err().to_string();
    assert!(
        error.contains("has no annotation kubernetes.azure.com/acr-client-id"),
        "{error}"
    );
    assert_eq!(world.identity_binding.request_count(), 0);
    let official = account(
        "team-a",
        "app",
        &[
            ("kubernetes.azure.com/acr-client-id", IB_CLIENT),
            ("kubernetes.azure.com/acr-tenant-id", TENANT),
        ],
    );
    let token = fetch_as(&backend, Some(&official)).unwrap();
    assert!(exchanged(&token).starts_with(&format!("aad:{IB_CLIENT}@")));
    let tenants: Vec<_> = world
        .registry_requests("myacr.azurecr.io")
        .iter()
        .filter_map(|r| r.form("tenant"))
        .collect();
    assert_eq!(tenants, [TENANT]);
}

#[test]
fn the_endpoint_is_reached_through_the_api_server_name_and_takes_its_own_audience() {
    let world = World::new();
    let backend = backend(&world, config(&cluster_ca_file(), ""));
    // Nothing resolves the SNI name: the request reached the endpoint through the API
    // server's name, under the SNI name.
    let app = account("team-a", "app", &[(CLIENT_ID_ANNOTATION, IB_CLIENT)]);
    fetch_as(&backend, Some(&app)).unwrap();
    let sent = world.identity_binding.requests();
    assert_eq!(sent[0].header("host"), Some(IB_SNI_NAME));
    assert!(
        world
            .env()
            .iter()
            .all(|(_, value)| !value.contains(IB_SNI_NAME)),
        "the world's environment must not resolve the SNI name"
    );
    // The endpoint takes tokens for api://AKSIdentityBinding, as AKS asks the kubelet
    // for them, and no other.
    let usage = backend.service_account_token().unwrap();
    assert_eq!(usage.audience, "api://AKSIdentityBinding");
    let federated = account_for(
        TOKEN_EXCHANGE_AUDIENCE,
        "team-a",
        "app",
        &[(CLIENT_ID_ANNOTATION, IB_CLIENT)],
    );
    let error = fetch_as(&backend, Some(&federated))
        .unwrap_err()
        .to_string();
    assert!(error.contains("AADSTS700211"), "{error}");
    // A rule's own audience still wins.
    let mut named = config(&cluster_ca_file(), "");
    named.audience = Some("api://Other".to_owned());
    let usage = backend_unchecked(&world, named)
        .service_account_token()
        .unwrap();
    assert_eq!(usage.audience, "api://Other");
}

#[test]
fn only_the_cluster_ca_is_trusted() {
    let world = World::new();
    // The test CA, which the process trusts (SSL_CERT_FILE), did not issue the endpoint's
    // certificate: with it as caFile the handshake fails, and nothing is sent.
    let backend = backend(&world, config(&ca_file(), ""));
    let app = account("team-a", "app", &[(CLIENT_ID_ANNOTATION, IB_CLIENT)]);
    let error = fetch_as(&backend, Some(&app)).unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "service account team-a/app (identity binding {IB_SNI_NAME}, \
             kubernetes.azure.com/acr-client-id = {IB_CLIENT}): cannot reach the identity-binding endpoint"
        )),
        "{text}"
    );
    assert_no_token(&text, &app);
    assert_eq!(world.identity_binding.request_count(), 0);
    // A missing CA file: check-config says so, and a fetch too.
    let missing = world.dir().join("no-ca.crt");
    let backend = backend_unchecked(&world, config(&missing, ""));
    let error = backend.check().unwrap_err().to_string();
    assert!(error.contains("identityBindings.caFile"), "{error}");
    assert!(fetch_as(&backend, Some(&app)).is_err());
}

fn backend_unchecked(world: &World, config: Config) -> Acr {
    Acr::new(config, world.dir(), &Environment::from_pairs(world.env())).unwrap()
}

#[test]
fn refusals_name_the_service_account_and_the_binding_never_the_token() {
    let world = World::new();
    let backend = backend(&world, config(&cluster_ca_file(), ""));
    // Bound to IB_CLIENT, not to IB_CLIENT_B.
    let app = account("team-a", "app", &[(CLIENT_ID_ANNOTATION, IB_CLIENT_B)]);
    let error = fetch_as(&backend, Some(&app)).unwrap_err();
    assert!(
        matches!(&error, Error::ServiceAccount { error, .. } if matches!(**error, Error::AccessDenied { .. }))
    );
    assert_eq!(
        error.to_string(),
        format!(
            "service account team-a/app (identity binding {IB_SNI_NAME}, \
             kubernetes.azure.com/acr-client-id = {IB_CLIENT_B}): access denied by the \
             identity-binding endpoint: HTTP 400: invalid_client: AADSTS700213: The identity \
             '{IB_CLIENT_B}' is not bound to 'system:serviceaccount:team-a:app'."
        )
    );
    assert_no_token(&error.to_string(), &app);
    let stranger = account(
        "team-a",
        "app",
        &[(CLIENT_ID_ANNOTATION, "99999999-0000-0000-0000-000000000000")],
    );
    let error = fetch_as(&backend, Some(&stranger)).unwrap_err().to_string();
    assert!(error.contains("unauthorized_client"), "{error}");
    assert_eq!(
        world.identity_binding.request_count(),
        2,
        "a refusal is not retried"
    );
    assert_eq!(world.registry_requests("myacr.azurecr.io").len(), 2);
}

#[test]
fn throttling_and_failures_are_retried_within_the_budget() {
    let world = World::new();
    let backend = backend(&world, config(&cluster_ca_file(), ""));
    let app = account("team-a", "app", &[(CLIENT_ID_ANNOTATION, IB_CLIENT)]);
    world.knobs.ib_throttle.store(1, Ordering::SeqCst);
    world.knobs.ib_failures.store(1, Ordering::SeqCst);
    fetch_as(&backend, Some(&app)).unwrap();
    assert_eq!(world.identity_binding.request_count(), 3);

    world.knobs.ib_throttle.store(100, Ordering::SeqCst);
    let error = fetch_as(&backend, Some(&app)).unwrap_err().to_string();
    assert!(
        error.ends_with("throttled by the identity-binding endpoint; try again later"),
        "{error}"
    );
    assert!(world.identity_binding.request_count() <= 3 + Limits::default().attempts as usize);
}

#[test]
fn pods_of_one_service_account_share_a_key_and_no_one_else() {
    let world = World::new();
    let extra = format!(r#", "defaultClientId": "{IB_CLIENT}""#);
    let backend = backend(&world, config(&cluster_ca_file(), &extra));
    let image = ImageRef::parse(IMAGE).unwrap();
    let key = |account: Option<&ServiceAccount>| {
        backend
            .token_key(&Request {
                service_account: account,
                ..Request::new(&image)
            })
            .unwrap()
    };
    let app = account("team-a", "app", &[]);
    let mut other_pod = app.clone();
    other_pod.token = Secret::new("another.pod.token");
    let own = key(Some(&app));
    assert_eq!(own, key(Some(&other_pod)));
    assert_eq!(
        own.identity,
        format!(
            "sa=team-a/app/team-a-app-uid;acr-identity-binding;client={IB_CLIENT};tenant=;sni={IB_SNI_NAME}"
        )
    );
    for other in [
        account("team-b", "app", &[]),
        account("team-a", "batch", &[]),
        account("team-a", "app", &[(CLIENT_ID_ANNOTATION, IB_CLIENT_B)]),
        account("team-a", "app", &[(TENANT_ID_ANNOTATION, TENANT)]),
    ] {
        assert_ne!(key(Some(&other)), own);
    }
    assert_ne!(key(None), own);
    let usage = backend.service_account_token().unwrap();
    assert_eq!(usage.audience, IDENTITY_BINDING_AUDIENCE);
    assert_eq!(
        usage.annotation_keys,
        [
            "kubernetes.azure.com/acr-client-id",
            "kubernetes.azure.com/acr-tenant-id"
        ]
    );
}
