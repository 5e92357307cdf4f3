//! Drop-in modes: the binary invoked under the name of an official provider (a symlink
//! or a copy) takes that provider's arguments and environment, so an operator can swap
//! binaries without touching the kubelet's configuration. Each mode builds a one-rule
//! [`Rules`] and answers the request on stdin like plugin mode, in the request's version.

use std::ffi::OsString;
use std::process::ExitCode;

use crate::rules::Rules;

#[cfg(feature = "acr")]
mod acr;
#[cfg(feature = "ecr")]
mod ecr;
#[cfg(feature = "gcp")]
mod gcp;

/// Runs the drop-in mode named by the program name in `args[0]`, if there is one.
pub fn dispatch(args: &[OsString]) -> Option<ExitCode> {
    let program = args
        .first()
        .map(std::path::Path::new)?
        .file_name()?
        .to_str()?;
    match program {
        #[cfg(feature = "acr")]
        acr::PROGRAM => Some(acr::run(args)),
        #[cfg(feature = "ecr")]
        ecr::PROGRAM => Some(ecr::run(args)),
        #[cfg(feature = "gcp")]
        gcp::PROGRAM => Some(gcp::run(args)),
        _ => None,
    }
}

/// Plugin mode with `rules`: the request from stdin, the response to stdout, errors as
/// one line on stderr.
#[cfg_attr(
    not(any(feature = "ecr", feature = "acr")),
    allow(dead_code, reason = "called by the ecr and acr drop-in modes")
)]
pub fn serve(rules: anyhow::Result<Rules>) -> ExitCode {
    crate::finish(rules.and_then(|rules| {
        let cache_dir = rules.cache_dir(None);
        crate::serve_stdin(&rules, cache_dir)
    }))
}
