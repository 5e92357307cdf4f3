//! The Google backend through the built binary: the embedded rule against a loopback
//! metadata server (`GCE_METADATA_HOST`), key files against a TLS fake of Google's token
//! endpoint (through `IMAGE_CREDENTIAL_PROVIDER_RESOLVE`), the host table with request
//! counts, the `auth-provider-gcp` drop-in, and per-pod identity (`pod_identity`).

use crate::common;
#[path = "gcp/pod_identity.rs"]
mod pod_identity;

use std::collections::BTreeMap;
use std::path::Path;

use common::{API_VERSIONS, Plugin, request};
use icp_test_kit::google::{Accounts, Instance, MetadataFake, TestKey, TokenFake};
use icp_test_kit::{FakeServer, Reply, TestCa};

const EMAIL: &str = "puller@project.iam.gserviceaccount.com";

/// A GKE node's metadata server (its `default` service account with the cloud-platform
/// scope) with instance `attributes`.
fn metadata(attributes: BTreeMap<String, String>) -> MetadataFake {
    MetadataFake::start(Instance {
        attributes,
        ..Instance::gke_node()
    })
}

/// `get IMAGE` against `metadata`, without the token cache so that every run asks.
fn get(image: &str, metadata: &MetadataFake) -> Plugin {
    Plugin::new(["--no-cache", "get", image]).env("GCE_METADATA_HOST", metadata.host())
}

/// The TLS fake of `https://oauth2.googleapis.com/token`, with a certificate from `ca`,
/// knowing `key` as [`EMAIL`]'s and the gcloud user of `users`.
fn token_endpoint(ca: &TestCa, key: Option<&TestKey>, users: &[(&str, &str, &str)]) -> TokenFake {
    let mut accounts = Accounts::default();
    if let Some(key) = key {
        accounts
            .keys
            .insert(EMAIL.to_owned(), key.public_der.clone());
    }
    accounts.users = users
        .iter()
        .map(|(id, secret, refresh)| (id.to_string(), secret.to_string(), refresh.to_string()))
        .collect();
    TokenFake::https(ca, accounts)
}

/// Seconds in a Go duration of whole minutes and seconds, as `54m59s`.
fn seconds(duration: &serde_json::Value) -> u64 {
    let text = duration.as_str().unwrap();
    let (minutes, rest) = text.split_once('m').unwrap_or(("0", text));
    minutes.parse::<u64>().unwrap() * 60 + rest.trim_end_matches('s').parse::<u64>().unwrap()
}

#[test]
fn the_embedded_rule_answers_from_the_metadata_server_with_the_real_expiry() {
    let metadata = metadata(BTreeMap::new());
    for image in [
        "gcr.io/project/app:v1",
        "us-central1-docker.pkg.dev/project/repo/app",
        "container.cloud.google.com/x/y",
    ] {
        let response = get(image, &metadata).run().json();
        let registry = image.split('/').next().unwrap();
        let entry = &response["auth"][registry];
        assert_eq!(entry["username"], "oauth2accesstoken", "{response}");
        assert!(
            entry["password"]
                .as_str()
                .unwrap()
                .starts_with("ya29.metadata-"),
            "{response}"
        );
        assert_eq!(response["auth"].as_object().unwrap().len(), 1);
        assert_eq!(response["cacheKeyType"], "Registry");
        // 3599 s of token life less the 5 minute safety margin at most, from 75% of it on
        // (the refresh point).
        let cache = seconds(&response["cacheDuration"]);
        assert!((3599 * 3 / 4 - 60..=3299).contains(&cache), "{response}");
    }
    let requests = metadata.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.header("Metadata-Flavor") == Some("Google"))
    );
}

#[test]
fn plugin_mode_answers_in_the_requests_api_version() {
    let metadata = metadata(BTreeMap::new());
    for version in API_VERSIONS {
        let run = Plugin::new(["--no-cache"])
            .env("GCE_METADATA_HOST", metadata.host())
            .stdin(request(version, "eu.gcr.io/project/app"))
            .run();
        let response = run.json();
        assert_eq!(response["apiVersion"], version);
        assert_eq!(response["kind"], "CredentialProviderResponse");
        assert_eq!(
            response["auth"]["eu.gcr.io"]["username"],
            "oauth2accesstoken"
        );
        assert!(!run.stderr.contains("ya29."), "{}", run.stderr);
    }
}

