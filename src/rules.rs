//! The rules file: which backend serves which images.
//!
//! ```yaml
//! rules:
//!   - matchImages: ["registry.corp.example", "*.corp.example:5000/team"]
//!     provider: docker-config
//!     dockerConfig:
//!       path: /etc/kubernetes/registry-auth.json
//!     cacheDuration: 10m     # optional; caps what a token backend derives, sets it for static files
//!     cacheKeyType: Registry # optional; default Registry, or Image when a pattern has a path
//! cache:                     # optional: the token cache shared by plugin processes
//!   enabled: true
//!   dir: /var/cache/image-credential-provider
//! ```
//!
//! The file is YAML or JSON. It is read into a `serde_json::Value` and checked field by
//! field, so that `check-config` can list every problem with the rule and field it is in.
//! Relative paths in provider sections resolve against the rules file's directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use icp_core::{CacheKeyType, Pattern};
use serde_json::Value;

use crate::backends::{self, Backend};
use crate::cache::CacheSettings;
use crate::duration;

/// Largest rules file read.
const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// The fields of a rule other than provider sections.
const RULE_FIELDS: &[&str] = &["matchImages", "provider", "cacheDuration", "cacheKeyType"];

/// The rules in force.
pub struct Rules {
    /// Where they come from: a file, or the embedded default.
    pub origin: String,
    /// The rules, in order; the first that matches an image serves it.
    pub rules: Vec<Rule>,
    /// The `cache` section.
    pub cache: CacheSettings,
}

/// One rule.
pub struct Rule {
    /// Position in the file, from 0, for logs.
    pub index: usize,
    /// `matchImages`: the rule applies to an image any of these match.
    pub patterns: Vec<Pattern>,
    /// The name of the backend (the rule's `provider` field), for logs and the token
    /// cache.
    pub backend_name: String,
    /// The backend that serves the images.
    pub backend: Backend,
    /// `cacheDuration`: caps the cache duration derived from a token's expiry, and is the
    /// cache duration of credentials that do not expire.
    pub cache_duration: Option<Duration>,
    /// `cacheKeyType`.
    pub cache_key_type: CacheKeyType,
}

impl Rules {
    /// The first rule that serves `image`: one of its patterns matches the image's name
    /// and its backend accepts the image.
    pub fn find(&self, image: &icp_core::ImageRef) -> Option<&Rule> {
        let name = image.name();
        self.rules.iter().find(|rule| {
            rule.patterns.iter().any(|p| p.matches(&name)) && rule.backend.serves(image)
        })
    }
}

/// Every problem found in a rules file.
#[derive(Debug)]
pub struct Problems {
    /// The file, or "embedded default".
    pub origin: String,
    /// One line each, with the rule index and field.
    pub problems: Vec<String>,
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config {}: {}",
            self.origin,
            self.problems.first().map_or("invalid", String::as_str)
        )?;
        if self.problems.len() > 1 {
            write!(
                f,
                " (and {} more problems; run check-config)",
                self.problems.len() - 1
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Loads the rules file at `path`, or the embedded default when there is none. With
/// `check`, files the backends read are read too.
pub fn load(path: Option<&Path>, check: bool) -> Result<Rules, Problems> {
    match path {
        Some(path) => load_file(path, check),
        None => Ok(embedded()),
    }
}

fn load_file(path: &Path, check: bool) -> Result<Rules, Problems> {
    let origin = path.display().to_string();
    let fail = |problem: String| Problems {
        origin: origin.clone(),
        problems: vec![problem],
    };
    let text = read_capped(path).map_err(fail)?;
    let value = parse_document(path, &text).map_err(fail)?;
    let base_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    from_value(value, &base_dir, &origin, check)
}

fn read_capped(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let bytes = icp_core::io::read_capped(file, MAX_FILE_SIZE).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_owned())
}

/// JSON by extension `.json` or a leading `{`, YAML otherwise.
fn parse_document(path: &Path, text: &str) -> Result<Value, String> {
    let is_json = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => true,
        Some("yaml" | "yml") => false,
        _ => text.trim_start().starts_with('{'),
    };
    if is_json {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| format!("invalid YAML: {e}"))
    }
}

/// The rules with no `--config`: one rule per built-in backend that serves well-known
/// registry hosts with no configuration, in [`backends::TABLE`] order.
pub fn embedded() -> Rules {
    let rules = backends::TABLE
        .iter()
        .filter(|entry| !entry.default_patterns.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            let backend = (entry.build)(None, Path::new("."))
                .expect("embedded rules build with default settings");
            Rule::new(index, entry.name, entry.default_patterns, backend)
                .expect("embedded patterns are valid")
        })
        .collect();
    Rules {
        origin: "embedded default".to_owned(),
        rules,
        cache: CacheSettings::default(),
    }
}

