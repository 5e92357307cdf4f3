//! `acr-credential-provider`: the drop-in for the official ACR credential provider of
//! `cloud-provider-azure`.
//!
//! ```text
//! acr-credential-provider /etc/kubernetes/azure.json [--registry-mirror mirror:loginserver[,...]] [--v=N]
//! ```
//!
//! Like it, this mode reads the identity and the cloud from the `azure.json` file named by
//! its one argument (`useManagedIdentityExtension` and `userAssignedIdentityID`,
//! `useFederatedWorkloadIdentityExtension`, `aadClientId`/`aadClientSecret`, `cloud`),
//! serves the login servers of that cloud and the mirrors of `--registry-mirror` (`-r`),
//! returns a mirror's credentials under both the mirror and the login server, and answers
//! in the request's apiVersion. Images on other registries get an answer with no
//! credentials.
//!
//! In the kubelet's service-account-token mode, as with the official provider, a pod whose
//! service account has `kubernetes.azure.com/acr-client-id` and
//! `kubernetes.azure.com/acr-tenant-id` pulls as that application, its token the client
//! assertion; a token with neither annotation falls back to `azure.json`'s identity, where
//! the official provider fails.
//!
//! One deliberate difference: with a service principal the official provider answers with
//! the client id and secret themselves; this one exchanges them for an ACR refresh token
//! (username `00000000-0000-0000-0000-000000000000`) as in the other modes, so that the
//! long-lived secret never reaches the kubelet, the container runtime or a mirror.

use std::path::Path;

use anyhow::Context;

use super::{Mode, args};
use crate::backends::Backend;
use crate::rules::{Rule, Rules};

/// The mode.
pub const MODE: Mode = Mode {
    program: "acr-credential-provider",
    flags: &[args::Flag {
        name: "registry-mirror",
        short: Some("r"),
    }],
    usage: "  acr-credential-provider configFile [flags] < CredentialProviderRequest\n\n\
            Flags:\n  -h, --help                     help for acr-credential-provider\n  \
            -r, --registry-mirror string   mirror:loginserver pairs, comma-separated: images on the mirror get\n                                 \
            the login server's credentials\n  \
            -v, --v LEVEL                  log verbosity (klog levels)\n      \
            --version                  version for acr-credential-provider\n",
    check: |parsed| match parsed.positional.as_slice() {
        [] => Err("the azure.json config file is not provided".to_owned()),
        [_] => Ok(()),
        [_, extra, ..] => Err(format!(
            "unexpected argument {}: give one azure.json path",
            icp_core::quote(extra)
        )),
    },
    serve: |parsed, env| {
        let azure_config = Path::new(&parsed.positional[0]);
        let rules = rules(azure_config, parsed.all("registry-mirror"), env)?;
        crate::commands::plugin::serve(&rules, env)
    },
};

/// The one rule of this mode: the ACR backend of `azure.json` and the mirrors, for the
/// login servers of its cloud and the mirror hosts.
fn rules(
    azure_config: &Path,
    registry_mirrors: &[String],
    env: &icp_core::Environment,
) -> anyhow::Result<Rules> {
    let backend = icp_acr::Acr::from_command_line(azure_config, registry_mirrors, env)?;
    let patterns = backend.match_patterns();
    let rule = Rule::new(0, "acr", &patterns, Backend::tokens(backend))
        .context("a registry mirror is not a valid image pattern")?;
    Ok(Rules::new(MODE.program, vec![rule]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_serves_the_clouds_registries_and_the_mirrors() {
        let dir = tempfile::tempdir().unwrap();
        let azure_json = dir.path().join("azure.json");
        std::fs::write(
            &azure_json,
            r#"{"cloud": "AzureUSGovernmentCloud", "useManagedIdentityExtension": true}"#,
        )
        .unwrap();
        let rules = rules(
            &azure_json,
            &["mirror.example:myacr.azurecr.us".to_owned()],
            &icp_core::Environment::empty(),
        )
        .unwrap();
        let image = |r: &str| icp_core::ImageRef::parse(r).unwrap();
        for served in [
            "myacr.azurecr.us/app",
            "myacr.usgovvirginia.geo.azurecr.us/app",
            "mirror.example/app",
        ] {
            assert!(rules.find(&image(served)).is_some(), "{served}");
        }
        for other in [
            "myacr.azurecr.io/app",
            "docker.io/library/busybox",
            "myacr.azurecr.us.evil.example/app",
        ] {
            assert!(rules.find(&image(other)).is_none(), "{other}");
        }
        let error = rules_error(&dir.path().join("missing.json"), "");
        assert!(error.contains("missing.json"), "{error}");
        let error = rules_error(&azure_json, "mirror.example:evil.example");
        assert!(error.contains("not an ACR login server"), "{error}");
    }

    fn rules_error(path: &Path, mirrors: &str) -> String {
        match rules(path, &[mirrors.to_owned()], &icp_core::Environment::empty()) {
            Ok(_) => panic!("rules should not build"),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn takes_one_azure_json() {
        let check = |positional: &[&str]| {
            (MODE.check)(&args::Parsed {
                positional: positional.iter().map(|a| a.to_string()).collect(),
                ..args::Parsed::default()
            })
        };
        assert!(check(&[]).unwrap_err().contains("not provided"));
        assert!(check(&["a.json"]).is_ok());
        assert!(
            check(&["a.json", "b.json"])
                .unwrap_err()
                .contains("unexpected argument")
        );
    }
}
