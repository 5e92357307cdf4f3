//! Cloudsmith OIDC.

use icp_core::{BackendError, ErrorKind, TokenBackend};
use icp_exchange::Cloudsmith;
use icp_test_kit::exchange::{CLOUDSMITH_HOST, World, audience};
use serde_json::json;

use crate::*;

const IMAGE: &str = "docker.cloudsmith.io/acme/repo/app:1";
const SERVICE_ANNOTATION: &str = "cloudsmith.io/service-slug";

fn cloudsmith(world: &World, section: serde_json::Value) -> Cloudsmith {
    build::<Cloudsmith>(world, section)
        .unwrap()
        .with_limits(quick_limits())
}

#[test]
fn the_exchange_posts_the_token_and_the_service_slug() {
    let world = World::new();
    let backend = cloudsmith(
        &world,
        json!({"org": "acme", "serviceSlug": "puller", "serviceAnnotation": SERVICE_ANNOTATION}),
    );
    let wanted = backend.service_account_token().unwrap();
    assert_eq!(
        (wanted.audience.as_str(), wanted.annotation_keys),
        ("cloudsmith", vec![SERVICE_ANNOTATION.to_owned()])
    );
    let pod = account("team-a", "app", audience::CLOUDSMITH, &[]);
    let token = fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(token.username, "token");
    assert!(token.password.expose().starts_with("cs-"));
    // Cloudsmith states no lifetime: the default.
    assert_expires_in(&token, 300);
    let requests = world.requests(CLOUDSMITH_HOST);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path()),
        ("POST", "/openid/acme/")
    );
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        body,
        json!({"oidc_token": pod.token.expose(), "service_slug": "puller"})
    );
    let builder = account(
        "team-a",
        "app",
        audience::CLOUDSMITH,
        &[(SERVICE_ANNOTATION, "builder")],
    );
    fetch(&backend, IMAGE, Some(&builder)).unwrap();
    let body: serde_json::Value =
        serde_json::from_slice(&world.requests(CLOUDSMITH_HOST)[1].body).unwrap();
    assert_eq!(body["service_slug"], "builder");
    assert_ne!(
        key(&backend, IMAGE, Some(&builder)).unwrap(),
        key(&backend, IMAGE, Some(&pod)).unwrap()
    );
}

#[test]
fn each_service_account_gets_its_own_exchange() {
    let world = World::new();
    let backend = cloudsmith(&world, json!({"org": "acme", "serviceSlug": "puller"}));
    let a = account("team-a", "app", audience::CLOUDSMITH, &[]);
    let a_again = account("team-a", "app", audience::CLOUDSMITH, &[]);
    let b = account("team-b", "app", audience::CLOUDSMITH, &[]);
    assert_isolation(&backend, IMAGE, &a, &a_again, &b);
    assert_eq!(world.requests(CLOUDSMITH_HOST).len(), 2);
}

#[test]
fn a_refusal_names_the_annotation_and_cloudsmiths_detail() {
    let world = World::new();
    let backend = cloudsmith(
        &world,
        json!({"org": "acme", "serviceAnnotation": SERVICE_ANNOTATION}),
    );
    let pod = account(
        "team-b",
        "app",
        audience::CLOUDSMITH,
        &[(SERVICE_ANNOTATION, "builder")],
    );
    let error = fetch(&backend, IMAGE, Some(&pod)).unwrap_err();
    assert_refusal(
        &error,
        &pod,
        "annotation cloudsmith.io/service-slug = \"builder\"",
        "access denied by api.cloudsmith.io: HTTP 401: OIDC token cannot be authenticated.",
    );
    let unannotated = account("team-a", "app", audience::CLOUDSMITH, &[]);
    let error = fetch(&backend, IMAGE, Some(&unannotated)).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoCredentials);
    for (section, why) in [
        (json!({"org": "acme"}), "serviceSlug, serviceAnnotation"),
        (
            json!({"org": "ac/me", "serviceSlug": "x"}),
            "not a Cloudsmith slug",
        ),
        (
            json!({"org": "acme", "serviceSlug": "x", "url": "http://api.cloudsmith.io"}),
            "TLS",
        ),
        (
            json!({"org": "acme", "serviceSlug": "x", "username": "a:b"}),
            "username",
        ),
    ] {
        let error = refused::<Cloudsmith>(&world, section);
        assert!(error.contains(why), "{error}");
    }
}

#[test]
fn throttling_plain_http_and_a_stated_expiry() {
    let world = World::new();
    let backend = cloudsmith(&world, json!({"org": "acme", "serviceSlug": "puller"}));
    let pod = account("team-a", "app", audience::CLOUDSMITH, &[]);
    assert_retries(&world, &backend, IMAGE, &pod, CLOUDSMITH_HOST, 1);
    *world.knobs.reply.lock().unwrap() = Some(icp_test_kit::Reply::json(
        200,
        r#"{"token":"cs-opaque","expires_in":1800}"#,
    ));
    assert_expires_in(&fetch(&backend, IMAGE, Some(&pod)).unwrap(), 1800);
    *world.knobs.reply.lock().unwrap() = None;
    let http = world.http();
    let url = format!("http://{}", http.address());
    let error = refused::<Cloudsmith>(
        &world,
        json!({"org": "acme", "serviceSlug": "puller", "url": url}),
    );
    assert!(error.contains("only sent over TLS"), "{error}");
    let backend = cloudsmith(
        &world,
        json!({"org": "acme", "serviceSlug": "puller", "url": url, "insecure": true}),
    );
    fetch(&backend, IMAGE, Some(&pod)).unwrap();
    assert_eq!(http.requests()[0].path(), "/openid/acme/");
}
