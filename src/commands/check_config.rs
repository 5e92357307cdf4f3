//! `check-config --config FILE`: every problem of a rules file; `check-config
//! --kubelet-config FILE|DIR [--config FILE] [--name NAME]`: a kubelet configuration
//! judged as the kubelet judges it. One line per problem and warning on stderr, and exit
//! 1 on a problem.

use std::path::Path;

use super::{Globals, Outcome};
use crate::plural::count;
use crate::{kubelet_config, rules};

/// Checks the rules file of `--config`, building every backend and reading every file
/// they read.
pub fn rules(globals: &Globals) -> Outcome {
    let Some(path) = globals.config.as_deref() else {
        return Outcome::usage(
            "check-config needs --config FILE (a rules file), or --kubelet-config FILE|DIR (a \
             kubelet configuration)",
            "--help",
        );
    };
    match rules::check(path, &globals.env) {
        Ok(rules) => {
            println!(
                "{}: {}, no problems",
                rules.origin,
                count(rules.rules.len(), "rule")
            );
            Outcome::Success
        }
        Err(problems) => {
            for problem in &problems.problems {
                eprintln!("error: {}: {problem}", problems.origin);
            }
            Outcome::Failure
        }
    }
}

/// Judges the kubelet configuration at `path`, with the rules of `--config` run as
/// provider `name` when given.
pub fn kubelet(globals: &Globals, path: &Path, name: &str) -> Outcome {
    let judgement = kubelet_config::check(path, globals.config.as_deref(), name, &globals.env);
    let report = &judgement.report;
    for error in &report.errors {
        eprintln!("error: {error}");
    }
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if !report.errors.is_empty() {
        return Outcome::Failure;
    }
    let warnings = match report.warnings.len() {
        0 => String::new(),
        n => format!(" ({})", count(n, "warning")),
    };
    let providers = count(judgement.providers, "provider");
    println!("{}: {providers}, no problems{warnings}", judgement.origin);
    Outcome::Success
}
