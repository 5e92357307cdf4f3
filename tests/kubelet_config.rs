//! `kubelet-config` and `check-config --kubelet-config`: every case of
//! `testdata/kubelet-config/` (built from the kubelet's own read and validation tests)
//! judged as its `.expect` file says, and what `kubelet-config` writes accepted by the
//! same judge.

use crate::common;

use std::path::{Path, PathBuf};

use common::{Plugin, Run, testdata};

fn check(path: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "check-config".into(),
        "--kubelet-config".into(),
        path.as_os_str().to_owned(),
    ];
    args.extend(extra.iter().map(Into::into));
    Plugin::new(args).run()
}

/// The lines of stderr that start with `kind: `, without it.
fn lines<'a>(run: &'a Run, kind: &str) -> Vec<&'a str> {
    run.stderr
        .lines()
        .filter_map(|line| line.strip_prefix(kind))
        .collect()
}

/// Asserts that `run` found exactly the problems and warnings `expected` lists (lines
/// `error: TEXT` and `warning: TEXT`, each contained in one line of stderr), and ended as
/// the kubelet would: exit 1 with nothing on stdout when there is a problem, else exit 0
/// and one summary line.
fn assert_findings(name: &str, run: &Run, expected: &str) {
    for line in run.stderr.lines() {
        assert!(
            line.starts_with("error: ") || line.starts_with("warning: "),
            "{name}: stray stderr line {line:?}"
        );
    }
    for kind in ["error: ", "warning: "] {
        let want: Vec<&str> = expected
            .lines()
            .filter_map(|line| line.strip_prefix(kind))
            .collect();
        let got = lines(run, kind);
        assert_eq!(
            got.len(),
            want.len(),
            "{name}: {kind}lines {got:#?}, expected {want:#?}"
        );
        for text in want {
            assert!(
                got.iter().any(|line| line.contains(text)),
                "{name}: no {kind}line contains {text:?} in {got:#?}"
            );
        }
    }
    if expected.lines().any(|line| line.starts_with("error: ")) {
        assert_eq!(run.code, 1, "{name}: exit code");
        assert_eq!(run.stdout, "", "{name}: stdout");
    } else {
        assert_eq!(run.code, 0, "{name}: exit code; stderr {}", run.stderr);
        assert_eq!(run.stdout.lines().count(), 1, "{name}: {:?}", run.stdout);
        assert!(
            run.stdout.contains("no problems"),
            "{name}: {:?}",
            run.stdout
        );
    }
}

/// The case of an `.expect` file: a file of the same name with another extension, or a
/// directory.
fn case_of(expect: &Path) -> PathBuf {
    let stem = expect.with_extension("");
    if stem.is_dir() {
        return stem;
    }
    ["yaml", "json"]
        .iter()
        .map(|ext| expect.with_extension(ext))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("no case for {}", expect.display()))
}

#[test]
fn every_testdata_case_is_judged_as_its_expect_file_says() {
    let dir = testdata().join("kubelet-config");
    let mut expects: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "expect"))
        .collect();
    expects.sort();
    assert!(expects.len() >= 50, "only {} cases", expects.len());
    for expect in expects {
        let case = case_of(&expect);
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(&expect).unwrap();
        assert_findings(&name, &check(&case, &[]), &expected);
    }
}

#[test]
fn a_directory_without_configuration_files_or_a_missing_path_is_a_problem() {
    let empty = tempfile::tempdir().unwrap();
    assert_findings(
        "empty directory",
        &check(empty.path(), &[]),
        "error: no configuration files (*.json, *.yaml, *.yml) in the directory",
    );
    assert_findings(
        "missing path",
        &check(&empty.path().join("nothing.yaml"), &[]),
        "error: cannot read: ",
    );
}

#[test]
fn a_symlink_to_a_directory_among_the_files_fails_as_in_the_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        testdata().join("kubelet-config/validate-valid.yaml"),
        dir.path().join("a.yaml"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real", dir.path().join("b.yaml")).unwrap();
    assert_findings(
        "symlink to a directory",
        &check(dir.path(), &[]),
        "error: b.yaml: cannot read: ",
    );
}

fn kubelet_config(args: &[&str]) -> Run {
    let mut all = vec!["kubelet-config"];
    all.extend(args);
    Plugin::new(all).run()
}

