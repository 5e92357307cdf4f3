//! The library's serve path in-process, as the kubelet drives it, against fake backends:
//! the protocol and the dispatch without spawning the binary or reaching any cloud.

use crate::common;

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, SystemTime};

use icp_core::{Credentials, ImageRef, Request, Secret, Token, TokenKey};
use image_credential_provider::{Backend, Recorders, Rule, Rules, serve};

use common::{API_VERSIONS, kubelet, pod, request, service_account_request};

/// A token backend that counts its fetches and answers with a token living `lifetime`.
struct FakeTokens {
    lifetime: Option<Duration>,
    fetches: std::rc::Rc<Cell<usize>>,
    fail: bool,
}

#[derive(Debug)]
struct FakeError;

impl fmt::Display for FakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the fake cloud refused")
    }
}

impl std::error::Error for FakeError {}

impl icp_core::BackendError for FakeError {
    fn kind(&self) -> icp_core::ErrorKind {
        icp_core::ErrorKind::AccessDenied
    }
}

impl icp_core::TokenBackend for FakeTokens {
    type Error = FakeError;

    /// Every host of the rule's pattern but one, as a strict host check refuses a
    /// look-alike.
    fn serves(&self, image: &ImageRef) -> bool {
        image.host() != "evil.fake.example"
    }

    /// The node's identity, or the pod's service account with its `role` annotation.
    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, FakeError> {
        Ok(TokenKey {
            identity: request
                .service_account
                .map_or("node".to_owned(), |account| account.key(&["role"])),
            scope: request.image.host().into(),
        })
    }

    fn fetch(&self, _: &Request<'_>) -> Result<Token, FakeError> {
        self.fetches.set(self.fetches.get() + 1);
        if self.fail {
            return Err(FakeError);
        }
        Ok(Token {
            username: "fake-user".into(),
            password: Secret::new("fake-token"),
            expires_at: self.lifetime.map(|l| SystemTime::now() + l),
        })
    }
}

/// A static backend with one entry under the image's registry.
struct FakeStatic;

impl icp_core::StaticBackend for FakeStatic {
    type Error = FakeError;

    fn provide(&self, request: &Request<'_>) -> Result<Credentials, FakeError> {
        Ok(Credentials {
            auth: vec![icp_core::AuthEntry {
                pattern: request.image.registry().to_owned(),
                username: "static-user".into(),
                password: Secret::new("static-password"),
            }],
            expires_at: None,
        })
    }
}

fn token_rules(lifetime: Option<Duration>, fail: bool) -> (Rules, std::rc::Rc<Cell<usize>>) {
    let fetches = std::rc::Rc::new(Cell::new(0));
    let backend = Backend::tokens(FakeTokens {
        lifetime,
        fetches: fetches.clone(),
        fail,
    });
    let rules = Rules::new(
        "test",
        vec![
            Rule::new(0, "fake", &["*.fake.example"], backend).unwrap(),
            Rule::new(
                1,
                "static",
                &["static.example"],
                Backend::statics(FakeStatic),
            )
            .unwrap(),
        ],
    );
    (rules, fetches)
}

fn serve_text(
    rules: &Rules,
    input: &str,
    cache: Option<&std::path::Path>,
) -> (anyhow::Result<()>, String) {
    let mut output = Vec::new();
    let result = serve(
        input.as_bytes(),
        &mut output,
        rules,
        cache,
        &Recorders::default(),
    );
    (result, String::from_utf8(output).unwrap())
}

#[test]
fn answers_every_version_from_a_token_backend_as_the_kubelet_reads_it() {
    let (rules, fetches) = token_rules(Some(Duration::from_secs(3600)), false);
    for version in API_VERSIONS {
        let input = request(version, "r.fake.example/team/app");
        let (result, output) = serve_text(&rules, &input, None);
        result.unwrap();
        let response: serde_json::Value = serde_json::from_str(&output).unwrap();
        assert_eq!(response["apiVersion"], version);
        assert_eq!(response["cacheKeyType"], "Registry");
        // The refresh point: from 45 minutes (75% of the hour) to the hour less the five
        // minute safety margin, give or take the test's own time.
        let duration = response["cacheDuration"].as_str().unwrap();
        let minutes: u64 = duration.split('m').next().unwrap().parse().unwrap();
        assert!(
            (44..=54).contains(&minutes) || duration == "55m0s",
            "{duration}"
        );
        assert_eq!(response["auth"]["r.fake.example"]["username"], "fake-user");
        assert_eq!(response["auth"]["r.fake.example"]["password"], "fake-token");
        let observed = kubelet::read(version, "r.fake.example/team/app", 0, &output).unwrap();
        assert_eq!(
            observed.credentials,
            [("fake-user".to_owned(), "fake-token".to_owned())]
        );
    }
    assert_eq!(
        fetches.get(),
        API_VERSIONS.len(),
        "no cache: one fetch per request"
    );
}

