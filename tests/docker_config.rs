//! The docker-config backend with credential helpers, run as the kubelet runs the
//! plugin: Debian's real `docker-credential-pass` over a throwaway `pass` store, fakes for
//! every way a helper fails, and docker config keys that must never reach stderr whole.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::pass::PassStore;
use common::{API_VERSIONS, Plugin, Run, kubelet, request};

/// Writes `content` to `dir/name` and returns the path.
fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// A helper script `docker-credential-<name>` in `dir`.
fn fake_helper(dir: &Path, name: &str, body: &str) {
    let path = write(
        dir,
        &format!("docker-credential-{name}"),
        &format!("#!/bin/sh\n{body}\n"),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The plugin with `rules`, asked for `image` in `api_version`.
fn ask(rules: &Path, api_version: &str, image: &str, args: &[&str]) -> Plugin {
    Plugin::new(
        ["--config".as_ref(), rules.as_os_str()]
            .into_iter()
            .chain(args.iter().map(|arg| arg.as_ref())),
    )
    .stdin(request(api_version, image))
}

/// What the kubelet ends up with for `image` from `run`.
fn credentials(run: &Run, api_version: &str, image: &str) -> Vec<(String, String)> {
    kubelet::read(api_version, image, run.code, &run.stdout)
        .unwrap_or_else(|e| panic!("the kubelet would refuse the answer: {e}; {}", run.stderr))
        .credentials
}

fn pair(username: &str, password: &str) -> Vec<(String, String)> {
    vec![(username.to_owned(), password.to_owned())]
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn credentials_kept_in_pass_are_served_through_cred_helpers_and_creds_store() {
    let store = PassStore::new();
    store.store("reg-a.example:5000", "robot-a", "testdata-secret-pass-a");
    store.store("reg-b.example", "robot-b", "testdata-secret-pass-b");
    store.store(
        "https://index.docker.io/v1/",
        "hub-user",
        "testdata-secret-pass-hub",
    );
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let fakes = dir.join("fakes");
    std::fs::create_dir(&fakes).unwrap();
    fake_helper(
        &fakes,
        "refuse",
        "echo 'the store was asked although credHelpers names a helper' >&2; exit 1",
    );
    // reg-a: credHelpers wins over the store, which fails when asked.
    write(
        dir,
        "helpers.json",
        r#"{"credHelpers": {"reg-a.example:5000": "pass"}, "credsStore": "refuse"}"#,
    );
    // reg-b: the store wins over a stale inline entry; reg-c: held nowhere;
    // reg-d: an empty credHelpers entry sends it back to auths; Docker Hub: in the store.
    write(
        dir,
        "store.json",
        r#"{"credsStore": "pass", "credHelpers": {"reg-d.example": ""},
            "auths": {"reg-b.example": {"username": "robot-b", "password": "testdata-secret-stale"},
                      "reg-d.example": {"username": "robot-d", "password": "testdata-secret-file-d"}}}"#,
    );
    let rules = write(
        dir,
        "rules.yaml",
        "rules:\n\
         - {matchImages: [\"reg-a.example:5000\"], provider: docker-config, dockerConfig: {path: helpers.json}}\n\
         - {matchImages: [reg-b.example, reg-c.example, reg-d.example, docker.io], provider: docker-config, dockerConfig: {path: store.json}}\n",
    );
    let plugin = |version: &str, image: &str, args: &[&str]| {
        let mut plugin = ask(&rules, version, image, args).env("PATH", path_with(&fakes));
        for (key, value) in store.env() {
            plugin = plugin.env(key, value);
        }
        plugin.run()
    };

    let cases = [
        (
            "reg-a.example:5000/team/app:v1",
            pair("robot-a", "testdata-secret-pass-a"),
        ),
        (
            "reg-b.example/app",
            pair("robot-b", "testdata-secret-pass-b"),
        ),
        ("reg-c.example/app", vec![]),
        (
            "reg-d.example/app",
            pair("robot-d", "testdata-secret-file-d"),
        ),
        ("nginx", pair("hub-user", "testdata-secret-pass-hub")),
    ];
    for (image, expected) in &cases {
        for version in API_VERSIONS {
            let run = plugin(version, image, &[]);
            assert_eq!(&credentials(&run, version, image), expected, "{image}");
            assert_eq!(run.stderr, "", "{image}");
            let cache_duration = if expected.is_empty() { "0s" } else { "5m0s" };
            assert_eq!(run.json()["cacheDuration"], cache_duration, "{image}");
        }
        let verbose = plugin(API_VERSIONS[0], image, &["-vv"]);
        assert_eq!(verbose.code, 0, "{}", verbose.stderr);
        assert!(
            !verbose.stderr.contains("testdata-secret"),
            "{}",
            verbose.stderr
        );
        let via_pass = !image.starts_with("reg-d");
        assert_eq!(
            verbose
                .stderr
                .contains("asking credential helper helper=pass"),
            via_pass,
            "{}",
            verbose.stderr
        );
    }

    let check = Plugin::new([
        "check-config".as_ref(),
        "--config".as_ref(),
        rules.as_os_str(),
    ])
    .env("PATH", path_with(&fakes))
    .run();
    assert_eq!(check.code, 0, "{}", check.stderr);

    // Global: everything the store lists, plus the inline entries no helper serves.
    let global = write(
        dir,
        "global.yaml",
        "rules:\n- {matchImages: [reg-c.example], provider: docker-config, cacheKeyType: Global, dockerConfig: {path: store.json}}\n",
    );
    let mut run = Plugin::new(["--config".as_ref(), global.as_os_str()])
        .stdin(request(API_VERSIONS[0], "reg-c.example/app"));
    for (key, value) in store.env() {
        run = run.env(key, value);
    }
    let response = run.run().json();
    assert_eq!(response["cacheKeyType"], "Global");
    let auth = response["auth"].as_object().unwrap();
    let mut keys: Vec<&str> = auth.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "index.docker.io",
            "reg-a.example:5000",
            "reg-b.example",
            "reg-d.example"
        ]
    );
    assert_eq!(auth["reg-b.example"]["password"], "testdata-secret-pass-b");
    assert_eq!(auth["reg-d.example"]["password"], "testdata-secret-file-d");
}

