//! `auth-provider-gcp`: the official GCP credential provider's command line.
//!
//! ```text
//! auth-provider-gcp get-credentials [--authFlow=gcr|dockercfg|dockercfg-url] [--v=N]
//! ```
//!
//! - `gcr` (the default): the metadata server's default service account, for Google's
//!   registry hosts ([`icp_gcp::DEFAULT_PATTERNS`], strictly checked);
//! - `dockercfg`, `dockercfg-url`: the docker config in the instance attribute
//!   `google-dockercfg`, or at the URL in `google-dockercfg-url`, for whatever image the
//!   kubelet asks about (its own `matchImages` chose this plugin).
//!
//! `--v` is klog's verbosity: 0 logs warnings, 1 to 3 which rule served, 4 and 5 details.
//! Flags take the forms pflag accepts: `--authFlow=x`, `--authFlow x`, `-a x`, `--v=3`,
//! `-v 3`.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

/// The program name this mode answers to.
pub const PROGRAM: &str = "auth-provider-gcp";

/// The official provider's `--authFlow` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthFlow {
    Gcr,
    Dockercfg,
    DockercfgUrl,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    flow: AuthFlow,
    verbosity: u8,
}

/// Runs the drop-in with `args` (program name first).
pub fn run(args: &[OsString]) -> ExitCode {
    let options = match parse(args.get(1..).unwrap_or_default()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!(
                "error: {message} (usage: {PROGRAM} get-credentials [--authFlow=gcr|dockercfg|dockercfg-url] [--v=N])"
            );
            return ExitCode::from(2);
        }
    };
    crate::init_logging(options.verbosity);
    crate::finish(answer(options.flow))
}

fn answer(flow: AuthFlow) -> anyhow::Result<()> {
    let request = crate::protocol::read_request(std::io::stdin().lock())?;
    let (patterns, source) = match flow {
        AuthFlow::Gcr => (
            icp_gcp::DEFAULT_PATTERNS
                .iter()
                .map(|p| p.to_string())
                .collect(),
            "metadata",
        ),
        AuthFlow::Dockercfg | AuthFlow::DockercfgUrl => {
            // The docker config names its own registries: the rule covers exactly the
            // registry of the image the kubelet asks about.
            let image = icp_core::ImageRef::parse(&request.image).with_context(|| {
                format!(
                    "request image {:?} is not a valid image reference",
                    request.image
                )
            })?;
            let source = if flow == AuthFlow::Dockercfg {
                "dockercfg"
            } else {
                "dockercfgUrl"
            };
            (vec![image.registry().to_owned()], source)
        }
    };
    let document = json!({
        "rules": [{ "matchImages": patterns, "provider": "gcp", "gcp": { "source": source } }],
    });
    let rules = crate::rules::from_value(document, std::path::Path::new("."), PROGRAM, false)?;
    let cache_dir = rules.cache_dir(None);
    crate::respond(&request, &rules, cache_dir)
}

/// Parses the arguments after the program name.
fn parse(args: &[OsString]) -> Result<Options, String> {
    let mut options = Options {
        flow: AuthFlow::Gcr,
        verbosity: 0,
    };
    let mut command = None;
    let mut args = args.iter().map(|a| {
        a.to_str()
            .ok_or_else(|| "arguments must be UTF-8".to_owned())
    });
    while let Some(arg) = args.next() {
        let arg = arg?;
        let Some(flag) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|_| arg.len() > 1)
        else {
            if command.replace(arg).is_some() {
                return Err(format!("unexpected argument {arg:?}"));
            }
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        let mut value = || match inline.clone() {
            Some(value) => Ok(value),
            None => args
                .next()
                .transpose()?
                .map(str::to_owned)
                .ok_or_else(|| format!("flag {arg:?} needs a value")),
        };
        match name {
            "authFlow" | "a" => {
                options.flow = match value()?.as_str() {
                    "gcr" => AuthFlow::Gcr,
                    "dockercfg" => AuthFlow::Dockercfg,
                    "dockercfg-url" => AuthFlow::DockercfgUrl,
                    other => {
                        return Err(format!(
                            "unknown --authFlow {other:?} (expected gcr, dockercfg or dockercfg-url)"
                        ));
                    }
                }
            }
            "v" => {
                let level: u32 = value()?
                    .parse()
                    .map_err(|_| format!("flag {arg:?} needs a number"))?;
                options.verbosity = match level {
                    0 => 0,
                    1..=3 => 1,
                    4..=5 => 2,
                    _ => 3,
                };
            }
            _ => return Err(format!("unknown flag {arg:?}")),
        }
    }
    match command {
        Some("get-credentials") => Ok(options),
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("missing command get-credentials".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Options, String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&args)
    }

    #[test]
    fn accepts_the_official_flags_in_pflag_forms() {
        let gcr = Options {
            flow: AuthFlow::Gcr,
            verbosity: 0,
        };
        assert_eq!(parsed(&["get-credentials"]), Ok(gcr));
        assert_eq!(
            parsed(&["get-credentials", "--v=3"]),
            Ok(Options {
                flow: AuthFlow::Gcr,
                verbosity: 1
            })
        );
        assert_eq!(
            parsed(&["--authFlow=dockercfg", "get-credentials", "-v", "5"]),
            Ok(Options {
                flow: AuthFlow::Dockercfg,
                verbosity: 2
            })
        );
        assert_eq!(
            parsed(&["get-credentials", "--authFlow", "dockercfg-url"]),
            Ok(Options {
                flow: AuthFlow::DockercfgUrl,
                verbosity: 0
            })
        );
        assert_eq!(
            parsed(&["get-credentials", "-a", "gcr", "--v", "0"]),
            Ok(Options {
                flow: AuthFlow::Gcr,
                verbosity: 0
            })
        );
    }

    #[test]
    fn refuses_what_the_official_provider_refuses() {
        for (args, expected) in [
            (&[][..], "missing command get-credentials"),
            (
                &["get-credentials", "--authFlow=ecr"],
                "unknown --authFlow \"ecr\" (expected gcr, dockercfg or dockercfg-url)",
            ),
            (
                &["get-credentials", "--authFlow"],
                "flag \"--authFlow\" needs a value",
            ),
            (
                &["get-credentials", "--v=high"],
                "flag \"--v=high\" needs a number",
            ),
            (
                &["get-credentials", "--cloud-config=/x"],
                "unknown flag \"--cloud-config=/x\"",
            ),
            (&["get-token"], "unknown command \"get-token\""),
            (
                &["get-credentials", "extra"],
                "unexpected argument \"extra\"",
            ),
        ] {
            assert_eq!(parsed(args).unwrap_err(), expected, "{args:?}");
        }
    }
}