#[test]
fn the_shared_cache_serves_the_second_request() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (rules, fetches) = token_rules(Some(Duration::from_secs(3600)), false);
    let input = request(API_VERSIONS[0], "r.fake.example/app");
    for _ in 0..3 {
        let (result, output) = serve_text(&rules, &input, Some(&cache));
        result.unwrap();
        assert!(output.contains("fake-token"), "{output}");
    }
    assert_eq!(fetches.get(), 1);
}

#[test]
fn dispatches_by_rule_and_answers_no_rule_with_nothing() {
    let (rules, fetches) = token_rules(None, false);
    let (result, output) = serve_text(
        &rules,
        &request(API_VERSIONS[1], "static.example/app"),
        None,
    );
    result.unwrap();
    assert!(output.contains("static-password"), "{output}");
    assert!(output.contains("\"cacheDuration\":\"5m0s\""), "{output}");
    // A token with no stated expiry is answered but never cached by the kubelet.
    let (result, output) = serve_text(
        &rules,
        &request(API_VERSIONS[0], "r.fake.example/app"),
        None,
    );
    result.unwrap();
    assert!(output.contains("\"cacheDuration\":\"0s\""), "{output}");
    // A look-alike host the backend refuses matches the rule's pattern but is not served.
    let (result, output) = serve_text(&rules, &request(API_VERSIONS[0], "quay.io/team/app"), None);
    result.unwrap();
    assert!(output.contains("\"auth\":{}"), "{output}");
    assert_eq!(fetches.get(), 1);
}

#[test]
fn a_backend_failure_or_a_bad_request_writes_nothing() {
    let (rules, fetches) = token_rules(Some(Duration::from_secs(3600)), true);
    let (result, output) = serve_text(
        &rules,
        &request(API_VERSIONS[0], "r.fake.example/app"),
        None,
    );
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("fake backend (rule 0)"), "{message}");
    assert!(message.contains("the fake cloud refused"), "{message}");
    assert_eq!(output, "");
    assert_eq!(fetches.get(), 1);
    for bad in ["", "{", "[]", r#"{"kind":"CredentialProviderRequest"}"#] {
        let (result, output) = serve_text(&rules, bad, None);
        assert!(result.is_err(), "{bad:?}");
        assert_eq!(output, "", "{bad:?}");
    }
    assert_eq!(fetches.get(), 1);
}

#[test]
fn tokens_are_shared_by_pods_of_one_service_account_and_by_no_one_else() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (rules, fetches) = token_rules(Some(Duration::from_secs(3600)), false);
    let image = "r.fake.example/app";
    let mut tokens = Vec::new();
    let mut serve_pod = |pod: &common::kubelet::service_account::Pod| {
        let (input, token) = service_account_request(image, pod, "fake-audience");
        tokens.push(token);
        let (result, output) = serve_text(&rules, &input, Some(&cache));
        result.unwrap();
        assert!(output.contains("fake-token"), "{output}");
        fetches.get()
    };
    let role = [("role", "arn:a")];
    assert_eq!(serve_pod(&pod("team-a", "web-1", "app", &role)), 1);
    assert_eq!(
        serve_pod(&pod("team-a", "web-2", "app", &role)),
        1,
        "same account"
    );
    assert_eq!(
        serve_pod(&pod("team-b", "web-1", "app", &role)),
        2,
        "same name, other namespace"
    );
    assert_eq!(
        serve_pod(&pod("team-a", "batch", "batch", &role)),
        3,
        "other account"
    );
    assert_eq!(
        serve_pod(&pod("team-a", "web-3", "app", &[("role", "arn:b")])),
        4,
        "same account, other annotation value"
    );
    assert_eq!(serve_pod(&pod("team-a", "web-4", "app", &role)), 4);
    // No token, nor any part of one, is in the cache's file names or entries.
    for entry in std::fs::read_dir(&cache).unwrap() {
        let path = entry.unwrap().path();
        let content = std::fs::read_to_string(&path).unwrap_or_default();
        for token in &tokens {
            for part in token.split('.') {
                let name = path.file_name().unwrap().to_string_lossy();
                assert!(
                    !name.contains(part) && !content.contains(part),
                    "{}",
                    path.display()
                );
            }
        }
    }
}

