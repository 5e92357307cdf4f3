//! The official provider's `dockercfg` and `dockercfg-url` flows against the metadata fake.

use std::path::Path;

use crate::support::{environment, request};
use icp_core::{ImageRef, TokenBackend};
use icp_gcp::{Config, Error, Gcp, Source};
use icp_test_kit::google::{Instance, MetadataFake};
use icp_test_kit::{FakeServer, Reply};

const DOCKERCFG: &str = r#"{"https://registry.example":{"auth":"cm9ib3Q6czNjcmV0","email":"a@example.com"},
    "quay.io/team":{"username":"team","password":"t0ken"}}"#;

fn gcp(metadata: &MetadataFake, source: Source) -> Gcp {
    let config = Config {
        source,
        ..Config::default()
    };
    Gcp::new(config, Path::new("/"), &environment(metadata)).unwrap()
}

fn image(reference: &str) -> ImageRef {
    ImageRef::parse(reference).unwrap()
}

#[test]
fn google_dockercfg_attribute() {
    let mut instance = Instance::default();
    instance
        .attributes
        .insert("google-dockercfg".into(), DOCKERCFG.into());
    let metadata = MetadataFake::start(instance);
    let gcp = gcp(&metadata, Source::Dockercfg);
    let registry = image("registry.example/app:v1");
    assert!(gcp.serves(&registry));
    let token = gcp.fetch(&request(&registry)).unwrap();
    assert_eq!(
        (token.username.as_str(), token.password.expose()),
        ("robot", "s3cret")
    );
    assert_eq!(token.expires_at, None);
    let token = gcp.fetch(&request(&image("quay.io/team/app"))).unwrap();
    assert_eq!(
        (token.username.as_str(), token.password.expose()),
        ("team", "t0ken")
    );
    let requests = metadata.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.path()
        == "/computeMetadata/v1/instance/attributes/google-dockercfg"
        && r.header("Metadata-Flavor") == Some("Google")));

    let error = gcp
        .fetch(&request(&image("quay.io/other/app")))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "docker config from instance attribute google-dockercfg: it has no entry for quay.io"
    );
    let key = gcp.token_key(&icp_core::Request::new(&registry)).unwrap();
    assert_eq!(
        key.identity,
        format!("gcp:google-dockercfg:{}", metadata.host())
    );
    assert_eq!(key.scope, "registry.example/app");
}

#[test]
fn a_missing_attribute_is_named() {
    let metadata = MetadataFake::start(Instance::default());
    let error = gcp(&metadata, Source::Dockercfg)
        .fetch(&request(&image("registry.example/app")))
        .unwrap_err();
    assert!(matches!(error, Error::MetadataNotFound(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "the metadata server has no instance attribute \"google-dockercfg\""
    );
}

#[test]
fn google_dockercfg_url_attribute() {
    let config = FakeServer::http(|request| match request.path() {
        "/dockercfg" if request.header("Metadata-Flavor").is_none() => Reply::json(200, DOCKERCFG),
        _ => Reply::status(404),
    });
    let mut instance = Instance::default();
    let url = format!(
        "http://{}/dockercfg?X-Goog-Signature=SIGNATURE",
        config.address()
    );
    instance
        .attributes
        .insert("google-dockercfg-url".into(), format!("{url}\n"));
    let metadata = MetadataFake::start(instance);
    let gcp = gcp(&metadata, Source::DockercfgUrl);
    let token = gcp.fetch(&request(&image("registry.example/app"))).unwrap();
    assert_eq!(
        (token.username.as_str(), token.password.expose()),
        ("robot", "s3cret")
    );
    assert_eq!(
        config.requests()[0].target,
        "/dockercfg?X-Goog-Signature=SIGNATURE"
    );

    let error = gcp
        .fetch(&request(&image("other.example/app")))
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "docker config from http://{}/dockercfg: it has no entry for other.example",
            config.address()
        )
    );
    assert!(!error.contains("SIGNATURE"));
    assert_eq!(config.request_count(), 2);
    assert_eq!(metadata.request_count(), 2);
}

#[test]
fn a_dockercfg_url_that_is_not_http_is_refused() {
    let mut instance = Instance::default();
    instance.attributes.insert(
        "google-dockercfg-url".into(),
        "gs://bucket/dockercfg".into(),
    );
    let metadata = MetadataFake::start(instance);
    let error = gcp(&metadata, Source::DockercfgUrl)
        .fetch(&request(&image("registry.example/app")))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid answer from instance attribute google-dockercfg-url: not an http:// or https:// URL"
    );
}

#[test]
fn a_dockercfg_url_that_fails_is_reported_by_status() {
    let config = FakeServer::http(|_| Reply::status(403));
    let mut instance = Instance::default();
    instance.attributes.insert(
        "google-dockercfg-url".into(),
        format!("http://{}/dockercfg", config.address()),
    );
    let metadata = MetadataFake::start(instance);
    let error = gcp(&metadata, Source::DockercfgUrl)
        .fetch(&request(&image("registry.example/app")))
        .unwrap_err();
    assert!(
        matches!(error, Error::AccessDenied { status: 403, .. }),
        "{error}"
    );
}

#[test]
fn a_dockercfg_that_is_not_one_is_refused() {
    let mut instance = Instance::default();
    instance
        .attributes
        .insert("google-dockercfg".into(), "[\"s3cret\"]".into());
    let metadata = MetadataFake::start(instance);
    let error = gcp(&metadata, Source::Dockercfg)
        .fetch(&request(&image("registry.example/app")))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.ends_with(
            "docker config instance attribute google-dockercfg: top level: expected a JSON object"
        ),
        "{message}"
    );
    assert!(!message.contains("s3cret"));
}
