//! Which images the kubelet sends this binary: a rule pattern is reached when some
//! `matchImages` entry of the provider entry that runs the binary covers it, that is,
//! matches every image the pattern matches.
//!
//! Both are kubelet globs, and whether one covers the other is decided by the one reader
//! of them, `icp_core::pattern` ([`SchemelessUrl::covers`]): what it says is covered is
//! covered; the rare globs it cannot prove covered are reported.

use std::path::Path;

use icp_core::pattern::SchemelessUrl;
use icp_core::quote;

use super::{ProviderEntry, Report};
use crate::rules::Rules;

/// With `--config RULES`: finds the provider entry named `name` (the one that runs this
/// binary) and warns about what keeps `rules` from working through it: no such entry,
/// `args` that name other rules, and every rule pattern none of its `matchImages`
/// covers, whose images the kubelet (partly or wholly) never asks this binary about.
pub fn check_reach(
    entries: &[ProviderEntry],
    rules: &Rules,
    rules_path: &Path,
    name: &str,
    origin: &str,
    report: &mut Report,
) {
    let Some(entry) = entries.iter().find(|e| e.provider.name == name) else {
        report.warning(
            origin,
            "",
            format!(
                "no provider is named {}, so the kubelet never runs this binary with {}: give --name",
                quote(name),
                rules.origin
            ),
        );
        return;
    };
    match config_arg(&entry.provider.args) {
        None => report.warning(
            &entry.file,
            entry.at("args"),
            format!(
                "runs the binary without --config, with its embedded default rules, not {}",
                rules.origin
            ),
        ),
        Some(arg) if Path::new(arg).is_relative() => report.warning(
            &entry.file,
            entry.at("args"),
            format!(
                "--config {} is relative: the kubelet resolves it against its own working directory",
                quote(arg)
            ),
        ),
        Some(arg) if !same_file(Path::new(arg), rules_path) => report.warning(
            &entry.file,
            entry.at("args"),
            format!(
                "runs the binary with --config {}, not {}",
                quote(arg),
                rules.origin
            ),
        ),
        Some(_) => {}
    }
    let globs: Vec<SchemelessUrl> = entry
        .provider
        .match_images
        .iter()
        .filter_map(|m| SchemelessUrl::parse(m).ok())
        .collect();
    for rule in &rules.rules {
        for (j, pattern) in rule.patterns.iter().enumerate() {
            let Ok(inner) = SchemelessUrl::parse(pattern.as_str()) else {
                continue;
            };
            if !globs.iter().any(|outer| outer.covers(&inner)) {
                report.warning(
                    &rules.origin,
                    format!("rules[{}].matchImages[{j}]", rule.index),
                    format!(
                        "{}: no matchImages entry of provider {} covers it, so the kubelet does not ask this binary about all of its images",
                        quote(pattern.as_str()),
                        quote(name)
                    ),
                );
            }
        }
    }
}

/// The value of `--config` in a plugin's arguments.
fn config_arg(args: &[String]) -> Option<&str> {
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(String::as_str);
        }
        if let Some(value) = arg.strip_prefix("--config=") {
            return Some(value);
        }
    }
    None
}

/// Whether `a` and `b` name one file (both resolved when they exist, else compared as
/// absolute paths).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_argument_forms() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            config_arg(&args(&["-v", "--config", "/r.yaml"])),
            Some("/r.yaml")
        );
        assert_eq!(config_arg(&args(&["--config=/r.yaml"])), Some("/r.yaml"));
        assert_eq!(config_arg(&args(&["--config"])), None);
        assert_eq!(config_arg(&args(&["get-credentials"])), None);
    }
}
