//! Generic RFC 8693 token exchange, the bearer style and pass-through.

use std::sync::atomic::Ordering;

use icp_core::{BackendError, ErrorKind, TokenBackend};
use icp_exchange::TokenExchange;
use icp_test_kit::exchange::{ISSUER_HOST, STS_CLIENT, STS_HOST, World};
use serde_json::json;

use crate::*;

const IMAGE: &str = "registry.te.example/app:1";

fn exchange(world: &World, section: serde_json::Value) -> TokenExchange {
    build::<TokenExchange>(world, section)
        .unwrap()
        .with_limits(quick_limits())
}

fn sts() -> serde_json::Value {
    json!({"url": "https://sts.example.com/token", "audience": "registry.te.example",
           "username": "oauth2accesstoken"})
}

#[test]
fn an_rfc8693_exchange_is_a_form_post() {
    let world = World::new();
    let backend = exchange(&world, sts());
    assert!(!backend.requires_token_cache_type());
    assert_eq!(
        backend.service_account_token().unwrap().audience,
        "registry.te.example"
    );
    let pod = account("team-a", "app", "registry.te.example", &[]);
    let token = fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(token.username, "oauth2accesstoken");
    assert!(token.password.expose().starts_with("sts-"));
    assert_expires_in(&token, 3600);
    let requests = world.requests(STS_HOST);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path()),
        ("POST", "/token")
    );
    let form = |name: &str| requests[0].form(name);
    assert_eq!(
        form("grant_type").as_deref(),
        Some("urn:ietf:params:oauth:grant-type:token-exchange")
    );
    assert_eq!(form("subject_token").as_deref(), Some(pod.token.expose()));
    assert_eq!(
        form("subject_token_type").as_deref(),
        Some("urn:ietf:params:oauth:token-type:jwt")
    );
    assert_eq!(form("audience").as_deref(), Some("registry.te.example"));
    assert_eq!(form("scope"), None);
    assert_eq!(requests[0].header("authorization"), None);
}

#[test]
fn a_client_secret_file_authenticates_the_client() {
    let world = World::new();
    *world.knobs.require_client.lock().unwrap() = true;
    let pod = account("team-a", "app", "sts.example.com", &[]);
    let no_client = exchange(
        &world,
        json!({"url": "https://sts.example.com/token", "usernameField": "token_type"}),
    );
    let error = fetch(&no_client, IMAGE, Some(&pod)).unwrap_err();
    assert_refusal(
        &error,
        &pod,
        "rule field tokenExchange.url = \"https://sts.example.com/token\"",
        "HTTP 401: invalid_client: Client authentication required",
    );
    let missing = exchange(
        &world,
        json!({"url": "https://sts.example.com/token", "username": "u", "scope": "pull",
               "clientId": STS_CLIENT.0, "clientSecretFile": "client-secret"}),
    );
    assert_eq!(missing.check().unwrap_err().kind(), ErrorKind::Config);
    world.file("client-secret", &format!("{}\n", STS_CLIENT.1));
    missing.check().unwrap();
    let token = fetch(&missing, IMAGE, Some(&pod)).unwrap();
    assert_eq!(token.username, "u");
    let request = world.requests(STS_HOST).pop().unwrap();
    assert!(
        request
            .header("authorization")
            .unwrap()
            .starts_with("Basic ")
    );
    assert_eq!(request.form("scope").as_deref(), Some("pull"));
    // The answer's field as the username.
    let token = fetch(
        &exchange(
            &world,
            json!({"url": "https://sts.example.com/token", "usernameField": "token_type",
                                 "clientId": STS_CLIENT.0, "clientSecretFile": "client-secret"}),
        ),
        IMAGE,
        Some(&pod),
    )
    .unwrap();
    assert_eq!(token.username, "Bearer");
    world.file("client-secret", "wrong\n");
    let error = fetch(&missing, IMAGE, Some(&pod)).unwrap_err();
    assert!(!error.to_string().contains("wrong"), "{error}");
    assert!(error.to_string().contains("invalid_client"), "{error}");
}

#[test]
fn the_bearer_style_sends_the_token_in_authorization() {
    let world = World::new();
    let backend = exchange(
        &world,
        json!({"url": "https://issuer.example/sts/exchange?aud=cgr.example", "style": "bearer",
               "method": "POST", "username": "_token"}),
    );
    assert_eq!(
        backend.service_account_token().unwrap().audience,
        "issuer.example"
    );
    let pod = account("team-a", "app", "cgr.example", &[]);
    let token = fetch(&backend, "cgr.example/acme/app", Some(&pod)).unwrap();
    assert_eq!(token.username, "_token");
    assert_expires_in(&token, 3600);
    let requests = world.requests(ISSUER_HOST);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].target, "/sts/exchange?aud=cgr.example");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {}", pod.token.expose()).as_str())
    );
    assert!(requests[0].body.is_empty());
    let get = exchange(
        &world,
        json!({"url": "https://issuer.example/sts/exchange?aud=cgr.example", "style": "bearer",
               "method": "GET", "username": "_token", "tokenAudience": "cgr.example"}),
    );
    fetch(&get, "cgr.example/acme/app", Some(&pod)).unwrap();
    assert_eq!(world.requests(ISSUER_HOST)[1].method, "GET");
    let stranger = account("team-z", "app", "cgr.example", &[]);
    let error = fetch(&get, "cgr.example/acme/app", Some(&stranger)).unwrap_err();
    assert_refusal(
        &error,
        &stranger,
        "(bearer)",
        "HTTP 403: permission_denied: subject team-z:app is not trusted",
    );
}

