//! The binary run as the kubelet and as a person run it: every apiVersion, every class
//! of bad input, and no credential from the test files on stderr, at any verbosity.

use crate::common;

use std::path::{Path, PathBuf};

use common::{API_VERSIONS, Plugin, request, testdata};

/// Every password and base64 `auth` value in `testdata/docker-config.json`.
const SECRETS: &[&str] = &[
    "testdata-secret",
    "cm9ib3Q6dGVzdGRhdGEtc2VjcmV0LWhvc3Q=",
    "aHViOnRlc3RkYXRhLXNlY3JldC1odWI=",
];

fn rules() -> PathBuf {
    testdata().join("rules.yaml")
}

fn with_rules(extra: &[&str]) -> Plugin {
    let mut args = vec!["--config".into(), rules().into_os_string()];
    args.extend(extra.iter().map(std::ffi::OsString::from));
    Plugin::new(args)
}

fn assert_no_secret(text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret:?} leaked: {text}");
    }
}

#[test]
fn answers_every_api_version_in_kind_from_the_docker_config() {
    for version in API_VERSIONS {
        for verbosity in [&[][..], &["-v"], &["-vvv"]] {
            let run = with_rules(verbosity)
                .stdin(request(version, "registry.example.com/team/app"))
                .run();
            let response = run.json();
            assert_eq!(response["apiVersion"], version);
            assert_eq!(response["kind"], "CredentialProviderResponse");
            assert_eq!(response["cacheKeyType"], "Registry");
            assert_eq!(response["cacheDuration"], "10m0s");
            let auth = response["auth"].as_object().unwrap();
            // Every entry of the registry, path-specific ones too, most specific first.
            assert_eq!(auth.len(), 2);
            let team = run.stdout.find("\"registry.example.com/team\"").unwrap();
            assert!(
                team < run.stdout.find("\"registry.example.com\"").unwrap(),
                "{}",
                run.stdout
            );
            assert_eq!(
                auth["registry.example.com/team"]["password"],
                "testdata-secret-team"
            );
            assert_eq!(auth["registry.example.com"]["username"], "robot");
            assert_eq!(
                auth["registry.example.com"]["password"],
                "testdata-secret-host"
            );
            assert!(run.stdout.ends_with("}\n") && run.stdout.lines().count() == 1);
            assert_no_secret(&run.stderr);
        }
    }
}

#[test]
fn wildcard_entries_serve_subdomains_and_verbose_logs_say_why() {
    let run = with_rules(&["-vv"])
        .stdin(request(API_VERSIONS[0], "eu.registry.example.com/app"))
        .run();
    let auth = run.json()["auth"].as_object().unwrap().clone();
    assert_eq!(auth.keys().collect::<Vec<_>>(), ["*.registry.example.com"]);
    assert!(
        run.stderr.contains("rule matched") && run.stderr.contains("provider=docker-config"),
        "{}",
        run.stderr
    );
    assert_no_secret(&run.stderr);
}

#[test]
fn get_normalises_the_image_as_the_kubelet_does() {
    let run = with_rules(&["get", "registry.example.com/team/app:1.2@sha256:1ff6c18fbef2045af6b9c16bf034cc421a29027b800e4f9b68ae9b1cb3e9ae07"]).run();
    assert!(run.json()["auth"]["registry.example.com/team"].is_object());
    for version in ["v1", "v1beta1", "v1alpha1"] {
        let run = with_rules(&["get", "registry.example.com/app", "--api-version", version]).run();
        assert_eq!(
            run.json()["apiVersion"],
            format!("credentialprovider.kubelet.k8s.io/{version}")
        );
    }
    // With no --config, the embedded default serves no docker config: an empty answer.
    let run = Plugin::new(["get", "nginx"]).run();
    assert_eq!(run.json()["auth"], serde_json::json!({}));
}

