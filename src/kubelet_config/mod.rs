//! The kubelet's own configuration of credential provider plugins, the
//! `CredentialProviderConfig` read from `--image-credential-provider-config`: written for
//! this binary by `kubelet-config` ([`write`]), and judged as the kubelet judges it by
//! `check-config --kubelet-config` ([`read`], [`validate`], [`cover`]).
//!
//! The types below are the kubelet's `kubelet.config.k8s.io/v1` types. Reading them is
//! as strict as the kubelet is: unknown fields, wrong `kind` or `apiVersion` are errors;
//! a field written `null` counts as absent, as in Go.

mod audiences;
mod cover;
mod fit;
pub mod rbac;
mod read;
mod validate;
mod write;

use std::fmt;
use std::path::Path;

use icp_core::Environment;
use serde::{Deserialize, Deserializer};

use crate::protocol::ApiVersion;

pub use audiences::{CACHE_TYPE_TOKEN, audience_arg};
pub use cover::config_arg;
pub use write::{
    configuration, configuration_as, judge_in_directory, provider_names, replaceable, write_into,
};

/// The `kubelet.config.k8s.io` versions that hold a `CredentialProviderConfig`.
pub const CONFIG_API_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];

/// The protocol versions a provider entry may ask for, in the kubelet's (sorted) order:
/// the protocol's own ([`ApiVersion`]).
pub const PLUGIN_API_VERSIONS: [&str; 3] = [
    ApiVersion::V1.as_str(),
    ApiVersion::V1Alpha1.as_str(),
    ApiVersion::V1Beta1.as_str(),
];

/// The kind of the document.
pub const KIND: &str = "CredentialProviderConfig";

/// A `CredentialProviderConfig`; `P` is the type its providers are read as.
#[derive(Debug, Deserialize)]
#[serde(
    rename_all = "camelCase",
    deny_unknown_fields,
    bound(deserialize = "P: Deserialize<'de> + Default")
)]
pub struct CredentialProviderConfig<P = CredentialProvider> {
    /// One of [`CONFIG_API_VERSIONS`].
    #[serde(default, deserialize_with = "null_as_default")]
    pub api_version: String,
    /// [`KIND`].
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// The exec plugins the kubelet runs, in order.
    #[serde(default, deserialize_with = "list")]
    pub providers: Vec<P>,
}

/// One exec plugin: which binary, for which images, speaking which protocol version.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialProvider {
    /// The binary's file name in `--image-credential-provider-bin-dir`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// One of [`PLUGIN_API_VERSIONS`].
    #[serde(default, deserialize_with = "null_as_default")]
    pub api_version: String,
    /// The images the kubelet asks this plugin about (kubelet globs).
    #[serde(default, deserialize_with = "list")]
    pub match_images: Vec<String>,
    /// How long the kubelet caches an answer that states no `cacheDuration` (Go duration).
    #[serde(default)]
    pub default_cache_duration: Option<String>,
    /// The plugin's arguments.
    #[serde(default, deserialize_with = "list")]
    pub args: Vec<String>,
    /// Environment variables added to the kubelet's own for the plugin.
    #[serde(default, deserialize_with = "list")]
    pub env: Vec<ExecEnvVar>,
    /// Service account tokens for the plugin (`kubelet.config.k8s.io/v1` only).
    #[serde(default)]
    pub token_attributes: Option<ServiceAccountTokenAttributes>,
}

/// An environment variable of a plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecEnvVar {
    /// The name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The value.
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: String,
}

/// Which service account token the kubelet sends the plugin with each request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountTokenAttributes {
    /// The token's audience; required.
    #[serde(default, deserialize_with = "null_as_default")]
    pub service_account_token_audience: String,
    /// `ServiceAccount` or `Token`: what the kubelet keys its cache of answers by.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cache_type: String,
    /// Whether the plugin is run only for pods with a service account; required.
    #[serde(default)]
    pub require_service_account: Option<bool>,
    /// Annotations of the service account that must be present and are sent.
    #[serde(default, deserialize_with = "list")]
    pub required_service_account_annotation_keys: Vec<String>,
    /// Annotations of the service account sent when present.
    #[serde(default, deserialize_with = "list")]
    pub optional_service_account_annotation_keys: Vec<String>,
}

