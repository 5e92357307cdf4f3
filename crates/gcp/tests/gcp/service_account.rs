//! Service account keys and application default credentials against a loopback fake of
//! Google's token endpoint, which verifies each assertion's RS256 signature with the
//! public half of a key made by openssl for the test.

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::support::{no_env, request};
use icp_core::{Environment, ImageRef, TokenBackend};
use icp_gcp::{Config, Error, Gcp, Source};
use icp_test_kit::google::{Accounts, Instance, MetadataFake, TestKey, TokenFake, write_key_file};

const EMAIL: &str = "puller@project.iam.gserviceaccount.com";

fn image() -> ImageRef {
    ImageRef::parse("europe-west4-docker.pkg.dev/project/repo/app:v1").unwrap()
}

fn key_config(path: &str) -> Config {
    Config {
        source: Source::ServiceAccountKey,
        key_file: Some(path.into()),
        ..Config::default()
    }
}

/// A key made by openssl, known to a fresh token endpoint fake.
fn key_and_endpoint(dir: &Path) -> (TestKey, TokenFake) {
    let key = TestKey::generate(dir);
    let mut accounts = Accounts::default();
    accounts.keys.insert(EMAIL.into(), key.public_der.clone());
    (key, TokenFake::start(accounts))
}

#[test]
fn a_key_file_gets_a_token_for_a_verified_assertion() {
    let dir = tempfile::tempdir().unwrap();
    let (key, endpoint) = key_and_endpoint(dir.path());
    write_key_file(dir.path(), "key.json", &key, EMAIL, &endpoint.uri());
    // A relative keyFile is taken from the rules file's directory.
    let gcp = Gcp::new(key_config("key.json"), dir.path(), &no_env()).unwrap();
    let before = SystemTime::now();
    let token = gcp.fetch(&request(&image())).unwrap();
    assert_eq!(token.username, "oauth2accesstoken");
    assert_eq!(token.password.expose(), "ya29.key-0");
    let expires_at = token.expires_at.expect("an expiry");
    assert!(expires_at >= before + Duration::from_secs(3599));
    assert_eq!(endpoint.verified.load(Ordering::SeqCst), 1);
    assert_eq!(endpoint.request_count(), 1);
}

#[test]
fn google_application_credentials_names_the_key_when_the_rule_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (key, endpoint) = key_and_endpoint(dir.path());
    let path = write_key_file(dir.path(), "env-key.json", &key, EMAIL, &endpoint.uri());
    let env = Environment::from_pairs([(
        "GOOGLE_APPLICATION_CREDENTIALS",
        OsString::from(path.clone()),
    )]);
    let config = Config {
        source: Source::ServiceAccountKey,
        ..Config::default()
    };
    let gcp = Gcp::new(config, Path::new("/elsewhere"), &env).unwrap();
    assert_eq!(
        gcp.fetch(&request(&image())).unwrap().password.expose(),
        "ya29.key-0"
    );
    let key = gcp.token_key(&icp_core::Request::new(&image())).unwrap();
    assert_eq!(
        key.identity,
        format!("gcp:key:{}:{EMAIL}:kid-1", path.display())
    );
    assert_eq!(key.scope, "google");
}

#[test]
fn an_assertion_signed_with_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, endpoint) = key_and_endpoint(dir.path());
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestKey::generate(other_dir.path());
    write_key_file(dir.path(), "key.json", &other, EMAIL, &endpoint.uri());
    let gcp = Gcp::new(key_config("key.json"), dir.path(), &no_env()).unwrap();
    let error = gcp.fetch(&request(&image())).unwrap_err();
    assert!(
        matches!(error, Error::AccessDenied { status: 400, .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "access denied by the token endpoint {}: HTTP 400: invalid_grant (Invalid JWT Signature.)",
            endpoint.uri()
        )
    );
    assert_eq!(endpoint.verified.load(Ordering::SeqCst), 0);
}

