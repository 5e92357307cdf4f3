//! This binary's side of a pull: the rule and backend that serve the image, the identity
//! and token cache key the backend would use (its own `token_key`, as the plugin asks it),
//! whether the shared cache holds a token (read only), what the kubelet gets and whether
//! it keeps it; with `live`, the plugin's own answer.

use std::time::{Duration, SystemTime};

use icp_core::{BackendError, Secret, TokenKey, quote};

use super::kubelet::{self, CacheType, TokenRequest};
use super::{Entry, Input, Report};
use crate::backends::{Backend, chain};
use crate::cache::Cache;
use crate::protocol::{ApiVersion, PluginRequest};
use crate::record::Record;
use crate::rules::Rule;
use crate::{duration, plugin};

/// Explains this binary's side of the pull, after the kubelet's `report`: `token` is the
/// token the kubelet sends with the pod's annotations, `entry` the provider entry it runs
/// this binary as (none when the kubelet's configuration is not given).
pub(super) fn explain(
    input: &Input,
    mut report: Report,
    pod: Option<&kubelet::Pod>,
    token: Option<&TokenRequest>,
    entry: Option<&Entry>,
) -> Report {
    let image = &input.image;
    let name = image.name();
    let rules = &input.rules;
    let Some((rule, built)) = rules.find(image) else {
        let step = report.step(format!("rules ({}): no rule serves {name}", rules.origin));
        for rule in &rules.rules {
            if let Some(pattern) = matched_by(rule, &name) {
                step.details.push(format!(
                    "rule {} ({}) matches by {} but {}",
                    rule.index,
                    rule.backend_name,
                    quote(pattern),
                    match rule.backend() {
                        Ok(backend) if !backend.serves(image) =>
                            "its backend does not serve this host".to_owned(),
                        _ => format!(
                            "serves another audience than this instance's --audience {}",
                            quote(rules.audience.as_deref().unwrap_or_default())
                        ),
                    }
                ));
            }
        }
        return report.done(format!(
            "no credentials from this plugin: no rule of {} serves {name}, so it answers with \
             none (add a rule: see docs/rules.md)",
            rules.origin
        ));
    };
    let step = report.step(format!(
        "rules ({}): rule {} ({}) serves {name}, by matchImages {}",
        rules.origin,
        rule.index,
        rule.backend_name,
        quote(matched_by(rule, &name).unwrap_or_default())
    ));
    let backend = match built {
        Ok(backend) => backend,
        Err(failure) => {
            step.details.push(format!(
                "its backend cannot be built ({}): {}",
                failure.kind(),
                chain(&failure)
            ));
            return report.done(format!(
                "the pull fails: rule {}'s {} backend cannot be built ({}); check-config \
                 --config lists the problems",
                rule.index,
                rule.backend_name,
                failure.kind()
            ));
        }
    };
    let backend = match backend {
        Backend::Static(_) => {
            let cache_duration = rule.cache_duration.unwrap_or(plugin::STATIC_CACHE_DURATION);
            report.step(format!(
                "backend {}: answers from its files as the node; no token, nothing cached by the plugin",
                rule.backend_name
            ));
            report.step(format!(
                "the kubelet gets cacheKeyType {} and cacheDuration {} (0s when the files hold \
                 nothing for the image)",
                rule.cache_key_type.as_str(),
                duration::format(cache_duration)
            ));
            let verdict = format!(
                "would answer from rule {}'s {} files, as the node",
                rule.index, rule.backend_name
            );
            return live(input, report, rule, None, None, verdict);
        }
        Backend::Token(backend) => backend,
    };
    let uses = backend.service_account_token();
    let sent = token.map(|token| token.audience.as_str());
    let unused = |sent: &str| {
        !rules.rules.iter().any(|rule| {
            rule.backend()
                .ok()
                .and_then(Backend::service_account_token)
                .is_some_and(|uses| uses.audience == sent)
        })
    };
    match (sent, &uses) {
        (Some(sent), Some(uses)) if uses.audience != sent => {
            report.step(format!(
                "backend {}: takes pods' tokens for audience {}, but the kubelet sends tokens \
                 for {}: the plugin refuses the request and sends the token nowhere",
                rule.backend_name,
                quote(&uses.audience),
                quote(sent)
            ));
            let asker = match entry {
                Some(entry) => format!(
                    "provider {} asks the kubelet for tokens of audience {}",
                    quote(&entry.name),
                    quote(sent)
                ),
                None => format!("the token of --token-file is for audience {}", quote(sent)),
            };
            return report.done(format!(
                "the pull fails: {asker}{}, and rule {} ({}) needs {}: set \
                 tokenAttributes.serviceAccountTokenAudience to {} (kubelet-config \
                 --service-account-tokens writes it)",
                if unused(sent) {
                    ", which no rule uses"
                } else {
                    ""
                },
                rule.index,
                rule.backend_name,
                quote(&uses.audience),
                quote(&uses.audience)
            ));
        }
        (Some(sent), None) => {
            let step = report.step(format!(
                "backend {}: uses no service account token; the token of audience {} the \
                 kubelet sends is not used, and the pull is as the node",
                rule.backend_name,
                quote(sent)
            ));
            if unused(sent) {
                step.details.push(format!(
                    "no rule uses audience {}: the entry's tokenAttributes only make the \
                     kubelet request tokens (and need the RBAC above)",
                    quote(sent)
                ));
            }
        }
        (None, Some(uses)) => {
            report.step(format!(
                "backend {}: the kubelet sends no token, so the pull is as the node (a pod's \
                 own identity needs tokenAttributes for audience {}: kubelet-config \
                 --service-account-tokens)",
                rule.backend_name,
                quote(&uses.audience)
            ));
        }
        (Some(_), Some(uses)) => {
            let step = report.step(format!(
                "backend {}: takes the pod's token (audience {})",
                rule.backend_name,
                quote(&uses.audience)
            ));
            let account = pod.and_then(|pod| pod.service_account.as_ref());
            for key in &uses.annotation_keys {
                let passed = token.is_some_and(|t| t.annotations.contains_key(key));
                let present = account.is_some_and(|a| a.annotations.contains_key(key));
                if present && !passed {
                    step.details.push(format!(
                        "the service account's annotation {key} is not passed on by the \
                         kubelet, so the backend does not see it: add it to \
                         optionalServiceAccountAnnotationKeys"
                    ));
                }
            }
        }
        (None, None) => {
            report.step(format!(
                "backend {}: fetches tokens as the node",
                rule.backend_name
            ));
        }
    }
    let account = match (
        token,
        pod.and_then(|pod| Some((pod, pod.service_account.as_ref()?))),
    ) {
        (Some(token), Some((pod, account))) => Some(icp_core::ServiceAccount {
            namespace: pod.namespace.clone(),
            name: account.name.clone(),
            uid: account
                .uid
                .clone()
                .unwrap_or_else(|| UNKNOWN_UID.to_owned()),
            token: input
                .token
                .as_ref()
                .map_or_else(|| Secret::new(""), |t| t.token.clone()),
            annotations: token.annotations.clone(),
        }),
        _ => None,
    };
    let request = icp_core::Request {
        image,
        cache_key_type: rule.cache_key_type,
        service_account: account.as_ref(),
    };
    let key = match backend.token_key(&request) {
        Ok(key) => key,
        Err(failure) => {
            report.step(format!(
                "backend {}: cannot tell which token the image needs ({}): {}",
                rule.backend_name,
                failure.kind(),
                chain(&failure)
            ));
            return report.done(format!(
                "the pull fails ({}): {}",
                failure.kind(),
                chain(&failure)
            ));
        }
    };
    let identity = identity(&key, account.as_ref());
    report.step(format!("identity: {identity}: {}", shown(&key.identity)));
    let uid_known = account.as_ref().is_none_or(|a| a.uid != UNKNOWN_UID);
    let cached = cache_step(&mut report, input, rule, &key, uid_known);
    let cap = rule.cache_duration.map_or(String::new(), |cap| {
        format!(
            ", at most {} (the rule's cacheDuration)",
            duration::format(cap)
        )
    });
    let step = report.step(format!(
        "the kubelet gets cacheKeyType {} and cacheDuration {}",
        rule.cache_key_type.as_str(),
        match cached {
            Some(refresh_at) => format!(
                "{} (until the cached token's refresh point{cap})",
                duration::format(capped(until(refresh_at), rule.cache_duration))
            ),
            None => format!("set from the fetched token (until its refresh point{cap})"),
        }
    ));
    let cache_type = entry
        .and_then(|e| e.attributes.as_ref())
        .map(|a| a.cache_type);
    if let Some(cache_type) = cache_type {
        if backend.requires_token_cache_type() && !cache_type.accepts_token_as_password() {
            step.details.push(format!(
                "the kubelet refuses the answer: rule {} answers with the pod's own token, \
                 which it keeps only with cacheType Token (this entry has {})",
                rule.index,
                cache_type.as_str()
            ));
            return report.done(format!(
                "the kubelet refuses the plugin's answer: set tokenAttributes.cacheType: {} \
                 for rule {} ({})",
                CacheType::Token.as_str(),
                rule.index,
                rule.backend_name
            ));
        }
        step.details.push(format!(
            "the kubelet accepts it (cacheType {})",
            cache_type.as_str()
        ));
    }
    let verdict = format!("would pull {name} as {identity} ({})", shown(&key.identity));
    live(input, report, rule, account, Some(key), verdict)
}