#[test]
fn bad_requests_get_one_line_and_nothing_on_stdout() {
    let v1 = API_VERSIONS[0];
    let oversized = format!(
        "{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"{v1}\",\"image\":\"{}\"}}",
        "a".repeat(2 << 20)
    );
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "request on stdin is empty"),
        ("{\"kind\":".into(), "not valid JSON"),
        ("{} {}".into(), "not valid JSON"),
        ("[1]".into(), "not a JSON object"),
        (format!(r#"{{"kind":"CredentialProviderResponse","apiVersion":"{v1}","image":"a.io/b"}}"#), "kind is \"CredentialProviderResponse\""),
        (r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"a.io/b"}"#.into(), "not supported"),
        (r#"{"kind":"CredentialProviderRequest","apiVersion":"v1","image":"a.io/b"}"#.into(), "not supported"),
        (format!(r#"{{"kind":"CredentialProviderRequest","apiVersion":"{v1}","image":""}}"#), "image is empty"),
        (format!(r#"{{"kind":"CredentialProviderRequest","apiVersion":"{v1}"}}"#), "no image"),
        (oversized, "larger than 1048576 bytes"),
    ];
    for (input, expected) in cases {
        with_rules(&[]).stdin(input).run().assert_error(1, expected);
    }
}

#[test]
fn hostile_image_names_are_refused() {
    let long = format!("registry.example.com/{}", "a/".repeat(200) + "b");
    let hostile = [
        "registry.example.com/../../etc/passwd",
        "registry.example.com/app\n{\"kind\":\"CredentialProviderResponse\"}",
        "registry.example.com/app\u{0}",
        "registry.example.com/APP",
        "registry.example.com/app with spaces",
        "registry.example.com:99999999/app",
        "registry.example.com/app?x=1#frag",
        "user:pass@registry.example.com/app",
        "\u{202e}registry.example.com/app",
        long.as_str(),
    ];
    for image in hostile {
        let input = serde_json::json!({"kind": "CredentialProviderRequest", "apiVersion": API_VERSIONS[0], "image": image});
        let run = with_rules(&[]).stdin(input.to_string()).run();
        run.assert_error(1, "is not a valid image reference");
        assert!(!run.stderr.contains('\0') && !run.stderr.contains('\u{202e}'));
        if !image.contains('\0') {
            with_rules(&["get", image])
                .run()
                .assert_error(1, "is not a valid image reference");
        }
    }
}

fn rules_file(dir: &Path, content: &str) -> PathBuf {
    let path = dir.join("rules.yaml");
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn broken_config_and_credential_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let check = |rules: PathBuf, expected: &str| {
        let run = Plugin::new(["--config".as_ref(), rules.as_os_str()])
            .stdin(request(API_VERSIONS[0], "r.example/app"))
            .run();
        run.assert_error(1, expected);
        assert!(
            !run.stderr.contains("testdata-secret") && !run.stderr.contains("dGVzdGRhdGEtc2VjcmV0"),
            "{}",
            run.stderr
        );
    };
    let docker_config = |content: &str| {
        std::fs::write(dir.path().join("config.json"), content).unwrap();
        rules_file(
            dir.path(),
            "rules:\n- {matchImages: [r.example], provider: docker-config, dockerConfig: {path: config.json}}\n",
        )
    };
    check(
        docker_config(
            "{\"auths\": {\n\"r.example\": {\"auth\": \"dGVzdGRhdGEtc2VjcmV0LWJyb2tlbg==\"\n",
        ),
        "config.json: invalid JSON at line 3",
    );
    check(
        docker_config(r#"{"auths": {"r.example": {"auth": "testdata-secret-not-base64"}}}"#),
        "auths[\"r.example\"].auth: not valid base64",
    );
    check(
        docker_config(r#"{"auths": {"r.example": {"auth": "dGVzdGRhdGEtc2VjcmV0LWJyb2tlbg=="}}}"#),
        "decoded value has no ':'",
    );
    check(
        docker_config(r#"{"auths": "testdata-secret-string"}"#),
        "auths: expected an object",
    );
    check(
        docker_config(r#"{"auths": {"r.example": {"password": ["testdata-secret-array"]}}}"#),
        "password: expected a string",
    );
    let rules = |content: &str| rules_file(dir.path(), content);
    check(
        rules(
            "rules:\n- {matchImages: [r.example], provider: docker-config, dockerConfig: {path: absent.json}}\n",
        ),
        "absent.json: No such file",
    );
    check(rules("rules: [\n"), "invalid YAML");
    check(
        rules("rules:\n- {matchImages: [r.example], provider: nope}\n"),
        "rules[0].provider: unknown provider \"nope\"",
    );
    check(
        rules(
            "rules:\n- {matchImages: [\"r.example?\"], provider: docker-config, dockerConfig: {path: c}}\n",
        ),
        "rules[0].matchImages[0]",
    );
    check(
        dir.path().join("no-such-rules.yaml"),
        "no-such-rules.yaml: No such file",
    );
}

#[test]
fn check_config_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = rules_file(
        dir.path(),
        "rules:\n- {matchImages: [\"*.a.example\", \"https://b\"], provider: docker-config, dockerConfig: {path: missing.json}, cacheDuration: 1d}\n\
         - {matchImages: [c.example], provider: harbor, colour: blue}\n",
    );
    let run = Plugin::new([
        "check-config".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
    ])
    .run();
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "");
    let lines: Vec<&str> = run.stderr.lines().collect();
    for expected in [
        "rules[0].matchImages[1]",
        "rules[0].cacheDuration",
        "rules[0].dockerConfig: docker config",
        "rules[1].colour: unknown field",
        "rules[1].provider: unknown provider",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("error: ") && l.contains(expected)),
            "{expected} not in {lines:#?}"
        );
    }
    assert_eq!(lines.len(), 5, "{lines:#?}");

    let run = Plugin::new([
        "check-config".as_ref(),
        "--config".as_ref(),
        rules().as_os_str(),
    ])
    .run();
    assert_eq!(
        (run.code, run.stdout.contains("no problems")),
        (0, true),
        "{}",
        run.stderr
    );
    Plugin::new(["check-config"])
        .run()
        .assert_error(2, "needs --config");
}

#[test]
fn usage_errors_exit_2_and_version_and_help_exit_0() {
    Plugin::new(["--no-such-flag"])
        .run()
        .assert_error(2, "--no-such-flag");
    Plugin::new(["get"]).run().assert_error(2, "required");
    Plugin::new(["get", "nginx", "--api-version", "v2"])
        .run()
        .assert_error(2, "v2");
    let run = Plugin::new(["--version"]).run();
    assert_eq!(run.code, 0);
    // The version, and the commit it is built from with that commit's date (not the
    // clock's), as `git` says them.
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("git runs");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(
        run.stdout.trim(),
        format!(
            "image-credential-provider {} (commit {}, {})",
            env!("CARGO_PKG_VERSION"),
            git(&["rev-parse", "--short=12", "HEAD"]),
            git(&["log", "-1", "--format=%cs"])
        )
    );
    let run = Plugin::new(["--help"]).run();
    assert!(run.code == 0 && run.stdout.contains("check-config"));
}

#[test]
fn a_registry_scoped_answer_stays_right_for_every_image_the_kubelet_reuses_it_for() {
    use common::kubelet;
    let version = API_VERSIONS[0];
    // The kubelet asks once, for an image outside the team path...
    let run = with_rules(&[])
        .stdin(request(version, "registry.example.com/other/app"))
        .run();
    assert_eq!(run.json()["cacheKeyType"], "Registry");
    // ...and reuses the answer for every image of the registry.
    let reuse = |image: &str| {
        kubelet::read(version, image, run.code, &run.stdout)
            .unwrap()
            .credentials
    };
    let host = ("robot".to_owned(), "testdata-secret-host".to_owned());
    let team = ("team-robot".to_owned(), "testdata-secret-team".to_owned());
    assert_eq!(
        reuse("registry.example.com/other/app"),
        std::slice::from_ref(&host)
    );
    assert_eq!(reuse("registry.example.com/team/app"), [team, host.clone()]);
    assert_eq!(reuse("registry.example.com/elsewhere"), [host]);
}

#[test]
fn usage_errors_name_what_is_missing_in_one_short_line() {
    Plugin::new(["get"])
        .run()
        .assert_error(2, "required arguments were not provided: <IMAGE>");
    Plugin::new(["cache"])
        .run()
        .assert_error(2, "requires a subcommand");
    let huge = "a".repeat(100_000);
    let run = Plugin::new(["get", "x", &huge]).run();
    run.assert_error(2, "unexpected argument");
    assert!(run.stderr.len() < 300, "{} bytes", run.stderr.len());
}

#[test]
fn help_says_where_the_cache_and_the_rules_come_from() {
    let help = Plugin::new(["--help"]).run();
    assert!(
        help.stdout
            .contains("IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR, else the rules file's cache.dir"),
        "{}",
        help.stdout
    );
    assert!(
        help.stdout.contains("check-config needs one"),
        "{}",
        help.stdout
    );
}

#[test]
fn oversized_input_is_quoted_as_a_short_excerpt_once() {
    // An argument is at most 128 KiB (Linux); a request on stdin up to 1 MiB.
    for size in [100_000, 1_000_000] {
        let tag = format!("registry.example.com/app:{}", "t".repeat(size));
        let digest = format!("registry.example.com/app@sha256:{}", "z".repeat(size));
        for image in [tag, digest] {
            if size < 128 * 1024 {
                let run = with_rules(&["get", &image]).run();
                run.assert_error(1, "is not a valid image reference");
                assert!(
                    run.stderr.len() < 500,
                    "{} bytes on stderr",
                    run.stderr.len()
                );
            }
            let input = serde_json::json!({"kind": "CredentialProviderRequest", "apiVersion": API_VERSIONS[0], "image": image});
            let run = with_rules(&[]).stdin(input.to_string()).run();
            run.assert_error(1, "is not a valid image reference");
            assert!(
                run.stderr.len() < 500,
                "{} bytes on stderr",
                run.stderr.len()
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(400 * 1024);
    let rules = rules_file(
        dir.path(),
        &format!(
            "rules:\n- {{matchImages: [\"{huge}?\"], provider: docker-config, dockerConfig: {{path: c}}, cacheDuration: {huge}}}\n"
        ),
    );
    let run = Plugin::new(["--config".as_ref(), rules.as_os_str()])
        .stdin(request(API_VERSIONS[0], "r.example/app"))
        .run();
    run.assert_error(1, "rules[0].matchImages[0]");
    assert!(
        run.stderr.len() < 500,
        "{} bytes on stderr",
        run.stderr.len()
    );
    let run = Plugin::new([
        "check-config".as_ref(),
        "--config".as_ref(),
        rules.as_os_str(),
    ])
    .run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.len() < 1000,
        "{} bytes on stderr",
        run.stderr.len()
    );
}

#[test]
fn a_key_given_twice_is_refused_at_load_and_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"auths": {}}"#).unwrap();
    let rule =
        "{matchImages: [r.example], provider: docker-config, dockerConfig: {path: config.json}}";
    let yaml = dir.path().join("twice.yaml");
    std::fs::write(&yaml, format!("rules:\n- {rule}\nrules:\n- {rule}\n")).unwrap();
    let json = dir.path().join("twice.json");
    std::fs::write(
        &json,
        r#"{"rules": [{"matchImages": ["r.example"], "provider": "docker-config",
           "dockerConfig": {"path": "config.json"}, "cacheDuration": "1m", "cacheDuration": "2h"}]}"#,
    )
    .unwrap();
    for (path, key) in [(&yaml, "\"rules\""), (&json, "\"cacheDuration\"")] {
        let expected = format!("duplicate key {key}");
        Plugin::new(["--config".as_ref(), path.as_os_str()])
            .stdin(request(API_VERSIONS[0], "r.example/app"))
            .run()
            .assert_error(1, &expected);
        Plugin::new([
            "check-config".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ])
        .run()
        .assert_error(1, &expected);
    }
}

#[test]
fn deep_nesting_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("deep.yaml", "[".repeat(1_048_000)),
        ("deep.yml", "{a: ".repeat(200_000)),
        ("deep.json", "[".repeat(1_048_000)),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        Plugin::new(["--config".as_ref(), path.as_os_str()])
            .stdin(request(API_VERSIONS[0], "r.example/app"))
            .run()
            .assert_error(1, "nested more than 32 levels deep");
        Plugin::new([
            "check-config".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ])
        .run()
        .assert_error(1, "nested more than 32 levels deep");
    }
}