/// A token backend whose cloud refuses the pod's token and echoes it in its error, as STS,
/// Entra ID or Google STS may: whole, each part on its own, and the first part cut short.
struct EchoingTokens;

#[derive(Debug)]
struct Echoed(String);

impl fmt::Display for Echoed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Echoed {}

impl icp_core::BackendError for Echoed {
    fn kind(&self) -> icp_core::ErrorKind {
        icp_core::ErrorKind::AccessDenied
    }
}

impl icp_core::TokenBackend for EchoingTokens {
    type Error = Echoed;

    fn serves(&self, _: &ImageRef) -> bool {
        true
    }

    fn token_key(&self, request: &Request<'_>) -> Result<TokenKey, Echoed> {
        Ok(TokenKey {
            identity: request
                .service_account
                .map_or("node".to_owned(), |account| account.key(&[])),
            scope: request.image.host().into(),
        })
    }

    fn service_account_token(&self) -> Option<icp_core::ServiceAccountTokenUse> {
        Some(icp_core::ServiceAccountTokenUse {
            audience: "echo-audience".into(),
            annotation_keys: Vec::new(),
        })
    }

    fn fetch(&self, request: &Request<'_>) -> Result<Token, Echoed> {
        let token = request.service_account.unwrap().token.expose();
        let parts: Vec<&str> = token.split('.').collect();
        Err(Echoed(format!(
            "InvalidIdentityToken: could not verify {token}; header {} payload {} signature {}; body: \"subject_token={}...\"",
            parts[0],
            parts[1],
            parts[2],
            &parts[0][..20]
        )))
    }
}

#[test]
fn no_fragment_of_the_pods_token_reaches_the_error_line() {
    let rules = Rules::new(
        "test",
        vec![
            Rule::new(
                0,
                "echo",
                &["*.fake.example"],
                Backend::tokens(EchoingTokens),
            )
            .unwrap(),
        ],
    );
    let (input, token) = service_account_request(
        "r.fake.example/app",
        &pod("team-a", "web-1", "app", &[]),
        "echo-audience",
    );
    let (result, output) = serve_text(&rules, &input, None);
    let message = format!("{:#}", result.unwrap_err());
    assert_eq!(output, "");
    assert!(
        message.starts_with("echo backend (rule 0): InvalidIdentityToken: could not verify "),
        "{message}"
    );
    for part in token.split('.') {
        assert!(!message.contains(part), "{message}");
        assert!(!message.contains(&part[..12]), "{message}");
    }
}

#[test]
fn a_token_for_another_audience_is_never_sent_to_the_backend() {
    let rules = Rules::new(
        "test",
        vec![
            Rule::new(
                0,
                "echo",
                &["*.fake.example"],
                Backend::tokens(EchoingTokens),
            )
            .unwrap(),
        ],
    );
    for audience in ["sts.amazonaws.com", "echo-audience-2", ""] {
        let (input, token) = service_account_request(
            "r.fake.example/app",
            &pod("team-a", "web-1", "app", &[]),
            audience,
        );
        let (result, output) = serve_text(&rules, &input, None);
        let message = format!("{:#}", result.unwrap_err());
        assert_eq!(output, "");
        assert!(
            message.contains(&format!(
                "echo backend (rule 0): the service account token of team-a/app is for [\"{audience}\"], not \"echo-audience\" as the backend expects; not sent"
            )),
            "{message}"
        );
        assert!(
            !message.contains("InvalidIdentityToken"),
            "never fetched: {message}"
        );
        assert!(!message.contains(token.split('.').nth(1).unwrap()));
    }
}
