//! `explain IMAGE`: why a pull gets credentials from this plugin or not, step by step,
//! from the kubelet's side (its `CredentialProviderConfig`: which provider entries match,
//! whether it runs this binary for the pod, the token it requests and the RBAC that needs,
//! what it passes on and caches by), then this binary's (the rule, backend, identity,
//! token cache key and cached token, the `cacheKeyType` and `cacheDuration` the kubelet
//! gets and whether it keeps the answer). Nothing is sent anywhere, no child process is
//! run and nothing is written, unless `live` asks to fetch as the plugin would.
//!
//! Data in ([`Input`]), a [`Report`] out; the command prints it.

pub mod kubelet;
mod ours;
pub(crate) mod pod;

use std::path::{Path, PathBuf};

use icp_core::{Environment, ImageRef, Pattern, quote};

use crate::kubelet_config::{self, ProviderEntry};
use crate::rules::Rules;
use kubelet::{Decision, Skip, TokenAttributes};
use pod::PodInput;

/// What a pull is explained with.
pub(crate) struct Input {
    /// The image, as the pod names it.
    pub image: ImageRef,
    /// The kubelet's `--image-credential-provider-config`, when given.
    pub kubelet_config: Option<PathBuf>,
    /// The provider name this binary runs under in the kubelet's configuration.
    pub name: String,
    /// The rules file given (`--config`), if any.
    pub rules_path: Option<PathBuf>,
    /// The rules in force: `--config`'s or the embedded default.
    pub rules: Rules,
    /// The token cache directory in force, `None` when caching is off.
    pub cache_dir: Option<PathBuf>,
    /// The pod, when given.
    pub pod: Option<PodInput>,
    /// The pod's service account token (`--token-file`), read but not sent unless `live`.
    pub token: Option<icp_core::ServiceAccount>,
    /// Whether to fetch as the plugin would (`--live`).
    pub live: bool,
    /// The environment the backends are built with.
    pub env: Environment,
}

/// The explanation: numbered steps and a verdict.
#[derive(Default)]
pub(crate) struct Report {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// One line: what the pull comes to.
    pub verdict: String,
}

/// One step: a line, and details under it.
pub(crate) struct Step {
    /// What the step found.
    pub line: String,
    /// Lines under it (findings, a manifest).
    pub details: Vec<String>,
}

impl Report {
    fn step(&mut self, line: impl Into<String>) -> &mut Step {
        self.steps.push(Step {
            line: line.into(),
            details: Vec::new(),
        });
        self.steps.last_mut().expect("just pushed")
    }

    fn done(mut self, verdict: impl Into<String>) -> Report {
        self.verdict = verdict.into();
        self
    }
}

/// The provider entry that runs this binary for the pull, as the kubelet acts on it.
struct Entry {
    /// Its name.
    name: String,
    /// Its `tokenAttributes`.
    attributes: Option<TokenAttributes>,
    /// Its `--audience` argument: the rules its instance serves.
    audience: Option<String>,
}

