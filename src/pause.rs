//! The node-wide pause of a throttled API: when a cloud answers a fetch with throttling,
//! every plugin process of the node leaves that API alone for a while.
//!
//! An API is a backend and a token scope (ECR in one account and region, one ACR
//! registry, Google's token services): what a cloud's quota counts. Its pause is a small
//! file under the cache directory, `<hash>.pause` (0600, written atomically), holding when
//! the pause ends and how many throttled fetches in a row led to it. Its length is what
//! the cloud's `Retry-After` asked, else a jittered exponential backoff ([`backoff`]),
//! never more than [`MAX_PAUSE`]. A fetch that succeeds removes the file.
//!
//! During a pause no process calls the API: a token still valid in the cache is answered
//! (with a `cacheDuration` that ends with the pause), and a pull with nothing cached fails
//! with one line saying when the API may be tried again ([`Paused`]). Like the cache,
//! a pause file that is not sound (not this user's, not a regular file, corrupt, or
//! ending further away than [`MAX_PAUSE`]) is ignored.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use icp_core::{BackendError, ErrorKind};
use sha2::{Digest, Sha256};

use crate::backends::Failure;
use crate::cache::Cache;
use icp_core::trust::euid;

/// The pause after a first throttled fetch when the cloud does not say how long to wait:
/// doubled for each throttled fetch in a row, then jittered ([`backoff`]).
pub const BACKOFF: Duration = Duration::from_secs(30);
/// The longest pause, whatever `Retry-After` asks: the API is tried again after it.
pub const MAX_PAUSE: Duration = Duration::from_secs(15 * 60);
/// The shortest pause, for a `Retry-After` of zero.
const MIN_PAUSE: Duration = Duration::from_secs(1);
/// Largest pause file read.
const MAX_FILE_SIZE: u64 = 4 * 1024;
/// Version of the file format; files of another version are ignored.
const FORMAT: u32 = 1;

/// The pause after the `strikes`th throttled fetch in a row (the first is 1) when the
/// cloud does not say: [`BACKOFF`] doubled for each strike after the first, at most
/// [`MAX_PAUSE`], of which the second half is scaled by `jitter` (in [0, 1)), so that the
/// nodes of a fleet throttled together come back at different times.
pub fn backoff(strikes: u32, jitter: f64) -> Duration {
    let doubled = BACKOFF.saturating_mul(1 << strikes.saturating_sub(1).min(16));
    let full = doubled.min(MAX_PAUSE);
    full / 2 + (full / 2).mul_f64(jitter.clamp(0.0, 1.0))
}

/// How long to pause after the `strikes`th throttled fetch in a row: what the cloud asked
/// (`retry_after`), else [`backoff`]; between a second and [`MAX_PAUSE`].
pub fn length(retry_after: Option<Duration>, strikes: u32, jitter: f64) -> Duration {
    retry_after
        .unwrap_or_else(|| backoff(strikes, jitter))
        .clamp(MIN_PAUSE, MAX_PAUSE)
}

/// The pause file of one API.
pub struct Pause {
    path: PathBuf,
    backend: String,
    scope: String,
}

/// The pause file's content.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Record {
    format: u32,
    backend: String,
    scope: String,
    /// When the pause ends, in milliseconds since the Unix epoch.
    until: u64,
    /// Throttled fetches in a row.
    strikes: u32,
}

impl Pause {
    /// The pause of `backend`'s API for `scope`, in `cache`'s directory.
    pub fn of(cache: &Cache, backend: &str, scope: &str) -> Pause {
        let mut hash = Sha256::new();
        for part in ["pause", backend, scope] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let stem: String = hash.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Pause {
            path: cache.dir().join(format!("{stem}.pause")),
            backend: backend.to_owned(),
            scope: scope.to_owned(),
        }
    }

    /// When the pause in force ends; `None` when there is none.
    pub fn until(&self) -> Option<SystemTime> {
        let now = SystemTime::now();
        let until = self.read().ok()?.until()?;
        (until > now && until <= now + MAX_PAUSE).then_some(until)
    }

