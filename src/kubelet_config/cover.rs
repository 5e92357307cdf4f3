//! Which images the kubelet sends this binary: a rule pattern is reached when some
//! `matchImages` entry of the provider entry that runs the binary covers it, that is,
//! matches every image the pattern matches.
//!
//! Both are kubelet globs: per host label a Go `filepath.Match` pattern, then the port
//! (equal) and the path (a plain prefix). Coverage of one label by another is decided on
//! the globs themselves: the outer `*` absorbs any run of the inner glob, `?` any one
//! character or class, a class or character the characters it contains. What this says
//! is covered is covered; the rare globs it cannot prove covered are reported.

use std::path::Path;

use icp_core::pattern::SchemelessUrl;
use icp_core::quote;

use super::{Entry, Report};
use crate::rules::Rules;

/// One step of a Go glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    Any,
    /// A character or a class: one character in these inclusive ranges.
    In(Vec<(char, char)>),
}

/// A host label read as Go's `filepath.Match` reads a pattern, or `None` when Go refuses
/// it (`ErrBadPattern`: the kubelet then matches no image with it). Escapes and negated
/// classes cannot occur: Go's URL parser refuses `\` and `^` in a host.
pub fn glob(label: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = label.chars().peekable();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => Token::Star,
            '?' => Token::Any,
            '\\' => return None,
            '[' => {
                let mut ranges = Vec::new();
                loop {
                    if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
                        break;
                    }
                    let end = |c: Option<char>| c.filter(|c| !matches!(c, '-' | ']' | '\\' | '^'));
                    let low = end(chars.next())?;
                    let high = match chars.next_if_eq(&'-') {
                        Some(_) => end(chars.next())?,
                        None => low,
                    };
                    chars.peek()?;
                    ranges.push((low, high));
                }
                Token::In(ranges)
            }
            c => Token::In(vec![(c, c)]),
        });
    }
    Some(tokens)
}

/// Whether every character `inner` takes, `outer` takes.
fn takes(outer: &Token, inner: &Token) -> bool {
    match (outer, inner) {
        (Token::Any, Token::Any | Token::In(_)) => true,
        (Token::In(outer), Token::In(inner)) => inner.iter().all(|&(low, high)| {
            // Extend what the outer ranges cover from `low` on, until it stops growing.
            let mut next = low as u32;
            loop {
                let before = next;
                for &(a, b) in outer {
                    if a as u32 <= next && next <= b as u32 {
                        next = b as u32 + 1;
                    }
                }
                if low > high || next > high as u32 {
                    return true;
                }
                if next == before {
                    return false;
                }
            }
        }),
        _ => false,
    }
}

/// Whether glob `outer` matches every string glob `inner` matches.
pub fn label_covers(outer: &[Token], inner: &[Token]) -> bool {
    let width = inner.len() + 1;
    // covered[i * width + j]: outer[i..] covers inner[j..].
    let mut covered = vec![false; (outer.len() + 1) * width];
    covered[outer.len() * width + inner.len()] = true;
    for i in (0..outer.len()).rev() {
        for j in (0..=inner.len()).rev() {
            covered[i * width + j] = match &outer[i] {
                Token::Star => {
                    covered[(i + 1) * width + j] || (j < inner.len() && covered[i * width + j + 1])
                }
                single => {
                    j < inner.len() && takes(single, &inner[j]) && covered[(i + 1) * width + j + 1]
                }
            };
        }
    }
    covered[0]
}

/// Whether kubelet glob `outer` matches every image kubelet glob `inner` matches.
pub fn covers(outer: &SchemelessUrl, inner: &SchemelessUrl) -> bool {
    outer.port == inner.port
        && outer.labels.len() == inner.labels.len()
        && inner.path.starts_with(&outer.path)
        && outer
            .labels
            .iter()
            .zip(&inner.labels)
            .all(|(o, i)| match (glob(o), glob(i)) {
                (Some(o), Some(i)) => label_covers(&o, &i),
                _ => false,
            })
}

/// With `--config RULES`: finds the provider entry named `name` (the one that runs this
/// binary) and warns about what keeps `rules` from working through it: no such entry,
/// `args` that name other rules, and every rule pattern none of its `matchImages`
/// covers, whose images the kubelet (partly or wholly) never asks this binary about.
pub fn check_reach(
    entries: &[Entry],
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
            if !globs.iter().any(|outer| covers(outer, &inner)) {
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

    fn label(outer: &str, inner: &str) -> bool {
        label_covers(&glob(outer).unwrap(), &glob(inner).unwrap())
    }

    #[test]
    fn go_glob_syntax() {
        assert_eq!(
            glob("a*"),
            Some(vec![Token::In(vec![('a', 'a')]), Token::Star])
        );
        assert_eq!(
            glob("[a-c!]"),
            Some(vec![Token::In(vec![('a', 'c'), ('!', '!')])])
        );
        for bad in ["[", "[a", "[]", "[a-]", "[-a]", "[a-", "a\\*"] {
            assert_eq!(glob(bad), None, "{bad}");
        }
    }

    #[test]
    fn label_coverage() {
        let covered = [
            ("*", "*-docker"),
            ("*", "*"),
            ("*-docker", "us-docker"),
            ("*-docker", "*-docker"),
            ("ecr*", "ecr-fips"),
            ("ecr*", "ecr*"),
            ("a*", "ab*"),
            ("a?", "ab"),
            ("?", "[xy]"),
            ("[a-c]", "b"),
            ("[a-cd-f]", "[b-e]"),
            ("**", "*"),
        ];
        for (outer, inner) in covered {
            assert!(label(outer, inner), "{outer} covers {inner}");
        }
        let not_covered = [
            ("ecr", "ecr*"),
            ("ecr", "ECR"),
            ("?", "*"),
            ("*b", "*"),
            ("a?", "a*"),
            ("[a-c]", "[b-e]"),
            ("[ab]", "?"),
            ("us-docker", "*-docker"),
        ];
        for (outer, inner) in not_covered {
            assert!(!label(outer, inner), "{outer} does not cover {inner}");
        }
    }

    #[test]
    fn url_coverage_compares_label_count_port_and_path_prefix() {
        let url = |s| SchemelessUrl::parse(s).unwrap();
        assert!(covers(&url("*.gcr.io"), &url("us.gcr.io/team")));
        assert!(covers(&url("gcr.io/team"), &url("gcr.io/team/app")));
        assert!(!covers(&url("gcr.io/team"), &url("gcr.io")));
        assert!(!covers(&url("*.gcr.io"), &url("gcr.io")));
        assert!(!covers(&url("reg.io"), &url("reg.io:5000")));
        assert!(covers(&url("reg.io:5000"), &url("reg.io:5000/x")));
        assert!(!covers(
            &url("*.dkr.ecr.*.amazonaws.com"),
            &url("*.dkr.ecr*.*.amazonaws.com")
        ));
    }

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