#[test]
fn the_kubelets_own_config_given_as_rules_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credential-provider-config.yaml");
    std::fs::write(
        &path,
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  \
         - name: image-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    \
         matchImages: [\"registry.example.com\"]\n    defaultCacheDuration: \"10m\"\n",
    )
    .unwrap();
    Plugin::new([
        "check-config".as_ref(),
        "--config".as_ref(),
        path.as_os_str(),
    ])
    .run()
    .assert_error(1, "is a kubelet CredentialProviderConfig");
    Plugin::new(["--config".as_ref(), path.as_os_str()])
        .stdin(request(API_VERSIONS[0], "registry.example.com/app"))
        .run()
        .assert_error(1, "not a rules file");
}

/// A service account annotated to pull as the pod's own identity through one backend,
/// whose image a rule answers with another identity, gets a note at `-v` naming the
/// annotation's key and the rule, never its value; nothing without `-v`.
#[cfg(feature = "ecr")]
#[test]
fn a_pod_asking_for_its_own_identity_that_the_rule_does_not_use_is_noted_at_v() {
    let role = "arn:aws:iam::123456789012:role/team-a-pull";
    let pod = common::pod(
        "team-a",
        "app",
        "app",
        &[("eks.amazonaws.com/ecr-role-arn", role)],
    );
    let (request, token) =
        common::service_account_request("registry.example.com/team/app", &pod, "sts.amazonaws.com");
    let quiet = with_rules(&[]).stdin(request.clone()).run();
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("own identity"), "{}", quiet.stderr);
    let noted = with_rules(&["-v"]).stdin(request).run();
    assert_eq!(noted.code, 0, "{}", noted.stderr);
    let line = noted
        .stderr
        .lines()
        .find(|line| line.contains("asks for the pod's own identity"))
        .unwrap_or_else(|| panic!("no note: {}", noted.stderr));
    for part in [
        "annotation=\"eks.amazonaws.com/ecr-role-arn\"",
        "read_by=\"ecr\"",
        "rule=rule 0",
        "provider=docker-config",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
    assert!(!noted.stderr.contains(role) && !noted.stderr.contains(&token));
    assert_no_secret(&noted.stderr);
}