/// Images that must never get a Google token, whatever rule matches them.
const HOSTILE: &[&str] = &[
    "gcr.io.evil.example/project/app",
    "evil-docker.pkg.dev.example/project/app",
    "us-docker.pkg.dev.evil.example/project/app",
    "evilgcr.io/project/app",
    "gcr.io:5000/project/app",
    "gcr.io:443/project/app",
    "a.b.gcr.io/project/app",
    "us-maven.pkg.dev/project/app",
    "container.cloud.google.com.evil.example/app",
    "evil.container.cloud.google.com/app",
];

#[test]
fn look_alikes_get_nothing_and_cause_no_request() {
    let metadata = metadata(BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    // A rule that sends every image of up to five labels, with or without those ports, to gcp.
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - matchImages: ['*', '*.*', '*.*.*', '*.*.*.*', '*.*.*.*.*', '*.*:5000', '*.*:443']\n    provider: gcp\n",
    )
    .unwrap();
    for image in HOSTILE {
        for config in [None, Some(&rules)] {
            let mut args = vec!["--no-cache".to_owned(), "get".to_owned(), image.to_string()];
            if let Some(rules) = config {
                args.extend(["--config".to_owned(), rules.display().to_string()]);
            }
            let run = Plugin::new(args)
                .env("GCE_METADATA_HOST", metadata.host())
                .run();
            let response = run.json();
            assert_eq!(
                response["auth"],
                serde_json::json!({}),
                "{image}: {response}"
            );
            assert_eq!(response["cacheDuration"], "0s", "{image}");
        }
    }
    assert_eq!(metadata.request_count(), 0);
    let run = get("gcr.io/project/app", &metadata).run();
    assert_eq!(
        run.json()["auth"]["gcr.io"]["username"],
        "oauth2accesstoken"
    );
    assert_eq!(metadata.request_count(), 2);
}

#[test]
fn no_metadata_server_is_one_line_naming_it() {
    // The common environment points GCE_METADATA_HOST at the closed port 127.0.0.1:9.
    let run = Plugin::new(["--no-cache", "get", "gcr.io/project/app"]).run();
    run.assert_error(1, "no GCE metadata server at 127.0.0.1:9");
    assert!(run.stderr.contains("gcp backend"), "{}", run.stderr);
    // The cause is told once, not once more for each error in the chain.
    assert_eq!(
        run.stderr.matches("cannot connect to 127.0.0.1:9").count(),
        1,
        "{}",
        run.stderr
    );
}

fn key_file(dir: &Path, private_key: &str) {
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "project",
        "private_key_id": "kid-1",
        "private_key": private_key,
        "client_email": EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    });
    std::fs::write(dir.join("key.json"), json.to_string()).unwrap();
}

#[test]
fn a_key_file_signs_an_assertion_that_openssl_verifies_at_the_tls_token_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let key = TestKey::generate(dir.path());
    key_file(dir.path(), &key.private_pem);
    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules:\n  - matchImages: ['*.gcr.io']\n    provider: gcp\n    gcp:\n      source: serviceAccountKey\n      keyFile: key.json\n",
    )
    .unwrap();
    let endpoint = token_endpoint(&ca, Some(&key), &[]);
    let rules = dir.path().join("rules.yaml");
    let run = Plugin::new([
        "--no-cache",
        "get",
        "us.gcr.io/project/app",
        "--config",
        rules.to_str().unwrap(),
    ])
    .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
    .env("IMAGE_CREDENTIAL_PROVIDER_RESOLVE", endpoint.resolve())
    .run();
    let response = run.json();
    assert_eq!(
        response["auth"]["us.gcr.io"]["password"], "ya29.key-0",
        "{response}"
    );
    assert_eq!(
        endpoint.verified.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(
        !run.stderr.contains("PRIVATE") && !run.stderr.contains("ya29."),
        "{}",
        run.stderr
    );
}

