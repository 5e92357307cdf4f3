//! Docker credential helpers: the programs `docker-credential-<name>` that docker asks
//! for credentials with `get` (the server on stdin, `{"ServerURL","Username","Secret"}` on
//! stdout) and `list` (`{"<server>": "<username>", ...}` on stdout).

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use icp_core::{Environment, ErrorKind, Secret, quote};
use icp_docker_auth::Entry;
use icp_docker_auth::file::{is_helper_name, quote_key};

use crate::child::{self, Failure, MAX_STDOUT};

/// Longest one helper call may take before the helper, and whatever it started in its
/// process group, is killed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What docker-credential-helpers print on stdout (with a non-zero exit) when the store
/// holds nothing for the server.
const NOT_FOUND: &str = "credentials not found in native keychain";

/// The username of an identity token, which only docker's own login flow can use.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// A helper call that failed. The message names the program and the call; it never holds
/// the helper's stdout, and its stderr only as a short excerpt on one line.
#[derive(Debug, thiserror::Error)]
#[error("docker-credential-{helper}{call}: {problem}")]
pub struct Error {
    helper: String,
    call: Call,
    problem: Problem,
}

/// Which call failed.
#[derive(Debug)]
enum Call {
    /// Looking the program up.
    Locate,
    /// `get` for a server.
    Get(String),
    /// `list`.
    List,
}

impl Error {
    /// A helper that cannot be found or started is the configuration's problem; one that
    /// hangs, a timeout; one that fails or answers nonsense, a bad answer.
    pub fn kind(&self) -> ErrorKind {
        match self.problem {
            Problem::NotBare
            | Problem::NotOnPath(_)
            | Problem::NotInDir(_)
            | Problem::Untrusted(_)
            | Problem::Spawn(_) => ErrorKind::Config,
            Problem::Timeout(_) => ErrorKind::Timeout,
            Problem::TooMuchOutput
            | Problem::Wait(_)
            | Problem::Failed { .. }
            | Problem::Malformed => ErrorKind::BadResponse,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Locate => Ok(()),
            Call::Get(server) => write!(f, " get for {}", quote_key(server)),
            Call::List => f.write_str(" list"),
        }
    }
}

/// What went wrong in a call.
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("not a bare helper name; never run")]
    NotBare,
    #[error("not found on PATH{}", skipped_note(.0))]
    NotOnPath(Vec<std::io::Error>),
    #[error("not found in {}", quote(&.0.to_string_lossy()))]
    NotInDir(PathBuf),
    #[error("never run from where others could have planted it: {0}")]
    Untrusted(std::io::Error),
    #[error("cannot start: {0}")]
    Spawn(std::io::Error),
    #[error("no answer within {0:?}; killed it and what it started")]
    Timeout(Duration),
    #[error("printed more than {MAX_STDOUT} bytes")]
    TooMuchOutput,
    #[error("cannot wait for it: {0}")]
    Wait(std::io::Error),
    #[error("failed ({status}){}", stderr_excerpt(.stderr))]
    Failed { status: ExitStatus, stderr: Vec<u8> },
    #[error(
        "answered with something other than the expected JSON (not shown: it may hold a secret)"
    )]
    Malformed,
}

/// `; skipped PATH entries others could write to: ...` naming why each was skipped, or
/// nothing when none was.
fn skipped_note(skipped: &[std::io::Error]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let reasons: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    format!(
        " (skipped PATH entries others could have planted it in: {})",
        reasons.join("; ")
    )
}

/// `; stderr: "..."` with the start of `stderr` on one line, or nothing when it is empty.
fn stderr_excerpt(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", quote(text))
    }
}

/// One credential helper, found.
#[derive(Debug, Clone)]
pub struct Helper {
    name: String,
    program: PathBuf,
}

