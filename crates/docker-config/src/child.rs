//! Running a program as a bounded child: no shell, its own process group, input on
//! stdin, a deadline after which the whole group is killed, and capped output.
//!
//! A descendant can leave the group (`setsid`), and so survive a kill of the group. Each
//! child is started with a variable of its own, [`RUN_VARIABLE`], which its descendants
//! inherit; on a timeout every process still below the child through `/proc`'s parent
//! links, or still carrying that variable wherever it was reparented, is killed too (as
//! Jenkins' process tree killer finds a build's processes). A pid namespace would need
//! privileges the plugin may not have, and a cgroup a writable hierarchy.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The variable each child is started with, naming its run, so that its descendants can
/// be found wherever they were reparented: `IMAGE_CREDENTIAL_PROVIDER_HELPER_RUN=<pid>-<n>`.
pub const RUN_VARIABLE: &str = "IMAGE_CREDENTIAL_PROVIDER_HELPER_RUN";

/// The runs started by this process so far.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Starts `program arg` in a process group of its own, with piped standard streams. A
/// program that is busy being written (`ETXTBSY`: another process forked while holding it
/// open for writing, as a package manager updating a helper or a test writing one does, if
/// only until that fork's `exec`) is tried again a few times, briefly.
fn spawn(program: &Path, arg: &str, run: &str) -> io::Result<Child> {
    let mut tries = 0;
    loop {
        let spawned = Command::new(program)
            .arg(arg)
            .env(RUN_VARIABLE, run)
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
    let run = format!(
        "{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    );
    let mut child = spawn(program, arg, &run).map_err(Failure::Spawn)?;
    let child = &mut Run {
        child: &mut child,
        run: &run,
    };
    let (Some(mut stdin), Some(stdout), Some(stderr)) = (
        child.child.stdin.take(),
        child.child.stdout.take(),
        child.child.stderr.take(),
    ) else {
        child.kill();
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
                    child.kill();
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
                child.kill();
                return Err(Failure::Timeout);
            }
            Ok(None) => {
                thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(5));
            }
            Err(error) => {
                child.kill();
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

/// A child and the name of its run.
struct Run<'a> {
    child: &'a mut Child,
    run: &'a str,
}

/// How many times the process table is searched for descendants left alive: a descendant
/// may start another while it is being killed.
const KILL_ROUNDS: usize = 10;

impl Run<'_> {
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Kills the child's process group and every other descendant of the child, then
    /// reaps the child.
    fn kill(&mut self) {
        if let Ok(pgid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) has no memory-safety preconditions. The child is not reaped
            // yet, so the group id (its pid) still names its group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        let marker = format!("{RUN_VARIABLE}={}", self.run);
        for _ in 0..KILL_ROUNDS {
            let table = process_table();
            let below = descendants(self.child.id(), &table);
            let marked = table.iter().map(|(pid, _)| *pid).filter(|pid| {
                *pid != self.child.id() && !below.contains(pid) && carries(*pid, &marker)
            });
            let doomed: Vec<u32> = marked.chain(below.iter().copied()).collect();
            if doomed.is_empty() {
                break;
            }
            for pid in doomed {
                if let Ok(pid) = libc::pid_t::try_from(pid) {
                    // SAFETY: as above.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every live process and its parent, from `/proc`: zombies left out, as they hold no
/// resources and cannot be killed.
fn process_table() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold anything, so read after its end.
            let mut fields = stat.rsplit_once(") ")?.1.split(' ');
            let state = fields.next()?;
            let parent = fields.next()?.parse().ok()?;
            (state != "Z").then_some((pid, parent))
        })
        .collect()
}

/// The processes below `root` in `table`, through parent links.
fn descendants(root: u32, table: &[(u32, u32)]) -> Vec<u32> {
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for (pid, _) in table.iter().filter(|(_, p)| *p == parent) {
            if !found.contains(pid) && *pid != root {
                found.push(*pid);
                parents.push(*pid);
            }
        }
    }
    found
}

/// Whether process `pid`'s environment holds `marker` (`NAME=value`); a process whose
/// environment cannot be read (another user's) does not.
fn carries(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
        environ
            .split(|b| *b == 0)
            .any(|entry| entry == marker.as_bytes())
    })
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
        // The grandchild was killed with the group: it no longer runs.
        assert_ends(&pid_file);
    }

    /// Waits up to 5 s for the process whose pid is in `pid_file` to stop running.
    fn assert_ends(pid_file: &Path) {
        let pid: i32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = state
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'));
            if !running {
                break;
            }
            assert!(Instant::now() < deadline, "descendant {pid} still runs");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_descendant_that_leaves_the_session_is_killed_too() {
        let dir = tempfile::tempdir().unwrap();
        // Below a child that still runs.
        let pid_file = dir.path().join("below");
        let program = script(
            dir.path(),
            &format!(
                "setsid sh -c 'echo $$ > {}; exec sleep 300' & wait",
                pid_file.display()
            ),
        );
        let ended = failure(run(&program, "get", b"", Duration::from_millis(500)));
        assert!(matches!(ended, Failure::Timeout), "{ended:?}");
        assert_ends(&pid_file);
        // Orphaned: its parent, the child, has exited, and it holds the child's stdout.
        let pid_file = dir.path().join("orphan");
        let program = script(
            dir.path(),
            &format!(
                "setsid -f sh -c 'echo $$ > {}; exec sleep 300'; sleep 0.1; exit 0",
                pid_file.display()
            ),
        );
        let ended = failure(run(&program, "get", b"", Duration::from_millis(800)));
        assert!(matches!(ended, Failure::Timeout), "{ended:?}");
        assert_ends(&pid_file);
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
