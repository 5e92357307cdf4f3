//! Reading a `CredentialProviderConfig` as the kubelet reads `--image-credential-provider-config`:
//! one file, or (Kubernetes 1.34+) a directory whose `*.json`, `*.yaml` and `*.yml` files
//! are read in lexical order; each is JSON when it starts with `{`, else YAML (the first
//! document only), decoded strictly.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use icp_core::quote;
use serde_json::Value;

use super::{
    CONFIG_API_VERSIONS, CredentialProvider, CredentialProviderConfig, KIND, ProviderEntry, Report,
};
use crate::document;

/// Largest configuration file read.
pub(super) const MAX_FILE_SIZE: u64 = 1024 * 1024;
/// The extensions the kubelet reads in a directory (Go's `filepath.Ext`, case-sensitive).
const EXTENSIONS: [&[u8]; 3] = [b".json", b".yaml", b".yml"];

/// One configuration file: where, and its text or why it could not be read.
pub struct ConfigFile {
    /// The file, as messages name it.
    pub origin: String,
    /// Its text.
    pub text: Result<String, String>,
}

/// Every provider entry at `path`, in the kubelet's order; what is wrong goes to `report`.
pub fn read(path: &Path, report: &mut Report) -> Vec<ProviderEntry> {
    match config_files(path) {
        Ok(files) => decode(&files, report),
        Err(error) => {
            report.error(&icp_core::quote::path(path), "", error);
            Vec::new()
        }
    }
}

/// The files the kubelet reads at `path`: the file itself, or a directory's
/// configuration files ([`directory_files`]), at least one.
pub fn config_files(path: &Path) -> Result<Vec<ConfigFile>, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !metadata.is_dir() {
        return Ok(vec![config_file(path)]);
    }
    let files = directory_files(path)?;
    if files.is_empty() {
        return Err("no configuration files (*.json, *.yaml, *.yml) in the directory".into());
    }
    Ok(files.iter().map(|file| config_file(file)).collect())
}

/// The files of `dir` the kubelet reads, in lexical order: those whose extension is one
/// of [`EXTENSIONS`], directories among them skipped (a symlink to one is kept, and fails
/// to read, as in the kubelet).
pub fn directory_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let unreadable = |e: std::io::Error| format!("cannot read the directory: {e}");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir && EXTENSIONS.contains(&go_ext(entry.file_name().as_bytes())) {
            files.push(entry.path());
        }
    }
    sort_lexically(&mut files);
    Ok(files)
}

/// Sorts paths as Go sorts strings: by their bytes.
pub fn sort_lexically(paths: &mut [PathBuf]) {
    paths.sort_unstable_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
}

/// Reads one configuration file.
pub fn config_file(path: &Path) -> ConfigFile {
    let read = || -> Result<String, String> {
        let bytes = icp_core::io::read_file(path, MAX_FILE_SIZE)
            .map_err(|e| format!("cannot read: {e}"))?;
        String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_owned())
    };
    ConfigFile {
        origin: icp_core::quote::path(path),
        text: read(),
    }
}

/// Go's `filepath.Ext`: the name from its last dot on, or nothing.
fn go_ext(name: &[u8]) -> &[u8] {
    name.iter()
        .rposition(|&b| b == b'.')
        .map_or(&[][..], |dot| &name[dot..])
}

/// Every provider entry of `files`, in order.
pub fn decode(files: &[ConfigFile], report: &mut Report) -> Vec<ProviderEntry> {
    let mut entries = Vec::new();
    for file in files {
        match &file.text {
            Ok(text) => entries.extend(decode_file(&file.origin, text, report)),
            Err(error) => report.error(&file.origin, "", error.as_str()),
        }
    }
    entries
}

