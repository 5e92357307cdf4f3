//! The documentation's examples are real. README.md and every `docs/**/*.md` are read, and:
//!
//! - every fenced ```` ```yaml ```` or ```` ```json ```` block is byte-equal to a file under
//!   `testdata/examples/` (rules files, beside the files they name) or `testdata/docs/`
//!   (everything else);
//! - every such file is checked by its kind: a rules file passes `check-config --config`, a
//!   kubelet `CredentialProviderConfig` passes `check-config --kubelet-config`, other
//!   Kubernetes objects pass kubernetes-validate, a `CredentialProviderRequest` is read by
//!   the plugin, a `CredentialProviderResponse` is what the command shown before it prints,
//!   a docker `config.json` is read by the docker-config backend, an audit log line has the
//!   fields the plugin writes; a file whose name starts with `invalid-` must be rejected
//!   instead, and a kind the harness does not know fails;
//! - every relative link points to an existing file, and its `#anchor` to a heading there;
//! - every ```` ```sh ```` or ```` ```console ```` block of `docs/install.md` runs against a
//!   fake node root, unless the line before it is `<!-- needs a real node -->` (the
//!   migration pages' blocks are run by `tests/migration.rs`). The blocks under one heading
//!   run in order in one shell and one root, laid out as the platform a
//!   `<!-- fake node: NAME -->` line under that heading (or a heading above it) names:
//!   `empty`, `kubeadm`, `eks`, `aks`, `gke`, `k3s`, `rke2`. Every absolute path under `/etc`, `/usr`, `/var`, `/opt`, `/home`, `/lib`,
//!   `/srv` and `/run` is taken inside the root, `install` and `uninstall` get `--root`, the
//!   current directory holds a release's files, and the binary is not on `PATH`: a page
//!   that calls it by name before installing it fails.

use crate::common;
use crate::install;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use common::{Plugin, Run, testdata};

const BINARY: &str = env!("CARGO_BIN_EXE_image-credential-provider");
const VERSION: &str = env!("CARGO_PKG_VERSION");
const NEEDS_A_REAL_NODE: &str = "<!-- needs a real node -->";
const FAKE_NODE: &str = "<!-- fake node: ";

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/, in a stable order.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![workspace().join("README.md")];
    let mut todo = vec![workspace().join("docs")];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).expect("docs/ exists") {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages[1..].sort();
    pages
}

/// `path` relative to the workspace, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// One fenced block of a page.
struct Block {
    page: PathBuf,
    /// The line of the opening fence, from 1.
    line: usize,
    /// The fence's info string: `yaml`, `sh`, ...
    lang: String,
    /// The block's lines, without the fence's indentation, each ending in a newline.
    text: String,
    /// The line before the fence is `<!-- needs a real node -->`.
    needs_a_real_node: bool,
    /// The heading the block is under (its line), which groups shell blocks.
    heading: usize,
    /// The fake node named for that heading or one above it.
    fake_node: Option<String>,
}

/// Every fenced block of `page`.
fn blocks(page: &Path) -> Vec<Block> {
    let text = fs::read_to_string(page).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    // (heading level, fake node named under it)
    let mut nodes: Vec<(usize, Option<String>)> = Vec::new();
    let mut heading = 0;
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let trimmed = line.trim_start();
        if let Some(level) = heading_level(line) {
            nodes.retain(|(l, _)| *l < level);
            nodes.push((level, None));
            heading = index + 1;
        } else if let Some(name) = trimmed.strip_prefix(FAKE_NODE) {
            let name = name.trim_end().trim_end_matches("-->").trim();
            if let Some(last) = nodes.last_mut() {
                last.1 = Some(name.to_owned());
            } else {
                nodes.push((0, Some(name.to_owned())));
            }
        } else if let Some(lang) = trimmed.strip_prefix("```") {
            let indent = line.len() - trimmed.len();
            let start = index;
            let mut body = String::new();
            index += 1;
            while index < lines.len() && !lines[index].trim_start().starts_with("```") {
                let content = lines[index];
                let cut = content.len() - content.trim_start().len();
                body.push_str(&content[indent.min(cut)..]);
                body.push('\n');
                index += 1;
            }
            assert!(
                index < lines.len(),
                "{}:{}: a fenced block that is never closed",
                shown(page),
                start + 1
            );
            blocks.push(Block {
                page: page.to_owned(),
                line: start + 1,
                lang: lang.trim().to_owned(),
                text: body,
                needs_a_real_node: start > 0 && lines[start - 1].trim() == NEEDS_A_REAL_NODE,
                heading,
                fake_node: nodes.iter().rev().find_map(|(_, n)| n.clone()),
            });
        }
        index += 1;
    }
    blocks
}

