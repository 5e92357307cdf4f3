//! `auth-provider-gcp`: the official GCP credential provider's command line.
//!
//! ```text
//! auth-provider-gcp get-credentials [--authFlow=gcr|dockercfg|dockercfg-url] [--v=N]
//!     [--project-id=P --identity-provider=URL]
//! ```
//!
//! - `gcr` (the default): the metadata server's default service account, for Google's
//!   registry hosts ([`icp_gcp::DEFAULT_PATTERNS`], strictly checked);
//! - `dockercfg`, `dockercfg-url`: the docker config in the instance attribute
//!   `google-dockercfg`, or at the URL in `google-dockercfg-url`, for whatever image the
//!   kubelet asks about (its own `matchImages` chose this plugin).
//!
//! With `--project-id` and `--identity-provider` (the `gcr` flow only), a pull for which
//! the kubelet passes the pod's service account token, from a service account annotated
//! `iam.gke.io/enable-wi-image-pull: "true"`, uses the pod's own identity: the token is
//! exchanged at Google STS for the audience
//! `identitynamespace:<project-id>.svc.id.goog:<identity-provider>`, as the official
//! provider does (see [`icp_gcp::WorkloadIdentity`]).

use std::path::Path;

use anyhow::Context;

use super::{Mode, args};
use crate::backends::Backend;
use crate::protocol;
use crate::rules::{Rule, Rules};

/// The mode.
pub const MODE: Mode = Mode {
    program: "auth-provider-gcp",
    flags: &[
        args::Flag {
            name: "authFlow",
            short: Some("a"),
        },
        args::Flag {
            name: "project-id",
            short: None,
        },
        args::Flag {
            name: "identity-provider",
            short: None,
        },
    ],
    usage: "  auth-provider-gcp get-credentials [flags] < CredentialProviderRequest\n\n\
            Flags:\n  -a, --authFlow string            gcr, dockercfg or dockercfg-url (default \"gcr\")\n  \
            -h, --help                       help for auth-provider-gcp\n      \
            --identity-provider string   the cluster's workload identity provider (with --project-id)\n      \
            --project-id string          the project of the workload identity pool (with --identity-provider)\n  \
            -v, --v LEVEL                    log verbosity (klog levels)\n      \
            --version                    version for auth-provider-gcp\n",
    check: |parsed| {
        match parsed.positional.as_slice() {
            [] => return Err("missing command get-credentials".to_owned()),
            [command] if command == "get-credentials" => {}
            [command] => return Err(format!("unknown command {}", icp_core::quote(command))),
            [_, extra, ..] => {
                return Err(format!("unexpected argument {}", icp_core::quote(extra)));
            }
        }
        if source(parsed)? == icp_gcp::Source::Metadata {
            workload_identity(parsed)?;
        }
        Ok(())
    },
    serve,
};

/// The source `--authFlow` asks for; `gcr` by default.
fn source(parsed: &args::Parsed) -> Result<icp_gcp::Source, String> {
    let flow = parsed.all("authFlow").last().map_or("gcr", String::as_str);
    icp_gcp::Source::from_auth_flow(flow).ok_or_else(|| {
        format!(
            "unknown --authFlow {} (expected gcr, dockercfg or dockercfg-url)",
            icp_core::quote(flow)
        )
    })
}

/// The per-pod identity settings `--project-id` and `--identity-provider` give, checked;
/// `None` without them.
fn workload_identity(parsed: &args::Parsed) -> Result<Option<icp_gcp::WorkloadIdentity>, String> {
    let last = |name: &str| parsed.all(name).last().filter(|value| !value.is_empty());
    let settings = match (last("project-id"), last("identity-provider")) {
        (None, None) => return Ok(None),
        (Some(project), Some(provider)) => icp_gcp::WorkloadIdentity::gke(project, provider),
        (Some(_), None) => return Err("--project-id needs --identity-provider".to_owned()),
        (None, Some(_)) => return Err("--identity-provider needs --project-id".to_owned()),
    };
    settings.sts_audience()?;
    Ok(Some(settings))
}

/// Answers the request on stdin. The per-pod identity flags apply to the `gcr` flow only:
/// with a dockercfg flow they are ignored with a warning, as the official binary does, so
/// a kubelet configuration that passes them keeps working.
fn serve(parsed: &args::Parsed, env: &icp_core::Environment) -> anyhow::Result<()> {
    let source = source(parsed).map_err(anyhow::Error::msg)?;
    let workload = if source == icp_gcp::Source::Metadata {
        workload_identity(parsed).map_err(anyhow::Error::msg)?
    } else {
        if ["project-id", "identity-provider"]
            .iter()
            .any(|flag| !parsed.all(flag).is_empty())
        {
            tracing::warn!(
                auth_flow = parsed.all("authFlow").last().map_or("gcr", String::as_str),
                "--project-id and --identity-provider apply only to --authFlow gcr; ignored"
            );
        }
        None
    };
    let request = protocol::read_request(std::io::stdin().lock())?;
    let rules = rules(source, workload, &request.image, env)?;
    crate::commands::plugin::respond(&request, &rules, env)
}

