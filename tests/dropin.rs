//! The three drop-in modes read their command lines one way: the official programs'
//! `--help` and `--version`, klog's `-v` at any level, and one usage line for the rest.

use crate::common;

use std::path::{Path, PathBuf};

use common::{API_VERSIONS, Plugin, request};

/// The binary under `name`, as a symlink in `dir`.
fn drop_in(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_image-credential-provider"), &link).unwrap();
    link
}

/// Each program with the arguments that make it serve.
fn programs(dir: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let azure_json = dir.join("azure.json");
    std::fs::write(
        &azure_json,
        r#"{"cloud":"AzurePublicCloud","useManagedIdentityExtension":true}"#,
    )
    .unwrap();
    vec![
        (drop_in(dir, "ecr-credential-provider"), vec![]),
        (
            drop_in(dir, "acr-credential-provider"),
            vec![azure_json.display().to_string()],
        ),
        (
            drop_in(dir, "auth-provider-gcp"),
            vec!["get-credentials".to_owned()],
        ),
    ]
}

#[test]
fn every_drop_in_answers_help_and_version() {
    let dir = tempfile::tempdir().unwrap();
    for (program, _) in programs(dir.path()) {
        let name = program.file_name().unwrap().to_str().unwrap().to_owned();
        for flag in ["--help", "-h"] {
            let run = Plugin::at(&program, [flag]).run();
            assert_eq!(run.code, 0, "{name} {flag}: {}", run.stderr);
            assert!(run.stdout.contains("Usage:"), "{name}: {}", run.stdout);
            assert!(run.stdout.contains("--v LEVEL"), "{name}: {}", run.stdout);
            assert!(
                run.stdout.contains("--logtostderr, ") && run.stdout.contains("--vmodule"),
                "{name}: {}",
                run.stdout
            );
        }
        let run = Plugin::at(&program, ["--version"]).run();
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        assert!(
            run.stdout.starts_with(&format!("{name} version v")),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn every_drop_in_takes_any_klog_level_and_refuses_unknown_flags_alike() {
    let dir = tempfile::tempdir().unwrap();
    for (program, args) in programs(dir.path()) {
        let name = program.file_name().unwrap().to_str().unwrap().to_owned();
        for level in ["--v=0", "--v=2", "--v=5", "--v=300"] {
            let mut all = args.clone();
            all.push(level.to_owned());
            // An image none of the three serves: answered with nothing, no network.
            let run = Plugin::at(&program, &all)
                .stdin(request(API_VERSIONS[0], "registry.example/app"))
                .run();
            assert_eq!(run.json()["auth"], serde_json::json!({}), "{name} {level}");
        }
        let mut all = args.clone();
        all.push("--no-such-flag".to_owned());
        Plugin::at(&program, &all)
            .run()
            .assert_error(2, "unknown argument \"--no-such-flag\": no such flag");
        let mut all = args.clone();
        all.push("--v=high".to_owned());
        Plugin::at(&program, &all)
            .run()
            .assert_error(2, "verbosity \"high\" is not a number");
    }
}

/// The official `auth-provider-gcp` accepts `--project-id` and `--identity-provider` with
/// the dockercfg flows and warns that they apply to `gcr` only: a kubelet configuration
/// passing them keeps working (here the metadata server is unreachable, so the pull fails
/// as a fetch, not as a usage error).
#[test]
fn the_gcp_identity_flags_with_a_dockercfg_flow_are_a_warning_not_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let program = drop_in(dir.path(), "auth-provider-gcp");
    for flow in ["--authFlow=dockercfg", "--authFlow=dockercfg-url"] {
        let run = Plugin::at(
            &program,
            [
                "get-credentials",
                flow,
                "--project-id=my-project",
                "--identity-provider=https://container.googleapis.com/v1/projects/my-project/locations/l/clusters/c",
            ],
        )
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .stdin(request(API_VERSIONS[0], "registry.example/app"))
        .run();
        assert_eq!(run.code, 1, "{flow}: {}", run.stderr);
        assert!(
            run.stderr.contains(
                "--project-id and --identity-provider apply only to --authFlow gcr; ignored"
            ),
            "{flow}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
}

/// Every klog flag the official programs take, in the forms Go's flag package takes, is
/// accepted by every drop-in name and ignored with a note at `-v` (klog level 2 and up);
/// a misspelt one is still a usage error.
#[test]
fn every_drop_in_takes_klogs_flags_and_notes_them_at_v() {
    let dir = tempfile::tempdir().unwrap();
    let klog = [
        "--logtostderr",
        "--alsologtostderr=false",
        "-vmodule=plugin=4",
        "--log_dir",
        "/var/log/kubernetes",
        "-log_file=/tmp/x.log",
        "--log_file_max_size=1800",
        "--skip_headers",
        "--skip_log_headers=true",
        "--add_dir_header",
        "--one_output",
        "--stderrthreshold=ERROR",
        "--log_backtrace_at=main.go:10",
        "--v=2",
    ];
    for (program, args) in programs(dir.path()) {
        let name = program.file_name().unwrap().to_str().unwrap().to_owned();
        let mut all = args.clone();
        all.extend(klog.iter().map(|flag| flag.to_string()));
        let run = Plugin::at(&program, &all)
            .stdin(request(API_VERSIONS[0], "registry.example/app"))
            .run();
        assert_eq!(
            run.json()["auth"],
            serde_json::json!({}),
            "{name}: {}",
            run.stderr
        );
        for noted in [
            "--logtostderr",
            "--log_dir /var/log/kubernetes",
            "--stderrthreshold=ERROR",
        ] {
            assert!(
                run.stderr
                    .lines()
                    .any(|line| line.contains("klog flag accepted and ignored")
                        && line.contains(noted)),
                "{name} {noted}: {}",
                run.stderr
            );
        }
        let mut all = args.clone();
        all.push("--logtostdout".to_owned());
        Plugin::at(&program, &all)
            .run()
            .assert_error(2, "unknown argument \"--logtostdout\": no such flag");
    }
}

/// A drop-in mode has no rules file: its errors name the program and what it was given,
/// never a "rule 0".
#[test]
fn drop_in_errors_name_the_command_line_not_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    let images = [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        "myacr.azurecr.io/app",
        "gcr.io/p/app",
    ];
    for ((program, args), image) in programs(dir.path()).into_iter().zip(images) {
        let name = program.file_name().unwrap().to_str().unwrap().to_owned();
        // Every service on a closed loopback port: nothing is looked up or sent.
        let run = Plugin::at(&program, &args)
            .env(
                "IMAGE_CREDENTIAL_PROVIDER_RESOLVE",
                "myacr.azurecr.io:443:127.0.0.1:9",
            )
            .stdin(request(API_VERSIONS[0], image))
            .run();
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        assert!(!run.stderr.contains("rule 0"), "{name}: {}", run.stderr);
        let given = match name.as_str() {
            "acr-credential-provider" => format!("(acr-credential-provider {})", args[0]),
            "auth-provider-gcp" => "(auth-provider-gcp get-credentials --authFlow=gcr)".to_owned(),
            _ => "(ecr-credential-provider)".to_owned(),
        };
        assert!(run.stderr.contains(&given), "{name}: {}", run.stderr);
    }
}