#[test]
fn what_kubelet_config_prints_passes_the_kubelet_check() {
    let rules = testdata().join("rules.yaml");
    let rules = rules.to_str().unwrap();
    for args in [
        vec![],
        vec!["--config", rules],
        vec!["--config", rules, "--name", "corp-registry"],
    ] {
        let run = kubelet_config(&args);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr, "");
        let file = tempfile::NamedTempFile::with_suffix(".yaml").unwrap();
        std::fs::write(file.path(), &run.stdout).unwrap();
        let checked = check(file.path(), &args);
        assert_eq!(
            (checked.code, checked.stderr.as_str()),
            (0, ""),
            "{args:?}\n{}",
            run.stdout
        );
    }
}

#[test]
fn kubelet_config_installs_the_rules_by_absolute_path() {
    let run = kubelet_config(&["--config", "testdata/rules.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config: serde_json::Value = serde_yaml_ng::from_str(&run.stdout).unwrap();
    let provider = &config["providers"][0];
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(provider["name"], "image-credential-provider");
    assert_eq!(
        provider["apiVersion"],
        "credentialprovider.kubelet.k8s.io/v1"
    );
    assert_eq!(provider["defaultCacheDuration"], "0s");
    assert_eq!(
        provider["matchImages"],
        serde_json::json!([
            "registry.example.com",
            "*.registry.example.com",
            "registry.example.com:5000"
        ])
    );
    let rules = testdata().join("rules.yaml");
    assert_eq!(
        provider["args"],
        serde_json::json!(["--config", rules.to_str().unwrap()])
    );
}

#[test]
fn kubelet_config_refuses_a_name_the_kubelet_refuses() {
    for name in ["a/b", "a b", "..", ""] {
        kubelet_config(&["--name", name]).assert_error(1, "the kubelet would refuse it");
    }
}

#[test]
fn rules_the_kubelet_never_sends_this_binary_are_warnings() {
    let rules = testdata().join("rules.yaml");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubelet.yaml");
    let write = |args: &str| {
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n\
                 - name: image-credential-provider\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  \
                 matchImages: [registry.example.com, \"*.*.example.com\"]\n  defaultCacheDuration: 0s\n{args}"
            ),
        )
        .unwrap();
    };
    let rules_arg = rules.to_str().unwrap();
    write(&format!("  args: [--config, {rules_arg}]\n"));
    // registry.example.com and *.registry.example.com are covered; the port is not.
    let run = check(&config, &["--config", rules_arg]);
    assert_findings(
        "uncovered pattern",
        &run,
        "warning: rules[0].matchImages[2]: \"registry.example.com:5000\": no matchImages entry of provider \"image-credential-provider\" covers it",
    );
    assert!(
        lines(&run, "warning: ")[0].starts_with(rules_arg),
        "{}",
        run.stderr
    );

    let run = check(&config, &["--config", rules_arg, "--name", "other"]);
    assert_findings(
        "unknown name",
        &run,
        "warning: no provider is named \"other\"",
    );

    write("  args: [--config, /etc/kubernetes/other-rules.yaml]\n");
    assert_findings(
        "other rules",
        &check(&config, &["--config", rules_arg]),
        "warning: providers[0].args: runs the binary with --config \"/etc/kubernetes/other-rules.yaml\", not\n\
         warning: rules[0].matchImages[2]",
    );
    write("");
    assert_findings(
        "embedded rules",
        &check(&config, &["--config", rules_arg]),
        "warning: providers[0].args: runs the binary without --config\nwarning: rules[0].matchImages[2]",
    );
    let broken = dir.path().join("broken-rules.yaml");
    std::fs::write(&broken, "rules: []\n").unwrap();
    assert_findings(
        "broken rules",
        &check(&config, &["--config", broken.to_str().unwrap()]),
        "error: rules: the list is empty",
    );
}

#[test]
fn output_writes_one_file_into_a_kubelet_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("credential-providers");
    let out_arg = out.to_str().unwrap();
    let rules = testdata().join("rules.yaml");
    let rules_arg = rules.to_str().unwrap();

    let run = kubelet_config(&["--config", rules_arg, "--output", out_arg]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let file = out.join("image-credential-provider.yaml");
    assert_eq!(run.stdout, format!("wrote {}\n", file.display()));
    let first = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first, kubelet_config(&["--config", rules_arg]).stdout);
    let checked = check(&out, &["--config", rules_arg]);
    assert_eq!((checked.code, checked.stderr.as_str()), (0, ""));

    // Written again (ours), beside another provider's file: replaced, nothing else left.
    std::fs::copy(
        testdata().join("kubelet-config/validate-valid.yaml"),
        out.join("10-foobar.yaml"),
    )
    .unwrap();
    let run = kubelet_config(&["--output", out_arg]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!std::fs::read_to_string(&file).unwrap().contains("--config"));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["10-foobar.yaml", "image-credential-provider.yaml"]);

    // A name another file of the directory already uses: refused, nothing written.
    kubelet_config(&["--name", "foobar", "--output", out_arg])
        .assert_error(1, "duplicate provider name");
    assert!(!out.join("foobar.yaml").exists());

    // A file of that name that kubelet-config did not write is left alone.
    std::fs::write(out.join("mine.yaml"), "# an operator's own file\n").unwrap();
    kubelet_config(&["--name", "mine", "--output", out_arg])
        .assert_error(1, "was not written by kubelet-config");
    assert_eq!(
        std::fs::read_to_string(out.join("mine.yaml")).unwrap(),
        "# an operator's own file\n"
    );
}

