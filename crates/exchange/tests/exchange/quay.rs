//! Quay robot federation.

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use icp_core::{BackendError, ErrorKind, TokenBackend};
use icp_exchange::{Quay, ROBOT_ANNOTATION};
use icp_test_kit::Reply;
use icp_test_kit::exchange::{QUAY_HOST, World, audience};
use serde_json::json;

use crate::*;

const IMAGE: &str = "quay.example.com/acme/app:1";

fn quay(world: &World, section: serde_json::Value) -> Quay {
    build::<Quay>(world, section)
        .unwrap()
        .with_limits(quick_limits())
}

#[test]
fn the_pod_token_is_the_robot_password_of_basic_authentication() {
    let world = World::new();
    let backend = quay(&world, json!({"robot": "acme+puller"}));
    let pod = account("team-a", "app", audience::QUAY, &[]);
    let token = fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(token.username, "acme+puller");
    assert_expires_in(&token, 3600);
    let requests = world.requests(QUAY_HOST);
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path()),
        ("GET", "/oauth2/federation/robot/token")
    );
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("acme+puller:{}", pod.token.expose()))
    );
    assert_eq!(requests[0].header("authorization"), Some(basic.as_str()));
    let wanted = backend.service_account_token().unwrap();
    assert_eq!(wanted.audience, "quay");
    assert!(wanted.annotation_keys.is_empty());
}

#[test]
fn the_annotation_wins_over_the_rule_robot() {
    let world = World::new();
    let backend = quay(
        &world,
        json!({"robotAnnotation": ROBOT_ANNOTATION, "robot": "acme+puller"}),
    );
    assert_eq!(
        backend.service_account_token().unwrap().annotation_keys,
        [ROBOT_ANNOTATION]
    );
    let annotated = account(
        "team-a",
        "app",
        audience::QUAY,
        &[(ROBOT_ANNOTATION, "acme+builder")],
    );
    let plain = account("team-a", "app", audience::QUAY, &[]);
    assert_eq!(
        fetch(&backend, IMAGE, Some(&annotated)).unwrap().username,
        "acme+builder"
    );
    assert_eq!(
        fetch(&backend, IMAGE, Some(&plain)).unwrap().username,
        "acme+puller"
    );
    let (annotated_key, plain_key) = (
        key(&backend, IMAGE, Some(&annotated)).unwrap(),
        key(&backend, IMAGE, Some(&plain)).unwrap(),
    );
    assert_ne!(annotated_key, plain_key);
    assert!(
        annotated_key
            .identity
            .contains("quay.io/federated-robot-account=acme+builder"),
        "{annotated_key:?}"
    );
    assert_eq!(annotated_key.scope, "https://quay.example.com");
    // With only the annotation, a service account without it has no robot.
    let only = quay(&world, json!({"robotAnnotation": ROBOT_ANNOTATION}));
    let error = fetch(&only, IMAGE, Some(&plain)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoCredentials, "{error}");
    assert!(
        error
            .to_string()
            .contains("no annotation quay.io/federated-robot-account"),
        "{error}"
    );
    let bad = account(
        "team-a",
        "app",
        audience::QUAY,
        &[(ROBOT_ANNOTATION, "../x")],
    );
    let error = fetch(&only, IMAGE, Some(&bad)).unwrap_err();
    assert!(
        error.to_string().contains("not a robot account name"),
        "{error}"
    );
}

#[test]
fn each_service_account_gets_its_own_exchange() {
    let world = World::new();
    let backend = quay(&world, json!({"robot": "acme+puller"}));
    let a = account("team-a", "app", audience::QUAY, &[]);
    let a_again = account("team-a", "app", audience::QUAY, &[]);
    let b = account("team-b", "app", audience::QUAY, &[]);
    assert_isolation(&backend, IMAGE, &a, &a_again, &b);
    assert_eq!(world.requests(QUAY_HOST).len(), 2);
}

#[test]
fn a_refusal_names_the_account_the_annotation_and_quays_answer() {
    let world = World::new();
    let backend = quay(&world, json!({"robotAnnotation": ROBOT_ANNOTATION}));
    let pod = account(
        "team-b",
        "app",
        audience::QUAY,
        &[(ROBOT_ANNOTATION, "acme+builder")],
    );
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_refusal(
        &error,
        &pod,
        "annotation quay.io/federated-robot-account = \"acme+builder\"",
        "access denied by quay.example.com: HTTP 401: Invalid federated token for robot acme+builder",
    );
    let wrong_audience = account(
        "team-a",
        "app",
        "sts.amazonaws.com",
        &[(ROBOT_ANNOTATION, "acme+puller")],
    );
    let error = fetch(&backend, IMAGE, Some(&wrong_audience)).unwrap_err();
    assert_refusal(&error, &wrong_audience, "acme+puller", "audience");
}