impl Rule {
    /// A rule for `patterns` served by `backend` (named `backend_name`), with the
    /// defaults of a rules file rule that sets neither `cacheDuration` nor
    /// `cacheKeyType`: as the drop-in modes and the embedded rules make them.
    pub fn new(
        index: usize,
        backend_name: &str,
        patterns: &[impl AsRef<str>],
        backend: Backend,
    ) -> Result<Rule, icp_core::PatternError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let cache_key_type = if patterns.iter().any(Pattern::has_path) {
            CacheKeyType::Image
        } else {
            CacheKeyType::Registry
        };
        Ok(Rule {
            index,
            patterns,
            backend_name: backend_name.to_owned(),
            backend,
            cache_duration: None,
            cache_key_type,
        })
    }
}

impl Rules {
    /// Rules that are not read from a file: `origin` says where they come from.
    pub fn new(origin: &str, rules: Vec<Rule>) -> Rules {
        Rules {
            origin: origin.to_owned(),
            rules,
            cache: CacheSettings::default(),
        }
    }
}

/// Checks a parsed rules document and builds its rules, or lists every problem in it.
pub fn from_value(
    value: Value,
    base_dir: &Path,
    origin: &str,
    check: bool,
) -> Result<Rules, Problems> {
    let mut problems = Vec::new();
    let mut rules = Vec::new();
    let mut cache = CacheSettings::default();
    match value {
        Value::Object(mut top) => {
            if let Some(section) = top.remove("cache") {
                match serde_json::from_value::<CacheSettings>(section) {
                    Ok(settings) => {
                        cache = CacheSettings {
                            dir: settings.dir.map(|d| base_dir.join(d)),
                            ..settings
                        }
                    }
                    Err(error) => problems.push(format!("cache: {error}")),
                }
            }
            match top.remove("rules") {
                Some(Value::Array(items)) if items.is_empty() => {
                    problems.push("rules: the list is empty".to_owned())
                }
                Some(Value::Array(items)) => {
                    for (index, item) in items.into_iter().enumerate() {
                        if let Some(rule) = rule(index, item, base_dir, check, &mut problems) {
                            rules.push(rule);
                        }
                    }
                }
                Some(_) => problems.push("rules: expected a list of rules".to_owned()),
                None => problems.push("rules: missing".to_owned()),
            }
            problems.extend(
                top.keys()
                    .map(|key| format!("{key}: unknown field (expected rules, cache)")),
            );
        }
        _ => problems.push("expected a mapping with a rules list".to_owned()),
    }
    if problems.is_empty() {
        Ok(Rules {
            origin: origin.to_owned(),
            rules,
            cache,
        })
    } else {
        Err(Problems {
            origin: origin.to_owned(),
            problems,
        })
    }
}