/// A rules file for `r.example` over `config` with helpers from `dir/helpers`.
fn fake_setup(dir: &Path, config: &str) -> PathBuf {
    write(dir, "config.json", config);
    write(
        dir,
        "rules.yaml",
        "rules:\n- {matchImages: [r.example], provider: docker-config, dockerConfig: {path: config.json, helperDir: helpers}}\n",
    )
}

#[test]
fn every_way_a_helper_fails_is_one_line_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let helpers = dir.join("helpers");
    std::fs::create_dir(&helpers).unwrap();
    let pid_file = dir.join("grandchild.pid");
    fake_helper(
        &helpers,
        "hang",
        &format!("sleep 300 & echo $! > {}; wait", pid_file.display()),
    );
    fake_helper(
        &helpers,
        "fail",
        "echo testdata-secret-on-stdout; echo 'gpg: decryption failed: No secret key' >&2; exit 2",
    );
    fake_helper(
        &helpers,
        "malformed",
        r#"echo '{"ServerURL":"r.example","Username":"robot","Secret":"testdata-secret-malformed"'"#,
    );
    fake_helper(
        &helpers,
        "wrongtype",
        r#"echo '{"Username":"robot","Secret":{"testdata-secret-typed":1}}'"#,
    );
    fake_helper(&helpers, "flood", "head -c 10000000 /dev/zero");
    fake_helper(
        &helpers,
        "noisy",
        "head -c 1000000 /dev/zero | tr '\\0' x >&2; echo testdata-secret-noisy; exit 1",
    );
    let cases = [
        (
            "hang",
            "docker-credential-hang get for \"r.example\": no answer within 5s; killed it and what it started",
        ),
        (
            "fail",
            "docker-credential-fail get for \"r.example\": failed (exit status: 2); stderr: \"gpg: decryption failed: No secret key\"",
        ),
        (
            "malformed",
            "docker-credential-malformed get for \"r.example\": answered with something other than the expected JSON",
        ),
        ("wrongtype", "other than the expected JSON"),
        (
            "flood",
            "docker-credential-flood get for \"r.example\": printed more than",
        ),
        ("noisy", "failed (exit status: 1); stderr: \"xxxx"),
        ("absent", "docker-credential-absent: not found in "),
    ];
    for (name, expected) in cases {
        let rules = fake_setup(
            dir,
            &format!(r#"{{"credHelpers": {{"r.example": "{name}"}}}}"#),
        );
        let started = Instant::now();
        let run = ask(&rules, API_VERSIONS[0], "r.example/app", &[]).run();
        run.assert_error(1, expected);
        assert!(
            run.stderr
                .starts_with("error: docker-config backend (rule 0): "),
            "{}",
            run.stderr
        );
        assert!(run.stderr.len() < 400, "{name}: {} bytes", run.stderr.len());
        assert!(!run.stderr.contains("testdata-secret"), "{}", run.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name}: the kubelet would have waited too long"
        );
        let verbose = ask(&rules, API_VERSIONS[0], "r.example/app", &["-vv"]).run();
        assert_eq!(verbose.code, 1);
        assert_eq!(verbose.stdout, "");
        assert!(
            !verbose.stderr.contains("testdata-secret"),
            "{}",
            verbose.stderr
        );
    }
    // The hung helper's own child went with it.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "the hung helper's child still runs: {stat}"
    );
}

