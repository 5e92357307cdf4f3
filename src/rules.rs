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
//! audit:                     # optional: one JSON line per answer (`crate::audit`)
//!   path: /var/log/image-credential-provider/audit.log
//! metrics:                   # optional: node_exporter's textfile collector (`crate::metrics`)
//!   dir: /var/lib/node_exporter/textfile_collector
//! ```
//!
//! The file is YAML or JSON, read into typed structs (`RulesFile`, `RuleFields`) whose
//! every field is read on its own (`Field`), so that `check-config` can list every
//! problem with the rule and field it is in, not just the first. A rule's provider section
//! is kept as it is written until its backend is known, then read into that backend's own
//! typed settings (`icp_core::Build::Config`), unknown fields refused. Relative paths in
//! provider sections resolve against the rules file's directory.
//!
//! A rule's backend is built when the rule first matches an image ([`Rule::backend`]), so
//! a backend that cannot be built fails the pulls it would serve, and no other; `check`
//! builds (and checks) every backend of the file instead, to list their problems.
//!
//! Reading refuses what a parser would otherwise let pass or choke on (a key given twice,
//! nesting deeper than [`document::MAX_DEPTH`]; see [`document`]). A kubelet
//! `CredentialProviderConfig` given in place of a rules file is recognised and said to be
//! one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use icp_core::{CacheKeyType, Environment, Pattern, quote};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny};
use serde_json::Value;

use crate::audit::AuditSettings;
use crate::backends::{self, Backend, Failure};
use crate::cache::CacheSettings;
use crate::metrics::MetricsSettings;
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
    /// The `audit` section.
    pub audit: AuditSettings,
    /// The `metrics` section.
    pub metrics: MetricsSettings,
    /// The audience of pods' tokens this instance serves (`--audience`), when a node has
    /// one provider entry per audience: the rules of other audiences are left to their
    /// entries ([`admits`]). `None`: every rule.
    pub audience: Option<String>,
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
    /// `cacheDuration`: caps the cache duration derived from a token's expiry, and is the
    /// cache duration of credentials that do not expire.
    pub cache_duration: Option<Duration>,
    /// `cacheKeyType`.
    pub cache_key_type: CacheKeyType,
    /// The backend that serves the images, built on first use.
    backend: backends::Lazy,
    /// For a drop-in mode's rule, what it was made from (the official program's name
    /// and what it was given), which messages name instead of `rule N`.
    given: Option<String>,
}

impl Rules {
    /// The first rule that serves `image`, and its backend: one of the rule's patterns
    /// matches the image's name and its backend accepts the image. The backend of each
    /// rule whose patterns match is built on the way; one that cannot be built ends the
    /// search with its failure, the answer to this image.
    pub fn find(&self, image: &icp_core::ImageRef) -> Option<(&Rule, Result<&Backend, Failure>)> {
        let name = icp_core::pattern::SchemelessUrl::parse(&image.name()).ok()?;
        for rule in &self.rules {
            if !rule.patterns.iter().any(|p| p.matches_url(&name)) {
                continue;
            }
            match rule.backend() {
                Ok(backend) if !backend.serves(image) => continue,
                Ok(backend) if !admits(self.audience.as_deref(), backend) => continue,
                built => return Some((rule, built)),
            }
        }
        None
    }

    /// Rules that are not read from a file: `origin` says where they come from.
    pub fn new(origin: &str, rules: Vec<Rule>) -> Rules {
        Rules {
            origin: origin.to_owned(),
            rules,
            cache: CacheSettings::default(),
            audit: AuditSettings::default(),
            metrics: MetricsSettings::default(),
            audience: None,
        }
    }
}

impl Rule {
    /// A rule for `patterns` served by `backend` (named `backend_name`), with the
    /// defaults of a rules file rule that sets neither `cacheDuration` nor
    /// `cacheKeyType`: as the drop-in modes make them.
    pub fn new(
        index: usize,
        backend_name: &str,
        patterns: &[impl AsRef<str>],
        backend: Backend,
    ) -> Result<Rule, icp_core::PatternError> {
        let built: backends::Recipe = Box::new(move || Ok(backend));
        Rule::lazy(index, backend_name, patterns, backends::Lazy::new(built))
    }

