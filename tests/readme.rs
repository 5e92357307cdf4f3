//! The README's rules examples are the files under `testdata/examples/`, and
//! `check-config` passes on each: an operator can try every example as it is written.

use crate::common;

use std::path::PathBuf;

use common::{Plugin, testdata};

/// Every YAML block of the README that is a rules file.
fn readme_rules_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block.to_owned()))
        .filter(|block| block.starts_with("rules:"))
        .collect()
}

/// The example rules files.
fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(testdata().join("examples"))
        .expect("testdata/examples/ holds the README's rules examples")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_rules_example_of_the_readme_is_an_example_file() {
    let blocks = readme_rules_blocks();
    assert!(blocks.len() >= 4, "{} rules examples found", blocks.len());
    let files: Vec<String> = examples()
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect();
    for block in blocks {
        assert!(
            files.contains(&block),
            "this README example is not a file of testdata/examples/:\n{block}"
        );
    }
}

#[test]
fn check_config_passes_on_every_example_file() {
    let files = examples();
    assert!(files.len() >= 4);
    for path in files {
        let run = Plugin::new([
            "check-config".as_ref(),
            "--config".as_ref(),
            path.as_os_str(),
        ])
        .run();
        assert_eq!(
            (run.code, run.stderr.as_str()),
            (0, ""),
            "{}: {}",
            path.display(),
            run.stdout
        );
        assert!(run.stdout.contains("no problems"), "{}", run.stdout);
    }
}
