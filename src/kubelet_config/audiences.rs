//! Several audiences on one node: a kubelet provider entry asks for pods' tokens of one
//! audience, so rules whose backends need different audiences (ECR's `sts.amazonaws.com`
//! and Quay's `quay`, say) are served by one provider entry per audience. Each entry
//! runs the same binary under its own name (a symlink in the kubelet's bin directory)
//! with `--audience AUDIENCE`, and serves only the rules of that audience
//! ([`crate::rules::admits`]); the first audience's entry keeps the base name and also
//! serves the rules that use no pod token.

use anyhow::bail;
use icp_core::ServiceAccountTokenUse;

use super::{ProviderEntry, ServiceAccountTokenAttributes};
use crate::rules::{Rule, Rules};

/// The flag that makes an instance serve the rules of one audience.
pub const FLAG: &str = "--audience";
/// The kubelet's `cacheType` keeping one answer per service account.
pub const CACHE_TYPE_SERVICE_ACCOUNT: &str = "ServiceAccount";
/// The kubelet's `cacheType` keeping one answer per pod token.
pub const CACHE_TYPE_TOKEN: &str = "Token";
/// The longest audience tag in a provider name.
const MAX_TAG: usize = 32;

/// The rules one provider entry serves, and what they need of the kubelet.
pub struct Group<'a> {
    /// The audience of the pods' tokens.
    pub audience: String,
    /// The rules, in file order.
    pub rules: Vec<&'a Rule>,
    /// What each rule using pods' tokens needs.
    uses: Vec<ServiceAccountTokenUse>,
    /// Whether a rule's backend answers with the pod's token (`cacheType: Token`).
    token_cache_type: bool,
}

impl Group<'_> {
    /// The `tokenAttributes` of the group's entry: its audience, every annotation key its
    /// rules read as optional (a service account without them keeps the node's identity,
    /// or gets no credentials from a backend that pulls only as pods),
    /// `requireServiceAccount: false` (pods without one still reach the plugin), and
    /// `cacheType: ServiceAccount` (the kubelet keeps one answer per service account; the
    /// plugin's token cache shares one exchange among its pods), or `Token` when a rule's
    /// backend answers with the pod's token itself.
    pub fn token_attributes(&self) -> ServiceAccountTokenAttributes {
        let mut keys: Vec<String> = Vec::new();
        for key in self.uses.iter().flat_map(|u| &u.annotation_keys) {
            if !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        let cache_type = if self.token_cache_type {
            CACHE_TYPE_TOKEN
        } else {
            CACHE_TYPE_SERVICE_ACCOUNT
        };
        ServiceAccountTokenAttributes {
            service_account_token_audience: self.audience.clone(),
            cache_type: cache_type.to_owned(),
            require_service_account: Some(false),
            required_service_account_annotation_keys: Vec::new(),
            optional_service_account_annotation_keys: keys,
        }
    }
}

/// The rules of `rules` grouped by the audience their backends need, in the order the
/// audiences first appear; rules that use no pod token join the first group. Every
/// backend is built on the way (no network).
pub fn groups(rules: &Rules) -> anyhow::Result<Vec<Group<'_>>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    let mut tokenless: Vec<&Rule> = Vec::new();
    for rule in &rules.rules {
        let backend = rule.backend().map_err(|failure| {
            anyhow::Error::new(failure).context(format!(
                "{} backend (rule {})",
                rule.backend_name, rule.index
            ))
        })?;
        let Some(uses) = backend.service_account_token() else {
            tokenless.push(rule);
            continue;
        };
        let group = match groups.iter().position(|g| g.audience == uses.audience) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Group {
                    audience: uses.audience.clone(),
                    rules: Vec::new(),
                    uses: Vec::new(),
                    token_cache_type: false,
                });
                groups.last_mut().expect("just pushed")
            }
        };
        group.rules.push(rule);
        group.uses.push(uses);
        group.token_cache_type |= backend.requires_token_cache_type();
    }
    let Some(first) = groups.first_mut() else {
        bail!(
            "no rule of {} has a backend that uses service account tokens (ecr, acr, gcp with \
             workloadIdentity, quay, jfrog, cloudsmith, vault, tokenExchange)",
            rules.origin
        );
    };
    first.rules.extend(tokenless);
    first.rules.sort_by_key(|rule| rule.index);
    Ok(groups)
}

/// The provider names of `audiences` in order: `base` for the first, `base-TAG` for each
/// other, TAG the audience in lowercase letters, digits and `-` (`sts-amazonaws-com`,
/// `api-azureadtokenexchange`), at most [`MAX_TAG`] characters, numbered when two
/// audiences make the same tag.
pub fn names(base: &str, audiences: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, audience) in audiences.iter().enumerate() {
        if i == 0 {
            names.push(base.to_owned());
            continue;
        }
        let tag = tag(audience);
        let mut name = format!("{base}-{tag}");
        let mut n = 2;
        while names.contains(&name) {
            name = format!("{base}-{tag}-{n}");
            n += 1;
        }
        names.push(name);
    }
    names
}

/// `audience` as a short tag for a file name.
fn tag(audience: &str) -> String {
    let mut tag = String::new();
    for c in audience.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            tag.push(c);
        } else if !tag.is_empty() && !tag.ends_with('-') {
            tag.push('-');
        }
    }
    tag.truncate(MAX_TAG);
    let tag = tag.trim_end_matches('-');
    if tag.is_empty() {
        "audience".to_owned()
    } else {
        tag.to_owned()
    }
}

/// The value of [`FLAG`] in a plugin's arguments.
pub fn audience_arg(args: &[String]) -> Option<&str> {
    let mut args = args.iter();
    let prefix = format!("{FLAG}=");
    while let Some(arg) = args.next() {
        if arg == FLAG {
            return args.next().map(String::as_str);
        }
        if let Some(value) = arg.strip_prefix(&prefix) {
            return Some(value);
        }
    }
    None
}

/// Whether the instance `entry` runs serves `rule` (its `--audience`, if any, admits the
/// rule's backend; a backend that cannot be built is served by every instance).
pub fn serves(entry: &ProviderEntry, rule: &Rule) -> bool {
    let audience = audience_arg(&entry.provider.args);
    match rule.backend() {
        Ok(backend) => crate::rules::admits(audience, backend),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tag_every_audience_but_the_first() {
        assert_eq!(
            names(
                "icp",
                &[
                    "sts.amazonaws.com",
                    "quay",
                    "api://AzureADTokenExchange",
                    "QUAY",
                    "https://sts.example.com/a-very-long-path/that/goes/on",
                    "::"
                ]
            ),
            [
                "icp",
                "icp-quay",
                "icp-api-azureadtokenexchange",
                "icp-quay-2",
                "icp-https-sts-example-com-a-very-lon",
                "icp-audience"
            ]
        );
    }

    #[test]
    fn the_audience_argument_forms() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            audience_arg(&args(&["--config", "r", "--audience", "quay"])),
            Some("quay")
        );
        assert_eq!(audience_arg(&args(&["--audience=quay"])), Some("quay"));
        assert_eq!(audience_arg(&args(&["--audience"])), None);
    }
}