/// Explains the pull of `input.image`.
pub(crate) fn explain(mut input: Input) -> Report {
    let mut report = Report::default();
    let name = input.image.name();
    report.step(format!(
        "image: the kubelet asks its providers about {name} (tag and digest dropped)"
    ));
    let pod = pod_step(&mut input, &mut report);
    let Some(path) = input.kubelet_config.clone() else {
        let step = report.step("kubelet: --kubelet-config not given, its side is not explained");
        step.details.push(match crate::install::kubelet_config_flag() {
            Ok(Some((value, Some(file)))) => format!(
                "this node's kubelet reads {} (its --image-credential-provider-config, set in {})",
                quote(&value),
                quote::path(&file)
            ),
            Ok(Some((value, None))) => format!(
                "this node's kubelet reads {} (the default of its distribution)",
                quote(&value)
            ),
            _ => "this node's kubelet flags name no --image-credential-provider-config".to_owned(),
        });
        let assumed = input.token.as_ref().map(|account| kubelet::TokenRequest {
            audience: account.audiences().first().cloned().unwrap_or_default(),
            annotations: pod
                .as_ref()
                .and_then(|p| p.service_account.as_ref())
                .map(|sa| sa.annotations.clone())
                .unwrap_or_default(),
        });
        step.details.push(match assumed {
            Some(_) => "assumed: the kubelet runs the plugin with the token of --token-file and the annotations given".to_owned(),
            None => "assumed: the kubelet runs the plugin without a service account token".to_owned(),
        });
        return ours::explain(&input, report, pod.as_ref(), assumed.as_ref(), None);
    };
    let configuration = kubelet_config::Configuration::read(&path);
    let entries = configuration.entries();
    // The kubelet's own judgement, then (with --config) what keeps the rules from working
    // through it: the rules file's problems are the plugin's, not the kubelet's.
    let judgement = configuration.judge(None, &input.name, &input.env);
    let findings = &judgement.report;
    if !findings.errors.is_empty() {
        let step = report.step(format!(
            "kubelet config {}: refused by the kubelet ({})",
            judgement.origin,
            crate::plural::count(findings.errors.len(), "problem")
        ));
        step.details
            .extend(findings.errors.iter().map(|e| format!("error: {e}")));
        return report.done(format!(
            "the kubelet refuses {}: it does not start with it, and runs no credential provider \
             (check-config --kubelet-config lists the problems)",
            judgement.origin
        ));
    }
    let mut warnings: Vec<String> = findings.warnings.iter().map(|w| w.to_string()).collect();
    let mut rules_problems: Vec<String> = Vec::new();
    if let Some(rules_path) = &input.rules_path {
        let with_rules = configuration
            .judge(Some(rules_path), &input.name, &input.env)
            .report;
        rules_problems.extend(with_rules.errors.iter().map(|e| e.to_string()));
        for warning in with_rules.warnings.iter().map(|w| w.to_string()) {
            if !warnings.contains(&warning) {
                warnings.push(warning);
            }
        }
    }
    let step = report.step(format!(
        "kubelet config {}: accepted by the kubelet, {}{}",
        judgement.origin,
        crate::plural::count(judgement.providers, "provider"),
        match warnings.len() {
            0 => String::new(),
            n => format!(", {}", crate::plural::count(n, "warning")),
        }
    ));
    step.details
        .extend(warnings.iter().map(|w| format!("warning: {w}")));
    step.details.extend(rules_problems.iter().map(|p| {
        format!("error: {p} (a problem of the rules file: the pulls its rule serves fail)")
    }));
    let matching: Vec<(&ProviderEntry, &str)> = entries
        .iter()
        .filter_map(|entry| {
            let pattern = entry
                .provider
                .match_images
                .iter()
                .find(|m| Pattern::parse(m).is_ok_and(|pattern| pattern.matches(&name)))?;
            Some((entry, pattern.as_str()))
        })
        .collect();
    if matching.is_empty() {
        report.step(format!("providers: no matchImages entry matches {name}"));
        return report.done(format!(
            "the kubelet runs no credential provider for {name}: no provider's matchImages match it"
        ));
    }
    let step = report.step(format!(
        "providers matching {name}, in the kubelet's order (it runs every one and tries all their credentials):"
    ));
    for (entry, pattern) in &matching {
        step.details.push(format!(
            "providers[{}] {} in {}: matchImages {}",
            entry.index,
            quote(&entry.provider.name),
            entry.file,
            quote(pattern)
        ));
    }
    let ours: Vec<&ProviderEntry> = matching
        .iter()
        .map(|(entry, _)| *entry)
        .filter(|entry| kubelet_config::runs_binary(&entry.provider, &input.name))
        .collect();
    let Some(chosen) = choose(&ours, &input, &input.image) else {
        let named = entries
            .iter()
            .any(|entry| kubelet_config::runs_binary(&entry.provider, &input.name));
        report.step(format!(
            "this binary (provider {}): {}",
            quote(&input.name),
            match named {
                true => "its matchImages do not match the image",
                false => "no provider of the config runs it (give --name NAME)",
            }
        ));
        return report.done(format!(
            "the kubelet never asks this binary about {name}: {}",
            match named {
                true => format!(
                    "no matchImages entry of provider {} matches it",
                    quote(&input.name)
                ),
                false => format!("no provider is named {}", quote(&input.name)),
            }
        ));
    };
    let args = &chosen.provider.args;
    let step = report.step(format!(
        "this binary runs as providers[{}] {}{}",
        chosen.index,
        quote(&chosen.provider.name),
        match ours.len() {
            1 => String::new(),
            n => format!(" (one of {n} instances, one per audience)"),
        }
    ));
    match (kubelet_config::config_arg(args), &input.rules_path) {
        (Some(arg), None) => step.details.push(format!(
            "it runs with --config {}; explained with the embedded default rules: give --config {}",
            quote(arg),
            quote(arg)
        )),
        (None, Some(_)) => step.details.push(
            "it runs with the embedded default rules (no --config in its args); explained with --config".to_owned(),
        ),
        _ => {}
    }
    let entry = Entry {
        name: chosen.provider.name.clone(),
        attributes: chosen
            .provider
            .token_attributes
            .as_ref()
            .map(TokenAttributes::of),
        audience: kubelet_config::audience_arg(args).map(str::to_owned),
    };
    input.rules.audience.clone_from(&entry.audience);
    let default_cache_duration = chosen
        .provider
        .default_cache_duration
        .clone()
        .unwrap_or_default();
    let decision = kubelet_step(&mut report, &entry, pod.as_ref(), &default_cache_duration);
    if let Decision::Skip(skip) = &decision {
        if input.live {
            report.step("live: not run: the kubelet does not run the plugin for this pod");
        }
        return report.done(format!(
            "the kubelet skips this plugin for this pod: {}",
            match skip {
                Skip::NoServiceAccount =>
                    "requireServiceAccount is true and the pod has no service account".to_owned(),
                Skip::MissingAnnotation(key) =>
                    format!("the service account lacks the required annotation {key}"),
            }
        ));
    }
    ours::explain(&input, report, pod.as_ref(), decision.token(), Some(&entry))
}