    /// [`Rule::new`] with a backend built on first use.
    fn lazy(
        index: usize,
        backend_name: &str,
        patterns: &[impl AsRef<str>],
        backend: backends::Lazy,
    ) -> Result<Rule, icp_core::PatternError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rule {
            index,
            cache_key_type: default_cache_key_type(&patterns),
            patterns,
            backend_name: backend_name.to_owned(),
            cache_duration: None,
            backend,
            given: None,
        })
    }

    /// This rule, named in messages as `given` (a drop-in mode's command line) rather than
    /// by its index in a rules file it does not come from.
    pub fn given(self, given: String) -> Rule {
        Rule {
            given: Some(given),
            ..self
        }
    }

    /// The rule as messages name it: `rule 2`, or what a drop-in mode made it from.
    pub fn name(&self) -> String {
        match &self.given {
            Some(given) => given.clone(),
            None => format!("rule {}", self.index),
        }
    }

    /// The rule's backend, built now if it is not yet; or why it cannot be built.
    pub fn backend(&self) -> Result<&Backend, Failure> {
        backends::Lazy::force(&self.backend)
            .as_ref()
            .map_err(Failure::clone)
    }
}

/// Whether an instance serving pods' tokens of `audience` (all rules when `None`) serves
/// the rules of `backend`: those whose backend asks for tokens of that audience, and those
/// that use none.
pub fn admits(audience: Option<&str>, backend: &Backend) -> bool {
    match (audience, backend.service_account_token()) {
        (Some(audience), Some(uses)) => uses.audience == audience,
        _ => true,
    }
}

/// `cacheKeyType` when a rule sets none: `Image` when a pattern covers only part of a
/// registry, else `Registry`.
fn default_cache_key_type(patterns: &[Pattern]) -> CacheKeyType {
    if patterns.iter().any(Pattern::has_path) {
        CacheKeyType::Image
    } else {
        CacheKeyType::Registry
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
                " (and {}; run check-config)",
                crate::plural::count(self.problems.len() - 1, "more problem")
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
    let length = line.len();
    match icp_core::quote::cut(&line, MAX_PROBLEM_CHARS) {
        std::borrow::Cow::Owned(cut) => format!("{cut} (cut, {length} bytes)"),
        std::borrow::Cow::Borrowed(_) => line,
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

/// Loads the rules file at `path`, or the embedded default when there is none; backends
/// are built with `env` when a rule first needs one.
pub fn load(path: Option<&Path>, env: &Environment) -> Result<Rules, Problems> {
    match path {
        Some(path) => load_file(path, env, false),
        None => Ok(embedded(env)),
    }
}

/// Loads the rules file at `path` as `check-config` does: every backend is built and
/// reads the files it will read, and every problem is listed.
pub fn check(path: &Path, env: &Environment) -> Result<Rules, Problems> {
    load_file(path, env, true)
}

fn load_file(path: &Path, env: &Environment, check: bool) -> Result<Rules, Problems> {
    let origin = icp_core::quote::path(path);
    let fail = |problem: String| Problems::new(&origin, vec![problem]);
    let text = read_capped(path).map_err(fail)?;
    let value = parse_document(path, &text).map_err(fail)?;
    let base_dir = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    from_value(value, &base_dir, env, &origin, check)
}

fn read_capped(path: &Path) -> Result<String, String> {
    let bytes = icp_core::io::read_file(path, MAX_FILE_SIZE).map_err(|e| e.to_string())?;
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
/// registry hosts with no configuration, in [`backends::TABLE`] order, each built with its
/// default settings when it first matches.
pub fn embedded(env: &Environment) -> Rules {
    let rules = embedded_backends()
        .filter_map(|row| {
            let backend = row.lazy(None, Path::new("."), env, None).ok()?;
            Some((row, backend))
        })
        .enumerate()
        .filter_map(|(index, (row, backend))| {
            Rule::lazy(index, row.name, row.default_patterns, backend).ok()
        })
        .collect();
    Rules::new("embedded default", rules)
}

/// The backends of the embedded default rules, one rule each, in order: those that serve
/// well-known registry hosts with no configuration.
pub fn embedded_backends() -> impl Iterator<Item = &'static backends::Row> {
    backends::TABLE
        .iter()
        .filter(|row| !row.default_patterns.is_empty())
}

/// A rules file as written. Each field is read on its own ([`Field`]); what is not a
/// field of a rules file is kept to be named as unknown.
#[derive(Deserialize)]
struct RulesFile {
    #[serde(default, deserialize_with = "present")]
    rules: Option<Field<RuleList>>,
    #[serde(default, deserialize_with = "present")]
    cache: Option<Field<CacheSettings>>,
    #[serde(default, deserialize_with = "present")]
    audit: Option<Field<AuditSettings>>,
    #[serde(default, deserialize_with = "present")]
    metrics: Option<Field<MetricsSettings>>,
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

/// One rule as written. Provider sections, and fields that are not a rule's, are kept
/// as written until the rule's provider is known.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleFields {
    #[serde(default, deserialize_with = "present")]
    match_images: Option<Field<MatchImages>>,
    #[serde(default, deserialize_with = "present")]
    provider: Option<Field<ProviderName>>,
    #[serde(default, deserialize_with = "present")]
    cache_duration: Option<Field<CacheDuration>>,
    #[serde(default, deserialize_with = "present")]
    cache_key_type: Option<Field<CacheKeyTypeName>>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// A field read on its own: its value, or the problem with it, so that one problem does
/// not hide the others.
struct Field<T>(Result<T, String>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(Field(T::deserialize(value).map_err(|e| e.to_string())))
    }
}

/// A field that is present, `null` included, as `Some`; an absent one is `None` by
/// `#[serde(default)]`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Reads a value of a field as written, turning it into `T` with `convert`, whose error
/// is the problem with the field.
fn read<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    convert: impl FnOnce(Value) -> Result<T, String>,
) -> Result<T, D::Error> {
    convert(Value::deserialize(deserializer)?).map_err(de::Error::custom)
}

/// `rules`: a list that is not empty, each item read on its own.
struct RuleList(Vec<Field<RuleFields>>);

impl<'de> Deserialize<'de> for RuleList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, |value| match value {
            Value::Array(items) if items.is_empty() => Err("the list is empty".to_owned()),
            Value::Array(items) => Ok(RuleList(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::Object(_) => {
                            Field(serde_json::from_value(item).map_err(|e| e.to_string()))
                        }
                        _ => Field(Err("expected a mapping".to_owned())),
                    })
                    .collect(),
            )),
            _ => Err("expected a list of rules".to_owned()),
        })
    }
}

