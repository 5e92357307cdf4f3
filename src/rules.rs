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
//!
//! Reading refuses what a parser would otherwise let pass or choke on (a key given twice,
//! nesting deeper than [`document::document::MAX_DEPTH`]; see [`document`]). A kubelet `CredentialProviderConfig` given in place of a
//! rules file is recognised and said to be one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use icp_core::{CacheKeyType, Pattern, quote};
use serde_json::{Map, Value};

use crate::backends::{self, Backend};
use crate::cache::CacheSettings;
use crate::{document, duration};

/// Largest rules file read.
const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// The fields of a rule other than provider sections.
const RULE_FIELDS: &[&str] = &["matchImages", "provider", "cacheDuration", "cacheKeyType"];
/// Longest problem line, whatever a parser or backend put in it.
const MAX_PROBLEM_CHARS: usize = 400;
/// The problem of a kubelet `CredentialProviderConfig` given as the rules file.
const KUBELET_CONFIG: &str = "this is a kubelet CredentialProviderConfig (kubelet.config.k8s.io), not a rules file: \
     it goes to the kubelet's --image-credential-provider-config, and this plugin takes a rules file \
     through the provider's args: [\"--config\", FILE] (or no --config, for the embedded default rules)";

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

impl Problems {
    /// The problems of `origin`, each made one line of at most [`MAX_PROBLEM_CHARS`]
    /// characters, so no input quoted by a parser or backend floods stderr.
    fn new(origin: &str, problems: Vec<String>) -> Problems {
        Problems {
            origin: origin.to_owned(),
            problems: problems.into_iter().map(one_line).collect(),
        }
    }
}

fn one_line(problem: String) -> String {
    let line = problem.replace(['\n', '\r'], " ");
    match line.char_indices().nth(MAX_PROBLEM_CHARS) {
        Some((cut, _)) => format!("{}... (cut, {} bytes)", &line[..cut], line.len()),
        None => line,
    }
}

/// A field name as a problem shows it: as it is when it is a plain name, else quoted.
fn field_name(key: &str) -> String {
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if plain { key.to_owned() } else { quote(key) }
}

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
    let fail = |problem: String| Problems::new(&origin, vec![problem]);
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

/// JSON by extension `.json` or a leading `{`, YAML otherwise, read strictly (see
/// [`document`]).
fn parse_document(path: &Path, text: &str) -> Result<Value, String> {
    let is_json = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => true,
        Some("yaml" | "yml") => false,
        _ => text.trim_start().starts_with('{'),
    };
    if is_json {
        return document::json(text);
    }
    match document::yaml(text)? {
        (_, true) => Err("holds more than one YAML document: give one".to_owned()),
        (value, false) => Ok(value),
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
        Value::Object(top) if is_kubelet_config(&top) => problems.push(KUBELET_CONFIG.to_owned()),
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
                top.keys().map(|key| {
                    format!("{}: unknown field (expected rules, cache)", field_name(key))
                }),
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
        Err(Problems::new(origin, problems))
    }
}