    /// Starts a pause after a throttled fetch, as long as `retry_after` asks or else the
    /// backoff of one more strike than the last pause had, and returns when it ends.
    /// A file that cannot be written is logged: this process still reports the pause.
    pub fn begin(&self, retry_after: Option<Duration>) -> SystemTime {
        let strikes = self.read().map_or(0, |record| record.strikes) + 1;
        let until = SystemTime::now() + length(retry_after, strikes, jitter());
        let record = Record {
            format: FORMAT,
            backend: self.backend.clone(),
            scope: self.scope.clone(),
            until: until
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            strikes,
        };
        let json = serde_json::to_vec(&record).expect("a pause always serialises");
        let stem = self
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let temporary = self
            .path
            .with_file_name(format!(".tmp-{stem}-{}-{nanos}", std::process::id()));
        match icp_core::io::write_atomically(&self.path, &temporary, &json, 0o600) {
            Ok(()) => {
                tracing::info!(backend = %self.backend, scope = %self.scope, strikes, pause = %crate::duration::format(until.duration_since(SystemTime::now()).unwrap_or_default()), "throttled: the API is paused for every plugin process of the node")
            }
            Err(error) => {
                tracing::info!(path = %self.path.display(), %error, "could not record the pause")
            }
        }
        until
    }

    /// Ends the pause and its strikes, after a fetch that succeeded.
    pub fn lift(&self) {
        if self.read().is_ok()
            && let Err(error) = std::fs::remove_file(&self.path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::info!(path = %self.path.display(), %error, "could not remove the pause");
        }
    }

    /// The record, if the file is sound and of this API: a regular file of this user's,
    /// not a symlink, in this format.
    fn read(&self) -> io::Result<Record> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&self.path)?;
        let meta = file.metadata()?;
        let refuse = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
        if !meta.is_file() || meta.uid() != euid() {
            return Err(refuse("not a regular file of this user's"));
        }
        let bytes = icp_core::io::read_capped(file, MAX_FILE_SIZE)?;
        let record: Record = serde_json::from_slice(&bytes).map_err(|_| refuse("corrupt"))?;
        if record.format != FORMAT || record.backend != self.backend || record.scope != self.scope {
            return Err(refuse("another format or API"));
        }
        Ok(record)
    }
}

impl Record {
    fn until(&self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_millis(self.until))
    }
}

/// A number in [0, 1) that differs between processes and calls: the jitter of a backoff.
fn jitter() -> f64 {
    let mut hash = Sha256::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    hash.update(now.as_nanos().to_le_bytes());
    hash.update(std::process::id().to_le_bytes());
    hash.update(crate::refresh::node().as_bytes());
    let digest = hash.finalize();
    let bits = u64::from_le_bytes(digest[..8].try_into().expect("eight bytes"));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A pull refused because its API is paused, with the throttled fetch that began the
/// pause when this process made it.
#[derive(Debug)]
pub struct Paused {
    scope: String,
    until: SystemTime,
    cause: Option<Failure>,
}

impl Paused {
    /// The pause of the API for `scope` until `until`, begun by `cause` if this process
    /// was throttled.
    pub fn new(scope: &str, until: SystemTime, cause: Option<Failure>) -> Paused {
        Paused {
            scope: scope.to_owned(),
            until,
            cause,
        }
    }
}

impl fmt::Display for Paused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let left = self
            .until
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let secs = self
            .until
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            % 86_400;
        write!(
            f,
            "calls for {} are paused on this node after throttling; the API may be tried again \
             in {} (at {:02}:{:02}:{:02} UTC)",
            self.scope,
            crate::duration::format(left + Duration::from_millis(999)),
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

impl std::error::Error for Paused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_ref().map(|c| c as _)
    }
}

