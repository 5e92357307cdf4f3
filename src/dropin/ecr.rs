//! `ecr-credential-provider`: the drop-in for the official ECR credential provider of
//! `cloud-provider-aws`.
//!
//! Like it, this mode takes no arguments, reads its AWS configuration from the environment
//! (the default credential chain, `AWS_PROFILE`, `AWS_ROLE_ARN` and
//! `AWS_WEB_IDENTITY_TOKEN_FILE`, the `AWS_ENDPOINT_URL_*` overrides, ...) and prints
//! `ecr-credential-provider version ...` for `--version`. It serves every ECR registry host
//! of the embedded default rule, and answers in the request's apiVersion. It accepts the
//! klog verbosity flag (`-v N`, `--v=N`) that kubelet configurations sometimes pass.
//!
//! In the kubelet's service-account-token mode, a pod's token is exchanged for the role its
//! service account's `eks.amazonaws.com/ecr-role-arn` annotation names, or, without the
//! annotation, for the role in `AWS_ECR_ROLE_ARN`, as the official provider does; with
//! neither, the node's identity is used.
//!
//! One deliberate difference: an image whose host is not an ECR registry host (a
//! pull-through proxy, a look-alike) gets an answer with no credentials, where the official
//! provider would send it a token for the default region. A rules file with `ecr.region`
//! opts such hosts in.

use std::path::Path;

use anyhow::Context;
use icp_core::Environment;

use super::Mode;
use crate::backends::Backend;
use crate::rules::{Rule, Rules};

/// The mode.
pub const MODE: Mode = Mode {
    program: "ecr-credential-provider",
    flags: &[],
    usage: "  ecr-credential-provider [flags] < CredentialProviderRequest\n\n\
            Flags:\n  -h, --help      help for ecr-credential-provider\n  \
            -v, --v LEVEL   log verbosity (klog levels)\n      \
            --version   version for ecr-credential-provider\n",
    check: |parsed| match parsed.positional.first() {
        Some(extra) => Err(format!("unexpected argument {}", icp_core::quote(extra))),
        None => Ok(()),
    },
    serve: |_, env| crate::commands::plugin::serve(&rules(env)?, env),
};

/// The variable naming the role a service account token without the role annotation is
/// exchanged for.
const DEFAULT_ROLE_VARIABLE: &str = "AWS_ECR_ROLE_ARN";

/// The one rule of this mode: the ECR backend with the environment's settings for the
/// ECR registry hosts.
fn rules(env: &Environment) -> anyhow::Result<Rules> {
    let mut backend = icp_ecr::Ecr::new(icp_ecr::Config::default(), Path::new("/"), env)?;
    if let Some(role) = env.non_empty(DEFAULT_ROLE_VARIABLE) {
        backend = backend.with_default_role(&role, DEFAULT_ROLE_VARIABLE)?;
    }
    let rule = Rule::new(
        0,
        "ecr",
        icp_ecr::DEFAULT_PATTERNS,
        Backend::tokens(backend),
    )
    .context("the ECR patterns")?
    .given(MODE.program.to_owned());
    Ok(Rules::new(MODE.program, vec![rule]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_serves_ecr_hosts_only() {
        let rules = rules(&Environment::empty()).unwrap();
        let image = |r: &str| icp_core::ImageRef::parse(r).unwrap();
        assert!(
            rules
                .find(&image("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app"))
                .is_some()
        );
        assert!(rules.find(&image("public.ecr.aws/team/app")).is_some());
        assert!(
            rules
                .find(&image(
                    "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example/app"
                ))
                .is_none()
        );
        assert!(rules.find(&image("registry.corp.example/app")).is_none());
    }
}