/// Whether a document is the kubelet's `CredentialProviderConfig` rather than rules.
fn is_kubelet_config(top: &Map<String, Value>) -> bool {
    top.get("kind").and_then(Value::as_str) == Some("CredentialProviderConfig")
        || top
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("kubelet.config.k8s.io/"))
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
                        Pattern::parse(text).map_err(|e| format!("{}: {e}", quote(text)))
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
                    "{}: {} is not one of Image, Registry, Global",
                    at("cacheKeyType"),
                    quote(&text)
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
                "{}: a section for another provider (this rule's provider is {})",
                at(key),
                field_name(provider)
            ));
        } else {
            let expected: Vec<String> = RULE_FIELDS
                .iter()
                .map(|field| field.to_string())
                .chain(sections())
                .collect();
            problems.push(format!(
                "{}: unknown field (expected one of {})",
                at(&field_name(key)),
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
        let value = parse("r.yaml", yaml).unwrap();
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

    fn parse(name: &str, text: &str) -> Result<Value, String> {
        parse_document(Path::new(name), text)
    }

    #[test]
    fn a_key_given_twice_is_refused_in_yaml_and_json() {
        let rule =
            "{matchImages: [a.example], provider: docker-config, dockerConfig: {path: c.json}}";
        let yaml = [
            format!("rules:\n- {rule}\nrules:\n- {rule}\n"),
            "rules:\n- matchImages: [a.example]\n  provider: ecr\n  provider: acr\n".to_owned(),
            "cache: {dir: a, dir: b}\nrules: []\n".to_owned(),
            "rules: []\n\"rules\": []\n".to_owned(),
        ];
        for text in yaml {
            let error = parse("r.yaml", &text).unwrap_err();
            assert!(
                error.starts_with("invalid YAML: ") && error.contains("duplicate key"),
                "{error}"
            );
        }
        let json = r#"{"rules": [{"matchImages": ["a.example"], "provider": "docker-config",
            "dockerConfig": {"path": "c.json"}, "cacheDuration": "1m", "cacheDuration": "2h"}]}"#;
        let error = parse("r.json", json).unwrap_err();
        assert!(
            error.starts_with("invalid JSON: duplicate key \"cacheDuration\" at line 2"),
            "{error}"
        );
        let fine = parse("r.yaml", "rules:\n- {a: 1, b: {a: 2}}\n- {a: 3}\n").unwrap();
        assert_eq!(fine["rules"][1]["a"], 3);
    }

    #[test]
    fn deep_nesting_is_refused_before_the_yaml_is_parsed() {
        let depth = document::MAX_DEPTH + 1;
        let cases = [
            ("r.yaml", "[".repeat(1_048_000)),
            ("r.yaml", "{a: ".repeat(100_000)),
            ("r.yaml", "- ".repeat(100_000)),
            (
                "r.yaml",
                format!("{}1{}", "[".repeat(depth), "]".repeat(depth)),
            ),
            ("r.json", "[".repeat(1_048_000)),
            (
                "r.json",
                format!("{}1{}", "[".repeat(depth), "]".repeat(depth)),
            ),
        ];
        for (name, text) in cases {
            let error = parse(name, &text).unwrap_err();
            assert!(
                error.contains(&format!(
                    "nested more than {} levels deep",
                    document::MAX_DEPTH
                )),
                "{name}: {error}"
            );
        }
        let deepest = format!(
            "{}1{}",
            "[".repeat(document::MAX_DEPTH),
            "]".repeat(document::MAX_DEPTH)
        );
        parse("r.yaml", &deepest).unwrap();
        parse("r.json", &deepest).unwrap();
        let aliased = format!(
            "a: &a {}1{}\nb: [*a, [*a]]\n",
            "[".repeat(document::MAX_DEPTH - 2),
            "]".repeat(document::MAX_DEPTH - 2)
        );
        assert!(
            parse("r.yaml", &aliased)
                .unwrap_err()
                .contains("levels deep")
        );
    }

    #[test]
    fn a_kubelet_config_is_named_as_one() {
        let kubelet = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n\
                       providers:\n  - name: image-credential-provider\n    matchImages: [\"*.example\"]\n";
        let value = parse("kubelet.yaml", kubelet).unwrap();
        let problems = from_value(value, Path::new("."), "test", true)
            .err()
            .unwrap()
            .problems;
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("this is a kubelet CredentialProviderConfig"),
            "{problems:#?}"
        );
    }

    #[test]
    #[cfg(feature = "docker-config")]
    fn problems_quote_only_a_short_excerpt_of_the_input() {
        let huge = "x".repeat(1 << 20);
        let value = serde_json::json!({
            "rules": [
                {
                    "matchImages": [format!("{huge}?")],
                    "provider": "docker-config",
                    "dockerConfig": {"path": "c.json"},
                    "cacheKeyType": huge,
                    "cacheDuration": huge,
                    huge.clone(): 1,
                },
                {"matchImages": ["a.example"], "provider": huge},
            ],
            "cache": {"enabled": huge},
            huge.clone(): 2,
        });
        let found = match from_value(value, Path::new("/nonexistent"), "test", false) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.problems,
        };
        assert_eq!(found.len(), 7, "{found:#?}");
        for problem in &found {
            assert!(
                problem.len() < 600,
                "{} bytes: {}",
                problem.len(),
                &problem[..200]
            );
        }
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