impl Helper {
    /// Finds `docker-credential-<name>` in `dir`, or without one in the absolute
    /// directories of `env`'s `PATH` (relative ones are never searched). `name` must be a
    /// bare helper name; the file must be an executable file.
    ///
    /// The plugin runs as root, so a helper is run only from where no one else could have
    /// planted it ([`icp_core::trust::check`]): `dir` and the file must pass the rule, or
    /// the helper is not run; a `PATH` directory that fails it is skipped (noted at `-v`,
    /// and in the error when the helper is found nowhere else).
    pub fn locate(name: &str, dir: Option<&Path>, env: &Environment) -> Result<Helper, Error> {
        let error = |problem| Error {
            helper: if is_helper_name(name) {
                name.to_owned()
            } else {
                quote(name)
            },
            call: Call::Locate,
            problem,
        };
        if !is_helper_name(name) {
            // The file parser refuses such names already; this keeps a path from ever running.
            return Err(error(Problem::NotBare));
        }
        let file = format!("docker-credential-{name}");
        let found = |dir: &Path| Some(dir.join(&file)).filter(|path| is_executable(path));
        let program = match dir {
            Some(dir) => {
                icp_core::trust::check(dir).map_err(|e| error(Problem::Untrusted(e)))?;
                found(dir).ok_or_else(|| error(Problem::NotInDir(dir.to_owned())))?
            }
            None => {
                let mut skipped = Vec::new();
                let program = env
                    .get_os("PATH")
                    .iter()
                    .flat_map(std::env::split_paths)
                    .filter(|dir| dir.is_absolute())
                    .filter_map(|dir| found(&dir).map(|program| (dir, program)))
                    .find_map(|(dir, program)| match icp_core::trust::check(&dir) {
                        Ok(_) => Some(program),
                        Err(reason) => {
                            tracing::info!(helper = %file, %reason, "PATH entry skipped: others could have planted the helper there");
                            skipped.push(reason);
                            None
                        }
                    });
                program.ok_or_else(|| error(Problem::NotOnPath(skipped)))?
            }
        };
        // The file itself: not writable by others, not owned by another user; run as
        // resolved, so no link can be changed between this check and the run.
        let program = icp_core::trust::check(&program).map_err(|e| error(Problem::Untrusted(e)))?;
        Ok(Helper {
            name: name.to_owned(),
            program,
        })
    }

    /// The helper's name, as in `pass`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the helper for the credential of `server`, within `timeout`. `None` when it
    /// holds none: it said "credentials not found", or answered an empty username and
    /// secret, or an identity token the kubelet cannot use.
    pub fn get(&self, server: &str, timeout: Duration) -> Result<Option<Entry>, Error> {
        let call = || Call::Get(server.to_owned());
        tracing::debug!(helper = %self.name, server = %quote_key(server), "asking credential helper");
        let output = self.run("get", server.as_bytes(), timeout, call)?;
        if !output.status.success() {
            if String::from_utf8_lossy(&output.stdout).trim() == NOT_FOUND {
                tracing::info!(helper = %self.name, server = %quote_key(server), "credential helper holds no credentials for the server");
                return Ok(None);
            }
            return Err(self.error(call(), failed(output)));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(rename = "Username")]
            username: String,
            #[serde(rename = "Secret")]
            secret: String,
        }
        let answer: Answer = serde_json::from_slice(&output.stdout)
            .map_err(|_| self.error(call(), Problem::Malformed))?;
        if answer.username.is_empty() && answer.secret.is_empty() {
            tracing::info!(helper = %self.name, server = %quote_key(server), "credential helper holds no credentials for the server");
            return Ok(None);
        }
        if answer.username == IDENTITY_TOKEN_USER {
            tracing::info!(helper = %self.name, server = %quote_key(server), "credential helper answered an identity token, which the kubelet cannot use; skipped");
            return Ok(None);
        }
        Ok(Some(Entry {
            username: answer.username,
            password: Secret::new(answer.secret),
        }))
    }

    /// Asks the helper which servers it holds credentials for, within `timeout`.
    pub fn list(&self, timeout: Duration) -> Result<Vec<String>, Error> {
        tracing::debug!(helper = %self.name, "listing credential helper");
        let output = self.run("list", b"", timeout, || Call::List)?;
        if !output.status.success() {
            return Err(self.error(Call::List, failed(output)));
        }
        let servers: BTreeMap<String, String> = serde_json::from_slice(&output.stdout)
            .map_err(|_| self.error(Call::List, Problem::Malformed))?;
        Ok(servers.into_keys().collect())
    }

    fn run(
        &self,
        action: &str,
        input: &[u8],
        timeout: Duration,
        call: impl Fn() -> Call,
    ) -> Result<child::Output, Error> {
        child::run(&self.program, action, input, timeout).map_err(|failure| {
            let problem = match failure {
                Failure::Spawn(error) => Problem::Spawn(error),
                Failure::Timeout => Problem::Timeout(timeout),
                Failure::TooMuchOutput => Problem::TooMuchOutput,
                Failure::Wait(error) => Problem::Wait(error),
            };
            self.error(call(), problem)
        })
    }

    fn error(&self, call: Call, problem: Problem) -> Error {
        Error {
            helper: self.name.clone(),
            call,
            problem,
        }
    }
}

