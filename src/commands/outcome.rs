//! How a command ends: success, an error (one line on stderr, exit 1), or a usage error
//! (one line on stderr, exit 2). Commands return an [`Outcome`]; only `main` turns it
//! into the process's exit.

/// The longest error line: every message quotes input short already (`icp_core::quote`);
/// this is the last guard, for a message from elsewhere that does not.
const MAX_ERROR_LINE: usize = 2000;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Done: exit 0.
    Success,
    /// An error, or problems found, already on stderr: exit 1.
    Failure,
    /// A usage error, already on stderr: exit 2.
    Usage,
}

impl Outcome {
    /// Success; otherwise the error and its causes as one line on stderr, and a failure.
    pub fn of(result: anyhow::Result<()>) -> Outcome {
        match result {
            Ok(()) => Outcome::Success,
            Err(error) => {
                eprintln!("error: {}", one_line(&error));
                Outcome::Failure
            }
        }
    }

    /// A usage error: one line on stderr naming where help is.
    pub fn usage(message: &str, help: &str) -> Outcome {
        eprintln!("error: {message} (see {help})");
        Outcome::Usage
    }
}

impl Outcome {
    /// The process's exit status.
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failure => 1,
            Outcome::Usage => 2,
        }
    }
}

/// The error and its causes on one line, cut at [`MAX_ERROR_LINE`] characters.
fn one_line(error: &anyhow::Error) -> String {
    let line = format!("{error:#}").replace(['\n', '\r'], " ");
    icp_core::quote::cut(&line, MAX_ERROR_LINE).into_owned()
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
