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
//! One deliberate difference: with a service principal the official provider answers with
//! the client id and secret themselves; this one exchanges them for an ACR refresh token
//! (username `00000000-0000-0000-0000-000000000000`) as in the other modes, so that the
//! long-lived secret never reaches the kubelet, the container runtime or a mirror.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::rules::{self, Rules};

/// The program name this mode answers to.
pub const PROGRAM: &str = "acr-credential-provider";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Answer the request on stdin.
    Serve {
        azure_config: PathBuf,
        mirrors: String,
        verbosity: u8,
    },
    /// Print the version.
    Version,
    /// Print the usage.
    Help,
}

/// Runs the drop-in with the command line `args` (the program name first).
pub fn run(args: &[OsString]) -> ExitCode {
    match parse_args(args.get(1..).unwrap_or_default()) {
        Ok(Action::Serve {
            azure_config,
            mirrors,
            verbosity,
        }) => {
            crate::init_logging(verbosity);
            super::serve(rules(&azure_config, &mirrors))
        }
        Ok(Action::Version) => {
            println!(
                "{PROGRAM} version v{} (image-credential-provider)",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Ok(Action::Help) => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message} (see {PROGRAM} --help)");
            ExitCode::from(2)
        }
    }
}

/// The one rule of this mode: the ACR backend configured from `azure.json` and the
/// mirrors, for the login servers of its cloud and the mirror hosts.
fn rules(azure_config: &Path, mirrors: &str) -> anyhow::Result<Rules> {
    let registry_mirrors: BTreeMap<String, String> = icp_acr::parse_registry_mirrors(mirrors)?;
    let section = icp_acr::Config {
        azure_config: Some(azure_config.to_owned()),
        registry_mirrors: registry_mirrors.clone(),
        ..icp_acr::Config::default()
    };
    let patterns = icp_acr::Acr::new(section, Path::new("."))?.match_patterns();
    let document = serde_json::json!({
        "rules": [{
            "matchImages": patterns,
            "provider": "acr",
            "acr": { "azureConfig": azure_config, "registryMirrors": registry_mirrors },
        }]
    });
    Ok(rules::from_value(document, Path::new("."), PROGRAM, false)?)
}

fn parse_args(args: &[OsString]) -> Result<Action, String> {
    let mut azure_config = None;
    let mut mirrors = String::new();
    let mut verbosity = 0;
    let mut args = args.iter().map(|a| {
        a.to_str()
            .map(str::to_owned)
            .ok_or_else(|| "arguments must be UTF-8".to_owned())
    });
    while let Some(arg) = args.next() {
        let arg = arg?;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with('-') => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| match inline.clone() {
            Some(value) => Ok(value),
            None => args
                .next()
                .unwrap_or_else(|| Err(format!("{flag} needs a value"))),
        };
        match name.as_str() {
            "--version" => return Ok(Action::Version),
            "-h" | "--help" => return Ok(Action::Help),
            "-r" | "--registry-mirror" => {
                let value = value(&name)?;
                if !mirrors.is_empty() && !value.is_empty() {
                    mirrors.push(',');
                }
                mirrors.push_str(&value);
            }
            "-v" | "--v" => {
                let level = value(&name)?;
                let level: u8 = level
                    .parse()
                    .map_err(|_| format!("verbosity {level:?} is not a number"))?;
                verbosity = match level {
                    0..=1 => 0,
                    2..=3 => 1,
                    _ => 2,
                };
            }
            flag if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown flag {flag:?}"));
            }
            _ => {
                if azure_config.replace(PathBuf::from(&arg)).is_some() {
                    return Err(format!(
                        "unexpected argument {arg:?}: give one azure.json path"
                    ));
                }
            }
        }
    }
    let azure_config =
        azure_config.ok_or_else(|| "the azure.json config file is not provided".to_owned())?;
    Ok(Action::Serve {
        azure_config,
        mirrors,
        verbosity,
    })
}

fn usage() -> String {
    format!(
        "ACR credential provider for kubelet (image-credential-provider in drop-in mode)\n\n\
         Usage:\n  {PROGRAM} configFile [flags] < CredentialProviderRequest\n\n\
         Flags:\n  -h, --help                     help for {PROGRAM}\n  \
         -r, --registry-mirror string   mirror:loginserver pairs, comma-separated: images on the mirror get\n                                 \
         the login server's credentials\n  \
         -v, --v LEVEL                  log verbosity (klog levels)\n      \
         --version                  version for {PROGRAM}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Action, String> {
        parse_args(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    fn serve(path: &str, mirrors: &str, verbosity: u8) -> Result<Action, String> {
        Ok(Action::Serve {
            azure_config: PathBuf::from(path),
            mirrors: mirrors.to_owned(),
            verbosity,
        })
    }

    #[test]
    fn takes_the_official_arguments() {
        assert_eq!(
            parse(&["/etc/kubernetes/azure.json"]),
            serve("/etc/kubernetes/azure.json", "", 0)
        );
        assert_eq!(
            parse(&[
                "azure.json",
                "--registry-mirror=m.example:a.azurecr.io",
                "--v=4"
            ]),
            serve("azure.json", "m.example:a.azurecr.io", 2)
        );
        assert_eq!(
            parse(&[
                "-r",
                "m.example:a.azurecr.io",
                "--registry-mirror",
                "n.example:b.azurecr.io",
                "azure.json",
                "-v",
                "2"
            ]),
            serve(
                "azure.json",
                "m.example:a.azurecr.io,n.example:b.azurecr.io",
                1
            )
        );
        assert_eq!(parse(&["--version"]), Ok(Action::Version));
        assert_eq!(parse(&["--help"]), Ok(Action::Help));
        assert!(parse(&[]).unwrap_err().contains("not provided"));
        assert!(
            parse(&["a.json", "b.json"])
                .unwrap_err()
                .contains("unexpected argument")
        );
        assert!(
            parse(&["a.json", "--registry-mirror"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse(&["a.json", "--config", "x"])
                .unwrap_err()
                .contains("unknown flag")
        );
        assert!(
            parse(&["a.json", "--v=high"])
                .unwrap_err()
                .contains("not a number")
        );
    }

    #[test]
    fn the_rule_serves_the_clouds_registries_and_the_mirrors() {
        let dir = tempfile::tempdir().unwrap();
        let azure_json = dir.path().join("azure.json");
        std::fs::write(
            &azure_json,
            r#"{"cloud": "AzureUSGovernmentCloud", "useManagedIdentityExtension": true}"#,
        )
        .unwrap();
        let rules = rules(&azure_json, "mirror.example:myacr.azurecr.us").unwrap();
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
        match rules(path, mirrors) {
            Ok(_) => panic!("rules should not build"),
            Err(error) => format!("{error:#}"),
        }
    }
}
