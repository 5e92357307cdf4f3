//! What the migration pages (`docs/migration/*.md`) promise beyond running (which
//! `tests/docs.rs` checks for every shell block): the swap section's `install` and
//! `uninstall` commands, run on the fake node of the page's platform (the roots of
//! `install.rs`), leave the root byte for byte as it was; the configuration a page shows is
//! what its `install` command writes; and every host a page lists as not served gets an
//! answer with no credentials from the drop-in, in the request's version.

use crate::common;
use crate::install::{Node, aks_ubuntu, eks_al2023, gke_cos};

use std::fs;
use std::path::Path;

use common::{API_VERSIONS, Plugin, request, testdata};

const BINARY: &str = env!("CARGO_BIN_EXE_image-credential-provider");
/// The line that marks a shell block no fake node can run.
const REAL_NODE: &str = "<!-- needs a real node -->";

/// The text of `docs/migration/NAME.md`.
fn page(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("docs/migration/{name}.md"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of the runnable shell blocks of the section of `page` whose heading starts
/// with `heading`, continued lines joined.
fn section_lines(page: &str, heading: &str) -> Vec<String> {
    let section = page
        .split("\n## ")
        .find(|section| section.starts_with(heading))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let mut lines = Vec::new();
    let mut previous = "";
    let mut in_block: Option<bool> = None;
    let mut continued = String::new();
    for line in section.lines() {
        match in_block {
            None if line.trim() == "```sh" => in_block = Some(previous != REAL_NODE),
            None if !line.trim().is_empty() => previous = line.trim(),
            None => {}
            Some(_) if line.trim() == "```" => in_block = None,
            Some(false) => {}
            Some(true) => match line.strip_suffix('\\') {
                Some(start) => continued.push_str(start),
                None => {
                    lines.push(format!("{continued}{line}"));
                    continued.clear();
                }
            },
        }
    }
    lines
}

/// Runs the section's commands that change the node on `node`, as the operator would:
/// a file written with `cat > PATH <<'EOF'` is written, and `install` and `uninstall` run
/// with `--root`. Returns each `install` that wrote a kubelet configuration, with the file.
fn follow(node: &Node, lines: &[String]) -> Vec<String> {
    let mut written = Vec::new();
    let mut lines = lines.iter();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("cat > ") {
            let (path, end) = rest.split_once(" <<").expect("a heredoc");
            let end = end.trim_matches(['\'', '"', ' ']);
            let body: String = lines
                .by_ref()
                .take_while(|line| line.as_str() != end)
                .map(|line| format!("{line}\n"))
                .collect();
            node.write(path, &body, 0o644);
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = words
            .iter()
            .position(|word| *word == "install" || *word == "uninstall")
        else {
            continue;
        };
        let mut args: Vec<String> = words[at..].iter().map(|w| w.to_string()).collect();
        args.insert(1, "--root".to_owned());
        args.insert(2, node.root().display().to_string());
        let run = Plugin::at(Path::new(BINARY), &args).run();
        assert_eq!(
            run.code, 0,
            "{line}\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        let dry_run = words.contains(&"--dry-run");
        if words[at] == "install"
            && !dry_run
            && let Some(i) = words.iter().position(|word| *word == "--kubelet-config")
        {
            written.push(node.read(&format!("{}image-credential-provider.yaml", words[i + 1])));
        }
    }
    written
}

/// The swap section of each page, run on its platform's node, installs something and then
/// rolls back to the root as it was.
#[test]
fn each_pages_swap_and_rollback_leave_the_node_as_it_was() {
    for (name, node) in [
        ("ecr", eks_al2023()),
        ("acr", aks_ubuntu()),
        ("gcp", gke_cos()),
    ] {
        let lines = section_lines(&page(name), "Swap and roll back");
        let uninstall = lines
            .iter()
            .position(|line| line.contains(" uninstall") && !line.contains("--dry-run"))
            .expect("the section rolls back");
        let before = node.listing();
        follow(&node, &lines[..uninstall]);
        assert_ne!(node.listing(), before, "{name}: the swap installs nothing");
        follow(&node, &lines[uninstall..]);
        assert_eq!(
            node.listing(),
            before,
            "{name}: the rollback left the node changed"
        );
    }
}

/// The ECR page's provider entry of its own: what its `install` writes is the file the page
/// shows, and its rollback leaves the node as it was.
#[test]
fn the_ecr_pages_own_entry_is_the_configuration_install_writes() {
    let node = eks_al2023();
    let lines = section_lines(&page("ecr"), "Or: a provider entry of its own");
    let before = node.listing();
    let written = follow(&node, &lines);
    let shown =
        fs::read_to_string(testdata().join("docs/migration-ecr-kubelet-config.yaml")).unwrap();
    assert_eq!(written, [shown]);
    // The rules file the page wrote is the operator's: everything else is gone.
    fs::remove_file(node.path("/etc/kubernetes/image-credential-provider.yaml")).unwrap();
    assert_eq!(node.listing(), before);
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