/// The level of a Markdown heading (`## x` is 2), outside fenced blocks' content.
fn heading_level(line: &str) -> Option<usize> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    (1..=6)
        .contains(&hashes)
        .then_some(hashes)
        .filter(|_| line[hashes..].starts_with(' '))
}

/// Every file that may hold a page's YAML or JSON example.
fn example_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["examples", "docs"] {
        let Ok(entries) = fs::read_dir(testdata().join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The YAML and JSON blocks of every page, each with the file that holds it (or `None`).
fn data_blocks() -> Vec<(Block, Option<PathBuf>)> {
    let files: Vec<(PathBuf, String)> = example_files()
        .into_iter()
        .filter_map(|path| Some((path.clone(), fs::read_to_string(&path).ok()?)))
        .collect();
    pages()
        .iter()
        .flat_map(|page| blocks(page))
        .filter(|block| block.lang == "yaml" || block.lang == "json")
        .map(|block| {
            let file = files
                .iter()
                .find(|(_, text)| *text == block.text)
                .map(|(path, _)| path.clone());
            (block, file)
        })
        .collect()
}

#[test]
fn every_yaml_and_json_example_of_the_docs_is_a_file_of_testdata() {
    let blocks = data_blocks();
    let missing: Vec<String> = blocks
        .iter()
        .filter(|(_, file)| file.is_none())
        .map(|(block, _)| {
            format!(
                "{}:{}: this ```{} block is no file of testdata/examples/ or testdata/docs/:\n{}",
                shown(&block.page),
                block.line,
                block.lang,
                block.text
            )
        })
        .collect();
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    // The old README test's floor: the rules examples are there.
    let rules = blocks
        .iter()
        .filter(|(block, _)| block.text.starts_with("rules:"))
        .count();
    assert!(rules >= 4, "{rules} rules examples found");
}

#[test]
fn every_file_of_testdata_docs_is_shown_in_a_page() {
    let shown_files: BTreeSet<PathBuf> = data_blocks()
        .into_iter()
        .filter_map(|(_, file)| file)
        .collect();
    let Ok(entries) = fs::read_dir(testdata().join("docs")) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        assert!(
            shown_files.contains(&path),
            "{} is in no page: remove it, or show it",
            shown(&path)
        );
    }
}

/// What a documented YAML or JSON file is.
#[derive(Debug, PartialEq)]
enum Kind {
    Rules,
    KubeletConfig,
    Request,
    Response,
    Kubernetes,
    DockerConfig,
    AuditLine,
    Unknown,
}

/// The kind of `text`, by its top-level keys (each document's, for YAML streams).
fn kind(path: &Path, text: &str) -> Kind {
    if path.extension().is_some_and(|e| e == "json") {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
            return Kind::Unknown;
        };
        return match value["kind"].as_str() {
            Some("CredentialProviderConfig") => Kind::KubeletConfig,
            Some("CredentialProviderRequest") => Kind::Request,
            Some("CredentialProviderResponse") => Kind::Response,
            Some(_) if value["apiVersion"].is_string() => Kind::Kubernetes,
            Some(_) => Kind::Unknown,
            None if value.get("rules").is_some() => Kind::Rules,
            None if ["auths", "credHelpers", "credsStore"]
                .iter()
                .any(|key| value.get(key).is_some()) =>
            {
                Kind::DockerConfig
            }
            None if value.get("time").is_some() && value.get("outcome").is_some() => {
                Kind::AuditLine
            }
            None => Kind::Unknown,
        };
    }
    let top = |key: &str| {
        text.lines()
            .any(|line| line.starts_with(&format!("{key}:")))
    };
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("kind:"))
        .map(|kind| kind.trim().trim_matches('"'))
        .collect();
    if !kinds.is_empty() && top("apiVersion") {
        if kinds == ["CredentialProviderConfig"] {
            Kind::KubeletConfig
        } else if kinds.contains(&"CredentialProviderConfig") {
            Kind::Unknown
        } else {
            Kind::Kubernetes
        }
    } else if top("rules") {
        Kind::Rules
    } else {
        Kind::Unknown
    }
}

