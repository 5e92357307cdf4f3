//! Drop-in modes: the binary invoked under the name of an official provider (a symlink
//! or a copy) takes that provider's arguments and environment, so an operator can swap
//! binaries without touching the kubelet's configuration. Each mode reads its command
//! line with the one reader in [`args`], builds its rules from typed backend settings,
//! and answers the request on stdin like plugin mode, in the request's version.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::rules::Rules;
use crate::{cache, exit, logging, plugin};

mod args;

#[cfg(feature = "acr")]
mod acr;
#[cfg(feature = "ecr")]
mod ecr;
#[cfg(feature = "gcp")]
mod gcp;

/// One drop-in mode.
struct Mode {
    /// The official program's name, which selects the mode.
    program: &'static str,
    /// The flags that take a value, besides `-v`.
    flags: &'static [args::Flag],
    /// The usage text: the lines after `Usage:`.
    usage: &'static str,
    /// Checks the arguments and flag values; a problem is a usage error.
    check: fn(&args::Parsed) -> Result<(), String>,
    /// Answers the request on stdin for a command line that asks to serve.
    serve: fn(&args::Parsed) -> anyhow::Result<()>,
}

/// The drop-in modes built into this binary.
const MODES: &[Mode] = &[
    #[cfg(feature = "ecr")]
    ecr::MODE,
    #[cfg(feature = "acr")]
    acr::MODE,
    #[cfg(feature = "gcp")]
    gcp::MODE,
];

/// Runs the drop-in mode named by the program name in `args[0]`, if there is one.
pub fn dispatch(args: &[OsString]) -> Option<ExitCode> {
    let program = args
        .first()
        .map(std::path::Path::new)?
        .file_name()?
        .to_str()?;
    let mode = MODES.iter().find(|mode| mode.program == program)?;
    Some(run(mode, args.get(1..).unwrap_or_default()))
}

fn run(mode: &Mode, args: &[OsString]) -> ExitCode {
    let action = args::parse(args, mode.flags).and_then(|action| match &action {
        args::Action::Serve(parsed) => (mode.check)(parsed).map(|()| action),
        _ => Ok(action),
    });
    match action {
        Ok(args::Action::Serve(parsed)) => {
            logging::init(parsed.verbosity);
            exit::finish((mode.serve)(&parsed))
        }
        Ok(args::Action::Version) => {
            println!(
                "{} version v{} (image-credential-provider)",
                mode.program,
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Ok(args::Action::Help) => {
            print!(
                "{} for kubelet (image-credential-provider in drop-in mode)\n\nUsage:\n{}",
                mode.program, mode.usage
            );
            ExitCode::SUCCESS
        }
        Err(message) => exit::usage(&message, &format!("{} --help", mode.program)),
    }
}

/// Plugin mode with `rules`: the request from stdin, the response to stdout, the token
/// cache where the environment or the default puts it.
#[cfg_attr(
    not(any(feature = "ecr", feature = "acr")),
    allow(dead_code, reason = "called by the ecr and acr drop-in modes")
)]
fn serve(rules: &Rules) -> anyhow::Result<()> {
    let cache_dir = cache::dir(&rules.cache, None, false);
    plugin::serve(
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        rules,
        cache_dir.as_deref(),
    )
}