#[test]
fn an_unknown_account_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, endpoint) = key_and_endpoint(dir.path());
    write_key_file(
        dir.path(),
        "key.json",
        &key,
        "someone@project.iam.gserviceaccount.com",
        &endpoint.uri(),
    );
    let gcp = Gcp::new(key_config("key.json"), dir.path(), &no_env()).unwrap();
    let error = gcp.fetch(&request(&image())).unwrap_err();
    assert!(
        error
            .to_string()
            .ends_with("HTTP 400: invalid_grant (Invalid issuer.)"),
        "{error}"
    );
}

#[test]
fn throttling_is_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::generate(dir.path());
    let endpoint = TokenFake::start(Accounts {
        status: Some(429),
        ..Accounts::default()
    });
    write_key_file(dir.path(), "key.json", &key, EMAIL, &endpoint.uri());
    let gcp = Gcp::new(key_config("key.json"), dir.path(), &no_env()).unwrap();
    let error = gcp.fetch(&request(&image())).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "throttled by the token endpoint {} (HTTP 429)",
            endpoint.uri()
        )
    );
    assert_eq!(endpoint.request_count(), 3);
}

#[test]
fn an_unreadable_private_key_is_a_file_error_that_shows_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = TokenFake::start(Accounts::default());
    let key = TestKey {
        private_pem:
            "-----BEGIN PRIVATE KEY-----\nTUlJQ29tcGxldGVseUJvZ3Vz\n-----END PRIVATE KEY-----\n"
                .into(),
        public_der: Vec::new(),
    };
    let path = write_key_file(dir.path(), "key.json", &key, EMAIL, &endpoint.uri());
    let gcp = Gcp::new(key_config("key.json"), dir.path(), &no_env()).unwrap();
    let error = gcp.fetch(&request(&image())).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "credential file {}: private_key is not a usable RSA key",
            path.display()
        )
    );
    assert_eq!(endpoint.request_count(), 0);
}

#[test]
fn a_missing_key_file_fails_the_rule_not_the_rules_file() {
    // A rule that names no key at all is the constructor's error, which the binary
    // reports for the pulls of that rule only.
    let config = Config {
        source: Source::ServiceAccountKey,
        ..Config::default()
    };
    let error = Gcp::new(config, Path::new("/"), &no_env()).unwrap_err();
    let expected =
        "no credentials: source serviceAccountKey needs keyFile or GOOGLE_APPLICATION_CREDENTIALS";
    assert_eq!(error.to_string(), expected);

    let gcp = Gcp::new(key_config("missing.json"), Path::new("/nowhere"), &no_env()).unwrap();
    let error = gcp.fetch(&request(&image())).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("credential file /nowhere/missing.json: "),
        "{error}"
    );
}

#[test]
fn a_user_file_is_not_a_service_account_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_user_file(dir.path(), "https://oauth2.googleapis.com/token");
    let env = Environment::from_pairs([(
        "GOOGLE_APPLICATION_CREDENTIALS",
        OsString::from(path.clone()),
    )]);
    let config = Config {
        source: Source::ServiceAccountKey,
        ..Config::default()
    };
    let gcp = Gcp::new(config, Path::new("/"), &env).unwrap();
    assert_eq!(
        gcp.check().unwrap_err().to_string(),
        format!(
            "credential file {}: is an authorized_user file, not a service account key (use source applicationDefault)",
            path.display()
        )
    );
}

#[test]
fn fields_of_another_source_are_refused() {
    let config = Config {
        source: Source::ServiceAccountKey,
        service_account: Some("default".into()),
        ..Config::default()
    };
    let error = Gcp::new(config, Path::new("/"), &no_env()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid gcp configuration: serviceAccount is for source metadata, not serviceAccountKey"
    );
    let config = Config {
        source: Source::Metadata,
        key_file: Some("k.json".into()),
        ..Config::default()
    };
    let error = Gcp::new(config, Path::new("/"), &no_env()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid gcp configuration: keyFile is for source serviceAccountKey, not metadata"
    );
}