/// The cache step: where the token of `key` would be cached and whether a token is, read
/// only. Returns the cached token's refresh point.
fn cache_step(
    report: &mut Report,
    input: &Input,
    rule: &Rule,
    key: &TokenKey,
    uid_known: bool,
) -> Option<SystemTime> {
    let stem = Cache::file_stem(&rule.backend_name, key);
    let Some(dir) = &input.cache_dir else {
        report.step("token cache: off (--no-cache or cache.enabled: false): every pull fetches");
        return None;
    };
    let dir_text = quote::path(dir);
    if !uid_known {
        report.step(format!(
            "token cache at {dir_text}: not looked up: the key holds the service account's uid, \
             which is not known (give --token-file, or a ServiceAccount document with \
             metadata.uid in --pod's file)"
        ));
        return None;
    }
    let cache = match Cache::open_existing(dir) {
        Ok(cache) => cache,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            report.step(format!(
                "token cache at {dir_text}: does not exist yet; key {stem} (scope {}): the next \
                 pull fetches",
                quote(&key.scope)
            ));
            return None;
        }
        Err(error) => {
            report.step(format!(
                "token cache at {dir_text}: unusable ({error}): the plugin answers uncached"
            ));
            return None;
        }
    };
    match cache.get_stale(&rule.backend_name, key) {
        Some(hit) => {
            let expires = hit.token.expires_at.map_or("never".to_owned(), |at| {
                format!("in {}", duration::format(until(at)))
            });
            report.step(format!(
                "token cache at {dir_text}: key {stem} (scope {}) holds a token, expires {expires}, \
                 refreshed {}",
                quote(&key.scope),
                match hit.refresh_at > SystemTime::now() {
                    true => format!("in {}", duration::format(until(hit.refresh_at))),
                    false => "at the next pull".to_owned(),
                }
            ));
            (hit.refresh_at > SystemTime::now()).then_some(hit.refresh_at)
        }
        None => {
            report.step(format!(
                "token cache at {dir_text}: no token under key {stem} (scope {}): the next pull fetches",
                quote(&key.scope)
            ));
            None
        }
    }
}

