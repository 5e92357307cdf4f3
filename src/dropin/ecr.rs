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
//! One deliberate difference: an image whose host is not an ECR registry host (a
//! pull-through proxy, a look-alike) gets an answer with no credentials, where the official
//! provider would send it a token for the default region. A rules file with `ecr.region`
//! opts such hosts in.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use crate::rules::{self, Rules};

/// The program name this mode answers to.
pub const PROGRAM: &str = "ecr-credential-provider";

/// Runs the drop-in with the command line `args` (the program name first).
pub fn run(args: &[OsString]) -> ExitCode {
    let verbosity = match parse_args(args.get(1..).unwrap_or_default()) {
        Ok(Action::Serve { verbosity }) => verbosity,
        Ok(Action::Version) => {
            println!(
                "{PROGRAM} version v{} (image-credential-provider)",
                env!("CARGO_PKG_VERSION")
            );
            return ExitCode::SUCCESS;
        }
        Ok(Action::Help) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    crate::init_logging(verbosity);
    super::serve(rules())
}

/// The one rule of this mode: the embedded ECR rule.
fn rules() -> anyhow::Result<Rules> {
    let document = serde_json::json!({
        "rules": [{ "matchImages": icp_ecr::DEFAULT_PATTERNS, "provider": "ecr" }]
    });
    Ok(rules::from_value(document, Path::new("/"), PROGRAM, false)?)
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Answer the request on stdin, logging at this verbosity (as `-v` counts).
    Serve { verbosity: u8 },
    /// Print the version.
    Version,
    /// Print the usage.
    Help,
}

fn parse_args(args: &[OsString]) -> Result<Action, String> {
    let mut verbosity = 0;
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        let level = match arg.as_str() {
            "--version" => return Ok(Action::Version),
            "-h" | "--help" => return Ok(Action::Help),
            "-v" | "--v" => args.next().ok_or_else(|| format!("{arg} needs a level"))?,
            _ => match arg.strip_prefix("--v=").or_else(|| arg.strip_prefix("-v=")) {
                Some(level) => level.to_owned(),
                None => return Err(format!("unknown argument {arg:?} (see {PROGRAM} --help)")),
            },
        };
        let level: u8 = level
            .parse()
            .map_err(|_| format!("verbosity {level:?} is not a number"))?;
        verbosity = klog_to_verbosity(level);
    }
    Ok(Action::Serve { verbosity })
}

/// klog levels 0-1 log warnings, 2-3 what was served, 4 and up details.
fn klog_to_verbosity(level: u8) -> u8 {
    match level {
        0..=1 => 0,
        2..=3 => 1,
        _ => 2,
    }
}

fn usage() -> String {
    format!(
        "ECR credential provider for kubelet (image-credential-provider in drop-in mode)\n\n\
         Usage:\n  {PROGRAM} [flags] < CredentialProviderRequest\n\n\
         Flags:\n  -h, --help      help for {PROGRAM}\n  -v, --v LEVEL   log verbosity (klog levels)\n      \
         --version   version for {PROGRAM}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Action, String> {
        parse_args(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn takes_no_arguments_or_the_ones_of_the_official_provider() {
        assert_eq!(parse(&[]), Ok(Action::Serve { verbosity: 0 }));
        assert_eq!(parse(&["--version"]), Ok(Action::Version));
        assert_eq!(parse(&["-h"]), Ok(Action::Help));
        assert_eq!(parse(&["--v=4"]), Ok(Action::Serve { verbosity: 2 }));
        assert_eq!(parse(&["-v", "2"]), Ok(Action::Serve { verbosity: 1 }));
        assert!(parse(&["--v"]).unwrap_err().contains("needs a level"));
        assert!(parse(&["--v=high"]).unwrap_err().contains("not a number"));
        assert!(
            parse(&["--config", "x"])
                .unwrap_err()
                .contains("unknown argument \"--config\"")
        );
    }

    #[test]
    fn the_rule_serves_ecr_hosts_only() {
        let rules = rules().unwrap();
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
