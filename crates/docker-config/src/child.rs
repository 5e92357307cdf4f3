//! Running a program as a bounded child: no shell, its own process group, input on
//! stdin, a deadline after which the whole group is killed, and capped output.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Most bytes of stdout read; a child printing more has failed.
pub const MAX_STDOUT: usize = 256 * 1024;
/// Most bytes of stderr kept (the rest is read and dropped, so the child never blocks).
pub const MAX_STDERR: usize = 4 * 1024;

/// How a child ended.
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout (at most [`MAX_STDOUT`] bytes).
    pub stdout: Vec<u8>,
    /// The start of what it printed on stderr (at most [`MAX_STDERR`] bytes).
    pub stderr: Vec<u8>,
}

/// Why a child gave no [`Output`].
#[derive(Debug)]
pub enum Failure {
    /// It could not be started.
    Spawn(io::Error),
    /// It had not finished by the deadline; it and its process group were killed.
    Timeout,
    /// It printed more than [`MAX_STDOUT`] bytes on stdout.
    TooMuchOutput,
    /// Waiting for it failed.
    Wait(io::Error),
}

/// How often a program busy being written is tried again, and how long apart.
const BUSY_RETRIES: u32 = 5;
const BUSY_PAUSE: Duration = Duration::from_millis(20);