/// Go's reading of `null`: the field's zero value.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A list as Go reads it: `null` for the list or an item is its zero value.
fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    let items = Option::<Vec<Option<T>>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(items.into_iter().map(Option::unwrap_or_default).collect())
}

/// A provider entry as read, with where it is.
pub struct ProviderEntry {
    /// The file it is in.
    pub file: String,
    /// Its index in that file's `providers`.
    pub index: usize,
    /// The entry.
    pub provider: CredentialProvider,
}

impl ProviderEntry {
    /// `providers[i].field` of this entry.
    fn at(&self, field: &str) -> String {
        format!("providers[{}].{field}", self.index)
    }
}

/// Whether the kubelet runs this binary, known to it as provider `name`, for `entry`: the
/// entry named `name`, or one named `name-…` that serves one audience with `--audience`
/// (see [`audiences`]).
pub fn runs_binary(entry: &CredentialProvider, name: &str) -> bool {
    entry.name == name
        || entry
            .name
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('-'))
            && audience_arg(&entry.args).is_some()
}

/// One problem (the kubelet refuses the configuration) or warning (it accepts it, but
/// something in it cannot work).
#[derive(Clone)]
pub struct Finding {
    file: String,
    field: String,
    message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.message.replace(['\n', '\r'], " ");
        match self.field.as_str() {
            "" => write!(f, "{}: {message}", self.file),
            field => write!(f, "{}: {field}: {message}", self.file),
        }
    }
}

/// What a check found.
#[derive(Default, Clone)]
pub struct Report {
    /// What the kubelet refuses.
    pub errors: Vec<Finding>,
    /// What it accepts, but cannot work.
    pub warnings: Vec<Finding>,
}

impl Report {
    fn error(&mut self, file: &str, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Finding {
            file: file.to_owned(),
            field: field.into(),
            message: message.into(),
        });
    }

    fn warning(&mut self, file: &str, field: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Finding {
            file: file.to_owned(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// What `check-config --kubelet-config` found.
pub struct Judgement {
    /// The file or directory judged.
    pub origin: String,
    /// How many provider entries it holds.
    pub providers: usize,
    /// The problems and warnings, in the order found.
    pub report: Report,
}

/// A kubelet configuration as read once (a file, or a directory as Kubernetes 1.34+ reads
/// one): its provider entries in the kubelet's order, and what reading them found.
pub struct Configuration {
    origin: String,
    entries: Vec<ProviderEntry>,
    read: Report,
}

impl Configuration {
    /// Reads the configuration at `path`; what is wrong with it is for [`Self::judge`].
    pub fn read(path: &Path) -> Configuration {
        let mut read = Report::default();
        let entries = read::read(path, &mut read);
        Configuration {
            origin: icp_core::quote::path(path),
            entries,
            read,
        }
    }

    /// Every provider entry read, in the kubelet's order, whatever is wrong with them.
    pub fn entries(&self) -> &[ProviderEntry] {
        &self.entries
    }

    /// Judges the configuration as the kubelet does. With `rules`, that file is checked too
    /// (its backends built with `env`), and every rule pattern the kubelet would not send
    /// this binary, run as provider `name`, is a warning.
    pub fn judge(&self, rules: Option<&Path>, name: &str, env: &Environment) -> Judgement {
        let (origin, entries) = (&self.origin, &self.entries);
        let mut report = self.read.clone();
        // A file that could not be read or decoded may be the one naming the provider.
        let complete = report.errors.is_empty();
        validate::validate(origin, entries, &mut report);
        if let Some(rules_path) = rules {
            match crate::rules::check(rules_path, env) {
                Ok(rules) => {
                    cover::check_reach(
                        entries,
                        &rules,
                        rules_path,
                        name,
                        origin,
                        complete,
                        &mut report,
                    );
                }
                Err(problems) => {
                    for problem in problems.problems {
                        report.error(&problems.origin, "", problem);
                    }
                }
            }
        }
        Judgement {
            origin: origin.clone(),
            providers: entries.len(),
            report,
        }
    }
}

/// `check-config --kubelet-config PATH [--config RULES] [--name NAME]`: judges the kubelet
/// configuration at `path` as the kubelet does ([`Configuration::judge`]).
pub fn check(path: &Path, rules: Option<&Path>, name: &str, env: &Environment) -> Judgement {
    Configuration::read(path).judge(rules, name, env)
}
