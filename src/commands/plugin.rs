//! Plugin mode, as the kubelet runs the binary: one `CredentialProviderRequest` on stdin,
//! one `CredentialProviderResponse` on stdout. The drop-in modes answer here too.

use icp_core::Environment;

use super::{Globals, Outcome};
use crate::protocol::PluginRequest;
use crate::rules::Rules;

/// No subcommand: the rules in force answer the request on stdin.
pub(super) fn run(globals: &Globals) -> Outcome {
    Outcome::of(globals.rules().map_err(Into::into).and_then(|rules| {
        let cache_dir = globals.cache_dir(&rules);
        crate::plugin::serve(
            std::io::stdin().lock(),
            std::io::stdout().lock(),
            &rules,
            cache_dir.as_deref(),
            &globals.recorders(&rules, cache_dir.as_deref()),
        )
    }))
}

/// Plugin mode with `rules`, as the drop-in modes run it: the request from stdin, the
/// response to stdout, the token cache, the audit log and the metrics where `env` or the
/// defaults put them.
#[cfg_attr(
    not(any(feature = "ecr", feature = "acr")),
    allow(dead_code, reason = "called by the ecr and acr drop-in modes")
)]
pub fn serve(rules: &Rules, env: &Environment) -> anyhow::Result<()> {
    let cache_dir = crate::cache::dir(&rules.cache, None, false, env);
    crate::plugin::serve(
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        rules,
        cache_dir.as_deref(),
        &super::recorders(rules, None, None, cache_dir.as_deref(), env),
    )
}

/// [`serve`] for a request already read from stdin, as `auth-provider-gcp` chooses its
/// rules by the image.
#[cfg_attr(
    not(feature = "gcp"),
    allow(dead_code, reason = "called by the gcp drop-in mode")
)]
pub fn respond(request: &PluginRequest, rules: &Rules, env: &Environment) -> anyhow::Result<()> {
    let cache_dir = crate::cache::dir(&rules.cache, None, false, env);
    crate::plugin::respond(
        request,
        std::io::stdout().lock(),
        rules,
        cache_dir.as_deref(),
        &super::recorders(rules, None, None, cache_dir.as_deref(), env),
    )
}
