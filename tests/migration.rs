//! The migration pages (`docs/migration/*.md`) as an operator follows them. Every shell
//! block not marked `<!-- needs a real node -->` is run, command by command, against a
//! fake node root laid out as the platform's nodes are (the roots of `install.rs`): each
//! command must succeed, a configuration the page shows must be what `install` wrote, and
//! after the page's rollback the root must be as it was before its swap. Each host a page
//! lists as not served must get an answer with no credentials from the drop-in.

use crate::common;
use crate::install::{Node, aks_ubuntu, eks_al2023, gke_cos};

use std::fs;
use std::path::{Path, PathBuf};

use common::{API_VERSIONS, Plugin, Run, request, testdata};

const BINARY: &str = env!("CARGO_BIN_EXE_image-credential-provider");
/// The line that marks a shell block no fake root can run.
const REAL_NODE: &str = "<!-- needs a real node -->";

/// The text of `docs/migration/NAME.md`.
fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/migration/{name}.md"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The commands of the page's shell blocks that are not marked as needing a real node, in
/// order, each split into words: continued lines joined, comments dropped.
fn commands(page: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut previous = "";
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        if line.trim_start() != "```sh" {
            if !line.trim().is_empty() {
                previous = line.trim();
            }
            continue;
        }
        let runnable = previous != REAL_NODE;
        let mut command = String::new();
        for line in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            if !runnable {
                continue;
            }
            match line.trim_end().strip_suffix('\\') {
                Some(start) => command.push_str(start),
                None => {
                    command.push_str(line);
                    commands.push(words(&command));
                    command.clear();
                }
            }
        }
        previous = "```";
    }
    commands.retain(|words| !words.is_empty());
    commands
}

/// `command`'s words up to a comment. A runnable command has no quoting, pipe,
/// redirection or variable, so that it runs here exactly as written.
fn words(command: &str) -> Vec<String> {
    assert!(
        !command.contains(['\'', '"', '|', '>', '<', '$', '`']),
        "{command:?}: a command the tests run is plain words; mark the block {REAL_NODE:?}"
    );
    command
        .split_whitespace()
        .take_while(|word| !word.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Runs `words` on `node`: `./image-credential-provider` is the downloaded binary, an
/// absolute path is the node's file; `install` and `uninstall` get `--root`, and every
/// other absolute path is taken inside the root.
fn run_on(node: &Node, words: &[String]) -> Run {
    let (program, args) = words.split_first().expect("a command");
    let program: PathBuf = match program.as_str() {
        "./image-credential-provider" => PathBuf::from(BINARY),
        path if path.starts_with('/') => node.path(path),
        other => panic!(
            "{other}: a migration page runs the downloaded binary (./image-credential-provider) or a file on the node"
        ),
    };
    let rooted = matches!(
        args.first().map(String::as_str),
        Some("install" | "uninstall")
    );
    let mut all: Vec<String> = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if arg.starts_with('/') && !rooted {
            all.push(node.path(arg).display().to_string());
        } else {
            all.push(arg.clone());
        }
        if i == 0 && rooted {
            all.push("--root".to_owned());
            all.push(node.root().display().to_string());
        }
    }
    Plugin::at(&program, all).run()
}

/// The value of `--flag` in `words`, if any.
fn flag<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|word| word == flag)
        .and_then(|i| words.get(i + 1))
        .map(String::as_str)
}

