//! `kubelet-config`: the kubelet configuration that installs this binary for the rules in
//! force, one provider entry whose `matchImages` are the rules' patterns (which match as
//! the kubelet's do), or with `--service-account-tokens` one entry per audience of pods'
//! tokens the rules need ([`audiences`]), checked as the kubelet would check it before it
//! is printed or written.
//!
//! `defaultCacheDuration` is `0s`: the kubelet uses it only for an answer without a
//! `cacheDuration`, and every answer of this binary has one, so it can only ever apply to
//! an answer that is not ours to judge; not caching that is the safe choice.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use icp_core::Environment;

use super::read::{self, ConfigFile};
use super::{
    CONFIG_API_VERSIONS, CredentialProvider, CredentialProviderConfig, KIND, PLUGIN_API_VERSIONS,
    Report, audiences, validate,
};
use crate::rules::Rule;

/// The first line of every file `kubelet-config` writes; `--output` replaces only files
/// that start with it.
const MARKER: &str = "# Written by image-credential-provider kubelet-config";
/// The `defaultCacheDuration` written (see the module documentation).
const DEFAULT_CACHE_DURATION: &str = "0s";

/// `kubelet-config [--config RULES] [--name NAME]`: the kubelet configuration for the
/// rules in force (the embedded default without `rules_path`; backends built with `env`
/// when they are asked about service account tokens), as a YAML document the kubelet
/// accepts. With `service_account_tokens`, the entry asks the kubelet for pods' service
/// account tokens as the rules' backends need them; rules that need tokens of several
/// audiences get one entry per audience ([`audiences`]).
pub fn configuration(
    rules_path: Option<&Path>,
    name: &str,
    service_account_tokens: bool,
    env: &Environment,
) -> anyhow::Result<String> {
    let rules_arg = rules_path
        .map(|path| {
            std::path::absolute(path).with_context(|| icp_core::quote::path(path).to_string())
        })
        .transpose()?;
    configuration_as(
        rules_path,
        rules_arg.as_deref(),
        name,
        service_account_tokens,
        env,
    )
}

/// [`configuration`] for rules read from `rules_path` that the kubelet's node knows as
/// `rules_arg` (`install --root`: the file is read under the root, and named by its path on
/// the node).
pub fn configuration_as(
    rules_path: Option<&Path>,
    rules_arg: Option<&Path>,
    name: &str,
    service_account_tokens: bool,
    env: &Environment,
) -> anyhow::Result<String> {
    let rules = crate::rules::load(rules_path, env)?;
    let all: Vec<&Rule> = rules.rules.iter().collect();
    let mut providers = Vec::new();
    if service_account_tokens {
        let groups = audiences::groups(&rules)?;
        let several = groups.len() > 1;
        let list: Vec<&str> = groups.iter().map(|g| g.audience.as_str()).collect();
        for (group, name) in groups.iter().zip(audiences::names(name, &list)) {
            let (rules, audience) = match several {
                true => (&group.rules, Some(group.audience.as_str())),
                false => (&all, None),
            };
            let mut entry = provider(rules, rules_arg, audience, &name)?;
            entry.token_attributes = Some(group.token_attributes());
            providers.push(entry);
        }
    } else {
        providers.push(provider(&all, rules_arg, None, name)?);
    }
    if providers.iter().all(|p| p.match_images.is_empty()) {
        bail!("no rules in force ({}): give --config RULES", rules.origin);
    }
    let config = CredentialProviderConfig {
        api_version: CONFIG_API_VERSIONS[0].to_owned(),
        kind: KIND.to_owned(),
        providers,
    };
    let text = render(&config, rules_arg);
    judge(vec![ConfigFile {
        origin: "the configuration".to_owned(),
        text: Ok(text.clone()),
    }])?;
    Ok(text)
}

