//! The audit log: one JSON line per answer, appended to a file that concurrent plugin
//! processes share (`--audit-log FILE`, `$IMAGE_CREDENTIAL_PROVIDER_AUDIT_LOG`, or the
//! rules file's `audit.path`).
//!
//! - Each line is written with one `write(2)` on a descriptor opened with `O_APPEND`, so
//!   lines of concurrent processes never interleave; a line is at most a few KiB (every
//!   field is cut at [`MAX_FIELD_CHARS`]).
//! - Bounded: once the file would pass [`MAX_SIZE`], it is renamed to `FILE.1` (replacing
//!   the previous one) under an exclusive lock on `FILE.lock`, and a new file started: at
//!   most twice [`MAX_SIZE`] on disk, and lines of processes that opened the file just
//!   before the rotation end up in `FILE.1`.
//! - The file's directory must pass the token cache directory's trust rule (created 0700
//!   when missing; else a directory owned by the running user that no one else can write
//!   to), and the file must be a regular file of this user's that no one else can write
//!   to (it is created 0600); symlinks are never followed.
//! - Never a token, password or service account token: see [`crate::record`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use icp_core::Environment;

use crate::record::Record;

/// The environment variable that names the audit log (for drop-in modes, which take no
/// such flag).
pub const PATH_VARIABLE: &str = "IMAGE_CREDENTIAL_PROVIDER_AUDIT_LOG";
/// The size past which the audit log is rotated to `FILE.1`.
pub const MAX_SIZE: u64 = 10 * 1024 * 1024;
/// The longest value of a field, in characters.
const MAX_FIELD_CHARS: usize = 512;
/// The longest wait for the rotation lock; past it the line is written without rotating.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The `audit` section of a rules file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditSettings {
    /// The audit log file; relative to the rules file.
    pub path: Option<PathBuf>,
}

/// The audit log in force, if any: `flag` (`--audit-log`), else the environment's
/// [`PATH_VARIABLE`], else the rules file's `audit.path`.
pub fn path(settings: &AuditSettings, flag: Option<&Path>, env: &Environment) -> Option<PathBuf> {
    let from_env = env
        .get_os(PATH_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    flag.map(Path::to_owned)
        .or(from_env)
        .or_else(|| settings.path.clone())
}

/// An audit log file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// The audit log at `path`; nothing is opened until a line is appended.
    pub fn new(path: &Path) -> AuditLog {
        AuditLog {
            path: path.to_owned(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the line of `record`, rotating the file first when it would pass
    /// [`MAX_SIZE`].
    pub fn append(&self, record: &Record) -> io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        crate::cache::prepare_dir(dir)
            .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", dir.display())))?;
        let mut line = line(record);
        line.push('\n');
        let mut file = open_log(&self.path)?;
        let _lock;
        if file.metadata()?.len() + line.len() as u64 > MAX_SIZE {
            _lock = lock(&lock_path(&self.path));
            file = open_log(&self.path)?;
            if file.metadata()?.len() + line.len() as u64 > MAX_SIZE {
                let mut rotated = self.path.clone().into_os_string();
                rotated.push(".1");
                std::fs::rename(&self.path, &rotated)?;
                file = open_log(&self.path)?;
            }
        }
        let written = file.write(line.as_bytes())?;
        if written != line.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("only {written} of {} bytes written", line.len()),
            ));
        }
        Ok(())
    }
}

/// `path` with `.lock` appended.
fn lock_path(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// Opens the log for appending, creating it 0600; only a regular file of this user's that
/// no one else can write to, never through a symlink.
fn open_log(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let refuse = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            why.to_owned(),
        ))
    };
    if !meta.is_file() {
        return refuse("not a regular file");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } {
        return refuse("owned by another user");
    }
    if meta.mode() & 0o022 != 0 {
        return refuse("writable by others");
    }
    Ok(file)
}

/// Takes the exclusive lock on `path`, waiting at most [`LOCK_WAIT`]; `None` when that
/// fails (the line is then written without rotating).
fn lock(path: &Path) -> Option<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Some(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(_) => return None,
        }
    }
}

/// The JSON line of `record`, without its newline.
fn line(record: &Record) -> String {
    let cut = |text: &str| icp_core::quote::cut(text, MAX_FIELD_CHARS).into_owned();
    serde_json::json!({
        "time": rfc3339(record.time),
        "pid": std::process::id(),
        "image": record.image.as_deref().map(cut),
        "rule": record.rule,
        "backend": record.backend,
        "identity": record.identity.as_deref().map(cut),
        "cache": record.cache.as_str(),
        "upstreamSeconds": record.upstream.map(|d| d.as_secs_f64()),
        "outcome": record.outcome.as_str(),
        "cacheDuration": record.cache_duration.map(crate::duration::format),
        "error": record.problem.map(|p| p.kind),
        "transient": record.problem.map(|p| p.transient),
    })
    .to_string()
}

/// `time` in RFC 3339, UTC, to the millisecond: `2026-12-07T09:30:00.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The date `days` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CacheUse, Outcome, Problem};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |secs: u64, millis: u64| {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.007Z");
        assert_eq!(at(1_796_635_845, 123), "2026-12-07T09:30:45.123Z");
        assert_eq!(at(4_107_542_399, 999), "2100-02-28T23:59:59.999Z");
    }

    fn record() -> Record {
        let mut record = Record::new(SystemTime::now(), Some("r.example/app"));
        record.rule = Some(2);
        record.backend = Some("ecr".into());
        record.identity = Some("sa=team/app/uid-1;eks.amazonaws.com/ecr-role-arn=arn".into());
        record.cache = CacheUse::Stale;
        record.outcome = Outcome::Served;
        record.problem = Some(Problem {
            kind: "timeout",
            transient: true,
        });
        record
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let line = line(&record());
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["rule"], 2);
        assert_eq!(value["cache"], "stale");
        assert_eq!(value["outcome"], "served");
        assert_eq!(value["error"], "timeout");
        assert_eq!(value["transient"], true);
        assert_eq!(value["upstreamSeconds"], serde_json::Value::Null);
    }

    #[test]
    fn rotates_once_past_the_cap() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("logs/audit.log");
        let log = AuditLog::new(&path);
        log.append(&record()).unwrap();
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let file = File::options().write(true).open(&path).unwrap();
        file.set_len(MAX_SIZE - 10).unwrap();
        log.append(&record()).unwrap();
        let rotated = root.path().join("logs/audit.log.1");
        assert_eq!(std::fs::metadata(&rotated).unwrap().len(), MAX_SIZE - 10);
        let fresh = std::fs::read_to_string(&path).unwrap();
        assert_eq!(fresh.lines().count(), 1);
    }

    #[test]
    fn an_untrusted_directory_or_file_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = AuditLog::new(&open.join("audit.log"))
            .append(&record())
            .unwrap_err();
        assert!(error.to_string().contains("writable by others"), "{error}");
        assert!(!open.join("audit.log").exists());
        let target = root.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let link = root.path().join("audit.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(AuditLog::new(&link).append(&record()).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"");
    }
}
