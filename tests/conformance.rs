//! The kubelet conformance data (`testdata/conformance/`, copied from
//! `../shared/conformance/`): the model of how the kubelet reads answers agrees with every
//! case, and every answer of ours, in each apiVersion and cache key type, is one the
//! kubelet accepts and uses as intended.

use crate::common;

use common::{API_VERSIONS, Plugin, kubelet, request, testdata};
use icp_test_kit::conformance;
use serde_json::Value;

#[test]
fn the_kubelet_model_agrees_with_every_response_handling_case() {
    let cases = conformance::value("response_handling_cases.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 43);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let observed = &case["observed"];
        let read = kubelet::read(
            case["providerApiVersion"].as_str().unwrap(),
            case["image"].as_str().unwrap(),
            case["pluginExitCode"].as_i64().unwrap() as i32,
            case["pluginStdout"].as_str().unwrap(),
        );
        let expected_errors = !observed["kubeletErrors"].as_array().unwrap().is_empty();
        assert_eq!(read.is_err(), expected_errors, "{name}: {read:?}");
        let (credentials, keys) = match &read {
            Ok(observed) => (observed.credentials.clone(), observed.matched_keys.clone()),
            Err(_) => (Vec::new(), Vec::new()),
        };
        let expected_credentials: Vec<(String, String)> = observed["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["username"].as_str().unwrap().to_owned(),
                    c["password"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected_keys: Vec<String> = observed["matchedKeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(credentials, expected_credentials, "{name}");
        assert_eq!(keys, expected_keys, "{name}");
        assert_eq!(
            !credentials.is_empty(),
            observed["found"].as_bool().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn the_kubelet_model_agrees_with_every_decode_case() {
    let cases = conformance::value("plugin_io_cases.json");
    for case in cases["decodeResponse"].as_array().unwrap() {
        let stdout = case["stdout"].as_str().unwrap();
        let version = serde_json::from_str::<Value>(stdout).unwrap()["apiVersion"]
            .as_str()
            .unwrap()
            .to_owned();
        let expected_version = if version.starts_with("credentialprovider.") {
            version.clone()
        } else {
            API_VERSIONS[0].to_owned()
        };
        let read = kubelet::read(&expected_version, "test.registry.io/foo", 0, stdout);
        assert_eq!(
            read.is_err(),
            case["expectError"].as_bool().unwrap(),
            "{}: {read:?}",
            case["name"]
        );
    }
}

/// A rules file for the kubelet's test images, with the docker config it points at.
fn kubelet_test_rules(dir: &std::path::Path, cache_key_type: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("config.json"),
        r#"{"auths": {"*.registry.io": {"username": "user", "password": "password"},
                      "test.registry.io": {"username": "u", "password": "p"}}}"#,
    )
    .unwrap();
    let rules = dir.join(format!("rules-{cache_key_type}.yaml"));
    std::fs::write(
        &rules,
        format!(
            "rules:\n  - matchImages: [\"*.registry.io\", \"test.registry.io\"]\n    provider: docker-config\n    \
             dockerConfig: {{path: config.json}}\n    cacheKeyType: {cache_key_type}\n    cacheDuration: 1h\n"
        ),
    )
    .unwrap();
    rules
}

#[test]
fn the_kubelet_accepts_every_request_it_writes_answered_in_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let rules = kubelet_test_rules(dir.path(), "Registry");
    let cases = conformance::value("plugin_io_cases.json");
    for case in cases["encodeRequest"].as_array().unwrap() {
        let version = case["providerApiVersion"].as_str().unwrap();
        let image = case["image"].as_str().unwrap();
        let run = Plugin::new(["--config".as_ref(), rules.as_os_str()])
            .stdin(case["expectedStdin"].as_str().unwrap())
            .run();
        let observed = kubelet::read(version, image, run.code, &run.stdout)
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(
            observed.credentials,
            [
                ("u".to_owned(), "p".to_owned()),
                ("user".to_owned(), "password".to_owned())
            ]
        );
        assert_eq!(run.json()["cacheDuration"], "1h0m0s");
    }
}

#[test]
fn every_cache_key_type_is_answered_as_configured_and_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let cases = conformance::value("plugin_io_cases.json");
    for case in cases["cacheKeys"].as_array().unwrap() {
        let cache_key_type = case["cacheKeyType"].as_str().unwrap();
        let image = case["image"].as_str().unwrap();
        let rules = kubelet_test_rules(dir.path(), cache_key_type);
        for version in API_VERSIONS {
            let run = Plugin::new(["--config".as_ref(), rules.as_os_str()])
                .stdin(request(version, image))
                .run();
            let observed = kubelet::read(version, image, run.code, &run.stdout)
                .unwrap_or_else(|e| panic!("{version}: {e}"));
            assert!(
                !observed.credentials.is_empty(),
                "{cache_key_type} {version}"
            );
            assert_eq!(run.json()["cacheKeyType"], cache_key_type);
        }
    }
}

#[test]
fn an_unmatched_image_is_an_accepted_empty_answer() {
    for version in API_VERSIONS {
        let run = Plugin::new([
            "--config".as_ref(),
            testdata().join("rules.yaml").as_os_str(),
        ])
        .stdin(request(version, "quay.io/someone/app"))
        .run();
        let observed =
            kubelet::read(version, "quay.io/someone/app", run.code, &run.stdout).unwrap();
        assert!(observed.credentials.is_empty());
        assert_eq!(run.json()["cacheDuration"], "0s");
    }
}

#[test]
fn the_service_account_model_agrees_with_every_case() {
    use common::kubelet::service_account::{Kubelet, Pod, claims, token_attributes};
    let cases = conformance::value("service_account_cases.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 12);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let config = &case["providerConfig"];
        let attributes = config
            .get("tokenAttributes")
            .filter(|a| a.is_object())
            .map(token_attributes);
        let mut model = Kubelet::new(config["apiVersion"].as_str().unwrap(), attributes);
        let answer = &case["pluginAnswer"];
        for (index, lookup) in case["lookups"].as_array().unwrap().iter().enumerate() {
            let at = format!("{name}, lookup {index}");
            let image = lookup["image"].as_str().unwrap();
            let pod = Pod::from_json(&lookup["pod"]);
            // The fake plugin of the case: its answer, the token echoed if it says so.
            let outcome = model.pull(image, pod.as_ref(), |sent| {
                let password = match (answer["echoToken"].as_bool(), &sent.token) {
                    (Some(true), Some(token)) => token.clone(),
                    _ => "fake-pass".to_owned(),
                };
                let response = serde_json::json!({
                    "apiVersion": config["apiVersion"],
                    "kind": "CredentialProviderResponse",
                    "cacheKeyType": answer["cacheKeyType"],
                    "cacheDuration": answer["cacheDuration"],
                    "auth": {answer["authKey"].as_str().unwrap(): {"username": "fake-user", "password": password}},
                });
                (0, response.to_string())
            });
            assert_eq!(outcome.plugin_ran, lookup["pluginRan"], "{at}");
            assert_eq!(outcome.token_requested, lookup["tokenRequested"], "{at}");
            assert_eq!(!outcome.credentials.is_empty(), lookup["found"], "{at}");
            if let Some(expected) = lookup["credentials"].as_array() {
                let expected: Vec<(String, String)> = expected
                    .iter()
                    .map(|c| {
                        let field = |f: &str| c[f].as_str().unwrap().to_owned();
                        (field("username"), field("password"))
                    })
                    .collect();
                if answer["echoToken"].as_bool() != Some(true) {
                    assert_eq!(outcome.credentials, expected, "{at}");
                }
            }
            let received = &lookup["pluginReceived"];
            match &outcome.sent {
                None => assert!(received.is_null(), "{at}: the plugin should have run"),
                Some(sent) => {
                    assert_eq!(
                        sent.token.is_some(),
                        received["hasServiceAccountToken"],
                        "{at}"
                    );
                    let annotations = serde_json::to_value(&sent.annotations).unwrap();
                    assert_eq!(annotations, received["serviceAccountAnnotations"], "{at}");
                    if let Some(token) = &sent.token {
                        let claims = claims(token);
                        assert_eq!(claims["sub"], received["tokenSub"], "{at}");
                        assert_eq!(claims["aud"], received["tokenAud"], "{at}");
                    }
                }
            }
        }
    }
}

#[test]
fn the_kubelet_model_reads_durations_as_gos_parse_duration() {
    let accepted = [
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("10m", 600_000_000_000),
        ("-1m", -60_000_000_000),
        ("1h0m0s", 3_600_000_000_000),
        ("1.5h", 5_400_000_000_000),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("1\u{b5}s", 1_000),
        ("2562047h47m16.854775807s", i64::MAX),
        ("2562047h47m16s", 9_223_372_036_000_000_000),
        ("9223372036854775807ns", i64::MAX),
        ("-9223372036854775808ns", i64::MIN),
        ("-2562047h47m16.854775808s", i64::MIN),
    ];
    for (text, nanos) in accepted {
        assert_eq!(kubelet::go_duration_nanos(text), Some(nanos), "{text}");
    }
    for refused in [
        "",
        "+",
        "10",
        "1d",
        "10 minutes",
        ".",
        ".s",
        "s",
        "1e3s",
        "2562047h47m16.854775808s",
        "9223372036854775808ns",
        "2562048h",
        "27278871h25m32s",
        "-9223372036854775809ns",
        "99999999999999999999h",
    ] {
        assert!(!kubelet::go_duration(refused), "{refused:?}");
    }
    let response = |duration: &str| {
        format!(
            r#"{{"apiVersion":"{}","kind":"CredentialProviderResponse","cacheKeyType":"Image","cacheDuration":"{duration}","auth":{{}}}}"#,
            API_VERSIONS[0]
        )
    };
    assert!(kubelet::read(API_VERSIONS[0], "a.io/b", 0, &response("2562047h47m16s")).is_ok());
    assert!(kubelet::read(API_VERSIONS[0], "a.io/b", 0, &response("27278871h25m32s")).is_err());
}