/// One provider entry named `name` for every pattern of `rules`, run with `--config
/// rules_path` when there is one, and `--audience` when it serves the rules of one
/// `audience` of several.
fn provider(
    rules: &[&Rule],
    rules_path: Option<&Path>,
    audience: Option<&str>,
    name: &str,
) -> anyhow::Result<CredentialProvider> {
    let mut match_images: Vec<String> = Vec::new();
    for pattern in rules.iter().flat_map(|rule| &rule.patterns) {
        if !match_images.iter().any(|m| m == pattern.as_str()) {
            match_images.push(pattern.as_str().to_owned());
        }
    }
    let mut args = match rules_path {
        Some(path) => {
            let path = path.to_str().with_context(|| {
                format!("rules path {} is not UTF-8", icp_core::quote::path(path))
            })?;
            vec!["--config".to_owned(), path.to_owned()]
        }
        None => Vec::new(),
    };
    if let Some(audience) = audience {
        args.extend([audiences::FLAG.to_owned(), audience.to_owned()]);
    }
    Ok(CredentialProvider {
        name: name.to_owned(),
        api_version: PLUGIN_API_VERSIONS[0].to_owned(),
        match_images,
        default_cache_duration: Some(DEFAULT_CACHE_DURATION.to_owned()),
        args,
        ..CredentialProvider::default()
    })
}

/// The YAML text, after a comment that says where it comes from. Every string is
/// double-quoted (a JSON string is a YAML double-quoted scalar), so no YAML reader takes one
/// for anything else: the kubelet's reads YAML 1.1, where a plain `yes`, `on` or `0755` is no
/// string.
fn render(config: &CredentialProviderConfig, rules_path: Option<&Path>) -> String {
    let rules = match rules_path {
        Some(path) => format!("the rules in {}", icp_core::quote::path(path)),
        None => "the embedded default rules".to_owned(),
    };
    // The path is shown as messages show paths: quoted, every line-breaking character
    // escaped (YAML 1.1 also ends a comment at U+0085, U+2028 and U+2029), when it has any.
    let mut out = format!(
        "{MARKER} for {rules}.\n# Run it again after changing the rules; it replaces this file.\n"
    );
    if let [first, others @ ..] = &config.providers[..]
        && !others.is_empty()
    {
        out.push_str(&format!(
            "# The rules need pods' tokens of {} audiences, and a provider entry has one: each entry \
             runs this binary\n# under its own name with {} and serves only the rules of that audience. \
             Install the names\n# in the kubelet's --image-credential-provider-bin-dir as symlinks to {}:\n",
            config.providers.len(),
            audiences::FLAG,
            first.name.replace(['\n', '\r'], " ")
        ));
        for other in others {
            out.push_str(&format!(
                "#   ln -s {} {}\n",
                first.name.replace(['\n', '\r'], " "),
                other.name.replace(['\n', '\r'], " ")
            ));
        }
    }
    let q = yaml_string;
    let list = |out: &mut String, indent: &str, key: &str, items: &[String]| {
        if !items.is_empty() {
            out.push_str(&format!("{indent}{key}:\n"));
            for item in items {
                out.push_str(&format!("{indent}- {}\n", q(item)));
            }
        }
    };
    out.push_str(&format!("apiVersion: {}\n", q(&config.api_version)));
    out.push_str(&format!("kind: {}\nproviders:\n", q(&config.kind)));
    for provider in &config.providers {
        out.push_str(&format!("- name: {}\n", q(&provider.name)));
        out.push_str(&format!("  apiVersion: {}\n", q(&provider.api_version)));
        list(&mut out, "  ", "matchImages", &provider.match_images);
        if let Some(duration) = &provider.default_cache_duration {
            out.push_str(&format!("  defaultCacheDuration: {}\n", q(duration)));
        }
        list(&mut out, "  ", "args", &provider.args);
        if !provider.env.is_empty() {
            out.push_str("  env:\n");
            for var in &provider.env {
                out.push_str(&format!(
                    "  - name: {}\n    value: {}\n",
                    q(&var.name),
                    q(&var.value)
                ));
            }
        }
        if let Some(attributes) = &provider.token_attributes {
            out.push_str("  tokenAttributes:\n");
            out.push_str(&format!(
                "    serviceAccountTokenAudience: {}\n    cacheType: {}\n",
                q(&attributes.service_account_token_audience),
                q(&attributes.cache_type)
            ));
            if let Some(required) = attributes.require_service_account {
                out.push_str(&format!("    requireServiceAccount: {required}\n"));
            }
            list(
                &mut out,
                "    ",
                "requiredServiceAccountAnnotationKeys",
                &attributes.required_service_account_annotation_keys,
            );
            list(
                &mut out,
                "    ",
                "optionalServiceAccountAnnotationKeys",
                &attributes.optional_service_account_annotation_keys,
            );
        }
    }
    out
}

