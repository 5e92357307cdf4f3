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

use super::{ProviderEntry, Report, audiences, fit};
use crate::rules::Rules;

/// With `--config RULES`: finds the provider entries that run this binary (the one
/// named `name`, and those named `name-…` that serve one audience with `--audience`) and
/// warns about what keeps `rules` from working through them: no such entry (when the
/// configuration was read `complete`, every file of it read and decoded), `args` that
/// name other rules, `tokenAttributes` that do not fit the rules an entry serves
/// ([`fit`]), and every rule pattern that no `matchImages` entry of an entry serving the
/// rule covers, whose images the kubelet (partly or wholly) never asks this binary about.
pub fn check_reach(
    entries: &[ProviderEntry],
    rules: &Rules,
    rules_path: &Path,
    name: &str,
    origin: &str,
    complete: bool,
    report: &mut Report,
) {
    let ours: Vec<&ProviderEntry> = entries
        .iter()
        .filter(|e| super::runs_binary(&e.provider, name))
        .collect();
    if ours.is_empty() {
        if !complete {
            return;
        }
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
    }
    for entry in &ours {
        check_args(entry, rules, rules_path, report);
        fit::check(entry, rules, report);
    }
    for rule in &rules.rules {
        let serving: Vec<SchemelessUrl> = ours
            .iter()
            .filter(|entry| audiences::serves(entry, rule))
            .flat_map(|entry| &entry.provider.match_images)
            .filter_map(|m| SchemelessUrl::parse(m).ok())
            .collect();
        for (j, pattern) in rule.patterns.iter().enumerate() {
            let Ok(inner) = SchemelessUrl::parse(pattern.as_str()) else {
                continue;
            };
            if !serving.iter().any(|outer| outer.covers(&inner)) {
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

/// Warns when `entry`'s arguments run the binary with other rules than `rules`.
fn check_args(entry: &ProviderEntry, rules: &Rules, rules_path: &Path, report: &mut Report) {
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
}

/// The value of `--config` in a plugin's arguments.
pub fn config_arg(args: &[String]) -> Option<&str> {
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