fn write_user_file(dir: &Path, token_uri: &str) -> std::path::PathBuf {
    let json = serde_json::json!({
        "type": "authorized_user",
        "client_id": "client.apps.googleusercontent.com",
        "client_secret": "client-secret",
        "refresh_token": "1//refresh+token/with=odd&chars",
        "token_uri": token_uri,
    });
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("application_default_credentials.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[test]
fn application_default_credentials_use_gclouds_authorized_user_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut accounts = Accounts::default();
    accounts.users.push((
        "client.apps.googleusercontent.com".into(),
        "client-secret".into(),
        "1//refresh+token/with=odd&chars".into(),
    ));
    let endpoint = TokenFake::start(accounts);
    let path = write_user_file(&dir.path().join(".config/gcloud"), &endpoint.uri());
    let metadata = MetadataFake::start(Instance::gke_node());
    let env = Environment::from_pairs([
        ("HOME", OsString::from(dir.path())),
        ("GCE_METADATA_HOST", OsString::from(metadata.host())),
    ]);
    let config = Config {
        source: Source::ApplicationDefault,
        ..Config::default()
    };
    let gcp = Gcp::new(config, Path::new("/"), &env).unwrap();
    let token = gcp.fetch(&request(&image())).unwrap();
    assert_eq!(token.password.expose(), "ya29.user-0");
    assert!(token.expires_at.is_some());
    assert_eq!(metadata.request_count(), 0);
    let key = gcp.token_key(&icp_core::Request::new(&image())).unwrap();
    assert_eq!(
        key.identity,
        format!(
            "gcp:user:{}:client.apps.googleusercontent.com",
            path.display()
        )
    );
    assert!(!key.identity.contains("secret") && !key.identity.contains("refresh"));
}

#[test]
fn application_default_credentials_prefer_the_environment_then_fall_back_to_the_metadata_server() {
    let dir = tempfile::tempdir().unwrap();
    let (key, endpoint) = key_and_endpoint(dir.path());
    let key_path = write_key_file(dir.path(), "key.json", &key, EMAIL, &endpoint.uri());
    write_user_file(
        &dir.path().join("gcloud"),
        "https://oauth2.googleapis.com/token",
    );
    let metadata = MetadataFake::start(Instance::gke_node());
    let config = Config {
        source: Source::ApplicationDefault,
        ..Config::default()
    };
    let env = Environment::from_pairs([
        ("GOOGLE_APPLICATION_CREDENTIALS", OsString::from(key_path)),
        ("CLOUDSDK_CONFIG", OsString::from(dir.path().join("gcloud"))),
        ("GCE_METADATA_HOST", OsString::from(metadata.host())),
    ]);
    let gcp = Gcp::new(config.clone(), Path::new("/"), &env).unwrap();
    assert_eq!(
        gcp.fetch(&request(&image())).unwrap().password.expose(),
        "ya29.key-0"
    );

    let env = Environment::from_pairs([
        ("GCE_METADATA_HOST", OsString::from(metadata.host())),
        ("HOME", OsString::from(dir.path().join("no-home"))),
    ]);
    let gcp = Gcp::new(config, Path::new("/"), &env).unwrap();
    assert_eq!(
        gcp.fetch(&request(&image())).unwrap().password.expose(),
        "ya29.metadata-default-0"
    );
    assert_eq!(metadata.request_count(), 2);
}

#[test]
fn a_revoked_refresh_token_is_access_denied() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = TokenFake::start(Accounts::default());
    let path = write_user_file(dir.path(), &endpoint.uri());
    let env = Environment::from_pairs([("GOOGLE_APPLICATION_CREDENTIALS", OsString::from(path))]);
    let config = Config {
        source: Source::ApplicationDefault,
        ..Config::default()
    };
    let error = Gcp::new(config, Path::new("/"), &env)
        .unwrap()
        .fetch(&request(&image()))
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.ends_with("HTTP 400: invalid_grant (Token has been expired or revoked.)"),
        "{message}"
    );
    assert!(
        !message.contains("refresh+token") && !message.contains("client-secret"),
        "{message}"
    );
}
