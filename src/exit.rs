//! How the process ends: success, or one error line on stderr and a non-zero exit.

use std::process::ExitCode;

/// The longest error line: every message quotes input short already (`icp_core::quote`);
/// this is the last guard, for a message from elsewhere that does not.
const MAX_ERROR_LINE: usize = 2000;

/// Exit 0 on success; otherwise the error and its causes as one line on stderr, exit 1.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, cut at [`MAX_ERROR_LINE`] characters.
fn one_line(error: &anyhow::Error) -> String {
    let line = format!("{error:#}").replace(['\n', '\r'], " ");
    match line.char_indices().nth(MAX_ERROR_LINE) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// A usage error: one line on stderr naming where help is, exit 2.
pub fn usage(message: &str, help: &str) -> ExitCode {
    eprintln!("error: {message} (see {help})");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_line_of_bounded_length() {
        let error = anyhow::anyhow!("inner\nline").context("outer");
        assert_eq!(one_line(&error), "outer: inner line");
        let huge = anyhow::anyhow!("{}", "é".repeat(10 * MAX_ERROR_LINE));
        let line = one_line(&huge);
        assert_eq!(line.chars().count(), MAX_ERROR_LINE + 3);
        assert!(line.ends_with("..."));
    }
}