fn failed(output: child::Output) -> Problem {
    Problem::Failed {
        status: output.status,
        stderr: output.stderr,
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper(dir: &Path, name: &str, body: &str) -> Helper {
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let no_path = Environment::from_pairs([("PATH", "")]);
        Helper::locate(name, Some(dir), &no_path).unwrap()
    }

    fn get(helper: &Helper) -> Result<Option<Entry>, Error> {
        helper.get("registry.example", Duration::from_secs(5))
    }

    #[test]
    fn answers_and_the_ways_of_holding_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let found = helper(
            dir.path(),
            "found",
            r#"read -r s; [ "$1 $s" = "get registry.example" ] || exit 9
echo '{"ServerURL":"registry.example","Username":"robot","Secret":"hunter2"}'"#,
        );
        let entry = get(&found).unwrap().unwrap();
        assert_eq!(
            (entry.username.as_str(), entry.password.expose()),
            ("robot", "hunter2")
        );
        for body in [
            "echo 'credentials not found in native keychain'; exit 1",
            r#"echo '{"ServerURL":"registry.example","Username":"","Secret":""}'"#,
            r#"echo '{"ServerURL":"registry.example","Username":"<token>","Secret":"hunter2"}'"#,
        ] {
            assert!(
                get(&helper(dir.path(), "none", body)).unwrap().is_none(),
                "{body}"
            );
        }
    }

    #[test]
    fn failures_name_the_helper_and_never_show_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "echo hunter2; echo 'bad gpg key' >&2; printf 'second line' >&2; exit 3",
                "docker-credential-h get for \"registry.example\": failed (exit status: 3); stderr: \"bad gpg key\\nsecond line\"",
            ),
            (
                r#"echo '{"Username":"robot","Secret":"hunter2"'"#,
                "answered with something other than the expected JSON",
            ),
            (
                r#"echo '{"Username":"robot","Secret":["hunter2"]}'"#,
                "expected JSON",
            ),
            ("kill -9 $$", "failed (signal: 9 (SIGKILL))"),
        ];
        for (body, expected) in cases {
            let message = get(&helper(dir.path(), "h", body)).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let hang = helper(dir.path(), "h", "sleep 300");
        let message = hang
            .get("registry.example", Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "docker-credential-h get for \"registry.example\": no answer within 300ms; killed it and what it started"
        );
    }

    #[test]
    fn lists_servers() {
        let dir = tempfile::tempdir().unwrap();
        let store = helper(
            dir.path(),
            "store",
            r#"[ "$1" = list ] && echo '{"quay.io":"robot","https://index.docker.io/v1/":"me"}'"#,
        );
        assert_eq!(
            store.list(Duration::from_secs(5)).unwrap(),
            ["https://index.docker.io/v1/", "quay.io"]
        );
    }

    #[test]
    fn only_bare_names_in_the_directory_or_on_path_are_found() {
        let env = Environment::from_pairs([("PATH", "/usr/bin:/bin")]);
        let dir = tempfile::tempdir().unwrap();
        let message = Helper::locate("absent", Some(dir.path()), &env)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("docker-credential-absent: not found in "),
            "{message}"
        );
        std::fs::write(dir.path().join("docker-credential-plain"), "").unwrap();
        assert!(Helper::locate("plain", Some(dir.path()), &env).is_err());
        assert!(Helper::locate("../x", Some(dir.path()), &env).is_err());
        assert!(Helper::locate("surely-absent-helper", None, &env).is_err());
    }

    #[test]
    fn a_helper_others_could_have_planted_is_never_run() {
        let dir = tempfile::tempdir().unwrap();
        let ran = dir.path().join("ran");
        let body = format!("touch {}", ran.display());
        helper(dir.path(), "planted", &body);
        let program = dir.path().join("docker-credential-planted");
        let no_path = Environment::from_pairs([("PATH", "")]);
        let chmod = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        // The file writable by others, the helperDir writable by others.
        for (path, mode) in [
            (program.as_path(), 0o757),
            (program.as_path(), 0o775),
            (dir.path(), 0o777),
        ] {
            chmod(path, mode);
            let error = Helper::locate("planted", Some(dir.path()), &no_path).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Config);
            let message = error.to_string();
            assert!(
                message.starts_with(
                    "docker-credential-planted: never run from where others could have planted it: "
                ) && message.contains(&format!("is writable by others (mode {mode:o})")),
                "{message}"
            );
            chmod(path, if path == dir.path() { 0o700 } else { 0o755 });
        }
        if icp_core::trust::euid() == 0 {
            std::os::unix::fs::chown(&program, Some(65534), None).unwrap();
            let message = Helper::locate("planted", Some(dir.path()), &no_path)
                .unwrap_err()
                .to_string();
            assert!(message.contains("is owned by uid 65534"), "{message}");
            std::os::unix::fs::chown(&program, Some(0), None).unwrap();
        }
        Helper::locate("planted", Some(dir.path()), &no_path).unwrap();
        assert!(!ran.exists());

        // On PATH, a directory others can write is skipped for a later, trusted one.
        let open = tempfile::tempdir().unwrap();
        helper(open.path(), "planted", "exit 0");
        chmod(open.path(), 0o777);
        let path = format!("{}:{}", open.path().display(), dir.path().display());
        let env = Environment::from_pairs([("PATH", path)]);
        let found = Helper::locate("planted", None, &env).unwrap();
        assert_eq!(found.program, program);
        let only_open = Environment::from_pairs([("PATH", open.path())]);
        let message = Helper::locate("planted", None, &only_open)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("docker-credential-planted: not found on PATH (skipped PATH entries others could have planted it in: ")
                && message.contains("is writable by others (mode 777)"),
            "{message}"
        );
    }

    #[test]
    fn path_comes_from_the_environment_and_only_its_absolute_directories() {
        let dir = tempfile::tempdir().unwrap();
        let on_path = helper(dir.path(), "onpath", "exit 0");
        let absolute = dir.path().to_str().unwrap();
        let env = Environment::from_pairs([("PATH", format!("relative:{absolute}"))]);
        let found = Helper::locate("onpath", None, &env).unwrap();
        assert_eq!(found.program, on_path.program);
        let relative_only = Environment::from_pairs([("PATH", "relative")]);
        let error = Helper::locate("onpath", None, &relative_only).unwrap_err();
        assert_eq!(
            error.to_string(),
            "docker-credential-onpath: not found on PATH"
        );
        assert_eq!(error.kind(), ErrorKind::Config);
    }
}