/// The uid of a service account whose uid is not known, in the token cache key shown.
const UNKNOWN_UID: &str = "(uid unknown)";

/// A token cache identity as shown: whole (it holds no secret), control characters
/// dropped.
fn shown(identity: &str) -> String {
    identity.chars().filter(|c| !c.is_control()).collect()
}

/// With `--live`, the plugin's own answer as a step and the verdict it makes; else
/// `verdict`.
fn live(
    input: &Input,
    mut report: Report,
    rule: &Rule,
    account: Option<icp_core::ServiceAccount>,
    key: Option<TokenKey>,
    verdict: String,
) -> Report {
    if !input.live {
        return report.done(verdict);
    }
    if account
        .as_ref()
        .is_some_and(|a| a.token.expose().is_empty())
    {
        report
            .step("live: not run: the kubelet would send the pod's token; give --token-file FILE");
        return report.done(verdict);
    }
    let name = input.image.name();
    let request = PluginRequest {
        api_version: ApiVersion::V1,
        image: name.clone(),
        service_account: account,
    };
    let mut record = Record::new(SystemTime::now(), Some(&name));
    match plugin::answer(
        &request,
        &input.rules,
        input.cache_dir.as_deref(),
        &mut record,
    ) {
        Ok(response) if response.auth.is_empty() => {
            report.step("live: the plugin answered with no credentials");
            report.done(format!(
                "no credentials from this plugin: rule {}'s backend has none for {name}",
                rule.index
            ))
        }
        Ok(response) => {
            let mut users: Vec<&str> = response
                .auth
                .iter()
                .map(|entry| entry.username.as_str())
                .collect();
            users.dedup();
            let patterns: Vec<String> = response.auth.iter().map(|e| quote(&e.pattern)).collect();
            let expires = key
                .as_ref()
                .zip(input.cache_dir.as_deref())
                .and_then(|(key, dir)| {
                    Cache::open_existing(dir)
                        .ok()?
                        .get_stale(&rule.backend_name, key)?
                        .token
                        .expires_at
                })
                .map_or(String::new(), |at| {
                    format!(", the token expires in {}", duration::format(until(at)))
                });
            let step = report.step(format!(
                "live: fetched ({}): user {} for {}{expires}",
                record.cache.as_str(),
                users.join(", "),
                patterns.join(", ")
            ));
            step.details.push(format!(
                "the kubelet gets cacheKeyType {} and cacheDuration {}",
                response.cache_key_type.as_str(),
                duration::format(response.cache_duration)
            ));
            report.done(format!(
                "pulls {name} as user {} ({})",
                users.join(", "),
                shown(record.identity.as_deref().unwrap_or("node"))
            ))
        }
        Err(error) => {
            let line = format!("{error:#}").replace(['\n', '\r'], " ");
            report.step(format!("live: failed: {line}"));
            report.done(format!("the pull fails: {line}"))
        }
    }
}

/// Who a token of `key` is fetched as, in words: the pod's service account (when the key
/// is one of it) or the node.
fn identity(key: &TokenKey, account: Option<&icp_core::ServiceAccount>) -> String {
    match account {
        Some(account) if key.identity.starts_with("sa=") => {
            format!("the pod's service account {account}")
        }
        _ => "the node's identity".to_owned(),
    }
}

/// The pattern of `rule` that matches the image `name`.
fn matched_by<'a>(rule: &'a Rule, name: &str) -> Option<&'a str> {
    rule.patterns
        .iter()
        .find(|pattern| pattern.matches(name))
        .map(|pattern| pattern.as_str())
}

/// The time until `at`, nothing when it is past.
fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// `duration`, at most `cap`.
fn capped(duration: Duration, cap: Option<Duration>) -> Duration {
    cap.map_or(duration, |cap| duration.min(cap))
}