#[test]
#[cfg(all(feature = "ecr", feature = "acr", feature = "gcp"))]
fn service_account_tokens_are_asked_for_as_the_rules_backends_need_them() {
    let examples = testdata().join("examples");
    let dir = tempfile::tempdir().unwrap();
    for (rules, audience, keys) in [
        (
            "ecr.yaml",
            "sts.amazonaws.com",
            &["eks.amazonaws.com/ecr-role-arn"][..],
        ),
        (
            "acr.yaml",
            "api://AzureADTokenExchange",
            &[
                "kubernetes.azure.com/acr-client-id",
                "kubernetes.azure.com/acr-tenant-id",
            ],
        ),
        (
            "gcp-workload-identity.yaml",
            "my-project.svc.id.goog",
            &[
                "iam.gke.io/enable-wi-image-pull",
                "iam.gke.io/gcp-service-account",
            ],
        ),
    ] {
        let rules = examples.join(rules);
        let run = kubelet_config(&[
            "--config",
            rules.to_str().unwrap(),
            "--service-account-tokens",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let config: serde_json::Value = serde_yaml_ng::from_str(&run.stdout).unwrap();
        let attributes = &config["providers"][0]["tokenAttributes"];
        assert_eq!(
            attributes["serviceAccountTokenAudience"], audience,
            "{}",
            run.stdout
        );
        assert_eq!(attributes["cacheType"], "ServiceAccount");
        assert_eq!(attributes["requireServiceAccount"], false);
        assert_eq!(
            attributes["optionalServiceAccountAnnotationKeys"],
            serde_json::json!(keys)
        );
        // What it writes is a configuration the kubelet accepts.
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, &run.stdout).unwrap();
        let judged = check(&path, &[]);
        assert_eq!(judged.code, 0, "{}", judged.stderr);
    }
    // Without the flag, no tokens are asked for: node identity, no RBAC needed.
    let run = kubelet_config(&["--config", examples.join("ecr.yaml").to_str().unwrap()]);
    assert!(!run.stdout.contains("tokenAttributes"), "{}", run.stdout);
    // One entry has one audience: the embedded rules need two (gcp without
    // workloadIdentity takes no token), so there are two entries, each run with --audience.
    let run = kubelet_config(&["--service-account-tokens"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config: serde_json::Value = serde_yaml_ng::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = config["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "image-credential-provider",
            "image-credential-provider-api-azureadtokenexchange"
        ]
    );
    assert_eq!(
        config["providers"][1]["args"],
        serde_json::json!(["--audience", "api://AzureADTokenExchange"])
    );
    let static_only = testdata().join("rules.yaml");
    kubelet_config(&[
        "--config",
        static_only.to_str().unwrap(),
        "--service-account-tokens",
    ])
    .assert_error(1, "uses service account tokens");
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(
        made.is_ok_and(|s| s.success()),
        "mkfifo (coreutils; see .ci/setup)"
    );
}

#[test]
fn special_files_are_refused_at_once_never_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    mkfifo(&fifo);
    assert_findings(
        "a FIFO as the file",
        &check(&fifo, &[]),
        "error: cannot read: not a regular file: a FIFO",
    );
    let stdin = dir.path().join("stdin.yaml");
    std::os::unix::fs::symlink("/proc/self/fd/0", &stdin).unwrap();
    assert_findings(
        "a link to stdin",
        &check(&stdin, &[]),
        "error: cannot read: not a regular file: a FIFO",
    );
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).unwrap();
    std::fs::copy(
        testdata().join("kubelet-config/validate-valid.yaml"),
        configs.join("a.yaml"),
    )
    .unwrap();
    mkfifo(&configs.join("b.yaml"));
    assert_findings(
        "a FIFO in the directory",
        &check(&configs, &[]),
        "error: b.yaml: cannot read: not a regular file: a FIFO",
    );
    for args in [
        vec!["check-config", "--config"],
        vec!["kubelet-config", "--config"],
    ] {
        let mut args: Vec<&str> = args;
        args.push(fifo.to_str().unwrap());
        Plugin::new(args)
            .run()
            .assert_error(1, "not a regular file: a FIFO");
    }
}