/// Asserts the check of a documented file passed, or, for an `invalid-` file, failed.
fn judged(path: &Path, run: &Run, passed: bool) {
    let invalid = path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("invalid-");
    if invalid {
        assert!(
            !passed,
            "{} is named invalid- but passes its check:\n{}{}",
            shown(path),
            run.stdout,
            run.stderr
        );
    } else {
        assert!(
            passed,
            "{}: its check fails (exit {}):\n{}{}",
            shown(path),
            run.code,
            run.stdout,
            run.stderr
        );
    }
}

/// kubernetes-validate, as the tests of deploy/ run it, at 1.34 (per-pod tokens on by
/// default) and the newest release it knows.
fn kubernetes_validate(path: &Path) -> Run {
    let validate = workspace().join(".venv-k8s/bin/kubernetes-validate");
    assert!(
        validate.is_file(),
        "{} is missing: run .ci/setup (it creates .venv-k8s)",
        validate.display()
    );
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut code = 0;
    for version in ["1.34.0", "1.37.0"] {
        let output = Command::new(&validate)
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .arg(path)
            .output()
            .unwrap();
        stdout.push_str(&String::from_utf8_lossy(&output.stdout));
        stderr.push_str(&String::from_utf8_lossy(&output.stderr));
        code = code.max(output.status.code().unwrap_or(-1));
    }
    // A kind it has no schema for is only a warning there: here it is unknown.
    if stdout.contains("Couldn't find schema") || stderr.contains("Couldn't find schema") {
        code = code.max(1);
    }
    Run {
        code,
        stdout,
        stderr,
    }
}

/// A rules file serving only `registry.invalid` from the docker config at `path`.
fn rules_naming_docker_config(dir: &Path, path: &Path) -> PathBuf {
    let rules = dir.join("rules.yaml");
    fs::write(
        &rules,
        format!(
            "rules:\n  - matchImages: [\"registry.invalid\"]\n    provider: docker-config\n    dockerConfig:\n      path: {}\n",
            serde_json::to_string(&path.display().to_string()).unwrap()
        ),
    )
    .unwrap();
    rules
}

/// The fields of an audit log line the plugin writes for a request it serves.
fn audit_fields() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let run = Plugin::new([
        "--config".as_ref(),
        testdata().join("rules.yaml").as_os_str(),
        "--audit-log".as_ref(),
        log.as_os_str(),
    ])
    .stdin(fs::read(testdata().join("request-v1.json")).unwrap())
    .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&log).unwrap().lines().next().unwrap()).unwrap();
    line.as_object().unwrap().keys().cloned().collect()
}

/// The plugin command a page shows before `block` (`cargo run -q -- ARGS < REQUEST` or
/// `image-credential-provider ARGS < REQUEST`), run from the workspace.
fn run_the_command_before(block: &Block) -> Run {
    let earlier: Vec<Block> = blocks(&block.page)
        .into_iter()
        .filter(|b| b.line < block.line && (b.lang == "sh" || b.lang == "console"))
        .collect();
    let command = earlier
        .iter()
        .rev()
        .flat_map(|b| b.text.lines().rev().map(str::to_owned).collect::<Vec<_>>())
        .find(|line| {
            line.contains(" < ")
                && (line.starts_with("cargo run -q --")
                    || line.starts_with("image-credential-provider "))
        })
        .unwrap_or_else(|| {
            panic!(
                "{}:{}: a response with no plugin command before it (`... < REQUEST`)",
                shown(&block.page),
                block.line
            )
        });
    let (args, input) = command.split_once(" < ").unwrap();
    let args = args
        .trim_start_matches("cargo run -q --")
        .trim_start_matches("image-credential-provider ");
    let input = input.split('#').next().unwrap().trim();
    let args: Vec<PathBuf> = args
        .split_whitespace()
        .map(|arg| {
            if arg.starts_with("testdata/") {
                workspace().join(arg)
            } else {
                PathBuf::from(arg)
            }
        })
        .collect();
    Plugin::new(args)
        .stdin(fs::read(workspace().join(input)).unwrap())
        .run()
}