/// The provider entries of one file. `kind` and `apiVersion` are judged first, as the
/// kubelet's decoder does; then the document and each provider entry strictly.
fn decode_file(origin: &str, text: &str, report: &mut Report) -> Vec<ProviderEntry> {
    let value = match parse_document(text) {
        Ok((value, more)) => {
            if more {
                report.warning(
                    origin,
                    "",
                    "holds more than one YAML document: the kubelet reads only the first",
                );
            }
            value
        }
        Err(error) => {
            report.error(origin, "", error);
            return Vec::new();
        }
    };
    let Value::Object(mapping) = &value else {
        let what = if value.is_null() {
            "is empty"
        } else {
            "is not a mapping"
        };
        report.error(
            origin,
            "",
            format!("{what}: expected a {KIND} with apiVersion, kind and providers"),
        );
        return Vec::new();
    };
    let mut header_ok = true;
    let mut check = |key: &str, allowed: &[&str]| match mapping.get(key) {
        None | Some(Value::Null) => {
            report.error(origin, key, "missing");
            header_ok = false;
        }
        Some(Value::String(text)) if allowed.contains(&text.as_str()) => {}
        Some(Value::String(text)) => {
            report.error(
                origin,
                key,
                format!("{} is not {}", quote(text), allowed.join(" or ")),
            );
            header_ok = false;
        }
        Some(_) => {
            report.error(origin, key, "expected a string");
            header_ok = false;
        }
    };
    check("apiVersion", &CONFIG_API_VERSIONS);
    check("kind", &[KIND]);
    if !header_ok {
        return Vec::new();
    }
    let v1 = mapping.get("apiVersion").and_then(Value::as_str) == Some(CONFIG_API_VERSIONS[0]);
    let config: CredentialProviderConfig<Value> = match serde_json::from_value(value) {
        Ok(config) => config,
        Err(error) => {
            report.error(origin, "", error.to_string());
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for (index, item) in config.providers.into_iter().enumerate() {
        let at = format!("providers[{index}]");
        if !v1 && item.get("tokenAttributes").is_some() {
            report.error(
                origin,
                format!("{at}.tokenAttributes"),
                format!("unknown field: only {} has it", CONFIG_API_VERSIONS[0]),
            );
            continue;
        }
        let provider = if item.is_null() {
            CredentialProvider::default()
        } else {
            match serde_json::from_value(item) {
                Ok(provider) => provider,
                Err(error) => {
                    report.error(origin, at, error.to_string());
                    continue;
                }
            }
        };
        entries.push(ProviderEntry {
            file: origin.to_owned(),
            index,
            provider,
        });
    }
    entries
}

/// The document in `text`, and whether more YAML documents follow it: JSON when it starts
/// with `{`, otherwise YAML, read strictly as the kubelet's decoding is (see
/// [`crate::document`]).
fn parse_document(text: &str) -> Result<(Value, bool), String> {
    let json = text
        .trim_start_matches(|c: char| c.is_whitespace())
        .starts_with('{');
    if json {
        return document::json(text).map(|value| (value, false));
    }
    document::yaml(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_as_go_sees_them() {
        assert_eq!(go_ext(b"a.yaml"), b".yaml");
        assert_eq!(go_ext(b".yaml"), b".yaml");
        assert_eq!(go_ext(b"a.yaml.tmp"), b".tmp");
        assert_eq!(go_ext(b"a.YAML"), b".YAML");
        assert_eq!(go_ext(b"yaml"), b"");
    }

    #[test]
    fn yaml_reads_the_first_document_and_refuses_duplicate_keys() {
        let (value, more) = parse_document("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(value, serde_json::json!({"a": 1}));
        assert!(more);
        assert!(!parse_document("a: 1\n---\n").unwrap().1);
        assert!(parse_document("a: 1\na: 2\n").is_err());
        assert!(parse_document("a: {b: 1, b: 2}\n").is_err());
        assert!(parse_document(r#"{"a": [{"b": 1, "b": 2}]}"#).is_err());
        assert_eq!(parse_document("").unwrap().0, Value::Null);
        let (merged, _) = parse_document("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n").unwrap();
        assert_eq!(merged["m"], serde_json::json!({"x": 1, "y": 3}));
        let (json, _) = parse_document(r#"{"<<": {"x": 1}}"#).unwrap();
        assert_eq!(json, serde_json::json!({"<<": {"x": 1}}));
    }
}