/// `matchImages`: a list that is not empty, each pattern read on its own.
struct MatchImages(Vec<Field<ImagePattern>>);

impl<'de> Deserialize<'de> for MatchImages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, |value| match value {
            Value::Array(items) if items.is_empty() => Err("the list is empty".to_owned()),
            Value::Array(items) => Ok(MatchImages(
                items
                    .into_iter()
                    .map(|item| Field(ImagePattern::deserialize(item).map_err(|e| e.to_string())))
                    .collect(),
            )),
            _ => Err("expected a list of image patterns".to_owned()),
        })
    }
}

/// One `matchImages` pattern, checked and compiled.
struct ImagePattern(Pattern);

impl<'de> Deserialize<'de> for ImagePattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, |value| match value {
            Value::String(text) => Pattern::parse(&text)
                .map(ImagePattern)
                .map_err(|e| format!("{}: {e}", quote(&text))),
            _ => Err("expected a string".to_owned()),
        })
    }
}

/// `provider`: the name of a backend, looked up once the rule is read.
struct ProviderName(String);

impl<'de> Deserialize<'de> for ProviderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, |value| match value {
            Value::String(name) => Ok(ProviderName(name)),
            _ => Err("expected a provider name".to_owned()),
        })
    }
}

/// `cacheDuration`: a Go duration.
struct CacheDuration(Duration);

impl<'de> Deserialize<'de> for CacheDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, |value| match value {
            Value::String(text) => duration::parse(&text).map(CacheDuration),
            _ => Err("expected a Go duration string such as \"10m\"".to_owned()),
        })
    }
}

/// `cacheKeyType`: `Image`, `Registry` or `Global`.
struct CacheKeyTypeName(CacheKeyType);

impl<'de> Deserialize<'de> for CacheKeyTypeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, |value| match value {
            Value::String(text) => [
                CacheKeyType::Image,
                CacheKeyType::Registry,
                CacheKeyType::Global,
            ]
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .map(CacheKeyTypeName)
            .ok_or_else(|| format!("{} is not one of Image, Registry, Global", quote(&text))),
            _ => Err("expected one of Image, Registry, Global".to_owned()),
        })
    }
}