#[test]
fn every_example_file_passes_the_check_of_its_kind() {
    let mut checked = BTreeSet::new();
    let audit = audit_fields();
    let work = tempfile::tempdir().unwrap();
    // The blocks first, so that a response is checked against the command its page shows.
    for (block, file) in data_blocks() {
        let Some(path) = file else { continue };
        if kind(&path, &block.text) == Kind::Response {
            let run = run_the_command_before(&block);
            let passed = run.code == 0
                && serde_json::from_str::<serde_json::Value>(&run.stdout).ok()
                    == serde_json::from_str::<serde_json::Value>(&block.text).ok();
            judged(&path, &run, passed);
            checked.insert(path);
        }
    }
    let mut files: Vec<PathBuf> = fs::read_dir(testdata().join("docs"))
        .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    files.extend(
        example_files()
            .into_iter()
            .filter(|path| path.extension().is_some_and(|e| e == "yaml")),
    );
    files.extend(data_blocks().into_iter().filter_map(|(_, file)| file));
    files.sort();
    files.dedup();
    let mut rules_examples = 0;
    for path in files {
        if checked.contains(&path) {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        match kind(&path, &text) {
            Kind::Rules => {
                let run = Plugin::new([
                    "check-config".as_ref(),
                    "--config".as_ref(),
                    path.as_os_str(),
                ])
                .run();
                let passed = run.code == 0 && run.stderr.is_empty();
                judged(&path, &run, passed);
                if passed {
                    assert!(run.stdout.contains("no problems"), "{}", run.stdout);
                    rules_examples += 1;
                }
            }
            Kind::KubeletConfig => {
                let run = Plugin::new([
                    "check-config".as_ref(),
                    "--kubelet-config".as_ref(),
                    path.as_os_str(),
                ])
                .run();
                judged(
                    &path,
                    &run,
                    run.code == 0 && !run.stderr.contains("warning"),
                );
            }
            Kind::Kubernetes => {
                let run = kubernetes_validate(&path);
                judged(&path, &run, run.code == 0);
            }
            Kind::Request => {
                // Read as the plugin reads it: rules that serve none of it answer empty.
                let rules =
                    rules_naming_docker_config(work.path(), &testdata().join("docker-config.json"));
                let run = Plugin::new(["--config".as_ref(), rules.as_os_str()])
                    .stdin(text.clone())
                    .run();
                judged(&path, &run, run.code == 0);
            }
            Kind::DockerConfig => {
                let rules = rules_naming_docker_config(work.path(), &path);
                let run = Plugin::new([
                    "check-config".as_ref(),
                    "--config".as_ref(),
                    rules.as_os_str(),
                ])
                .run();
                judged(&path, &run, run.code == 0 && run.stderr.is_empty());
            }
            Kind::AuditLine => {
                let line: serde_json::Value = serde_json::from_str(&text).unwrap();
                let fields: BTreeSet<String> = line.as_object().unwrap().keys().cloned().collect();
                let run = Run {
                    code: 0,
                    stdout: format!("documented {fields:?}\nwritten    {audit:?}\n"),
                    stderr: String::new(),
                };
                judged(&path, &run, fields == audit);
            }
            Kind::Response => panic!(
                "{}: a response no page shows after the command that prints it",
                shown(&path)
            ),
            Kind::Unknown => panic!(
                "{}: tests/docs.rs does not know this kind of file: teach it, or show it otherwise",
                shown(&path)
            ),
        }
    }
    assert!(
        rules_examples >= 4,
        "{rules_examples} rules examples passed"
    );
}

#[test]
fn the_kinds_are_told_apart() {
    let yaml = Path::new("x.yaml");
    let json = Path::new("x.json");
    assert_eq!(kind(yaml, "rules:\n  - provider: ecr\n"), Kind::Rules);
    assert_eq!(
        kind(
            yaml,
            "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n"
        ),
        Kind::KubeletConfig
    );
    assert_eq!(
        kind(
            yaml,
            "apiVersion: v1\nkind: ServiceAccount\n---\napiVersion: v1\nkind: Pod\n"
        ),
        Kind::Kubernetes
    );
    assert_eq!(
        kind(
            yaml,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nrules: []\n"
        ),
        Kind::Kubernetes
    );
    assert_eq!(kind(yaml, "providers:\n  - name: x\n"), Kind::Unknown);
    assert_eq!(kind(yaml, "    tokenAttributes:\n"), Kind::Unknown);
    assert_eq!(kind(json, "{\"auths\":{}}"), Kind::DockerConfig);
    assert_eq!(
        kind(json, "{\"kind\":\"CredentialProviderResponse\"}"),
        Kind::Response
    );
    assert_eq!(kind(json, "{\"a\":1}"), Kind::Unknown);
}

/// The anchors GitHub gives the headings of `page`.
fn anchors(page: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(page).unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(level) = heading_level(line).filter(|_| !fenced) else {
            continue;
        };
        let slug: String = line[level..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let count = seen.entry(slug.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// The link targets of `page`'s text, outside code, with their lines.
fn links(page: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(page).unwrap();
    let mut links = Vec::new();
    let mut fenced = false;
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code spans are not links.
        let prose: String = line
            .split('`')
            .enumerate()
            .map(|(i, part)| if i % 2 == 0 { part } else { "" })
            .collect();
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let end = after.find(')').unwrap_or(after.len());
            links.push((number + 1, after[..end].to_owned()));
            rest = &after[end..];
        }
    }
    links
}

/// `path` with `.` and `..` taken out.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn every_relative_link_of_the_docs_reaches_a_file_and_its_anchor() {
    let mut broken = Vec::new();
    for page in pages() {
        for (line, target) in links(&page) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if file.is_empty() {
                page.clone()
            } else {
                normal(&page.parent().unwrap().join(file))
            };
            if !file.exists() {
                broken.push(format!("{}:{line}: {target}: no such file", shown(&page)));
            } else if !anchor.is_empty()
                && file.extension().is_some_and(|e| e == "md")
                && !anchors(&file).contains(anchor)
            {
                broken.push(format!(
                    "{}:{line}: {target}: no such heading in {}",
                    shown(&page),
                    shown(&file)
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("p.md");
    fs::write(
        &page,
        "# Token-exchange backends: quay, `jfrog`\n## Per-pod identity (service account tokens)\n## x\n## x\n```sh\n# not a heading\n```\n",
    )
    .unwrap();
    assert_eq!(
        anchors(&page),
        BTreeSet::from([
            "token-exchange-backends-quay-jfrog".to_owned(),
            "per-pod-identity-service-account-tokens".to_owned(),
            "x".to_owned(),
            "x-1".to_owned(),
        ])
    );
}

/// The pages whose shell blocks are run here.
fn install_pages() -> Vec<PathBuf> {
    vec![workspace().join("docs/install.md")]
}

/// The commands a page's shell block may run against a fake node.
const COMMANDS: &[&str] = &[
    "cat",
    "cd",
    "chmod",
    "cp",
    "echo",
    "export",
    "grep",
    "install",
    "ln",
    "ls",
    "mkdir",
    "mv",
    "objcopy",
    "python3",
    "sha256sum",
    "tar",
    "test",
];

/// The names the binary answers to.
const BINARY_NAMES: &[&str] = &[
    "image-credential-provider",
    "ecr-credential-provider",
    "acr-credential-provider",
    "auth-provider-gcp",
];

/// The node's top-level directories that are taken inside the fake root.
const NODE_DIRS: &[&str] = &["etc", "usr", "var", "opt", "home", "lib", "srv", "run"];

/// The characters after which a `/` starts a path.
fn starts_a_path(before: Option<char>) -> bool {
    before.is_none_or(|c| " \t=\"'(:>".contains(c))
}

/// `line` with every absolute path under a node directory taken inside `root`.
fn inside(line: &str, root: &str) -> String {
    let mut out = String::new();
    let mut before = None;
    for (i, c) in line.char_indices() {
        if c == '/' && starts_a_path(before) {
            let rest = &line[i + 1..];
            if NODE_DIRS.iter().any(|dir| {
                rest.strip_prefix(dir)
                    .is_some_and(|r| r.is_empty() || r.starts_with(['/', ' ', '"', '\'']))
            }) {
                out.push_str(root);
            }
        }
        out.push(c);
        before = Some(c);
    }
    out
}

/// The absolute paths of `line` outside `allowed` directories.
fn paths_outside(line: &str, allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut before = None;
    for (i, c) in line.char_indices() {
        if c == '/'
            && starts_a_path(before)
            && line[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic())
        {
            let path: String = line[i..]
                .chars()
                .take_while(|c| !" \t\"';|&)".contains(*c))
                .collect();
            let fine = allowed.iter().any(|dir| path.starts_with(dir))
                || ["/dev/null", "/dev/stdout", "/dev/stdin", "/dev/stderr"]
                    .contains(&path.as_str());
            if !fine {
                found.push(path);
            }
        }
        before = Some(c);
    }
    found
}

/// `line` cut into commands at `|`, `&&`, `||` and `;` outside quotes, without a comment.
fn commands(line: &str) -> Vec<String> {
    let mut commands = vec![String::new()];
    let mut quote = None;
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && (i == 0 || chars[i - 1].is_whitespace()) => break,
            None if c == '|' || c == ';' || (c == '&' && chars.get(i + 1) == Some(&'&')) => {
                commands.push(String::new());
                if chars.get(i + 1) == Some(&c) {
                    i += 1;
                }
                i += 1;
                continue;
            }
            None => {}
        }
        commands.last_mut().unwrap().push(c);
        i += 1;
    }
    commands
        .into_iter()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

/// A shell block's text made into script lines for a fake node at `root`: paths taken
/// inside it, `--root` given to `install` and `uninstall`; or why it cannot be run.
fn script(block: &Block, root: &str, release: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut lines: Vec<String> = block
        .text
        .lines()
        .filter_map(|line| match block.lang.as_str() {
            "console" => line.strip_prefix("$ ").map(str::to_owned),
            _ => Some(line.to_owned()),
        })
        .collect();
    // Continuation lines joined, heredocs kept as they are.
    let mut logical: Vec<(String, bool)> = Vec::new();
    let mut heredoc: Option<String> = None;
    for line in lines.drain(..) {
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            logical.push((line, false));
            continue;
        }
        match logical.last_mut() {
            Some((last, true)) if last.ends_with('\\') => {
                last.pop();
                last.push_str(line.trim_start());
            }
            _ => logical.push((line.clone(), true)),
        }
        if let Some((_, delimiter)) = line.split_once("<<") {
            heredoc = Some(
                delimiter
                    .trim()
                    .trim_matches('\'')
                    .trim_matches('"')
                    .to_owned(),
            );
        }
    }
    for (line, is_command) in logical {
        if !is_command {
            out.push_str(&inside(&line, root));
            out.push('\n');
            continue;
        }
        let mut on_the_node = false;
        for command in commands(&line) {
            let words: Vec<&str> = command
                .split_whitespace()
                .skip_while(|w| w.contains('=') && !w.starts_with('-'))
                .collect();
            let Some(program) = words.first() else {
                continue;
            };
            let name = program.rsplit('/').next().unwrap();
            if BINARY_NAMES.contains(&name) {
                if matches!(words.get(1), Some(&"install") | Some(&"uninstall")) {
                    on_the_node = true;
                }
            } else if !COMMANDS.contains(program) {
                return Err(format!(
                    "`{program}` is not a command tests/docs.rs runs against a fake node"
                ));
            }
        }
        let line = if on_the_node {
            // install and uninstall take their paths on the node: only --root changes.
            let mut words: Vec<String> = line.split(' ').map(str::to_owned).collect();
            let at = words
                .iter()
                .position(|w| w == "install" || w == "uninstall")
                .unwrap();
            words.insert(at + 1, format!("--root '{root}'"));
            words.join(" ")
        } else {
            inside(&line, root)
        };
        if !on_the_node {
            let outside = paths_outside(&line, &[root, release]);
            if !outside.is_empty() {
                return Err(format!("it names paths outside the fake node: {outside:?}"));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// A directory holding a release's files, as `cargo xtask dist` names them, made from the
/// test binary: the binary alone (with a `.dep-v0` section), the tarball, `SHA256SUMS`, and
/// the binary as `image-credential-provider`.
fn release() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("image-credential-provider-{VERSION}-linux-amd64");
    let plain = dir.path().join("image-credential-provider");
    fs::copy(BINARY, &plain).unwrap();
    let section = dir.path().join("dep-v0.section");
    let made = Command::new("python3")
        .args([
            "-c",
            "import json, sys, zlib; open(sys.argv[1], 'wb').write(zlib.compress(json.dumps({'packages': [{'name': 'image-credential-provider', 'version': sys.argv[2], 'source': 'local', 'kind': 'runtime'}]}).encode()))",
        ])
        .arg(&section)
        .arg(VERSION)
        .status()
        .expect("python3 runs: run .ci/setup");
    assert!(made.success());
    let objcopy = Command::new("objcopy")
        .arg(format!("--add-section=.dep-v0={}", section.display()))
        .arg(&plain)
        .arg(dir.path().join(&base))
        .status()
        .expect("objcopy (binutils) runs: run .ci/setup");
    assert!(objcopy.success());
    fs::remove_file(&section).unwrap();
    let tree = dir.path().join("tree").join(&base);
    fs::create_dir_all(&tree).unwrap();
    fs::copy(BINARY, tree.join("image-credential-provider")).unwrap();
    fs::copy(workspace().join("LICENSE"), tree.join("LICENSE")).unwrap();
    fs::copy(workspace().join("README.md"), tree.join("README.md")).unwrap();
    fs::copy(
        workspace().join("packaging/rules.example.yaml"),
        tree.join("rules.example.yaml"),
    )
    .unwrap();
    let tar = Command::new("tar")
        .arg("czf")
        .arg(dir.path().join(format!("{base}.tar.gz")))
        .arg("-C")
        .arg(dir.path().join("tree"))
        .arg(&base)
        .status()
        .unwrap();
    assert!(tar.success());
    fs::remove_dir_all(dir.path().join("tree")).unwrap();
    let sums = Command::new("sh")
        .arg("-c")
        .arg(format!("sha256sum {base} {base}.tar.gz > SHA256SUMS"))
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(sums.success());
    dir
}

/// A directory of its own holding `release`'s files, as hard links: what a page's commands
/// add or remove there stays there.
fn linked(release: &tempfile::TempDir) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(release.path()).unwrap() {
        let path = entry.unwrap().path();
        fs::hard_link(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// The fake node a heading names.
fn fake_node(name: Option<&str>) -> install::Node {
    match name.unwrap_or("empty") {
        "empty" => install::Node::new(),
        "kubeadm" => install::kubeadm(),
        "eks" => install::eks_al2023(),
        "aks" => install::aks_ubuntu(),
        "gke" => install::gke_cos(),
        "k3s" => install::rancher("k3s"),
        "rke2" => install::rancher("rke2"),
        other => panic!("no fake node {other:?}: empty, kubeadm, eks, aks, gke, k3s, rke2"),
    }
}

/// Runs `script` with bash in `release`, with a clean environment and no binary on `PATH`.
fn run_script(script: &str, release: &Path) -> Run {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(release)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", home.path())
        .env(
            "IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR",
            home.path().join("token-cache"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env(
            "IMAGE_CREDENTIAL_PROVIDER_AZURE_IMDS_ENDPOINT",
            "http://127.0.0.1:9",
        )
        .env("NO_PROXY", "*")
        .output()
        .expect("bash runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn every_shell_block_of_the_install_pages_runs_on_a_fake_node_or_is_marked() {
    let mut failures = Vec::new();
    let mut ran = 0;
    let made = release();
    for page in install_pages() {
        // The blocks of one heading, in order, in one shell and one root.
        let mut groups: BTreeMap<usize, Vec<Block>> = BTreeMap::new();
        for block in blocks(&page) {
            if (block.lang == "sh" || block.lang == "console") && !block.needs_a_real_node {
                groups.entry(block.heading).or_default().push(block);
            }
        }
        for group in groups.values() {
            let node = fake_node(group[0].fake_node.as_deref());
            let release = linked(&made);
            let root = node.root().to_str().unwrap().to_owned();
            fs::set_permissions(release.path(), fs::Permissions::from_mode(0o755)).unwrap();
            let mut text = String::new();
            for block in group {
                match script(block, &root, release.path().to_str().unwrap()) {
                    Ok(lines) => {
                        text.push_str(&format!(
                            "echo '>>> {}:{}' >&2\n{lines}",
                            shown(&block.page),
                            block.line
                        ));
                        ran += 1;
                    }
                    Err(why) => failures.push(format!(
                        "{}:{}: {why}: run it in tests/docs.rs or mark the block {NEEDS_A_REAL_NODE}",
                        shown(&block.page),
                        block.line
                    )),
                }
            }
            let run = run_script(&text, release.path());
            if run.code != 0 {
                failures.push(format!(
                    "{}:{}: the blocks under this heading fail on a fake node (exit {}):\n{text}\nstdout:\n{}\nstderr:\n{}",
                    shown(&page),
                    group[0].heading,
                    run.code,
                    run.stdout,
                    run.stderr
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(ran >= 8, "{ran} shell blocks ran");
}

#[test]
fn a_script_takes_node_paths_inside_the_root_and_refuses_what_it_cannot_run() {
    let block = |text: &str| Block {
        page: PathBuf::from("p.md"),
        line: 1,
        lang: "sh".to_owned(),
        text: text.to_owned(),
        needs_a_real_node: false,
        heading: 0,
        fake_node: None,
    };
    assert_eq!(
        script(
            &block("install -D x /usr/local/bin/x   # a comment\nexport PATH=\"$PATH:/usr/local/bin\"\n"),
            "/R",
            "/W"
        )
        .unwrap(),
        "install -D x /R/usr/local/bin/x   # a comment\nexport PATH=\"$PATH:/R/usr/local/bin\"\n"
    );
    assert_eq!(
        script(
            &block("./image-credential-provider install --config /etc/r.yaml\n"),
            "/R",
            "/W"
        )
        .unwrap(),
        "./image-credential-provider install --root '/R' --config /etc/r.yaml\n"
    );
    assert_eq!(
        script(
            &block("cat > /etc/a <<'EOF'\npath: /var/x\nEOF\n"),
            "/R",
            "/W"
        )
        .unwrap(),
        "cat > /R/etc/a <<'EOF'\npath: /R/var/x\nEOF\n"
    );
    let console = Block {
        lang: "console".to_owned(),
        ..block("$ mkdir -p /etc/x\nsome output /tmp/y\n")
    };
    assert_eq!(script(&console, "/R", "/W").unwrap(), "mkdir -p /R/etc/x\n");
    assert!(script(&block("systemctl restart kubelet\n"), "/R", "/W").is_err());
    assert!(script(&block("echo x | kubectl apply -f -\n"), "/R", "/W").is_err());
    assert!(script(&block("cp x /tmp/y\n"), "/R", "/W").is_err());
    assert!(
        script(
            &block("image-credential-provider get x \\\n  && apt-get install y\n"),
            "/R",
            "/W"
        )
        .is_err()
    );
}
