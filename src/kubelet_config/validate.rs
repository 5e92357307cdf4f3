//! The kubelet's judgement of the provider entries it read (`validateCredentialProviderConfig`
//! with service account tokens on, as they are by default since Kubernetes 1.34), and
//! warnings about `matchImages` entries it accepts that cannot match as they read.

use std::collections::{HashMap, HashSet};

use icp_core::pattern::{Glob, SchemelessUrl, check_url};
use icp_core::quote;

use super::{PLUGIN_API_VERSIONS, ProviderEntry, Report, ServiceAccountTokenAttributes};

/// The `tokenAttributes.cacheType` values.
const CACHE_TYPES: [&str; 2] = ["ServiceAccount", "Token"];

/// Judges `entries`, read from `origin`, as the kubelet does; every problem and warning
/// goes to `report`.
pub fn validate(origin: &str, entries: &[ProviderEntry], report: &mut Report) {
    if entries.is_empty() && report.errors.is_empty() {
        report.error(origin, "providers", "at least one provider is required");
    }
    let mut seen: HashMap<&str, &ProviderEntry> = HashMap::new();
    for entry in entries {
        name(entry, &mut seen, report);
        let provider = &entry.provider;
        let file = entry.file.as_str();
        match provider.api_version.as_str() {
            "" => report.error(file, entry.at("apiVersion"), "required"),
            version if PLUGIN_API_VERSIONS.contains(&version) => {}
            version => report.error(
                file,
                entry.at("apiVersion"),
                format!(
                    "{} is not one of {}",
                    quote(version),
                    PLUGIN_API_VERSIONS.join(", ")
                ),
            ),
        }
        if provider.match_images.is_empty() {
            report.error(
                file,
                entry.at("matchImages"),
                "at least one entry is required",
            );
        }
        for (j, image) in provider.match_images.iter().enumerate() {
            let at = entry.at(&format!("matchImages[{j}]"));
            match check_url(image) {
                Err(error) => {
                    report.error(file, at, format!("{} is invalid: {error}", quote(image)))
                }
                Ok(()) => {
                    for warning in match_image_warnings(image) {
                        report.warning(file, at.as_str(), format!("{}: {warning}", quote(image)));
                    }
                }
            }
        }
        match provider.default_cache_duration.as_deref() {
            None => report.error(file, entry.at("defaultCacheDuration"), "required"),
            Some(text) => match is_negative_duration(text) {
                Ok(false) => {}
                Ok(true) => report.error(
                    file,
                    entry.at("defaultCacheDuration"),
                    format!("{} must be 0 or more", quote(text)),
                ),
                Err(()) => report.error(
                    file,
                    entry.at("defaultCacheDuration"),
                    format!("{} is not a Go duration such as \"10m\"", quote(text)),
                ),
            },
        }
        if let Some(attributes) = &provider.token_attributes {
            token_attributes(entry, attributes, report);
        }
    }
}

/// The name is the binary's file name in the kubelet's bin directory: not empty, not a
/// path, unique across every file read.
fn name<'a>(
    entry: &'a ProviderEntry,
    seen: &mut HashMap<&'a str, &'a ProviderEntry>,
    report: &mut Report,
) {
    let name = entry.provider.name.as_str();
    let file = entry.file.as_str();
    let at = entry.at("name");
    let mut problem = |message: &str| {
        report.error(file, at.as_str(), format!("{}: {message}", quote(name)));
    };
    if name.is_empty() {
        problem(
            "required: the kubelet runs the binary of this name in its --image-credential-provider-bin-dir",
        );
    }
    if name.contains('/') {
        problem("provider name cannot contain '/'");
    }
    if name.contains(' ') {
        problem("provider name cannot contain spaces");
    }
    if name == "." || name == ".." {
        problem("provider name cannot be '.' or '..'");
    }
    match seen.get(name) {
        Some(first) if first.file == entry.file => problem(&format!(
            "duplicate provider name (also providers[{}])",
            first.index
        )),
        Some(first) => problem(&format!(
            "duplicate provider name (also providers[{}] of {})",
            first.index, first.file
        )),
        None => {
            seen.insert(name, entry);
        }
    }
}

/// Go's `time.ParseDuration`, reduced to whether the duration is negative.
fn is_negative_duration(text: &str) -> Result<bool, ()> {
    match text.strip_prefix('-') {
        Some(rest) if rest.starts_with(['-', '+']) => Err(()),
        Some(rest) => crate::duration::parse(rest)
            .map(|d| !d.is_zero())
            .map_err(drop),
        None => crate::duration::parse(text).map(|_| false).map_err(drop),
    }
}