/// The one rule of this mode: Google's registry hosts for the metadata server's token (or
/// the pod's, with `workload`), or, for the dockercfg flows, the registry of the image
/// asked about (the docker config names its own registries).
fn rules(
    source: icp_gcp::Source,
    workload: Option<icp_gcp::WorkloadIdentity>,
    image: &str,
    env: &icp_core::Environment,
) -> anyhow::Result<Rules> {
    let patterns = match source {
        icp_gcp::Source::Dockercfg | icp_gcp::Source::DockercfgUrl => {
            let image = icp_core::ImageRef::parse(image).with_context(|| {
                format!(
                    "request image {} is not a valid image reference",
                    icp_core::quote(image)
                )
            })?;
            vec![image.registry().to_owned()]
        }
        _ => icp_gcp::DEFAULT_PATTERNS
            .iter()
            .map(|p| p.to_string())
            .collect(),
    };
    let config = icp_gcp::Config {
        source,
        workload_identity: workload,
        ..icp_gcp::Config::default()
    };
    let backend = icp_gcp::Gcp::new(config, Path::new("."), env)?;
    let flow = match source {
        icp_gcp::Source::Dockercfg => "dockercfg",
        icp_gcp::Source::DockercfgUrl => "dockercfg-url",
        _ => "gcr",
    };
    let rule = Rule::new(0, "gcp", &patterns, Backend::tokens(backend))
        .context("the image's registry is not a valid image pattern")?
        .given(format!(
            "{} get-credentials --authFlow={flow}",
            MODE.program
        ));
    Ok(Rules::new(MODE.program, vec![rule]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str]) -> Result<(), String> {
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        match args::parse(&args, MODE.flags)? {
            args::Action::Serve(parsed) => (MODE.check)(&parsed),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn takes_the_official_command_and_flows() {
        for args in [
            &["get-credentials"][..],
            &["--authFlow=dockercfg", "get-credentials", "-v", "5"],
            &["get-credentials", "--authFlow", "dockercfg-url"],
            &["get-credentials", "-a", "gcr", "--v", "0"],
            &[
                "get-credentials",
                "--project-id=my-project",
                "--identity-provider",
                "https://container.googleapis.com/v1/projects/my-project/locations/us-central1/clusters/c1",
            ],
        ] {
            assert_eq!(check(args), Ok(()), "{args:?}");
        }
        for (args, expected) in [
            (&[][..], "missing command get-credentials"),
            (&["get-token"], "unknown command \"get-token\""),
            (
                &["get-credentials", "extra"],
                "unexpected argument \"extra\"",
            ),
            (
                &["get-credentials", "--authFlow=ecr"],
                "unknown --authFlow \"ecr\" (expected gcr, dockercfg or dockercfg-url)",
            ),
            (
                &["get-credentials", "--authFlow"],
                "flag \"--authFlow\" needs a value",
            ),
            (
                &["get-credentials", "--project-id=my-project"],
                "--project-id needs --identity-provider",
            ),
            (
                &["get-credentials", "--identity-provider=https://x.example"],
                "--identity-provider needs --project-id",
            ),
            (
                &[
                    "get-credentials",
                    "--project-id=My Project",
                    "--identity-provider=https://x.example",
                ],
                "project id \"My Project\" is not a Google Cloud project id (6 to 30 lowercase letters, digits and hyphens, starting with a letter)",
            ),
            (
                &[
                    "get-credentials",
                    "--project-id=my-project",
                    "--identity-provider=x.example",
                ],
                "identity provider \"x.example\" is not an https:// URL",
            ),
        ] {
            assert_eq!(check(args).unwrap_err(), expected, "{args:?}");
        }
    }

    /// The official binary accepts the per-pod identity flags with every flow and warns
    /// that they apply to `gcr` only; a kubelet configuration passing them keeps working.
    #[test]
    fn the_identity_flags_are_accepted_with_the_dockercfg_flows() {
        for flow in ["--authFlow=dockercfg", "--authFlow=dockercfg-url"] {
            for flags in [
                &[
                    "--project-id=my-project",
                    "--identity-provider=https://x.example",
                ][..],
                &["--project-id=my-project"],
                &["--identity-provider=not-a-url"],
            ] {
                let args: Vec<&str> = ["get-credentials", flow]
                    .iter()
                    .chain(flags)
                    .copied()
                    .collect();
                assert_eq!(check(&args), Ok(()), "{args:?}");
            }
        }
    }

    #[test]
    fn the_auth_flows_choose_the_source_and_the_patterns() {
        let gcr = rules(
            icp_gcp::Source::Metadata,
            None,
            "gcr.io/p/app",
            &icp_core::Environment::empty(),
        )
        .unwrap();
        let image = |r: &str| icp_core::ImageRef::parse(r).unwrap();
        assert!(gcr.find(&image("us-docker.pkg.dev/p/r/app")).is_some());
        assert!(gcr.find(&image("registry.example/app")).is_none());
        let dockercfg = rules(
            icp_gcp::Source::Dockercfg,
            None,
            "registry.example/app",
            &icp_core::Environment::empty(),
        )
        .unwrap();
        assert!(dockercfg.find(&image("registry.example/app")).is_some());
        assert!(dockercfg.find(&image("gcr.io/p/app")).is_none());
    }
}
