//! The outside programs `dist` runs, and how it runs them.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Fails, naming the Debian package and `.ci/setup`, when `program` is not on `PATH`.
pub fn require(program: &str, package: &str) -> Result<()> {
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
    });
    if !found {
        bail!("`{program}` is not installed (Debian package {package}): run .ci/setup");
    }
    Ok(())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs `command` to its end and returns its stdout; a failure carries its stderr.
pub fn output(command: &mut Command) -> Result<Vec<u8>> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.trim().lines().last().unwrap_or("").to_string();
        bail!("{program} failed ({}): {last}", output.status);
    }
    Ok(output.stdout)
}

/// Runs `command` to its end and returns its stdout as text, trimmed.
pub fn text(command: &mut Command) -> Result<String> {
    let stdout = output(command)?;
    Ok(String::from_utf8(stdout)
        .context("output is not UTF-8")?
        .trim()
        .to_string())
}
