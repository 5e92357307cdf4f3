//! `docs/security.md` names the code that enforces each rule and the tests that show it:
//! every path it names must exist, and every test it names must be a function of the
//! workspace, so that a renamed test or a moved module makes this fail rather than leave
//! the page pointing at nothing.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The backticked spans of `text`.
fn spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_security_page_names_code_and_tests_that_exist() {
    let root = Path::new(ROOT);
    let page = fs::read_to_string(root.join("docs/security.md")).unwrap();
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests"] {
        sources(&root.join(dir), &mut files);
    }
    let code: String = files
        .iter()
        .map(|file| fs::read_to_string(file).unwrap())
        .collect();
    let mut tests = 0;
    for span in spans(&page) {
        let local = ["src/", "crates/", "tests/", "docs/", "deploy/"];
        if local.iter().any(|prefix| span.starts_with(prefix)) {
            assert!(root.join(span).exists(), "docs/security.md names {span}");
        } else if span.matches('_').count() >= 3
            && span.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            assert!(
                code.contains(&format!("fn {span}(")),
                "docs/security.md names the test {span}, which no file has"
            );
            tests += 1;
        }
    }
    assert!(tests >= 10, "docs/security.md names {tests} tests");
}
