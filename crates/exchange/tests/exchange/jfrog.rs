//! JFrog Access OIDC token exchange.

use std::sync::atomic::Ordering;

use icp_core::{BackendError, ErrorKind, TokenBackend};
use icp_exchange::Jfrog;
use icp_test_kit::exchange::{ELSEWHERE_HOST, JFROG_HOST, World, audience};
use serde_json::json;

use crate::*;

const IMAGE: &str = "acme.jfrog.io/docker-local/app:1";

fn jfrog(world: &World, section: serde_json::Value) -> Jfrog {
    build::<Jfrog>(world, section)
        .unwrap()
        .with_limits(quick_limits())
}

#[test]
fn the_exchange_is_the_documented_json_request() {
    let world = World::new();
    let backend = jfrog(
        &world,
        json!({"providerName": "k8s-prod", "audience": "jfrog"}),
    );
    assert_eq!(backend.service_account_token().unwrap().audience, "jfrog");
    let pod = account("team-a", "app", audience::JFROG, &[]);
    let token = fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(token.username, "k8s-team-a-app");
    assert!(token.password.expose().starts_with("jfrog-at-"));
    assert_expires_in(&token, 3600);
    let requests = world.requests(JFROG_HOST);
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path()),
        ("POST", "/access/api/v1/oidc/token")
    );
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "subject_token": pod.token.expose(),
            "provider_name": "k8s-prod",
            "audience": "jfrog",
        })
    );
    world.knobs.lifetime.store(900, Ordering::SeqCst);
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 900);
}

#[test]
fn each_service_account_gets_its_own_exchange() {
    let world = World::new();
    let backend = jfrog(&world, json!({"providerName": "k8s-prod"}));
    let a = account("team-a", "app", audience::JFROG, &[]);
    let a_again = account("team-a", "app", audience::JFROG, &[]);
    let b = account("team-b", "app", audience::JFROG, &[]);
    let (token_a, token_b) = assert_isolation(&backend, IMAGE, &a, &a_again, &b);
    assert_eq!(
        (token_a.username.as_str(), token_b.username.as_str()),
        ("k8s-team-a-app", "k8s-team-b-app")
    );
    assert_eq!(world.requests(JFROG_HOST).len(), 2);
}

#[test]
fn refusals_and_unknown_integrations_name_the_rule_field() {
    let world = World::new();
    let backend = jfrog(&world, json!({"providerName": "k8s-prod"}));
    let stranger = account("team-c", "app", audience::JFROG, &[]);
    let error = fetch(&backend, IMAGE, Some(&stranger)).unwrap_err();
    assert_refusal(
        &error,
        &stranger,
        "rule field jfrog.providerName = \"k8s-prod\"",
        "HTTP 401: UNAUTHORIZED: Failed to verify the OIDC token: subject team-c:app is not trusted",
    );
    let backend = jfrog(&world, json!({"providerName": "k8s-dev"}));
    let pod = account("team-a", "app", audience::JFROG, &[]);
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadResponse);
    assert!(
        error.to_string().ends_with(
            "acme.jfrog.io answered HTTP 404: NOT_FOUND: OIDC integration k8s-dev was not found"
        ),
        "{error}"
    );
}

#[test]
fn the_platform_url_overrides_the_image_registry() {
    let world = World::new();
    let backend = jfrog(
        &world,
        json!({"providerName": "k8s-prod", "url": format!("https://{JFROG_HOST}")}),
    );
    let pod = account("team-a", "app", audience::JFROG, &[]);
    fetch(
        &backend,
        &format!("{ELSEWHERE_HOST}/docker/app"),
        Some(&pod),
    )
    .unwrap();
    assert_eq!(world.requests(JFROG_HOST).len(), 1);
    assert_eq!(world.requests(ELSEWHERE_HOST).len(), 0);
    for (section, why) in [
        (json!({"providerName": ""}), "providerName"),
        (
            json!({"providerName": "p", "url": "http://acme.jfrog.io"}),
            "only sent over TLS",
        ),
        (json!({"providerName": "p", "audience": "a\nb"}), "audience"),
    ] {
        let error = refused::<Jfrog>(&world, section);
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn a_slow_platform_ends_the_fetch_at_its_deadline() {
    let world = World::new();
    let limits = icp_exchange::Limits {
        total: std::time::Duration::from_millis(700),
        request: std::time::Duration::from_millis(300),
        ..quick_limits()
    };
    let backend = jfrog(&world, json!({"providerName": "k8s-prod"})).with_limits(limits);
    *world.knobs.reply.lock().unwrap() =
        Some(icp_test_kit::Reply::json(200, "{}").delay(std::time::Duration::from_secs(5)));
    let pod = account("team-a", "app", audience::JFROG, &[]);
    let started = std::time::Instant::now();
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_no_token(&error.to_string(), &[&pod]);
}

#[test]
fn throttling_and_unavailability_are_retried() {
    let world = World::new();
    let backend = jfrog(&world, json!({"providerName": "k8s-prod"}));
    let pod = account("team-a", "app", audience::JFROG, &[]);
    assert_retries(&world, &backend, IMAGE, &pod, JFROG_HOST, 1);
}