/// The issue's case: the embedded rules' gcp rule has no workload identity settings, so a
/// service account opted in with `iam.gke.io/enable-wi-image-pull` pulls as the node: `-v`
/// says so before the fetch (here to a closed metadata port).
#[cfg(feature = "gcp")]
#[test]
fn the_embedded_gcp_rule_notes_a_workload_identity_opt_in_it_does_not_use() {
    let pod = common::pod(
        "team-a",
        "app",
        "app",
        &[("iam.gke.io/enable-wi-image-pull", "true")],
    );
    let (request, _) = common::service_account_request("gcr.io/p/app", &pod, "p.svc.id.goog");
    let run = Plugin::new(["-v"])
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .stdin(request)
        .run();
    assert!(
        run.stderr
            .lines()
            .any(|line| line.contains("asks for the pod's own identity")
                && line.contains("annotation=\"iam.gke.io/enable-wi-image-pull\"")
                && line.contains("provider=gcp")),
        "{}",
        run.stderr
    );
}

/// A kubelet configuration directory whose file naming the provider cannot be read (a
/// broken document, a link to nothing) is an error for that file, and no false warning
/// that no provider has the name.
#[test]
fn a_file_that_cannot_be_read_is_not_taken_for_a_missing_provider() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("credential-providers.d");
    std::fs::create_dir(&configs).unwrap();
    let entry = |name: &str| {
        format!(
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n\
             - name: {name}\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  \
             matchImages: [\"registry.example.com\"]\n  defaultCacheDuration: 0s\n"
        )
    };
    std::fs::write(configs.join("b.yaml"), entry("other")).unwrap();
    let ours = configs.join("a.yaml");
    let rules = rules();
    for broken in [
        format!("{}\tbroken: [", entry("image-credential-provider")),
        "{not json".to_owned(),
    ] {
        std::fs::write(&ours, broken).unwrap();
        let run = Plugin::new([
            "check-config".as_ref(),
            "--kubelet-config".as_ref(),
            configs.as_os_str(),
            "--config".as_ref(),
            rules.as_os_str(),
            "--name".as_ref(),
            "image-credential-provider".as_ref(),
        ])
        .run();
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stderr.contains("a.yaml"), "{}", run.stderr);
        assert!(
            !run.stderr.contains("no provider is named"),
            "{}",
            run.stderr
        );
    }
    std::fs::remove_file(&ours).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nothing"), &ours).unwrap();
    let run = Plugin::new([
        "check-config".as_ref(),
        "--kubelet-config".as_ref(),
        configs.as_os_str(),
        "--config".as_ref(),
        rules.as_os_str(),
    ])
    .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("no provider is named"),
        "{}",
        run.stderr
    );
    // Read whole, a directory without the name still gets the warning.
    std::fs::remove_file(&ours).unwrap();
    let run = Plugin::new([
        "check-config".as_ref(),
        "--kubelet-config".as_ref(),
        configs.as_os_str(),
        "--config".as_ref(),
        rules.as_os_str(),
        "--name".as_ref(),
        "image-credential-provider".as_ref(),
    ])
    .run();
    assert!(
        run.stderr.contains("no provider is named"),
        "{}",
        run.stderr
    );
}
