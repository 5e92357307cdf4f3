//! The metadata server flow against a loopback fake of the GCE metadata server.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use crate::support::{environment, no_env, request};
use icp_core::{Environment, ImageRef, TokenBackend};
use icp_gcp::{Config, Error, Gcp};
use icp_test_kit::google::{Account, Instance, MetadataFake};
use icp_test_kit::{FakeServer, Reply};

fn gcp(metadata: &MetadataFake, config: Config) -> Gcp {
    Gcp::new(config, std::path::Path::new("/"), &environment(metadata)).unwrap()
}

fn image() -> ImageRef {
    ImageRef::parse("us-docker.pkg.dev/project/repo/app:v1").unwrap()
}

#[test]
fn default_service_account_token_with_its_real_expiry() {
    let metadata = MetadataFake::start(Instance::gke_node());
    let before = SystemTime::now();
    let token = gcp(&metadata, Config::default())
        .fetch(&request(&image()))
        .unwrap();
    let after = SystemTime::now();
    assert_eq!(token.username, "oauth2accesstoken");
    assert_eq!(token.password.expose(), "ya29.metadata-default-0");
    let expires_at = token.expires_at.expect("an expiry");
    assert!(
        expires_at >= before + Duration::from_secs(3599)
            && expires_at <= after + Duration::from_secs(3599)
    );
    let requests = metadata.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path()).collect();
    assert_eq!(
        paths,
        [
            "/computeMetadata/v1/instance/service-accounts/default/scopes",
            "/computeMetadata/v1/instance/service-accounts/default/token"
        ]
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("Metadata-Flavor") == Some("Google"))
    );
}

#[test]
fn a_named_service_account() {
    let metadata = MetadataFake::start(Instance::gke_node());
    let config = Config {
        service_account: Some("node@project.iam.gserviceaccount.com".into()),
        ..Config::default()
    };
    let token = gcp(&metadata, config).fetch(&request(&image())).unwrap();
    assert_eq!(
        token.password.expose(),
        "ya29.metadata-node@project.iam.gserviceaccount.com-0"
    );
}

#[test]
fn an_unknown_service_account_is_named() {
    let metadata = MetadataFake::start(Instance::gke_node());
    let config = Config {
        service_account: Some("other@project.iam.gserviceaccount.com".into()),
        ..Config::default()
    };
    let error = gcp(&metadata, config)
        .fetch(&request(&image()))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the metadata server has no service account \"other@project.iam.gserviceaccount.com\" on this instance"
    );
}

#[test]
fn an_account_without_a_registry_scope_gets_no_token_request() {
    let mut instance = Instance::default();
    instance.accounts.insert(
        "default".into(),
        Account {
            scopes: vec!["https://www.googleapis.com/auth/logging.write".into()],
            expires_in: 3599,
        },
    );
    let metadata = MetadataFake::start(instance);
    let error = gcp(&metadata, Config::default())
        .fetch(&request(&image()))
        .unwrap_err();
    assert!(
        matches!(error, Error::MissingScope(ref account) if account == "default"),
        "{error}"
    );
    assert!(
        metadata
            .requests()
            .iter()
            .all(|r| !r.path().ends_with("/token"))
    );
}

#[test]
fn read_only_storage_scope_is_enough() {
    let mut instance = Instance::default();
    let scopes = vec![
        "https://www.googleapis.com/auth/logging.write".into(),
        "https://www.googleapis.com/auth/devstorage.read_only".into(),
    ];
    instance.accounts.insert(
        "default".into(),
        Account {
            scopes,
            expires_in: 1800,
        },
    );
    let metadata = MetadataFake::start(instance);
    let token = gcp(&metadata, Config::default())
        .fetch(&request(&image()))
        .unwrap();
    assert_eq!(token.password.expose(), "ya29.metadata-default-0");
}

#[test]
fn a_transient_failure_is_retried() {
    let instance = Instance {
        token_unavailable: 2,
        ..Instance::gke_node()
    };
    let metadata = MetadataFake::start(instance);
    let token = gcp(&metadata, Config::default())
        .fetch(&request(&image()))
        .unwrap();
    assert_eq!(token.password.expose(), "ya29.metadata-default-0");
    assert_eq!(metadata.request_count(), 1 + 3);
}

#[test]
fn a_lasting_server_error_ends_after_three_tries() {
    let instance = Instance {
        token_status: Some(500),
        ..Instance::gke_node()
    };
    let metadata = MetadataFake::start(instance);
    let error = gcp(&metadata, Config::default())
        .fetch(&request(&image()))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "the metadata server at {} answered HTTP 500",
            metadata.host()
        )
    );
    assert_eq!(metadata.request_count(), 1 + 3);
}

#[test]
fn a_refusal_is_access_denied() {
    let instance = Instance {
        token_status: Some(403),
        ..Instance::gke_node()
    };
    let metadata = MetadataFake::start(instance);
    let error = gcp(&metadata, Config::default())
        .fetch(&request(&image()))
        .unwrap_err();
    assert!(
        matches!(error, Error::AccessDenied { status: 403, .. }),
        "{error}"
    );
    assert_eq!(metadata.request_count(), 2);
}