/// The pod step, and the pod as the kubelet sees it: given, or read from the token's
/// claims (`--token-file` alone), with the token's uid when it is the pod's service
/// account's.
fn pod_step(input: &mut Input, report: &mut Report) -> Option<kubelet::Pod> {
    let token = input.token.as_ref();
    let Some(given) = &input.pod else {
        let account = token?;
        report.step(format!(
            "pod: a pod of service account {account} (from --token-file), its annotations {}",
            annotation_list(&Default::default())
        ));
        return Some(kubelet::Pod {
            namespace: account.namespace.clone(),
            service_account: Some(kubelet::ServiceAccount {
                name: account.name.clone(),
                uid: Some(account.uid.clone()),
                annotations: Default::default(),
            }),
        });
    };
    let mut pod = given.pod.clone();
    let account = pod.service_account.as_mut()?;
    let pod_name = match &given.name {
        Some(name) => format!("{}/{name}", pod.namespace),
        None => format!("a pod in namespace {}", pod.namespace),
    };
    let step = report.step(format!(
        "pod: {pod_name}, service account {}; annotations {}: {}",
        account.name,
        given.annotations_from,
        annotation_list(&account.annotations)
    ));
    if let Some(token) = token {
        if token.namespace == pod.namespace && token.name == account.name {
            account.uid = Some(token.uid.clone());
            step.details.push(format!(
                "--token-file: a token of {token} (uid {})",
                token.uid
            ));
        } else {
            step.details.push(format!(
                "--token-file: a token of {token}, not of this pod's service account: not used"
            ));
            input.token = None;
        }
    }
    Some(pod)
}

/// The entry of `ours` (the matching entries that run this binary) whose instance serves
/// the image: the first whose `--audience` admits the rule that serves it, else the first.
fn choose<'a>(
    ours: &[&'a ProviderEntry],
    input: &Input,
    image: &ImageRef,
) -> Option<&'a ProviderEntry> {
    let first = ours.first()?;
    if ours.len() == 1 {
        return Some(first);
    }
    let serves = |entry: &&&ProviderEntry| {
        let audience = kubelet_config::audience_arg(&entry.provider.args);
        input.rules.rules.iter().any(|rule| {
            rule.patterns.iter().any(|p| p.matches(&image.name()))
                && rule.backend().is_ok_and(|backend| {
                    backend.serves(image) && crate::rules::admits(audience, backend)
                })
        })
    };
    Some(ours.iter().find(serves).unwrap_or(first))
}