/// `text` as a YAML double-quoted scalar that every YAML reader reads back as `text`: a
/// JSON string, with what JSON leaves as it is but YAML does not escaped too (the line
/// breaks U+0085, U+2028 and U+2029, which YAML 1.1 folds into spaces, and the characters
/// YAML does not allow in a document at all).
fn yaml_string(text: &str) -> String {
    let json = serde_json::Value::from(text).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '\u{80}'..='\u{9f}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{feff}'
            | '\u{fffe}'
            | '\u{ffff}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Fails, naming the first problem, unless the kubelet accepts the configuration made of
/// `files` (in its reading order).
fn judge(files: Vec<ConfigFile>) -> anyhow::Result<()> {
    let mut report = Report::default();
    let entries = read::decode(&files, &mut report);
    let origin = files.first().map_or("", |s| s.origin.as_str()).to_owned();
    validate::validate(&origin, &entries, &mut report);
    match report.errors.split_first() {
        None => Ok(()),
        Some((first, [])) => bail!("the kubelet would refuse it: {first}"),
        Some((first, rest)) => bail!(
            "the kubelet would refuse it: {first} (and {})",
            crate::plural::count(rest.len(), "more problem")
        ),
    }
}

/// `kubelet-config --output DIR`: writes `text` to `dir/name.yaml` atomically, replacing
/// only a file this command wrote, and only when the kubelet accepts the directory with
/// it. Returns the file written.
pub fn write_into(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    // The name is judged before it becomes part of a path.
    judge(vec![ConfigFile {
        origin: "the configuration".to_owned(),
        text: Ok(text.to_owned()),
    }])?;
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => bail!("{} is not a directory", icp_core::quote::path(dir)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create_dirs(dir)
            .with_context(|| format!("creating directory {}", icp_core::quote::path(dir)))?,
        Err(error) => bail!("{}: {error}", icp_core::quote::path(dir)),
    }
    // Whoever can write into the directory picks what the kubelet runs as root.
    icp_core::trust::check(dir)
        .with_context(|| format!("not writing into {}", icp_core::quote::path(dir)))?;
    let file = dir.join(format!("{name}.yaml"));
    if !replaceable(&file)? {
        bail!(
            "{} exists and was not written by kubelet-config: remove it, or choose another --name",
            icp_core::quote::path(&file)
        );
    }
    judge_in_directory(dir, &file, text)?;
    let temporary = dir.join(format!(".{name}.yaml.{}.tmp", std::process::id()));
    icp_core::io::write_atomically(&file, &temporary, text.as_bytes(), 0o644)
        .with_context(|| format!("writing {}", icp_core::quote::path(&file)))?;
    Ok(file)
}

/// Fails, naming the first problem, unless the kubelet accepts the configuration
/// directory `dir` with `text` as its file `file` (written there or replacing it).
pub fn judge_in_directory(dir: &Path, file: &Path, text: &str) -> anyhow::Result<()> {
    let file = file.to_owned();
    let mut files: Vec<PathBuf> = read::directory_files(dir)
        .map_err(anyhow::Error::msg)
        .with_context(|| icp_core::quote::path(dir))?;
    if !files.contains(&file) {
        files.push(file.clone());
        read::sort_lexically(&mut files);
    }
    let config_files = files
        .iter()
        .map(|path| {
            if *path == file {
                ConfigFile {
                    origin: icp_core::quote::path(&file),
                    text: Ok(text.to_owned()),
                }
            } else {
                read::config_file(path)
            }
        })
        .collect();
    judge(config_files).with_context(|| format!("not writing {}", icp_core::quote::path(&file)))
}

/// The names of the providers the kubelet configuration at `path` (a file or a
/// directory) holds, those of entries it would refuse included.
pub fn provider_names(path: &Path) -> Vec<String> {
    let mut report = Report::default();
    read::read(path, &mut report)
        .into_iter()
        .map(|entry| entry.provider.name)
        .collect()
}

/// Creates `dir` and its missing parents 0755 whatever the umask, as the kubelet's
/// configuration directories are: readable by all, writable by their owner alone.
fn create_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = dir.parent().filter(|parent| !parent.exists()) {
        create_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

/// Whether `file` may be written: it does not exist, or it is a regular file (not a
/// symlink) that this command wrote.
pub fn replaceable(file: &Path) -> anyhow::Result<bool> {
    match std::fs::symlink_metadata(file) {
        Ok(metadata) if metadata.is_file() => {
            let existing = icp_core::io::read_file(file, read::MAX_FILE_SIZE)
                .with_context(|| format!("reading {}", icp_core::quote::path(file)))?;
            Ok(existing.starts_with(MARKER.as_bytes()))
        }
        Ok(_) => Ok(false),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(error) => Err(error).with_context(|| icp_core::quote::path(file)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ExecEnvVar, ServiceAccountTokenAttributes};
    use super::*;

    #[test]
    fn yaml_quotes_every_string_and_reads_back_the_same() {
        let config = CredentialProviderConfig {
            api_version: CONFIG_API_VERSIONS[0].to_owned(),
            kind: KIND.to_owned(),
            providers: vec![CredentialProvider {
                name: "on".to_owned(),
                api_version: PLUGIN_API_VERSIONS[0].to_owned(),
                match_images: vec!["*.example".to_owned(), "0755".to_owned()],
                default_cache_duration: Some("0s".to_owned()),
                args: vec!["--config".to_owned(), "/a \"b\"\n".to_owned()],
                env: vec![ExecEnvVar {
                    name: "NO".to_owned(),
                    value: "yes".to_owned(),
                }],
                token_attributes: Some(ServiceAccountTokenAttributes {
                    service_account_token_audience: "aud".to_owned(),
                    cache_type: "Token".to_owned(),
                    require_service_account: Some(true),
                    optional_service_account_annotation_keys: vec!["example.com/a".to_owned()],
                    ..ServiceAccountTokenAttributes::default()
                }),
            }],
        };
        let text = render(&config, None);
        assert!(text.contains("\n- name: \"on\"\n"), "{text}");
        let read: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        let expected = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1",
            "kind": "CredentialProviderConfig",
            "providers": [{
                "name": "on",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "matchImages": ["*.example", "0755"],
                "defaultCacheDuration": "0s",
                "args": ["--config", "/a \"b\"\n"],
                "env": [{"name": "NO", "value": "yes"}],
                "tokenAttributes": {
                    "serviceAccountTokenAudience": "aud",
                    "cacheType": "Token",
                    "requireServiceAccount": true,
                    "optionalServiceAccountAnnotationKeys": ["example.com/a"],
                },
            }],
        });
        assert_eq!(read, expected);
    }

    #[test]
    fn no_line_breaking_character_of_a_rules_path_ends_the_comment_or_changes_a_string() {
        for name in [
            "a\nkind: Forged",
            "a\rkind: Forged",
            "a\u{85}kind: Forged",
            "a\u{2028}kind: Forged",
            "a\u{2029}kind: Forged",
            "a\u{feff}\u{9f}b",
        ] {
            let path = format!("/etc/{name}.yaml");
            let config = CredentialProviderConfig {
                api_version: CONFIG_API_VERSIONS[0].to_owned(),
                kind: KIND.to_owned(),
                providers: vec![CredentialProvider {
                    name: "p".to_owned(),
                    api_version: PLUGIN_API_VERSIONS[0].to_owned(),
                    match_images: vec!["*.example".to_owned()],
                    default_cache_duration: Some("0s".to_owned()),
                    args: vec!["--config".to_owned(), path.clone()],
                    ..CredentialProvider::default()
                }],
            };
            let text = render(&config, Some(Path::new(&path)));
            let header = text.split_inclusive('\n').next().unwrap();
            assert!(header.starts_with(MARKER), "{text:?}");
            assert!(
                !header
                    .trim_end_matches('\n')
                    .contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']),
                "{header:?}"
            );
            assert!(
                !text.contains(['\r', '\u{85}', '\u{2028}', '\u{2029}']),
                "{text:?}"
            );
            let read: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
            assert_eq!(read["kind"], KIND, "{text:?}");
            assert_eq!(read["providers"][0]["args"][1], path.as_str(), "{text:?}");
        }
    }
}
