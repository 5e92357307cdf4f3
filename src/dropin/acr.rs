//! `acr-credential-provider`: the drop-in for the official ACR credential provider of
//! `cloud-provider-azure`.
//!
//! ```text
//! acr-credential-provider /etc/kubernetes/azure.json [--registry-mirror mirror:loginserver[,...]]
//!     [--ib-sni-name NAME --ib-apiserver-ip IP|HOST [--ib-default-client-id ID] [--ib-default-tenant-id ID]] [--v=N]
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
//! With `--ib-sni-name` and `--ib-apiserver-ip` (AKS identity bindings), a request with a
//! pod's token (for `api://AKSIdentityBinding`) is fetched as the identity its service
//! account is bound to, at the identity-binding endpoint, as the official provider does;
//! the flags are checked as it checks them (the rules file's `acr.identityBindings` is the
//! same setting), except that the API server's host name, which AKS passes, is looked up
//! when a pod's pull connects rather than at start-up.
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
    flags: &[
        args::Flag {
            name: "registry-mirror",
            short: Some("r"),
        },
        args::Flag {
            name: IB_SNI_NAME,
            short: None,
        },
        args::Flag {
            name: IB_DEFAULT_CLIENT_ID,
            short: None,
        },
        args::Flag {
            name: IB_DEFAULT_TENANT_ID,
            short: None,
        },
        args::Flag {
            name: IB_APISERVER_IP,
            short: None,
        },
    ],
    usage: "  acr-credential-provider configFile [flags] < CredentialProviderRequest\n\n\
            Flags:\n  -h, --help                     help for acr-credential-provider\n  \
            -r, --registry-mirror string   mirror:loginserver pairs, comma-separated: images on the mirror get\n                                 \
            the login server's credentials\n      \
            --ib-sni-name string           AKS identity bindings: the TLS server name of the identity-binding endpoint\n      \
            --ib-apiserver-ip string       AKS identity bindings: the API server's IP or host name, where that endpoint is reached\n      \
            --ib-default-client-id string  AKS identity bindings: the client id of service accounts without one\n      \
            --ib-default-tenant-id string  AKS identity bindings: the tenant of service accounts without one\n  \
            -v, --v LEVEL                  log verbosity (klog levels)\n      \
            --version                  version for acr-credential-provider\n",
    check: |parsed| {
        match parsed.positional.as_slice() {
            [] => return Err("the azure.json config file is not provided".to_owned()),
            [_] => {}
            [_, extra, ..] => {
                return Err(format!(
                    "unexpected argument {}: give one azure.json path",
                    icp_core::quote(extra)
                ));
            }
        }
        identity_bindings(parsed).map(drop)
    },
    serve: |parsed, env| {
        let azure_config = Path::new(&parsed.positional[0]);
        let bindings = identity_bindings(parsed).map_err(anyhow::Error::msg)?;
        let rules = rules(azure_config, parsed.all("registry-mirror"), bindings, env)?;
        crate::commands::plugin::serve(&rules, env)
    },
};

const IB_SNI_NAME: &str = "ib-sni-name";
const IB_DEFAULT_CLIENT_ID: &str = "ib-default-client-id";
const IB_DEFAULT_TENANT_ID: &str = "ib-default-tenant-id";
const IB_APISERVER_IP: &str = "ib-apiserver-ip";

/// The identity bindings of the `--ib-*` flags, checked as the official provider checks
/// them: the SNI name needs the API server's address and has no scheme, the address is an
/// IP address or a host name (looked up when connecting) and needs the SNI name, a default
/// client or tenant id needs the SNI name. None without `--ib-sni-name`.
fn identity_bindings(
    parsed: &args::Parsed,
) -> Result<Option<icp_acr::IdentityBindingsConfig>, String> {
    let flag = |name: &str| {
        parsed
            .all(name)
            .last()
            .filter(|value| !value.is_empty())
            .cloned()
    };
    let sni = flag(IB_SNI_NAME);
    let ip = flag(IB_APISERVER_IP);
    let client = flag(IB_DEFAULT_CLIENT_ID);
    let tenant = flag(IB_DEFAULT_TENANT_ID);
    let needs_sni = |name: &str| format!("--{IB_SNI_NAME} must be set when --{name} is provided");
    if let Some(sni) = &sni {
        if sni.starts_with("https://") || sni.starts_with("http://") {
            return Err(format!(
                "--{IB_SNI_NAME} must not contain protocol prefix (https:// or http://), got: {}",
                icp_core::quote(sni)
            ));
        }
        if ip.is_none() {
            return Err(format!(
                "--{IB_APISERVER_IP} must be set when --{IB_SNI_NAME} is provided"
            ));
        }
    }
    if let Some(ip) = &ip
        && !icp_acr::identity_binding::is_api_server(ip)
    {
        return Err(format!(
            "--{IB_APISERVER_IP} must be a valid IP address or host name, got: {}",
            icp_core::quote(ip)
        ));
    }
    match (sni, ip, client, tenant) {
        (None, Some(_), _, _) => Err(needs_sni(IB_APISERVER_IP)),
        (None, None, Some(_), _) => Err(needs_sni(IB_DEFAULT_CLIENT_ID)),
        (None, None, None, Some(_)) => Err(needs_sni(IB_DEFAULT_TENANT_ID)),
        (None, None, None, None) => Ok(None),
        (Some(sni_name), Some(api_server_ip), default_client_id, default_tenant_id) => {
            Ok(Some(icp_acr::IdentityBindingsConfig {
                sni_name,
                api_server_ip,
                default_client_id,
                default_tenant_id,
                ca_file: None,
            }))
        }
        (Some(_), None, _, _) => unreachable!("checked above"),
    }
}