/// The kubelet's decision for `entry` and `pod`, with the steps saying it: the token it
/// requests and the RBAC that needs, the annotations passed on, its cache.
fn kubelet_step(
    report: &mut Report,
    entry: &Entry,
    pod: Option<&kubelet::Pod>,
    default_cache_duration: &str,
) -> Decision {
    let decision = kubelet::decide(entry.attributes.as_ref(), pod);
    let Some(attributes) = &entry.attributes else {
        report.step(format!(
            "kubelet: provider {} has no tokenAttributes: the kubelet runs it without a service \
             account token, one answer for every pod (defaultCacheDuration {})",
            quote(&entry.name),
            default_cache_duration
        ));
        return decision;
    };
    let account = pod.and_then(|pod| Some((pod, pod.service_account.as_ref()?)));
    match (&decision, account) {
        (Decision::Skip(Skip::NoServiceAccount), _) => {
            report.step(
                "kubelet: skips the plugin: requireServiceAccount is true and the pod has no \
                 service account",
            );
        }
        (Decision::Skip(Skip::MissingAnnotation(key)), _) => {
            let step = report.step(format!(
                "kubelet: skips the plugin: the service account lacks {key}, which \
                 requiredServiceAccountAnnotationKeys requires"
            ));
            step.details.push(
                "the kubelet requests no token and logs this only at -v=5: the pull goes on \
                 without credentials from this plugin"
                    .to_owned(),
            );
            step.details.push(format!(
                "fix: annotate the service account with {key}, or make it optional \
                 (optionalServiceAccountAnnotationKeys)"
            ));
        }
        (Decision::Run { token: None, .. }, _) => {
            report.step(format!(
                "kubelet: runs the plugin without a token: {}",
                match pod {
                    Some(_) => "the pod has no service account (requireServiceAccount is false)",
                    None =>
                        "no pod given (--pod or --service-account), so a pod without service account",
                }
            ));
        }
        (
            Decision::Run {
                token: Some(token), ..
            },
            Some((pod, account)),
        ) => {
            let step = report.step(format!(
                "kubelet: runs the plugin with a token of {}/{} for audience {}",
                pod.namespace,
                account.name,
                quote(&token.audience)
            ));
            step.details.push(
                "the nodes must be allowed to request tokens for that audience; without this \
                 RBAC the kubelet gets no token and runs no plugin:"
                    .to_owned(),
            );
            step.details.extend(
                kubelet_config::rbac::rbac(&[&token.audience])
                    .lines()
                    .map(|line| format!("  {line}")),
            );
            let keys: Vec<&String> = attributes
                .required_keys
                .iter()
                .chain(&attributes.optional_keys)
                .collect();
            report.step(format!(
                "kubelet: passes on {} (only the keys the entry names: {})",
                match token.annotations.is_empty() {
                    true => "no annotations".to_owned(),
                    false => format!("the annotations {}", annotation_list(&token.annotations)),
                },
                match keys.is_empty() {
                    true => "none".to_owned(),
                    false => keys
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            ));
        }
        (Decision::Run { token: Some(_), .. }, None) => {}
    }
    if decision.runs() {
        report.step(format!(
            "kubelet: caches the answer {}, cacheType {}, for the answer's cacheDuration \
             (defaultCacheDuration {} when it gives none)",
            match attributes.cache_type {
                kubelet::CacheType::ServiceAccount =>
                    "per service account: namespace, name, uid and the annotations passed on",
                kubelet::CacheType::Token => "per pod token",
            },
            attributes.cache_type.as_str(),
            default_cache_duration
        ));
    }
    decision
}

/// Annotations as `k="v", ...`, or `none`.
fn annotation_list(annotations: &std::collections::BTreeMap<String, String>) -> String {
    if annotations.is_empty() {
        return "none".to_owned();
    }
    annotations
        .iter()
        .map(
            |(key, value)| match icp_core::names::is_annotation_key(key) {
                true => format!("{key}={}", quote(value)),
                false => format!("{}={}", quote(key), quote(value)),
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `path` can be read at all: bad input otherwise.
pub(crate) fn readable(path: &Path) -> Result<(), String> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|e| format!("{}: cannot read: {e}", quote::path(path)))
}
