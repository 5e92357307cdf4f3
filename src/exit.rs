//! How the process ends: success, or one error line on stderr and a non-zero exit.

use std::process::ExitCode;

/// Exit 0 on success; otherwise the error and its causes as one line on stderr, exit 1.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let line = format!("{error:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {line}");
            ExitCode::FAILURE
        }
    }
}

/// A usage error: one line on stderr naming where help is, exit 2.
pub fn usage(message: &str, help: &str) -> ExitCode {
    eprintln!("error: {message} (see {help})");
    ExitCode::from(2)
}