#[test]
fn a_signature_openssl_rejects_is_access_denied() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let key = TestKey::generate(dir.path());
    // The key file holds another key than the one the endpoint knows.
    let other = tempfile::tempdir().unwrap();
    key_file(dir.path(), &TestKey::generate(other.path()).private_pem);
    let endpoint = token_endpoint(&ca, Some(&key), &[]);
    let run = Plugin::new(["--no-cache", "get", "gcr.io/project/app"])
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            dir.path().join("key.json"),
        )
        .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
        .env("IMAGE_CREDENTIAL_PROVIDER_RESOLVE", endpoint.resolve())
        .run();
    // The embedded rule uses the metadata server, not GOOGLE_APPLICATION_CREDENTIALS ...
    run.assert_error(1, "no GCE metadata server");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "rules:\n  - matchImages: ['gcr.io']\n    provider: gcp\n    gcp: {source: applicationDefault}\n").unwrap();
    // ... while applicationDefault does, and the endpoint refuses the signature.
    let run = Plugin::new([
        "--no-cache",
        "get",
        "gcr.io/project/app",
        "--config",
        rules.to_str().unwrap(),
    ])
    .env(
        "GOOGLE_APPLICATION_CREDENTIALS",
        dir.path().join("key.json"),
    )
    .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
    .env("IMAGE_CREDENTIAL_PROVIDER_RESOLVE", endpoint.resolve())
    .run();
    run.assert_error(1, "access denied by the token endpoint https://oauth2.googleapis.com/token: HTTP 400: invalid_grant (Invalid JWT Signature.)");
    assert_eq!(
        endpoint.verified.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn gclouds_user_credentials_go_to_googles_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    let endpoint = token_endpoint(
        &ca,
        None,
        &[("c.apps.googleusercontent.com", "s", "1//refresh")],
    );
    let gcloud = dir.path().join("gcloud");
    std::fs::create_dir(&gcloud).unwrap();
    std::fs::write(
        gcloud.join("application_default_credentials.json"),
        r#"{"type":"authorized_user","client_id":"c.apps.googleusercontent.com","client_secret":"s","refresh_token":"1//refresh"}"#,
    )
    .unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "rules:\n  - matchImages: ['*-docker.pkg.dev']\n    provider: gcp\n    gcp: {source: applicationDefault}\n").unwrap();
    let run = Plugin::new([
        "--no-cache",
        "get",
        "us-docker.pkg.dev/p/r/app",
        "--config",
        rules.to_str().unwrap(),
    ])
    .env("CLOUDSDK_CONFIG", &gcloud)
    .env("SSL_CERT_FILE", dir.path().join("ca.pem"))
    .env("IMAGE_CREDENTIAL_PROVIDER_RESOLVE", endpoint.resolve())
    .run();
    assert_eq!(
        run.json()["auth"]["us-docker.pkg.dev"]["password"],
        "ya29.user-0"
    );
}

#[test]
fn check_config_reports_an_unusable_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "rules:\n  - matchImages: ['gcr.io']\n    provider: gcp\n    gcp:\n      source: serviceAccountKey\n      keyFile: missing.json\n").unwrap();
    let run = Plugin::new(["check-config", "--config", rules.to_str().unwrap()]).run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("credential file ") && run.stderr.contains("missing.json"),
        "{}",
        run.stderr
    );
}

/// The binary under the official provider's name, as a symlink in a temporary directory.
fn drop_in(dir: &Path) -> std::path::PathBuf {
    let link = dir.join("auth-provider-gcp");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_image-credential-provider"), &link).unwrap();
    link
}