#[test]
fn a_slow_answer_within_the_deadline_is_waited_for() {
    let instance = Instance {
        delay: Duration::from_millis(1500),
        ..Instance::gke_node()
    };
    let metadata = MetadataFake::start(instance);
    let token = gcp(&metadata, Config::default())
        .fetch(&request(&image()))
        .unwrap();
    assert_eq!(token.password.expose(), "ya29.metadata-default-0");
}

#[test]
fn a_hung_server_times_out_without_retrying() {
    let instance = Instance {
        delay: Duration::from_secs(30),
        ..Instance::gke_node()
    };
    let metadata = MetadataFake::start(instance);
    let error = gcp(&metadata, Config::default())
        .fetch(&request(&image()))
        .unwrap_err();
    assert!(
        matches!(error, Error::Network { ref cause, .. } if cause.is_timeout()),
        "{error}"
    );
    assert!(error.to_string().contains("timed out"), "{error}");
    assert_eq!(metadata.request_count(), 1);
}

#[test]
fn an_absent_server_is_reported_at_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let env = Environment::from_pairs([(
        "GCE_METADATA_HOST",
        OsString::from(format!("127.0.0.1:{port}")),
    )]);
    let gcp = Gcp::new(Config::default(), std::path::Path::new("/"), &env).unwrap();
    let error = gcp.fetch(&request(&image())).unwrap_err();
    assert!(
        matches!(error, Error::MetadataUnreachable { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with(&format!("no GCE metadata server at 127.0.0.1:{port}")),
        "{error}"
    );
}

#[test]
fn a_server_that_is_not_googles_is_refused() {
    // Another cloud's metadata service on the same address answers, but not as Google's.
    let other = FakeServer::http(|_| {
        Reply::json(200, r#"{"access_token":"ya29.other","expires_in":3599}"#)
    });
    let env = Environment::from_pairs([(
        "GCE_METADATA_HOST",
        OsString::from(other.address().to_string()),
    )]);
    let gcp = Gcp::new(Config::default(), std::path::Path::new("/"), &env).unwrap();
    let error = gcp.fetch(&request(&image())).unwrap_err();
    assert!(matches!(error, Error::NotMetadataServer { .. }), "{error}");
    assert_eq!(other.request_count(), 1);
}

#[test]
fn the_fake_requires_the_metadata_flavor_header() {
    let metadata = MetadataFake::start(Instance::gke_node());
    let client = icp_http::Client::new(icp_http::Options::default(), &no_env()).unwrap();
    let url = format!(
        "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
        metadata.host()
    );
    let deadline = icp_http::Deadline::after(Duration::from_secs(10));
    let response = icp_http::run(deadline, |_| client.send(icp_http::Request::get(url)))
        .unwrap()
        .unwrap();
    assert_eq!(response.status, 403);
}

#[test]
fn token_key_is_one_per_metadata_server_and_account() {
    let metadata = MetadataFake::start(Instance::gke_node());
    let default = gcp(&metadata, Config::default());
    let key = default
        .token_key(&icp_core::Request::new(&image()))
        .unwrap();
    assert_eq!(
        key.identity,
        format!("gcp:metadata:{}:default", metadata.host())
    );
    assert_eq!(key.scope, "google");
    assert_eq!(
        default
            .token_key(&icp_core::Request::new(
                &ImageRef::parse("gcr.io/p/a").unwrap()
            ))
            .unwrap(),
        key
    );
    let named = gcp(
        &metadata,
        Config {
            service_account: Some("a@p.iam.gserviceaccount.com".into()),
            ..Config::default()
        },
    );
    assert_ne!(
        named.token_key(&icp_core::Request::new(&image())).unwrap(),
        key
    );
    assert_eq!(metadata.request_count(), 0);
}

#[test]
fn bad_account_names_and_hosts_are_refused() {
    for account in [
        "",
        "default/../../attributes/x",
        "a b",
        "default?x=1",
        "..",
        ".hidden",
    ] {
        let config = Config {
            service_account: Some(account.into()),
            ..Config::default()
        };
        let error = Gcp::new(config, std::path::Path::new("/"), &no_env()).unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{account:?}: {error}");
    }
    // An empty GCE_METADATA_HOST is unset, as Google's libraries read it: the default
    // server.
    let env = Environment::from_pairs([("GCE_METADATA_HOST", "")]);
    let gcp = Gcp::new(Config::default(), std::path::Path::new("/"), &env).unwrap();
    let key = gcp.token_key(&request(&image())).unwrap();
    assert_eq!(key.identity, "gcp:metadata:169.254.169.254:default");
    for host in ["evil.example/path", "a@b", "host:80/x?y"] {
        let env = Environment::from_pairs([("GCE_METADATA_HOST", OsString::from(host))]);
        let gcp = Gcp::new(Config::default(), std::path::Path::new("/"), &env).unwrap();
        let error = gcp.check().unwrap_err();
        assert!(
            error.to_string().contains("GCE_METADATA_HOST"),
            "{host:?}: {error}"
        );
        let error = gcp.fetch(&request(&image())).unwrap_err();
        assert!(
            error.to_string().contains("GCE_METADATA_HOST"),
            "{host:?}: {error}"
        );
    }
}
