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
        "rule=0",
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

/// Every `IMAGE_CREDENTIAL_PROVIDER_*` variable the binary's sources read, but the one it
/// sets for its own children, as the sources spell them.
fn environment_variables() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("src")];
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let krate = krate.unwrap().path();
        if !krate.ends_with("test-kit") {
            dirs.push(krate.join("src"));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (at, _) in text.match_indices("\"IMAGE_CREDENTIAL_PROVIDER_") {
                let name: String = text[at + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
    names.remove("IMAGE_CREDENTIAL_PROVIDER_HELPER_RUN");
    names.into_iter().collect()
}

#[test]
fn help_names_the_drop_in_mode_and_every_environment_variable() {
    let help = Plugin::new(["--help"]).run();
    assert_eq!(help.code, 0);
    let variables = environment_variables();
    assert!(variables.len() >= 5, "{variables:?}");
    for needed in variables.iter().map(String::as_str).chain([
        "Drop-in mode:",
        "ecr-credential-provider",
        "acr-credential-provider",
        "auth-provider-gcp",
        "plugin mode",
        "default-rules",
    ]) {
        assert!(help.stdout.contains(needed), "{needed}: {}", help.stdout);
    }
    // No help sends the reader to the README; kubelet-config's says what the nodes need.
    for command in [
        "get",
        "check-config",
        "kubelet-config",
        "install",
        "uninstall",
        "cache",
        "default-rules",
    ] {
        let help = Plugin::new([command, "--help"]).run();
        assert_eq!(help.code, 0, "{command}");
        assert!(
            !help.stdout.contains("README"),
            "{command}: {}",
            help.stdout
        );
    }
    let help = Plugin::new(["kubelet-config", "--help"]).run();
    for needed in [
        "request-serviceaccounts-token-audience",
        "system:nodes",
        "docs/per-pod-identity.md",
    ] {
        assert!(help.stdout.contains(needed), "{needed}: {}", help.stdout);
    }
    // --config: check-config needs it only without --kubelet-config, and says so.
    assert!(
        help.stdout
            .contains("check-config needs one, except with --kubelet-config"),
        "{}",
        help.stdout
    );
    Plugin::new(["check-config"])
        .run()
        .assert_error(2, "or --kubelet-config FILE|DIR");
}

/// The options of answering requests are offered where they do something: plugin mode
/// (where the kubelet passes them) and get; cache takes --cache-dir only; the others none.
#[test]
fn answering_options_are_offered_only_where_they_do_something() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tokens");
    let cache = cache.to_str().unwrap();
    let rules = rules();
    let rules = rules.to_str().unwrap();
    for args in [
        &["check-config", "--config", rules, "--cache-dir", cache][..],
        &["kubelet-config", "--no-cache"],
        &["install", "--dry-run", "--audit-log", "/tmp/a"],
        &["default-rules", "--metrics-dir", "/tmp/m"],
        &["cache", "list", "--no-cache"],
        &[
            "explain",
            "registry.example.com/app",
            "--audit-log",
            "/tmp/a",
        ],
    ] {
        Plugin::new(args)
            .run()
            .assert_error(2, "unexpected argument");
    }
    for (args, expected) in [
        (
            &["--no-cache", "check-config", "--config", rules][..],
            "--no-cache does nothing for check-config",
        ),
        (
            &["--audience", "sts.amazonaws.com", "kubelet-config"],
            "--audience does nothing for kubelet-config",
        ),
        (
            &["--no-cache", "cache", "list"],
            "--no-cache does nothing for cache",
        ),
        (
            &[
                "--metrics-dir",
                "/tmp/m",
                "explain",
                "registry.example.com/app",
            ],
            "--metrics-dir does nothing for explain",
        ),
    ] {
        Plugin::new(args).run().assert_error(2, expected);
    }
    let help = Plugin::new(["check-config", "--help"]).run();
    assert!(!help.stdout.contains("--cache-dir"), "{}", help.stdout);
    let request = request(API_VERSIONS[0], "registry.example.com/app");
    for args in [
        &["--config", rules, "--cache-dir", cache][..],
        &["--config", rules, "--no-cache", "--audit-log", "/dev/null"],
        &[
            "--config",
            rules,
            "get",
            "registry.example.com/app",
            "--cache-dir",
            cache,
        ],
        &[
            "--config",
            rules,
            "--no-cache",
            "get",
            "registry.example.com/app",
        ],
        &["--cache-dir", cache, "cache", "list"],
        &["cache", "list", "--cache-dir", cache],
        &["cache", "--cache-dir", cache, "clear"],
        &[
            "--config",
            rules,
            "explain",
            "registry.example.com/app",
            "--cache-dir",
            cache,
        ],
        &[
            "--config",
            rules,
            "--no-cache",
            "explain",
            "registry.example.com/app",
        ],
    ] {
        let run = Plugin::new(args).stdin(request.clone()).run();
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    }
    // What kubelet-config writes for the kubelet to pass parses as plugin mode.
    let written = Plugin::new(["kubelet-config", "--config", rules]).run();
    assert_eq!(written.code, 0, "{}", written.stderr);
    let config: serde_json::Value = serde_yaml_ng::from_str(&written.stdout).unwrap();
    let args: Vec<&str> = config["providers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    let run = Plugin::new(&args).stdin(request).run();
    assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    assert_eq!(run.json()["kind"], "CredentialProviderResponse");
}

#[test]
fn a_mistyped_subcommand_or_flag_gets_a_suggestion() {
    Plugin::new(["check-confg"])
        .run()
        .assert_error(2, "a similar subcommand exists: 'check-config'");
    Plugin::new(["get", "x", "--no-cach"])
        .run()
        .assert_error(2, "a similar argument exists: '--no-cache'");
}

/// Run by hand with no arguments, plugin mode says what it reads instead of waiting on
/// the terminal.
#[test]
fn run_from_a_terminal_with_no_arguments_it_says_what_it_expects() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut controller, mut terminal) = (0, 0);
    // SAFETY: openpty writes the two descriptors it opens, owned from here on.
    let opened = unsafe {
        libc::openpty(
            &mut controller,
            &mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both are open descriptors nothing else owns.
    let (_controller, terminal) = unsafe {
        (
            OwnedFd::from_raw_fd(controller),
            OwnedFd::from_raw_fd(terminal),
        )
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_image-credential-provider"))
        .env_clear()
        .stdin(std::process::Stdio::from(terminal))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("it waits on the terminal");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("reads a CredentialProviderRequest") && stderr.contains("--help"),
        "{stderr}"
    );
}

#[test]
fn cache_list_and_clear_never_create_the_cache_directory() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo").join("x");
    for action in ["list", "clear"] {
        let run = Plugin::new([
            "cache".as_ref(),
            action.as_ref(),
            "--cache-dir".as_ref(),
            typo.as_os_str(),
        ])
        .run();
        assert_eq!(run.code, 0, "{action}: {}", run.stderr);
        assert!(run.stderr.contains("no token cache at"), "{}", run.stderr);
        assert!(!dir.path().join("typo").exists(), "{action} created it");
    }
}

/// (A binary with no backend that serves well-known hosts has empty embedded rules, and
/// check-config refuses an empty list.)
#[cfg(any(feature = "ecr", feature = "acr", feature = "gcp"))]
#[test]
fn default_rules_print_a_rules_file_check_config_accepts() {
    let run = Plugin::new(["default-rules"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("# The embedded default rules"),
        "{}",
        run.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    let file = rules_file(dir.path(), &run.stdout);
    let check = Plugin::new([
        "check-config".as_ref(),
        "--config".as_ref(),
        file.as_os_str(),
    ])
    .run();
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(check.stdout.contains(", no problems"), "{}", check.stdout);
}

#[test]
fn counts_are_pluralised_and_yaml_errors_say_where() {
    let check = Plugin::new(["check-config", "--config", rules().to_str().unwrap()]).run();
    assert!(
        check.stdout.contains(": 1 rule, no problems"),
        "{}",
        check.stdout
    );
    let dir = tempfile::tempdir().unwrap();
    let two = rules_file(
        dir.path(),
        "rules:\n  - matchImages: []\n    provider: docker-config\n",
    );
    with_rules_file(&two)
        .stdin(request(API_VERSIONS[0], "registry.example.com/app"))
        .run()
        .assert_error(1, "(and 1 more problem; run check-config)");
    let tab = rules_file(dir.path(), "\trules: []\n");
    Plugin::new([
        "check-config".as_ref(),
        "--config".as_ref(),
        tab.as_os_str(),
    ])
    .run()
    .assert_error(
        1,
        "found character that cannot start any token at line 1 column 1",
    );
}

fn with_rules_file(path: &Path) -> Plugin {
    Plugin::new(["--config".as_ref(), path.as_os_str()])
}
