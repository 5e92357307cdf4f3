//! The project's build tasks, run from the workspace as `cargo xtask TASK` (an alias in
//! `.cargo/config.toml`), the Rust convention for tasks that need more than cargo:
//!
//! - `dist [--out DIR] [--target TRIPLE]`: the release artifacts of one target in one
//!   directory (see [`dist`]).
//!
//! Every failure is one line on stderr and exit code 1; a tool that is missing is named
//! with the Debian package that has it and `.ci/setup`, which installs it.

use std::path::PathBuf;
use std::process::ExitCode;

mod archive;
mod deps;
mod dist;
mod oci;
mod packages;
mod tools;

const USAGE: &str = "usage: cargo xtask dist [--out DIR] [--target TRIPLE]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("error: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match dist::dist(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the command line: the options of `dist`, or `None` for help.
fn parse(args: &[String]) -> Result<Option<dist::Options>, String> {
    let mut args = args.iter();
    match args.next().map(String::as_str) {
        Some("dist") => {}
        Some("-h" | "--help" | "help") => return Ok(None),
        Some(task) => return Err(format!("unknown task {task:?}")),
        None => return Err("no task given".into()),
    }
    let mut options = dist::Options {
        out: None,
        target: dist::DEFAULT_TARGET.to_string(),
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag {
            "--out" => options.out = Some(PathBuf::from(value()?)),
            "--target" => options.target = value()?,
            "-h" | "--help" => return Ok(None),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Some(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn dist_takes_out_and_target_in_both_spellings() {
        let options = parse(&args(
            "dist --out /tmp/x --target=aarch64-unknown-linux-gnu",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(options.out, Some(PathBuf::from("/tmp/x")));
        assert_eq!(options.target, "aarch64-unknown-linux-gnu");
        let options = parse(&args("dist")).unwrap().unwrap();
        assert_eq!(
            (options.out, options.target.as_str()),
            (None, dist::DEFAULT_TARGET)
        );
    }

    #[test]
    fn unknown_tasks_and_arguments_and_missing_values_are_errors() {
        assert!(parse(&args("build")).is_err());
        assert!(parse(&args("dist --jobs 2")).is_err());
        assert!(parse(&args("dist --out")).is_err());
        assert!(parse(&[]).is_err());
        assert!(parse(&args("--help")).unwrap().is_none());
    }
}
