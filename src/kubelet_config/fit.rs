//! Whether a provider entry's `tokenAttributes` fit the rules it serves: the audience its
//! backends ask pods' tokens for (and the entry's `--audience`), the `cacheType` a
//! backend answering with the pod's token needs, and the annotation keys the backends
//! read. The kubelet accepts an entry that does not fit; its pulls then fail or lose the
//! pods' own identity, so each misfit is a warning.

use icp_core::quote;

use super::audiences::{self, CACHE_TYPE_TOKEN};
use super::{ProviderEntry, Report};
use crate::rules::Rules;

/// Warns about every way `entry`'s `tokenAttributes` do not fit the rules of `rules` it
/// serves ([`audiences::serves`]).
pub fn check(entry: &ProviderEntry, rules: &Rules, report: &mut Report) {
    let Some(attributes) = &entry.provider.token_attributes else {
        return;
    };
    let file = entry.file.as_str();
    let at = |field: &str| entry.at(&format!("tokenAttributes.{field}"));
    let sent = attributes.service_account_token_audience.as_str();
    if let Some(audience) = audiences::audience_arg(&entry.provider.args)
        && audience != sent
    {
        report.warning(
            file,
            entry.at("args"),
            format!(
                "{} {} serves the rules of that audience, but the kubelet sends tokens for {}",
                audiences::FLAG,
                quote(audience),
                quote(sent)
            ),
        );
    }
    let passed: Vec<&String> = attributes
        .required_service_account_annotation_keys
        .iter()
        .chain(&attributes.optional_service_account_annotation_keys)
        .collect();
    for rule in rules
        .rules
        .iter()
        .filter(|rule| audiences::serves(entry, rule))
    {
        let Ok(backend) = rule.backend() else {
            continue;
        };
        let Some(uses) = backend.service_account_token() else {
            continue;
        };
        let what = format!("rule {} ({})", rule.index, rule.backend_name);
        if uses.audience != sent {
            report.warning(
                file,
                at("serviceAccountTokenAudience"),
                format!(
                    "{what} needs pods' tokens for {}, not {}: give each audience its own entry \
                     (kubelet-config --service-account-tokens writes them)",
                    quote(&uses.audience),
                    quote(sent)
                ),
            );
        }
        if backend.requires_token_cache_type() && attributes.cache_type != CACHE_TYPE_TOKEN {
            report.warning(
                file,
                at("cacheType"),
                format!(
                    "{what} answers with the pod's own token, which the kubelet keeps only with \
                     cacheType {CACHE_TYPE_TOKEN}"
                ),
            );
        }
        for key in uses.annotation_keys.iter().filter(|k| !passed.contains(k)) {
            report.warning(
                file,
                at("optionalServiceAccountAnnotationKeys"),
                format!(
                    "{what} reads the service account annotation {}, which the kubelet does not \
                     pass on",
                    quote(key)
                ),
            );
        }
    }
}