#[test]
fn a_helper_name_with_a_path_is_refused_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let helpers = dir.join("helpers");
    std::fs::create_dir_all(helpers.join("docker-credential-x")).unwrap();
    let marker = dir.join("ran");
    // What "x/../../evil" would name, if names were paths.
    let evil = write(
        dir,
        "evil",
        &format!("#!/bin/sh\ntouch {}\n", marker.display()),
    );
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (config, place) in [
        (
            r#"{"credHelpers": {"r.example": "x/../../evil"}}"#,
            "credHelpers[\"r.example\"]: \"x/../../evil\" is not a bare credential helper name",
        ),
        (
            r#"{"credsStore": "x; touch ran"}"#,
            "credsStore: \"x; touch ran\" is not a bare credential helper name",
        ),
    ] {
        let rules = fake_setup(dir, config);
        ask(&rules, API_VERSIONS[0], "r.example/app", &[])
            .run()
            .assert_error(1, place);
        let check = Plugin::new([
            "check-config".as_ref(),
            "--config".as_ref(),
            rules.as_os_str(),
        ])
        .run();
        assert_eq!(check.code, 1);
        assert!(check.stderr.contains(place), "{}", check.stderr);
    }
    assert!(!marker.exists(), "a helper name was run as a path");
    assert!(!dir.join("helpers/ran").exists() && !dir.join("ran").exists());
}

#[test]
fn check_config_names_a_missing_helper() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("helpers")).unwrap();
    let rules = fake_setup(dir, r#"{"credsStore": "nowhere"}"#);
    let check = Plugin::new([
        "check-config".as_ref(),
        "--config".as_ref(),
        rules.as_os_str(),
    ])
    .run();
    assert_eq!(check.code, 1);
    assert!(
        check
            .stderr
            .contains("dockerConfig: docker-credential-nowhere: not found in "),
        "{}",
        check.stderr
    );
}

#[test]
fn held_nothing_and_identity_tokens_are_empty_answers() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let helpers = dir.join("helpers");
    std::fs::create_dir(&helpers).unwrap();
    fake_helper(
        &helpers,
        "notfound",
        "echo 'credentials not found in native keychain'; exit 1",
    );
    fake_helper(
        &helpers,
        "empty",
        r#"echo '{"ServerURL":"r.example","Username":"","Secret":""}'"#,
    );
    fake_helper(
        &helpers,
        "idtoken",
        r#"echo '{"ServerURL":"r.example","Username":"<token>","Secret":"testdata-secret-idtoken"}'"#,
    );
    for name in ["notfound", "empty", "idtoken"] {
        let rules = fake_setup(
            dir,
            &format!(
                r#"{{"credsStore": "{name}", "auths": {{"r.example": {{"username": "u", "password": "testdata-secret-unused"}}}}}}"#
            ),
        );
        let run = ask(&rules, API_VERSIONS[0], "r.example/app", &[]).run();
        assert_eq!(run.stderr, "", "{name}");
        let response = run.json();
        assert_eq!(response["auth"], serde_json::json!({}), "{name}");
        assert_eq!(response["cacheDuration"], "0s");
        let verbose = ask(&rules, API_VERSIONS[0], "r.example/app", &["-v"]).run();
        assert!(
            !verbose.stderr.contains("testdata-secret"),
            "{}",
            verbose.stderr
        );
        if name == "idtoken" {
            assert!(
                verbose.stderr.contains("identity token"),
                "{}",
                verbose.stderr
            );
        }
    }
}

#[test]
fn docker_config_keys_reach_stderr_short_and_without_userinfo() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let rules = write(
        dir,
        "rules.yaml",
        "rules:\n- {matchImages: [r.example], provider: docker-config, dockerConfig: {path: config.json}}\n",
    );
    let huge = "x".repeat(3_000_000);
    let cases = [
        // Not a key the kubelet accepts: a warning, and an answer.
        (format!(r#"{{"auths": {{"r.example:{huge}": {{"username": "u", "password": "p"}}}}}}"#), 0),
        (
            r#"{"auths": {"robot:testdata-secret-userinfo@r.example:port": {"username": "u", "password": "p"}}}"#.to_owned(),
            0,
        ),
        (
            r#"{"auths": {"https://robot:testdata-secret/userinfo@r.example": {"username": "u", "password": "p"}}}"#.to_owned(),
            0,
        ),
        // A broken entry: an error naming it.
        (format!(r#"{{"auths": {{"r.example/{huge}": {{"auth": "!"}}}}}}"#), 1),
        (
            r#"{"auths": {"https://robot:testdata-secret-userinfo@r.example": {"auth": "!"}}}"#.to_owned(),
            1,
        ),
        (
            format!(r#"{{"credHelpers": {{"robot:testdata-secret-userinfo@r.example/{huge}": "a b"}}}}"#),
            1,
        ),
    ];
    for (config, code) in cases {
        write(dir, "config.json", &config);
        let run = ask(&rules, API_VERSIONS[0], "r.example/app", &[]).run();
        assert_eq!(
            run.code,
            code,
            "{}",
            &run.stderr[..run.stderr.len().min(300)]
        );
        assert!(
            run.stderr.len() < 400,
            "{} bytes on stderr",
            run.stderr.len()
        );
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(!run.stderr.contains("testdata-secret"), "{}", run.stderr);
        if code == 0 {
            assert!(
                run.stderr.contains("not a registry the kubelet accepts"),
                "{}",
                run.stderr
            );
        } else {
            run.assert_error(1, "config.json: ");
        }
    }
}