fn rule(
    index: usize,
    item: Value,
    base_dir: &Path,
    check: bool,
    problems: &mut Vec<String>,
) -> Option<Rule> {
    let at = |field: &str| format!("rules[{index}].{field}");
    let Value::Object(mut fields) = item else {
        problems.push(format!("rules[{index}]: expected a mapping"));
        return None;
    };
    let before = problems.len();

    let patterns = match fields.remove("matchImages") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .filter_map(|(j, item)| {
                let parsed = match item {
                    Value::String(text) => {
                        Pattern::parse(text).map_err(|e| format!("{text:?}: {e}"))
                    }
                    _ => Err("expected a string".to_owned()),
                };
                parsed
                    .map_err(|e| problems.push(format!("{}[{j}]: {e}", at("matchImages"))))
                    .ok()
            })
            .collect(),
        Some(Value::Array(_)) => {
            problems.push(format!("{}: the list is empty", at("matchImages")));
            Vec::new()
        }
        Some(_) => {
            problems.push(format!(
                "{}: expected a list of image patterns",
                at("matchImages")
            ));
            Vec::new()
        }
        None => {
            problems.push(format!("{}: missing", at("matchImages")));
            Vec::new()
        }
    };

    let cache_duration = match fields.remove("cacheDuration") {
        None => None,
        Some(Value::String(text)) => duration::parse(&text)
            .map_err(|e| problems.push(format!("{}: {e}", at("cacheDuration"))))
            .ok(),
        Some(_) => {
            problems.push(format!(
                "{}: expected a Go duration string such as \"10m\"",
                at("cacheDuration")
            ));
            None
        }
    };

    let cache_key_type = match fields.remove("cacheKeyType") {
        None if patterns.iter().any(Pattern::has_path) => CacheKeyType::Image,
        None => CacheKeyType::Registry,
        Some(Value::String(text)) => match text.as_str() {
            "Image" => CacheKeyType::Image,
            "Registry" => CacheKeyType::Registry,
            "Global" => CacheKeyType::Global,
            _ => {
                problems.push(format!(
                    "{}: {text:?} is not one of Image, Registry, Global",
                    at("cacheKeyType")
                ));
                CacheKeyType::Registry
            }
        },
        Some(_) => {
            problems.push(format!(
                "{}: expected one of Image, Registry, Global",
                at("cacheKeyType")
            ));
            CacheKeyType::Registry
        }
    };

    let provider = match fields.remove("provider") {
        Some(Value::String(name)) => Some(name),
        Some(_) => {
            problems.push(format!("{}: expected a provider name", at("provider")));
            None
        }
        None => {
            problems.push(format!("{}: missing", at("provider")));
            None
        }
    };
    let section = provider
        .as_deref()
        .and_then(|p| fields.remove(&backends::section_key(p)));
    for key in fields.keys() {
        let sections = || {
            backends::NAMES
                .iter()
                .map(|name| backends::section_key(name))
        };
        if sections().any(|section| &section == key) {
            let provider = provider.as_deref().unwrap_or("unset");
            problems.push(format!(
                "{}: a section for another provider (this rule's provider is {provider})",
                at(key)
            ));
        } else {
            let expected: Vec<String> = RULE_FIELDS
                .iter()
                .map(|field| field.to_string())
                .chain(sections())
                .collect();
            problems.push(format!(
                "{}: unknown field (expected one of {})",
                at(key),
                expected.join(", ")
            ));
        }
    }

    let provider = provider?;
    let field = if section.is_some() {
        backends::section_key(&provider)
    } else {
        "provider".to_owned()
    };
    let backend = backends::find(&provider)
        .and_then(|entry| (entry.build)(section, base_dir))
        .and_then(|backend| {
            if check {
                backend.check().map(|()| backend)
            } else {
                Ok(backend)
            }
        })
        .map_err(|e| problems.push(format!("{}: {e:#}", at(&field))))
        .ok()?;
    (problems.len() == before).then_some(Rule {
        index,
        patterns,
        backend_name: provider,
        backend,
        cache_duration,
        cache_key_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let value: Value = serde_yaml_ng::from_str(yaml).unwrap();
        match from_value(value, Path::new("/nonexistent"), "test", true) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.problems,
        }
    }

    #[test]
    #[cfg(feature = "docker-config")]
    fn lists_every_problem_with_rule_and_field() {
        let found = problems(
            r#"
rules:
  - matchImages: ["ok.example", "https://bad.example", "a..b"]
    provider: docker-config
    dockerConfig: {path: missing.json}
    cacheDuration: 1d
    cacheKeyType: registry
  - matchImages: []
    provider: nope
    extra: 1
  - provider: docker-config
    dockerConfig: {pth: x}
    ecr: {}
  - 7
colour: blue
cache: {enabled: false, size: 3}
"#,
        );
        let expected = [
            "rules[0].matchImages[1]: \"https://bad.example\": a pattern has no scheme",
            "rules[0].matchImages[2]: \"a..b\": a host label is empty",
            "rules[0].cacheDuration: \"1d\" is not a Go duration",
            "rules[0].cacheKeyType: \"registry\" is not one of Image, Registry, Global",
            "rules[0].dockerConfig: docker config /nonexistent/missing.json: ",
            "rules[1].matchImages: the list is empty",
            "rules[1].extra: unknown field",
            "rules[1].provider: unknown provider \"nope\"",
            "rules[2].matchImages: missing",
            "rules[2].ecr: a section for another provider",
            "rules[2].dockerConfig: unknown field `pth`",
            "rules[3]: expected a mapping",
            "colour: unknown field",
            "cache: unknown field `size`",
        ];
        for want in expected {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "no problem starts with {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    #[cfg(not(feature = "docker-config"))]
    fn a_backend_left_out_names_its_cargo_feature() {
        let found = problems(
            "rules:\n- {matchImages: [a.example], provider: docker-config, dockerConfig: {path: c.json}}\n",
        );
        assert_eq!(
            found,
            [
                "rules[0].dockerConfig: provider \"docker-config\" is not built into this binary (cargo feature \"docker-config\")"
            ]
        );
    }

    #[test]
    #[cfg(feature = "docker-config")]
    fn default_cache_key_type_follows_the_patterns() {
        let value: Value = serde_yaml_ng::from_str(
            "rules:\n- {matchImages: [a.example], provider: docker-config, dockerConfig: {path: c.json}}\n\
             - {matchImages: [b.example/team], provider: docker-config, dockerConfig: {path: c.json}}\n",
        )
        .unwrap();
        let rules = from_value(value, Path::new("."), "test", false).unwrap();
        assert_eq!(rules.rules[0].cache_key_type, CacheKeyType::Registry);
        assert_eq!(rules.rules[1].cache_key_type, CacheKeyType::Image);
    }
}