impl BackendError for Paused {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Throttled
    }

    fn retry_after(&self) -> Option<Duration> {
        self.until.duration_since(SystemTime::now()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn backoff_doubles_is_jittered_and_bounded() {
        assert_eq!(backoff(1, 0.0), Duration::from_secs(15));
        assert!(backoff(1, 0.999_999) < BACKOFF);
        assert_eq!(backoff(2, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(3, 0.5), Duration::from_secs(90));
        assert_eq!(backoff(10, 0.0), MAX_PAUSE / 2);
        assert_eq!(backoff(u32::MAX, 1.0), MAX_PAUSE);
        let a = jitter();
        assert!((0.0..1.0).contains(&a));
    }

    #[test]
    fn retry_after_sets_the_length_within_bounds() {
        assert_eq!(
            length(Some(Duration::from_secs(60)), 5, 0.3),
            Duration::from_secs(60)
        );
        assert_eq!(length(Some(Duration::ZERO), 1, 0.0), MIN_PAUSE);
        assert_eq!(length(Some(Duration::from_secs(86_400)), 1, 0.0), MAX_PAUSE);
        assert_eq!(length(None, 1, 0.0), backoff(1, 0.0));
    }

    #[test]
    fn a_pause_is_shared_through_its_file_and_lifted_by_a_success() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let pause = Pause::of(&cache, "ecr", "111122223333-us-east-1");
        assert_eq!(pause.until(), None);
        let until = pause.begin(Some(Duration::from_secs(60)));
        let seen = Pause::of(&cache, "ecr", "111122223333-us-east-1")
            .until()
            .unwrap();
        assert!(
            seen.duration_since(until).unwrap_or_else(|e| e.duration()) < Duration::from_millis(2)
        );
        assert_eq!(
            Pause::of(&cache, "ecr", "111122223333-us-west-2").until(),
            None
        );
        assert_eq!(
            Pause::of(&cache, "acr", "111122223333-us-east-1").until(),
            None
        );
        assert_eq!(
            std::fs::metadata(&pause.path).unwrap().mode() & 0o777,
            0o600
        );
        // Strikes add up until a success lifts the pause.
        pause.begin(None);
        assert_eq!(pause.read().unwrap().strikes, 2);
        pause.lift();
        assert!(!pause.path.exists());
        assert_eq!(pause.until(), None);
        pause.begin(None);
        assert_eq!(pause.read().unwrap().strikes, 1);
    }

    #[test]
    fn unsound_pause_files_are_ignored() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let pause = Pause::of(&cache, "ecr", "s");
        pause.begin(Some(Duration::from_secs(60)));
        let mut record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&pause.path).unwrap()).unwrap();
        record["until"] = (u64::MAX / 2).into();
        std::fs::write(&pause.path, record.to_string()).unwrap();
        assert_eq!(pause.until(), None, "ending implausibly far away");
        std::fs::write(&pause.path, b"garbage").unwrap();
        assert_eq!(pause.until(), None, "corrupt");
        pause.begin(Some(Duration::from_secs(60)));
        let target = root.path().join("elsewhere");
        std::fs::rename(&pause.path, &target).unwrap();
        std::os::unix::fs::symlink(&target, &pause.path).unwrap();
        assert_eq!(pause.until(), None, "a symlink");
        std::fs::remove_file(&pause.path).unwrap();
        std::fs::write(&pause.path, std::fs::read(&target).unwrap()).unwrap();
        std::fs::set_permissions(&pause.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            pause.until().is_some(),
            "a pause is no secret: readable is fine"
        );
    }

    #[test]
    fn the_error_says_when_to_try_again() {
        let until = UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 9 * 3600 + 31 * 60 + 5);
        let message = Paused::new("111122223333-us-east-1", until, None).to_string();
        assert!(
            message.starts_with("calls for 111122223333-us-east-1 are paused on this node after throttling; the API may be tried again in 0s (at 09:31:05 UTC)"),
            "{message}"
        );
        let soon = Paused::new("s", SystemTime::now() + Duration::from_secs(45), None);
        assert!(soon.to_string().contains("in 45s"), "{soon}");
        assert_eq!(soon.kind(), ErrorKind::Throttled);
        assert!(soon.retry_after().unwrap() > Duration::from_secs(40));
    }
}