/// Runs every runnable command of page `name` on `node`, in order, and checks that the
/// rollback leaves the root as it was, that something was installed before it, and that
/// every configuration `install` writes is the page's `shown` file of `testdata/docs/`.
fn follow(name: &str, node: &Node, shown: Option<&str>) {
    let before = node.listing();
    let commands = commands(&page(name));
    let ran = |what: &str| commands.iter().any(|words| words.iter().any(|w| w == what));
    assert!(ran("install") && ran("uninstall"), "{name}: {commands:?}");
    for words in &commands {
        let dry_run = words.iter().any(|word| word == "--dry-run");
        if words.iter().any(|word| word == "uninstall") && !dry_run {
            assert_ne!(
                node.listing(),
                before,
                "{name}: nothing installed before {words:?}"
            );
        }
        let run = run_on(node, words);
        assert_eq!(
            run.code, 0,
            "{name}: {words:?}\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        if words.iter().any(|word| word == "install")
            && !dry_run
            && let Some(dir) = flag(words, "--kubelet-config")
        {
            let written = node.read(&format!("{dir}image-credential-provider.yaml"));
            let shown = shown.expect("the page shows what install writes");
            let expected = fs::read_to_string(testdata().join("docs").join(shown)).unwrap();
            assert_eq!(
                written, expected,
                "{name}: {words:?} wrote another file than {shown}"
            );
        }
    }
    assert_eq!(
        node.listing(),
        before,
        "{name}: the rollback left the root changed"
    );
}

#[test]
fn the_ecr_page_swaps_and_rolls_back_on_an_eks_node() {
    let node = eks_al2023();
    let rules = fs::read_to_string(testdata().join("docs/migration-ecr-rules.yaml")).unwrap();
    node.write(
        "/etc/kubernetes/image-credential-provider.yaml",
        &rules,
        0o644,
    );
    follow("ecr", &node, Some("migration-ecr-kubelet-config.yaml"));
}

#[test]
fn the_acr_page_swaps_and_rolls_back_on_an_aks_node() {
    follow("acr", &aks_ubuntu(), None);
}

#[test]
fn the_gcp_page_swaps_and_rolls_back_on_a_gke_node() {
    follow("gcp", &gke_cos(), None);
}

/// Each page's hosts "not served" by the drop-in, with the arguments the drop-in serves
/// with: every one is named on the page, and gets an answer with no credentials, in the
/// request's version.
#[test]
fn the_hosts_a_page_lists_as_not_served_get_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let azure_json = dir.path().join("azure.json");
    fs::write(
        &azure_json,
        r#"{"cloud":"AzurePublicCloud","useManagedIdentityExtension":true}"#,
    )
    .unwrap();
    let cases: [(&str, &str, Vec<String>, &[&str]); 3] = [
        (
            "ecr",
            "ecr-credential-provider",
            vec![],
            &[
                "ecr-mirror.corp.example",
                "ecr-public.aws.com.evil.example",
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com:5000",
                "111122223333.dkr.ecr.xx-west-1.amazonaws.com",
            ],
        ),
        (
            "acr",
            "acr-credential-provider",
            vec![azure_json.display().to_string()],
            &[
                "myacr.azurecr.de",
                "myacr.azurecr.cn",
                "myacr.azurecr.io.evil.example",
                "myacr.azurecr.io:443",
                "abcd.azurecr.io",
            ],
        ),
        (
            "gcp",
            "auth-provider-gcp",
            vec!["get-credentials".to_owned()],
            &[
                "gcr.io.evil.example",
                "a.b.gcr.io",
                "gcr.io:5000",
                "us-maven.pkg.dev",
                "evil-docker.pkg.dev.example",
            ],
        ),
    ];
    for (name, program, args, hosts) in cases {
        let text = page(name);
        let link = dir.path().join(program);
        std::os::unix::fs::symlink(BINARY, &link).unwrap();
        for host in hosts {
            assert!(
                text.contains(&format!("`{host}`")),
                "docs/migration/{name}.md does not list {host}"
            );
        }
        // The table's "Request versions" row: each version is answered in its own.
        for (host, version) in hosts.iter().zip(API_VERSIONS.iter().cycle()) {
            let run = Plugin::at(&link, &args)
                .stdin(request(version, &format!("{host}/team/app")))
                .run();
            assert_eq!(run.code, 0, "{program} {host}: {}", run.stderr);
            let answer = run.json();
            assert_eq!(answer["apiVersion"], *version, "{program} {host}");
            assert_eq!(answer["auth"], serde_json::json!({}), "{program} {host}");
            assert_eq!(answer["cacheDuration"], "0s", "{program} {host}");
        }
    }
}