/// The one rule of this mode: the ACR backend of `azure.json` and the mirrors, for the
/// login servers of its cloud and the mirror hosts.
fn rules(
    azure_config: &Path,
    registry_mirrors: &[String],
    identity_bindings: Option<icp_acr::IdentityBindingsConfig>,
    env: &icp_core::Environment,
) -> anyhow::Result<Rules> {
    let backend =
        icp_acr::Acr::from_command_line(azure_config, registry_mirrors, identity_bindings, env)?;
    let patterns = backend.match_patterns();
    let rule = Rule::new(0, "acr", &patterns, Backend::tokens(backend))
        .context("a registry mirror is not a valid image pattern")?
        .given(format!(
            "{} {}",
            MODE.program,
            icp_core::quote::path(azure_config)
        ));
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
            None,
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
        match rules(
            path,
            &[mirrors.to_owned()],
            None,
            &icp_core::Environment::empty(),
        ) {
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

    fn flags(pairs: &[(&'static str, &str)]) -> args::Parsed {
        let mut parsed = args::Parsed {
            positional: vec!["azure.json".to_owned()],
            ..args::Parsed::default()
        };
        for (name, value) in pairs {
            parsed
                .values
                .entry(name)
                .or_default()
                .push(value.to_string());
        }
        parsed
    }

    #[test]
    fn the_identity_binding_flags_are_checked_as_the_official_provider_checks_them() {
        let refused = [
            (
                &[(IB_SNI_NAME, "ib.example")][..],
                "--ib-apiserver-ip must be set when --ib-sni-name is provided",
            ),
            (
                &[
                    (IB_SNI_NAME, "https://ib.example"),
                    (IB_APISERVER_IP, "10.0.0.1"),
                ],
                "--ib-sni-name must not contain protocol prefix",
            ),
            (
                &[
                    (IB_SNI_NAME, "ib.example"),
                    (IB_APISERVER_IP, "10.0.0.1:443"),
                ],
                "--ib-apiserver-ip must be a valid IP address or host name, got: \"10.0.0.1:443\"",
            ),
            (
                &[(IB_APISERVER_IP, "10.0.0.1")],
                "--ib-sni-name must be set when --ib-apiserver-ip is provided",
            ),
            (
                &[(IB_DEFAULT_CLIENT_ID, "c1")],
                "--ib-sni-name must be set when --ib-default-client-id is provided",
            ),
            (
                &[(IB_DEFAULT_TENANT_ID, "t1")],
                "--ib-sni-name must be set when --ib-default-tenant-id is provided",
            ),
        ];
        for (pairs, expected) in refused {
            let error = (MODE.check)(&flags(pairs)).unwrap_err();
            assert!(error.contains(expected), "{pairs:?}: {error}");
        }
        assert_eq!(identity_bindings(&flags(&[])).unwrap(), None);
        // AKS passes the API server's host name (AgentBaker's ${API_SERVER_NAME}).
        let named = identity_bindings(&flags(&[
            (IB_SNI_NAME, "ib.example"),
            (IB_APISERVER_IP, "myaks-1a2b3c.hcp.eastus.azmk8s.io"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(named.api_server_ip, "myaks-1a2b3c.hcp.eastus.azmk8s.io");
        let config = identity_bindings(&flags(&[
            (IB_SNI_NAME, "ib.example"),
            (IB_APISERVER_IP, "10.0.0.1"),
            (IB_DEFAULT_CLIENT_ID, "c1"),
            (IB_DEFAULT_TENANT_ID, "t1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                config.sni_name.as_str(),
                config.api_server_ip.as_str(),
                config.default_client_id.as_deref(),
                config.default_tenant_id.as_deref(),
                config.ca_file,
            ),
            ("ib.example", "10.0.0.1", Some("c1"), Some("t1"), None)
        );
    }
}