/// Starts `program arg` in a process group of its own, with piped standard streams. A
/// program that is busy being written (`ETXTBSY`: another process forked while holding it
/// open for writing, as a package manager updating a helper or a test writing one does, if
/// only until that fork's `exec`) is tried again a few times, briefly.
fn spawn(program: &Path, arg: &str) -> io::Result<Child> {
    let mut tries = 0;
    loop {
        let spawned = Command::new(program)
            .arg(arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        match spawned {
            Err(error)
                if error.kind() == io::ErrorKind::ExecutableFileBusy && tries < BUSY_RETRIES =>
            {
                tries += 1;
                thread::sleep(BUSY_PAUSE * tries);
            }
            other => return other,
        }
    }
}

/// Runs `program` with the one argument `arg` and `input` on stdin, in a process group of
/// its own with the plugin's environment, and waits until it has exited and closed its
/// stdout and stderr, or until `timeout` has passed: then the whole group (the child and
/// whatever it started there) is killed with `SIGKILL` and reaped.
pub fn run(program: &Path, arg: &str, input: &[u8], timeout: Duration) -> Result<Output, Failure> {
    let started = Instant::now();
    let mut child = spawn(program, arg).map_err(Failure::Spawn)?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        kill_group(&mut child);
        return Err(Failure::Spawn(io::Error::other("no pipes to the child")));
    };
    // A child that never reads its input must not block us: write from a thread, and let
    // it end with the child (a broken pipe) if the input does not fit the pipe.
    let input = input.to_vec();
    thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    // Each reader says when its pipe is closed, so the common case waits without polling.
    let (closed, pipe_closed) = mpsc::channel();
    let reader = |pipe: Box<dyn Read + Send>, max, drain| {
        let closed = closed.clone();
        thread::spawn(move || {
            let read = read_at_most(pipe, max, drain);
            let _ = closed.send(());
            read
        })
    };
    let stdout = reader(Box::new(stdout), MAX_STDOUT, false);
    let stderr = reader(Box::new(stderr), MAX_STDERR, true);
    drop(closed);

    let mut open_pipes = 2;
    let mut pause = Duration::from_micros(100);
    let status = loop {
        let left = timeout.saturating_sub(started.elapsed());
        if open_pipes > 0 {
            match pipe_closed.recv_timeout(left) {
                Ok(()) => open_pipes -= 1,
                Err(RecvTimeoutError::Disconnected) => open_pipes = 0,
                Err(RecvTimeoutError::Timeout) => {
                    kill_group(&mut child);
                    return Err(Failure::Timeout);
                }
            }
            continue;
        }
        // Only once both pipes are closed is the child asked whether it has exited: until
        // it is reaped, its pid (and so its process group's id) cannot be reused, and
        // killing the group by that id is safe.
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if left.is_zero() => {
                kill_group(&mut child);
                return Err(Failure::Timeout);
            }
            Ok(None) => {
                thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err(error) => {
                kill_group(&mut child);
                return Err(Failure::Wait(error));
            }
        }
    };
    let (stdout, overflow) = joined(stdout);
    if overflow {
        return Err(Failure::TooMuchOutput);
    }
    let (stderr, _) = joined(stderr);
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Kills the child's process group and reaps the child.
fn kill_group(child: &mut Child) {
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions. The child is not reaped yet,
        // so the group id (its pid) still names its group.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads `pipe` up to its end, keeping the first `max` bytes, and says whether there was
/// more. With `drain`, the rest is read and dropped, so the writer never blocks on a full
/// pipe; without, reading stops there and the pipe is closed.
fn read_at_most(mut pipe: impl Read, max: usize, drain: bool) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut overflow = false;
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
                if n > room {
                    overflow = true;
                    if !drain {
                        break;
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    (kept, overflow)
}

fn joined(reader: JoinHandle<(Vec<u8>, bool)>) -> (Vec<u8>, bool) {
    reader.join().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn failure(result: Result<Output, Failure>) -> Failure {
        match result {
            Ok(output) => panic!("succeeded with {}", output.status),
            Err(failure) => failure,
        }
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("child");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_program_busy_being_written_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "echo ran");
        // A handle open for writing makes exec fail with ETXTBSY until it is closed.
        let writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&program)
            .unwrap();
        let release = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            drop(writer);
        });
        let output = run(&program, "get", b"", Duration::from_secs(5)).unwrap();
        release.join().unwrap();
        assert_eq!(output.stdout, b"ran\n");
        // Held for longer than the retries last, it is an error.
        let writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&program)
            .unwrap();
        match failure(run(&program, "get", b"", Duration::from_secs(5))) {
            Failure::Spawn(error) => assert_eq!(error.kind(), io::ErrorKind::ExecutableFileBusy),
            _ => panic!("expected a spawn failure"),
        }
        drop(writer);
    }

    #[test]
    fn passes_input_and_collects_output() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(
            dir.path(),
            "read -r line; echo \"got $1 $line\"; echo oops >&2; exit 3",
        );
        let output = run(&program, "get", b"quay.io\n", Duration::from_secs(5)).unwrap();
        assert_eq!(output.stdout, b"got get quay.io\n");
        assert_eq!(output.stderr, b"oops\n");
        assert_eq!(output.status.code(), Some(3));
    }

    #[test]
    fn a_hang_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let program = script(
            dir.path(),
            &format!("sleep 300 & echo $! > {}; wait", pid_file.display()),
        );
        let started = Instant::now();
        let failure = failure(run(&program, "get", b"", Duration::from_millis(500)));
        assert!(matches!(failure, Failure::Timeout), "{failure:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild was killed with the group (and reaped by init, or a zombie of the
        // reaped shell's reaper): it no longer runs.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = state
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'));
            if !running {
                break;
            }
            assert!(Instant::now() < deadline, "grandchild {pid} still runs");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_child_that_exits_but_leaves_a_pipe_open_is_bounded_too() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "sleep 300 & exit 0");
        let failure = failure(run(&program, "get", b"", Duration::from_millis(500)));
        assert!(matches!(failure, Failure::Timeout), "{failure:?}");
    }

    #[test]
    fn output_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(
            dir.path(),
            "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2",
        );
        let failure = failure(run(&program, "get", b"", Duration::from_secs(5)));
        assert!(matches!(failure, Failure::TooMuchOutput), "{failure:?}");

        let program = script(dir.path(), "head -c 1000000 /dev/zero >&2; echo done");
        let output = run(&program, "get", b"", Duration::from_secs(5)).unwrap();
        assert_eq!(output.stderr.len(), MAX_STDERR);
        assert_eq!(output.stdout, b"done\n");
    }

    #[test]
    fn a_missing_program_does_not_start() {
        let failure = failure(run(
            Path::new("/nonexistent/docker-credential-x"),
            "get",
            b"",
            Duration::from_secs(1),
        ));
        assert!(matches!(failure, Failure::Spawn(_)), "{failure:?}");
    }
}