#[test]
fn throttling_and_unavailability_are_retried_within_the_limits() {
    let world = World::new();
    let backend = quay(&world, json!({"robot": "acme+puller"}));
    let pod = account("team-a", "app", audience::QUAY, &[]);
    *world.knobs.retry_after.lock().unwrap() = Some("0".into());
    world.knobs.throttle.store(1, Ordering::SeqCst);
    world.knobs.unavailable.store(1, Ordering::SeqCst);
    fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(world.requests(QUAY_HOST).len(), 3);
    world.knobs.throttle.store(10, Ordering::SeqCst);
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Throttled, "{error}");
    assert!(
        error
            .to_string()
            .starts_with("service account team-a/app (rule field quay.robot"),
        "{error}"
    );
    assert_eq!(world.requests(QUAY_HOST).len(), 6);
    // A Retry-After longer than the longest wait ends the fetch at once.
    world.knobs.throttle.store(10, Ordering::SeqCst);
    *world.knobs.retry_after.lock().unwrap() = Some("120".into());
    assert_eq!(
        fetch(&backend, IMAGE, Some(&pod)).unwrap_err().kind(),
        ErrorKind::Throttled
    );
    assert_eq!(world.requests(QUAY_HOST).len(), 7);
}

#[test]
fn a_token_that_is_no_jwt_lives_the_default_lifetime() {
    let world = World::new();
    let pod = account("team-a", "app", audience::QUAY, &[]);
    *world.knobs.reply.lock().unwrap() =
        Some(Reply::json(200, r#"{"token":"opaque-robot-token"}"#));
    let backend = quay(&world, json!({"robot": "acme+puller"}));
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 300);
    let backend = backend.with_default_lifetime(Duration::from_secs(60));
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 60);
    *world.knobs.reply.lock().unwrap() = Some(Reply::json(200, r#"{"nope":1}"#));
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadResponse);
    assert!(
        error.to_string().contains("no token in the answer"),
        "{error}"
    );
    world.knobs.lifetime.store(600, Ordering::SeqCst);
    *world.knobs.reply.lock().unwrap() = None;
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 600);
}

#[test]
fn plain_http_is_refused_unless_loopback_and_insecure() {
    let world = World::new();
    let http = world.http();
    for (section, why) in [
        (
            json!({"robot": "acme+puller", "url": "http://quay.example.com"}),
            "only sent over TLS",
        ),
        (
            json!({"robot": "acme+puller", "url": "http://quay.example.com", "insecure": true}),
            "loopback",
        ),
        (
            json!({"robot": "acme+puller", "url": format!("http://{}", http.address())}),
            "only sent over TLS",
        ),
        (json!({}), "set robot, robotAnnotation or both"),
        (json!({"robot": "acme"}), "not a robot account name"),
        (json!({"robotAnnotation": "a/b/c"}), "not an annotation key"),
        (
            json!({"robot": "acme+x", "tokenAudience": "a b"}),
            "tokenAudience",
        ),
    ] {
        let error = refused::<Quay>(&world, section);
        assert!(
            error.contains(why) && error.starts_with("invalid quay configuration"),
            "{error}"
        );
    }
    let backend = quay(
        &world,
        json!({"robot": "acme+puller", "url": format!("http://{}", http.address()), "insecure": true}),
    );
    let pod = account("team-a", "app", audience::QUAY, &[]);
    assert_eq!(
        fetch(&backend, IMAGE, Some(&pod)).unwrap().username,
        "acme+puller"
    );
    assert_eq!(http.request_count(), 1);
    assert_eq!(world.server.request_count(), 0);
}

#[test]
fn a_service_that_echoes_the_pod_token_has_it_cut_from_the_message() {
    let world = World::new();
    let backend = quay(&world, json!({"robot": "acme+puller"}));
    let pod = account("team-a", "app", audience::QUAY, &[]);
    let payload = pod.token.expose().split('.').nth(1).unwrap();
    for (status, body) in [
        (
            401,
            json!({"error": format!("bad token {}", pod.token.expose())}),
        ),
        (400, json!({"error": format!("cannot decode {payload}")})),
    ] {
        *world.knobs.reply.lock().unwrap() = Some(Reply::json(status, body.to_string()));
        let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
        assert!(error.to_string().contains("<redacted>"), "{error}");
        assert_no_token(&error.to_string(), &[&pod]);
        assert_no_token(&format!("{error:?}"), &[&pod]);
    }
}