/// Checks a parsed rules document and makes its rules, or lists every problem in it. With
/// `check`, every backend is built and checked too.
pub fn from_value(
    value: Value,
    base_dir: &Path,
    env: &Environment,
    origin: &str,
    check: bool,
) -> Result<Rules, Problems> {
    let mut problems = Vec::new();
    let mut rules = Vec::new();
    let mut cache = CacheSettings::default();
    let mut audit = AuditSettings::default();
    let mut metrics = MetricsSettings::default();
    match value {
        Value::Object(top) if is_kubelet_config(&top) => problems.push(KUBELET_CONFIG.to_owned()),
        Value::Object(_) => {
            let file: RulesFile = serde_json::from_value(value)
                .map_err(|e| Problems::new(origin, vec![e.to_string()]))?;
            match file.cache.map(|field| field.0) {
                None => {}
                Some(Ok(settings)) => {
                    cache = CacheSettings {
                        dir: settings.dir.map(|d| base_dir.join(d)),
                        ..settings
                    }
                }
                Some(Err(error)) => problems.push(format!("cache: {error}")),
            }
            match file.audit.map(|field| field.0) {
                None => {}
                Some(Ok(settings)) => audit.path = settings.path.map(|p| base_dir.join(p)),
                Some(Err(error)) => problems.push(format!("audit: {error}")),
            }
            match file.metrics.map(|field| field.0) {
                None => {}
                Some(Ok(settings)) => metrics.dir = settings.dir.map(|d| base_dir.join(d)),
                Some(Err(error)) => problems.push(format!("metrics: {error}")),
            }
            match file.rules.map(|field| field.0) {
                Some(Ok(RuleList(items))) => {
                    let reader = RuleReader {
                        base_dir,
                        env,
                        check,
                    };
                    for (index, item) in items.into_iter().enumerate() {
                        if let Some(rule) = reader.rule(index, item.0, &mut problems) {
                            rules.push(rule);
                        }
                    }
                }
                Some(Err(error)) => problems.push(format!("rules: {error}")),
                None => problems.push("rules: missing".to_owned()),
            }
            problems.extend(file.unknown.keys().map(|key| {
                format!(
                    "{}: unknown field (expected rules, cache, audit, metrics)",
                    field_name(key)
                )
            }));
        }
        _ => problems.push("expected a mapping with a rules list".to_owned()),
    }
    if problems.is_empty() {
        Ok(Rules {
            origin: origin.to_owned(),
            rules,
            cache,
            audit,
            metrics,
            audience: None,
        })
    } else {
        Err(Problems::new(origin, problems))
    }
}

/// Whether a document is the kubelet's `CredentialProviderConfig` rather than rules.
fn is_kubelet_config(top: &serde_json::Map<String, Value>) -> bool {
    top.get("kind").and_then(Value::as_str) == Some("CredentialProviderConfig")
        || top
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("kubelet.config.k8s.io/"))
}

/// What the rules of one file are made with.
struct RuleReader<'a> {
    base_dir: &'a Path,
    env: &'a Environment,
    check: bool,
}