#[test]
fn each_service_account_gets_its_own_exchange() {
    let world = World::new();
    let backend = exchange(&world, sts());
    let a = account("team-a", "app", "registry.te.example", &[]);
    let a_again = account("team-a", "app", "registry.te.example", &[]);
    let b = account("team-a", "batch", "registry.te.example", &[]);
    assert_isolation(&backend, IMAGE, &a, &a_again, &b);
    assert_eq!(world.requests(STS_HOST).len(), 2);
}

#[test]
fn pass_through_answers_the_pod_token_uncached() {
    let world = World::new();
    let backend = exchange(
        &world,
        json!({"style": "passThrough", "username": "k8s", "tokenAudience": "registry.te.example"}),
    );
    assert!(backend.requires_token_cache_type());
    let pod = account("team-a", "app", "registry.te.example", &[]);
    let token = fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(token.password, pod.token);
    assert_eq!(token.expires_at, None, "no cache may store the pod's token");
    assert_eq!(world.server.request_count(), 0);
    assert_eq!(
        fetch(&backend, IMAGE, None).unwrap_err().kind(),
        ErrorKind::NotServed
    );
    for (section, why) in [
        (
            json!({"style": "passThrough", "username": "k8s"}),
            "needs tokenAudience",
        ),
        (
            json!({"style": "passThrough", "url": "https://sts.example.com/token", "username": "k8s"}),
            "remove url",
        ),
        (
            json!({"style": "passThrough", "tokenAudience": "a", "usernameField": "x"}),
            "set username only",
        ),
    ] {
        let error = refused::<TokenExchange>(&world, section);
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn sections_are_checked_and_plain_http_needs_loopback_and_insecure() {
    let world = World::new();
    for (section, why) in [
        (json!({"username": "u"}), "url is required"),
        (
            json!({"url": "http://sts.example.com/token", "username": "u"}),
            "only sent over TLS",
        ),
        (
            json!({"url": "https://sts.example.com/token"}),
            "set username or usernameField",
        ),
        (
            json!({"url": "https://sts.example.com/token", "username": "u", "usernameField": "x"}),
            "not both",
        ),
        (
            json!({"url": "https://sts.example.com/token", "username": "u", "method": "GET"}),
            "method is only for style bearer",
        ),
        (
            json!({"url": "https://i.example/x", "style": "bearer", "username": "u", "scope": "s"}),
            "scope is only for style exchange",
        ),
        (
            json!({"url": "https://sts.example.com/token", "username": "u", "clientId": "c"}),
            "go together",
        ),
    ] {
        let error = refused::<TokenExchange>(&world, section);
        assert!(
            error.starts_with("invalid tokenExchange configuration"),
            "{error}"
        );
        assert!(error.contains(why), "{error}");
    }
    let http = world.http();
    let url = format!("http://{}/token", http.address());
    let error = refused::<TokenExchange>(&world, json!({"url": url, "username": "u"}));
    assert!(error.contains("only sent over TLS"), "{error}");
    let backend = exchange(
        &world,
        json!({"url": url, "username": "u", "insecure": true, "tokenAudience": "sts.example.com"}),
    );
    let pod = account("team-a", "app", "sts.example.com", &[]);
    fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(http.request_count(), 1);
}

#[test]
fn throttling_is_retried_and_expires_in_is_believed() {
    let world = World::new();
    let backend = exchange(&world, sts());
    let pod = account("team-a", "app", "registry.te.example", &[]);
    *world.knobs.retry_after.lock().unwrap() = Some("1".into());
    world.knobs.throttle.store(2, Ordering::SeqCst);
    world.knobs.lifetime.store(900, Ordering::SeqCst);
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 900);
    assert_eq!(world.requests(STS_HOST).len(), 3);
    world.knobs.lifetime.store(100 * 3600, Ordering::SeqCst);
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 24 * 3600);
}

#[test]
fn unavailability_is_retried_for_both_styles() {
    let world = World::new();
    let pod = account("team-a", "app", "registry.te.example", &[]);
    assert_retries(&world, &exchange(&world, sts()), IMAGE, &pod, STS_HOST, 1);
    let bearer = exchange(
        &world,
        json!({"url": "https://issuer.example/sts/exchange?aud=cgr.example", "style": "bearer",
               "username": "_token"}),
    );
    let pod = account("team-a", "app", "cgr.example", &[]);
    assert_retries(&world, &bearer, "cgr.example/a", &pod, ISSUER_HOST, 1);
}
