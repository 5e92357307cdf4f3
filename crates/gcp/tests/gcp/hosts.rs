//! The host table: which images get a Google token. Every Google host kind is served and
//! shares one token; look-alikes are not served, so they cause no request at any fake.

use std::path::Path;

use crate::support::{environment, no_env, request};
use icp_core::{ImageRef, TokenBackend};
use icp_gcp::{Config, Gcp, Source};
use icp_test_kit::google::{Accounts, Instance, MetadataFake, TestKey, TokenFake, write_key_file};

const GOOGLE: &[&str] = &[
    "gcr.io/project/app:v1",
    "us.gcr.io/project/app",
    "eu.gcr.io/project/app",
    "asia.gcr.io/project/app",
    "marketplace.gcr.io/google/app",
    "us-docker.pkg.dev/project/repo/app",
    "us-central1-docker.pkg.dev/project/repo/app",
    "europe-west4-docker.pkg.dev/project/repo/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "container.cloud.google.com/project/app",
];

const HOSTILE: &[&str] = &[
    "gcr.io.evil.example/project/app",
    "evil-docker.pkg.dev.example/project/app",
    "us-docker.pkg.dev.evil.example/project/app",
    "evilgcr.io/project/app",
    "gcr.io:5000/project/app",
    "gcr.io:443/project/app",
    "a.b.gcr.io/project/app",
    "us-maven.pkg.dev/project/app",
    "docker.pkg.dev/project/app",
    "container.cloud.google.com.evil.example/app",
    "evil.container.cloud.google.com/app",
    "GCR.IO/project/app",
    "docker.io/library/gcr.io",
    "localhost:5000/gcr.io/app",
    "127.0.0.1/gcr.io/app",
];

/// What the binary does with one image: fetch only if the backend serves it.
fn get(gcp: &Gcp, reference: &str) -> Option<String> {
    let image = ImageRef::parse(reference).unwrap();
    gcp.serves(&image).then(|| {
        gcp.fetch(&request(&image))
            .unwrap()
            .password
            .expose()
            .to_owned()
    })
}

#[test]
fn metadata_tokens_go_to_google_hosts_only() {
    let metadata = MetadataFake::start(Instance::gke_node());
    let gcp = Gcp::new(Config::default(), Path::new("/"), &environment(&metadata)).unwrap();
    for reference in HOSTILE {
        assert_eq!(get(&gcp, reference), None, "{reference}");
    }
    assert_eq!(metadata.request_count(), 0);
    let first = gcp
        .token_key(&icp_core::Request::new(
            &ImageRef::parse(GOOGLE[0]).unwrap(),
        ))
        .unwrap();
    for reference in GOOGLE {
        assert!(
            get(&gcp, reference).is_some_and(|t| t.starts_with("ya29.metadata-default-")),
            "{reference}"
        );
        assert_eq!(
            gcp.token_key(&icp_core::Request::new(
                &ImageRef::parse(reference).unwrap()
            ))
            .unwrap(),
            first,
            "{reference}"
        );
    }
    assert_eq!(metadata.request_count(), 2 * GOOGLE.len());
}

#[test]
fn key_tokens_go_to_google_hosts_only() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::generate(dir.path());
    let email = "puller@project.iam.gserviceaccount.com";
    let mut accounts = Accounts::default();
    accounts.keys.insert(email.into(), key.public_der.clone());
    let endpoint = TokenFake::start(accounts);
    write_key_file(dir.path(), "key.json", &key, email, &endpoint.uri());
    let config = Config {
        source: Source::ServiceAccountKey,
        key_file: Some("key.json".into()),
        ..Config::default()
    };
    let gcp = Gcp::new(config, dir.path(), &no_env()).unwrap();
    for reference in HOSTILE {
        assert_eq!(get(&gcp, reference), None, "{reference}");
    }
    assert_eq!(endpoint.request_count(), 0);
    for reference in GOOGLE {
        assert!(get(&gcp, reference).is_some(), "{reference}");
    }
    assert_eq!(endpoint.request_count(), GOOGLE.len());
}