impl RuleReader<'_> {
    /// Rule `index` as read, or `None` with its problems added to `problems`.
    fn rule(
        &self,
        index: usize,
        fields: Result<RuleFields, String>,
        problems: &mut Vec<String>,
    ) -> Option<Rule> {
        let at = |field: &str| format!("rules[{index}].{field}");
        let mut fields = match fields {
            Ok(fields) => fields,
            Err(error) => {
                problems.push(format!("rules[{index}]: {error}"));
                return None;
            }
        };
        let before = problems.len();

        let patterns: Vec<Pattern> = match fields.match_images.map(|field| field.0) {
            Some(Ok(MatchImages(items))) => items
                .into_iter()
                .enumerate()
                .filter_map(|(j, item)| {
                    item.0
                        .map_err(|e| problems.push(format!("{}[{j}]: {e}", at("matchImages"))))
                        .ok()
                })
                .map(|pattern| pattern.0)
                .collect(),
            Some(Err(error)) => {
                problems.push(format!("{}: {error}", at("matchImages")));
                Vec::new()
            }
            None => {
                problems.push(format!("{}: missing", at("matchImages")));
                Vec::new()
            }
        };
        let cache_duration = match fields.cache_duration.map(|field| field.0) {
            None => None,
            Some(Ok(CacheDuration(duration))) => Some(duration),
            Some(Err(error)) => {
                problems.push(format!("{}: {error}", at("cacheDuration")));
                None
            }
        };
        let cache_key_type = match fields.cache_key_type.map(|field| field.0) {
            None => default_cache_key_type(&patterns),
            Some(Ok(CacheKeyTypeName(kind))) => kind,
            Some(Err(error)) => {
                problems.push(format!("{}: {error}", at("cacheKeyType")));
                CacheKeyType::Registry
            }
        };
        let provider = match fields.provider.map(|field| field.0) {
            Some(Ok(ProviderName(name))) => Some(name),
            Some(Err(error)) => {
                problems.push(format!("{}: {error}", at("provider")));
                None
            }
            None => {
                problems.push(format!("{}: missing", at("provider")));
                None
            }
        };

        let section = provider
            .as_deref()
            .and_then(|p| fields.other.remove(&backends::section_key(p)));
        let sections = || {
            backends::NAMES
                .iter()
                .map(|name| backends::section_key(name))
        };
        for key in fields.other.keys() {
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
            .and_then(|row| row.lazy(section, self.base_dir, self.env, cache_duration))
            .map_err(|e| problems.push(format!("{}: {e}", at(&field))))
            .ok()?;
        if self.check {
            let built = backends::Lazy::force(&backend)
                .as_ref()
                .map_err(Failure::clone)
                .and_then(Backend::check);
            if let Err(failure) = built {
                problems.push(format!("{}: {}", at(&field), backends::chain(&failure)));
                return None;
            }
        }
        (problems.len() == before).then_some(Rule {
            index,
            patterns,
            backend_name: provider,
            cache_duration,
            cache_key_type,
            backend,
            given: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let value = parse("r.yaml", yaml).unwrap();
        match from_value(
            value,
            Path::new("/nonexistent"),
            &Environment::empty(),
            "test",
            true,
        ) {
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
        let problems = from_value(value, Path::new("."), &Environment::empty(), "test", true)
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
        let found = match from_value(
            value,
            Path::new("/nonexistent"),
            &Environment::empty(),
            "test",
            false,
        ) {
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

    #[derive(Debug)]
    struct Unbuildable;

    impl fmt::Display for Unbuildable {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot be built")
        }
    }

    impl std::error::Error for Unbuildable {}

    impl icp_core::BackendError for Unbuildable {
        fn kind(&self) -> icp_core::ErrorKind {
            icp_core::ErrorKind::Config
        }
    }

    #[test]
    fn a_backend_is_built_when_its_rule_first_matches_and_fails_only_its_pulls() {
        let builds = std::rc::Rc::new(std::cell::Cell::new(0));
        let counted = builds.clone();
        let broken: backends::Recipe = Box::new(move || {
            counted.set(counted.get() + 1);
            Err(Failure::new(Unbuildable))
        });
        let rules = Rules::new(
            "test",
            vec![Rule::lazy(0, "broken", &["a.example"], backends::Lazy::new(broken)).unwrap()],
        );
        let image = |name: &str| icp_core::ImageRef::parse(name).unwrap();
        assert!(rules.find(&image("b.example/app")).is_none());
        assert_eq!(builds.get(), 0, "no rule matched, nothing built");
        for _ in 0..2 {
            let (rule, built) = rules.find(&image("a.example/app")).unwrap();
            let failure = built.err().unwrap();
            assert_eq!(
                (rule.index, failure.to_string()),
                (0, "cannot be built".to_owned())
            );
            assert_eq!(
                icp_core::BackendError::kind(&failure),
                icp_core::ErrorKind::Config
            );
        }
        assert_eq!(builds.get(), 1, "built once");
    }

    #[test]
    fn the_embedded_rules_are_one_per_backend_serving_well_known_hosts() {
        let rules = embedded(&Environment::empty());
        let rows: Vec<&str> = backends::TABLE
            .iter()
            .filter(|row| !row.default_patterns.is_empty())
            .map(|row| row.name)
            .collect();
        let names: Vec<&str> = rules
            .rules
            .iter()
            .map(|r| r.backend_name.as_str())
            .collect();
        assert_eq!(names, rows);
    }

    #[test]
    #[cfg(feature = "docker-config")]
    fn default_cache_key_type_follows_the_patterns() {
        let value: Value = serde_yaml_ng::from_str(
            "rules:\n- {matchImages: [a.example], provider: docker-config, dockerConfig: {path: c.json}}\n\
             - {matchImages: [b.example/team], provider: docker-config, dockerConfig: {path: c.json}}\n",
        )
        .unwrap();
        let rules =
            from_value(value, Path::new("."), &Environment::empty(), "test", false).unwrap();
        assert_eq!(rules.rules[0].cache_key_type, CacheKeyType::Registry);
        assert_eq!(rules.rules[1].cache_key_type, CacheKeyType::Image);
    }
}