fn token_attributes(
    entry: &ProviderEntry,
    attributes: &ServiceAccountTokenAttributes,
    report: &mut Report,
) {
    let file = entry.file.as_str();
    let at = |field: &str| match field {
        "" => entry.at("tokenAttributes"),
        field => entry.at(&format!("tokenAttributes.{field}")),
    };
    if attributes.service_account_token_audience.is_empty() {
        report.error(file, at("serviceAccountTokenAudience"), "required");
    }
    if attributes.require_service_account.is_none() {
        report.error(file, at("requireServiceAccount"), "required");
    }
    if entry.provider.api_version != PLUGIN_API_VERSIONS[0] {
        report.error(
            file,
            at(""),
            format!(
                "only a provider with apiVersion {} may have it",
                PLUGIN_API_VERSIONS[0]
            ),
        );
    }
    let required = &attributes.required_service_account_annotation_keys;
    let optional = &attributes.optional_service_account_annotation_keys;
    if attributes.require_service_account == Some(false) && !required.is_empty() {
        report.error(
            file,
            at("requiredServiceAccountAnnotationKeys"),
            "requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set",
        );
    }
    for (field, keys) in [
        ("requiredServiceAccountAnnotationKeys", required),
        ("optionalServiceAccountAnnotationKeys", optional),
    ] {
        let mut seen = HashSet::new();
        for key in keys {
            for problem in icp_core::names::qualified_name_problems(&key.to_lowercase()) {
                report.error(file, at(field), format!("{}: {problem}", quote(key)));
            }
            if !seen.insert(key) {
                report.error(file, at(field), format!("{}: duplicate", quote(key)));
            }
        }
    }
    let required: HashSet<&String> = required.iter().collect();
    let mut both: Vec<String> = Vec::new();
    for key in optional.iter().filter(|key| required.contains(key)) {
        if !both.contains(&quote(key)) {
            both.push(quote(key));
        }
    }
    if !both.is_empty() {
        report.error(
            file,
            at(""),
            format!(
                "annotation keys cannot be both required and optional: {}",
                both.join(", ")
            ),
        );
    }
    match attributes.cache_type.as_str() {
        "" => report.error(
            file,
            at("cacheType"),
            format!("required: one of {}", CACHE_TYPES.join(", ")),
        ),
        kind if CACHE_TYPES.contains(&kind) => {}
        kind => report.error(
            file,
            at("cacheType"),
            format!("{} is not one of {}", quote(kind), CACHE_TYPES.join(", ")),
        ),
    }
}

/// What keeps a `matchImages` entry the kubelet accepts from matching as it reads. The
/// kubelet matches images without tag or digest, hosts case-sensitively, paths as plain
/// prefixes, and each host label as a Go glob.
fn match_image_warnings(text: &str) -> Vec<String> {
    let Ok(url) = SchemelessUrl::parse(text) else {
        return Vec::new();
    };
    if text.contains("://") {
        return vec![
            "has a scheme, but the kubelet puts https:// in front of every entry itself, so this one matches no image"
                .to_owned(),
        ];
    }
    let mut warnings = Vec::new();
    if text.contains(['?', '#']) {
        warnings.push(
            "the kubelet reads what follows '?' or '#' as a URL query or fragment and ignores it"
                .to_owned(),
        );
    }
    let authority = text.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        warnings.push(
            "the kubelet reads what precedes '@' as URL user information and ignores it".to_owned(),
        );
    }
    if url.labels.iter().any(String::is_empty) {
        warnings.push("has an empty host label, so it matches no image".to_owned());
    } else if let Some(label) = url.labels.iter().find(|l| Glob::parse(l).is_err()) {
        warnings.push(format!(
            "host label {} is not a valid glob, so it matches no image",
            quote(label)
        ));
    }
    if url
        .labels
        .iter()
        .any(|l| l.chars().any(|c| c.is_ascii_uppercase()))
    {
        warnings.push(
            "the host has uppercase letters, and the kubelet compares hosts case-sensitively: it matches only images whose host is written in the same case"
                .to_owned(),
        );
    }
    if url.path.contains(['*', '[', '?']) {
        warnings.push(
            "a glob in the path matches nothing: the kubelet compares paths as plain prefixes, and no image path holds '*' or '['"
                .to_owned(),
        );
    } else if let Some(c) = url
        .path
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c)))
    {
        warnings.push(format!(
            "the path holds {c:?}, which no image path holds (lowercase letters, digits, '.', '_', '-', '/'; the kubelet matches images without tag or digest), so it matches no image"
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_reads_them() {
        assert_eq!(is_negative_duration("10m"), Ok(false));
        assert_eq!(is_negative_duration("0"), Ok(false));
        assert_eq!(is_negative_duration("-0"), Ok(false));
        assert_eq!(is_negative_duration("-0s"), Ok(false));
        assert_eq!(is_negative_duration("-1m"), Ok(true));
        assert_eq!(is_negative_duration("-+1m"), Err(()));
        assert_eq!(is_negative_duration("10"), Err(()));
        assert_eq!(is_negative_duration("1d"), Err(()));
    }

    #[test]
    fn warnings_for_entries_that_cannot_match() {
        let count = |text| match_image_warnings(text).len();
        for fine in [
            "gcr.io",
            "*.gcr.io",
            "registry.io:5000/team-a/app_1",
            "*-docker.pkg.dev",
        ] {
            assert_eq!(match_image_warnings(fine), Vec::<String>::new(), "{fine}");
        }
        for (text, warnings) in [
            ("registry.io/*", 1),
            ("Registry.io", 1),
            ("https://registry.io", 1),
            ("registry.io/app:1.0", 1),
            ("registry.io/Team", 1),
            ("registry.io?x", 1),
            ("user@registry.io", 1),
            ("", 1),
            ("reg-[ab.io", 1),
            ("Reg.io/*", 2),
        ] {
            assert_eq!(
                count(text),
                warnings,
                "{text}: {:?}",
                match_image_warnings(text)
            );
        }
    }
}