#[test]
fn drop_in_gcr_flow_answers_in_the_requests_api_version() {
    let dir = tempfile::tempdir().unwrap();
    let program = drop_in(dir.path());
    let metadata = metadata(BTreeMap::new());
    let mut passwords = Vec::new();
    for (version, args) in API_VERSIONS.iter().zip([
        &["get-credentials", "--v=3"][..],
        &["get-credentials", "--authFlow=gcr"],
        &["get-credentials"],
    ]) {
        let run = Plugin::at(&program, args)
            .env("GCE_METADATA_HOST", metadata.host())
            .env(
                "IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR",
                dir.path().join("cache"),
            )
            .stdin(request(version, "asia.gcr.io/project/app"))
            .run();
        let response = run.json();
        assert_eq!(response["apiVersion"], *version);
        assert_eq!(
            response["auth"]["asia.gcr.io"]["username"],
            "oauth2accesstoken"
        );
        passwords.push(
            response["auth"]["asia.gcr.io"]["password"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // The drop-in shares the token cache: one fetch (scopes, then token), then cache hits.
    assert!(
        passwords
            .iter()
            .all(|p| *p == passwords[0] && p.starts_with("ya29.metadata-")),
        "{passwords:?}"
    );
    let fetched = metadata.request_count();
    assert_eq!(
        fetched, 2,
        "one scopes and one token request for three answers"
    );
    let run = Plugin::at(&program, ["get-credentials"])
        .env("GCE_METADATA_HOST", metadata.host())
        .stdin(request(API_VERSIONS[0], "gcr.io.evil.example/app"))
        .run();
    assert_eq!(run.json()["auth"], serde_json::json!({}));
    assert_eq!(metadata.request_count(), fetched);
}

#[test]
fn drop_in_dockercfg_flows() {
    let dir = tempfile::tempdir().unwrap();
    let program = drop_in(dir.path());
    let dockercfg = r#"{"registry.example:5000":{"username":"robot","password":"s3cret"}}"#;
    let config_server = FakeServer::http(move |_| Reply::json(200, dockercfg));
    let mut attributes = BTreeMap::new();
    attributes.insert("google-dockercfg".to_owned(), dockercfg.to_owned());
    attributes.insert(
        "google-dockercfg-url".to_owned(),
        format!("http://{}/cfg", config_server.address()),
    );
    let metadata = metadata(attributes);
    for flow in ["--authFlow=dockercfg", "--authFlow=dockercfg-url"] {
        let run = Plugin::at(&program, ["get-credentials", flow])
            .env("GCE_METADATA_HOST", metadata.host())
            .stdin(request(API_VERSIONS[1], "registry.example:5000/team/app"))
            .run();
        let response = run.json();
        assert_eq!(response["apiVersion"], API_VERSIONS[1]);
        let entry = &response["auth"]["registry.example:5000"];
        assert_eq!(
            (entry["username"].as_str(), entry["password"].as_str()),
            (Some("robot"), Some("s3cret")),
            "{flow}"
        );
        // A docker config states no expiry, so nothing may cache it (as the official provider).
        assert_eq!(response["cacheDuration"], "0s");
        assert!(!run.stderr.contains("s3cret"));
    }
    assert_eq!(config_server.request_count(), 1);
    let run = Plugin::at(&program, ["get-credentials", "--authFlow=dockercfg"])
        .env("GCE_METADATA_HOST", metadata.host())
        .stdin(request(API_VERSIONS[0], "other.example/app"))
        .run();
    run.assert_error(
        1,
        "docker config from instance attribute google-dockercfg: it has no entry for other.example",
    );
}

#[test]
fn drop_in_refuses_unknown_flags_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let program = drop_in(dir.path());
    Plugin::at(&program, ["get-credentials", "--authFlow=ecr"])
        .run()
        .assert_error(2, "unknown --authFlow \"ecr\"");
    Plugin::at(&program, ["credentials"])
        .run()
        .assert_error(2, "unknown command \"credentials\"");
}

#[test]
fn a_token_claiming_centuries_is_answered_with_a_duration_the_kubelet_reads() {
    for expires_in in [
        "18446744073709551615",
        "9223372036854775808",
        "100000000000",
    ] {
        let metadata = FakeServer::http(move |request| {
            let reply = match request.path() {
                "/computeMetadata/v1/instance/service-accounts/default/scopes" => {
                    Reply::status(200).body("https://www.googleapis.com/auth/cloud-platform\n")
                }
                "/computeMetadata/v1/instance/service-accounts/default/token" => Reply::json(
                    200,
                    format!(r#"{{"access_token":"ya29.forever","expires_in":{expires_in}}}"#),
                ),
                _ => Reply::status(404),
            };
            reply.header("Metadata-Flavor", "Google")
        });
        for cache in [false, true] {
            let args: &[&str] = if cache {
                &["get", "gcr.io/project/app"]
            } else {
                &["--no-cache", "get", "gcr.io/project/app"]
            };
            let run = Plugin::new(args)
                .env("GCE_METADATA_HOST", metadata.address().to_string())
                .run();
            let observed =
                common::kubelet::read(API_VERSIONS[0], "gcr.io/project/app", run.code, &run.stdout)
                    .unwrap_or_else(|e| panic!("{expires_in}: {e}: {}", run.stderr));
            assert_eq!(
                observed.credentials,
                [("oauth2accesstoken".to_owned(), "ya29.forever".to_owned())]
            );
            let duration = run.json()["cacheDuration"].as_str().unwrap().to_owned();
            let hours: u64 = duration.split('h').next().unwrap().parse().unwrap();
            assert!(hours < 24, "{expires_in}: {duration}");
        }
    }
}
