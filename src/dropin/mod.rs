//! Drop-in modes: the binary invoked under the name of an official provider (a symlink
//! or a copy) takes that provider's arguments and environment, so an operator can swap
//! binaries without touching the kubelet's configuration. Each mode reads its command
//! line with the one reader in [`args`], builds its rules from typed backend settings,
//! and answers the request on stdin in plugin mode (`crate::commands`), in the request's
//! version. A mode belongs to its backend's row of the backend table, which lists the
//! modes built in.

use std::ffi::OsString;

use icp_core::Environment;

use crate::backends;
use crate::commands::outcome::Outcome;
use crate::logging;

mod args;

#[cfg(feature = "acr")]
pub(crate) mod acr;
#[cfg(feature = "ecr")]
pub(crate) mod ecr;
#[cfg(feature = "gcp")]
pub(crate) mod gcp;

/// One drop-in mode.
pub(crate) struct Mode {
    /// The official program's name, which selects the mode.
    pub(crate) program: &'static str,
    /// The flags that take a value, besides `-v`.
    flags: &'static [args::Flag],
    /// The usage text: the lines after `Usage:`.
    usage: &'static str,
    /// Checks the arguments and flag values; a problem is a usage error.
    check: fn(&args::Parsed) -> Result<(), String>,
    /// Answers the request on stdin for a command line that asks to serve, with the
    /// backends built in the given environment.
    serve: fn(&args::Parsed, &Environment) -> anyhow::Result<()>,
}

/// Runs the drop-in mode named by the program name in `args[0]`, if this binary has one.
pub fn dispatch(args: &[OsString], env: &Environment) -> Option<Outcome> {
    let program = args
        .first()
        .map(std::path::Path::new)?
        .file_name()?
        .to_str()?;
    let mode = backends::TABLE
        .iter()
        .filter_map(|row| row.drop_in)
        .find(|mode| mode.program == program)?;
    Some(run(mode, args.get(1..).unwrap_or_default(), env))
}

fn run(mode: &Mode, args: &[OsString], env: &Environment) -> Outcome {
    let action = args::parse(args, mode.flags).and_then(|action| match &action {
        args::Action::Serve(parsed) => (mode.check)(parsed).map(|()| action),
        _ => Ok(action),
    });
    match action {
        Ok(args::Action::Serve(parsed)) => {
            logging::init(parsed.verbosity);
            for flag in &parsed.ignored {
                tracing::info!(
                    %flag,
                    "klog flag accepted and ignored: this binary logs to stderr only, at the level of -v"
                );
            }
            Outcome::of((mode.serve)(&parsed, env))
        }
        Ok(args::Action::Version) => {
            println!(
                "{} version v{} (image-credential-provider)",
                mode.program,
                env!("CARGO_PKG_VERSION")
            );
            Outcome::Success
        }
        Ok(args::Action::Help) => {
            print!(
                "{} for kubelet (image-credential-provider in drop-in mode)\n\nUsage:\n{}\n\
                 klog's other flags are accepted and ignored (this binary logs to stderr only):\n  {}\n",
                mode.program,
                mode.usage,
                args::klog_flag_names().join(", ")
            );
            Outcome::Success
        }
        Err(message) => Outcome::usage(&message, &format!("{} --help", mode.program)),
    }
}