#[test]
fn a_file_name_never_forges_a_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a\nerror: forged.yaml"),
        "kind: CredentialProviderConfig\n",
    )
    .unwrap();
    let run = check(dir.path(), &[]);
    assert_eq!(run.code, 1);
    let errors = lines(&run, "error: ");
    assert!(
        !errors.iter().any(|line| line.starts_with("forged")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .all(|line| line.contains("a\\nerror: forged.yaml\"")),
        "{errors:#?}"
    );
}

#[test]
fn output_writes_only_into_a_directory_no_one_else_can_write() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = tempfile::tempdir().unwrap();
    for mode in [0o777, 0o1777, 0o775] {
        let out = root.path().join(format!("open-{mode:o}"));
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(mode)).unwrap();
        kubelet_config(&["--output", out.to_str().unwrap()])
            .assert_error(1, &format!("is writable by others (mode {mode:o})"));
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
        // Below a directory others can write (not sticky), a private one is refused too.
        if mode == 0o777 {
            let below = out.join("below");
            kubelet_config(&["--output", below.to_str().unwrap()])
                .assert_error(1, "is writable by others (mode 777) and not sticky");
        }
    }
    if icp_core_euid_is_root() {
        let foreign = root.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
        kubelet_config(&["--output", foreign.to_str().unwrap()])
            .assert_error(1, "is owned by uid 65534");
    }
    // Under umask 000, what it creates is 0755 all the same.
    let created = root.path().join("new/credential-providers");
    let run = Plugin::at(
        Path::new("/bin/sh"),
        [
            "-c",
            "umask 000; exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_image-credential-provider"),
            "kubelet-config",
            "--output",
            created.to_str().unwrap(),
        ],
    )
    .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    for dir in [root.path().join("new"), created] {
        assert_eq!(
            std::fs::metadata(&dir).unwrap().mode() & 0o7777,
            0o755,
            "{dir:?}"
        );
    }
}

fn icp_core_euid_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
#[cfg(feature = "acr")]
fn an_entry_whose_tokens_do_not_fit_its_rules_is_reported() {
    let rules = testdata().join("examples/acr.yaml");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let write = |audience: &str, keys: &str| {
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n\
                 - name: image-credential-provider\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n\
                 \x20 matchImages: [\"*.azurecr.io\", \"*.*.geo.azurecr.io\", \"mirror.corp.example\", \"*.azurecr.contoso.example\"]\n\
                 \x20 defaultCacheDuration: 0s\n  args: [\"--config\", {rules:?}]\n  tokenAttributes:\n\
                 \x20   serviceAccountTokenAudience: {audience}\n    cacheType: ServiceAccount\n\
                 \x20   requireServiceAccount: false\n    optionalServiceAccountAnnotationKeys: [{keys}]\n"
            ),
        )
        .unwrap();
        check(&config, &["--config", rules.to_str().unwrap()])
    };
    let fits = write(
        "api://AzureADTokenExchange",
        "kubernetes.azure.com/acr-client-id, kubernetes.azure.com/acr-tenant-id",
    );
    assert_eq!(
        (fits.code, fits.stderr.as_str()),
        (0, ""),
        "{}",
        fits.stderr
    );

    let no_tenant = write(
        "api://AzureADTokenExchange",
        "kubernetes.azure.com/acr-client-id",
    );
    let warnings = lines(&no_tenant, "warning: ");
    assert!(!warnings.is_empty(), "{}", no_tenant.stderr);
    for line in &warnings {
        assert!(
            line.contains("providers[0].tokenAttributes.optionalServiceAccountAnnotationKeys: rule ")
                && line.contains(" (acr) reads the service account annotation \"kubernetes.azure.com/acr-tenant-id\", which the kubelet does not pass on"),
            "{line}"
        );
    }

    let other_cloud = write(
        "sts.amazonaws.com",
        "kubernetes.azure.com/acr-client-id, kubernetes.azure.com/acr-tenant-id",
    );
    let warnings = lines(&other_cloud, "warning: ");
    assert!(!warnings.is_empty(), "{}", other_cloud.stderr);
    for line in &warnings {
        assert!(
            line.contains("providers[0].tokenAttributes.serviceAccountTokenAudience: rule ")
                && line.contains(" (acr) needs pods' tokens for \"api://AzureADTokenExchange\", not \"sts.amazonaws.com\""),
            "{line}"
        );
    }
}
