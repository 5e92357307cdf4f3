//! With `--config RULES`: whether the service account tokens the provider entry that runs
//! this binary asks for fit the rules' backends: the audience each backend expects (the
//! plugin refuses to send a token of another audience), and every annotation key it reads
//! (the kubelet passes only the keys the entry names).

use icp_core::quote;

use super::{ProviderEntry, Report};
use crate::rules::Rules;

/// Warns about every rule whose backend uses service account tokens that the entry's
/// `tokenAttributes` do not fit. An entry without them sends no tokens: nothing to judge.
pub fn check_tokens(entry: &ProviderEntry, rules: &Rules, report: &mut Report) {
    let Some(attributes) = &entry.provider.token_attributes else {
        return;
    };
    for rule in &rules.rules {
        let Some(token_use) = rule
            .backend()
            .ok()
            .and_then(|backend| backend.service_account_token())
        else {
            continue;
        };
        let backend = format!("the {} backend of rule {}", rule.backend_name, rule.index);
        if attributes.service_account_token_audience != token_use.audience {
            report.warning(
                &entry.file,
                entry.at("tokenAttributes.serviceAccountTokenAudience"),
                format!(
                    "{} is not {}, the audience {backend} expects: the plugin never sends it such tokens",
                    quote(&attributes.service_account_token_audience),
                    quote(&token_use.audience)
                ),
            );
        }
        for key in &token_use.annotation_keys {
            let passed = attributes
                .required_service_account_annotation_keys
                .iter()
                .chain(&attributes.optional_service_account_annotation_keys)
                .any(|k| k == key);
            if !passed {
                report.warning(
                    &entry.file,
                    entry.at("tokenAttributes"),
                    format!(
                        "annotation {} is not passed to the plugin, and {backend} reads it",
                        quote(key)
                    ),
                );
            }
        }
    }
}
