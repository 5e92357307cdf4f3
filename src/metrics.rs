//! Node metrics for node_exporter's textfile collector (`--metrics-dir DIR`,
//! `$IMAGE_CREDENTIAL_PROVIDER_METRICS_DIR`, or the rules file's `metrics.dir`).
//!
//! Each plugin process lives for one answer, so the counts are kept across processes in
//! a small state file, `metrics-state.json`, in the token cache directory (in `DIR` when
//! caching is off), rewritten in place under an exclusive lock on itself; then
//! `DIR/image_credential_provider.prom` is rendered in the Prometheus text format and
//! replaced atomically (written to a temporary file node_exporter does not read, renamed).
//! The counts survive every process's end, not necessarily a power loss (neither file is
//! synced, to keep the answer fast): a lost or corrupt state file starts from zero, a
//! counter reset as Prometheus' `rate()` expects them.
//!
//! `DIR` must exist and pass the token cache directory's trust rule (owned by the running
//! user, writable by no one else); the `.prom` file is 0644 so node_exporter can read it.
//! Every label takes a bounded set of values: the backends built in, the outcomes, the
//! token cache uses and the error kinds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use icp_core::Environment;

use crate::record::Record;

/// The environment variable that names the metrics directory (for drop-in modes, which
/// take no such flag).
pub const DIR_VARIABLE: &str = "IMAGE_CREDENTIAL_PROVIDER_METRICS_DIR";
/// The file rendered in the metrics directory.
pub const FILE_NAME: &str = "image_credential_provider.prom";
/// The state file, in the token cache directory or the metrics directory.
const STATE_NAME: &str = "metrics-state.json";
/// Largest state file read; a larger one is corrupt.
const MAX_STATE_SIZE: u64 = 256 * 1024;
/// Version of the state format; another one starts from zero.
const FORMAT: u32 = 1;
/// The longest wait for the state's lock; past it this answer is not counted.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// The upper bounds of the upstream duration histogram's buckets, in seconds: from a
/// fast metadata answer to the longest a backend's fetch may take.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0];
/// The metrics' common prefix.
const PREFIX: &str = "image_credential_provider";

/// The `metrics` section of a rules file.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSettings {
    /// The textfile collector's directory; relative to the rules file.
    pub dir: Option<PathBuf>,
}

/// The metrics directory in force, if any: `flag` (`--metrics-dir`), else the
/// environment's [`DIR_VARIABLE`], else the rules file's `metrics.dir`.
pub fn dir(settings: &MetricsSettings, flag: Option<&Path>, env: &Environment) -> Option<PathBuf> {
    let from_env = env
        .get_os(DIR_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    flag.map(Path::to_owned)
        .or(from_env)
        .or_else(|| settings.dir.clone())
}

/// The metrics: rendered into `dir`, their state kept in `state_dir`.
#[derive(Debug)]
pub struct Metrics {
    dir: PathBuf,
    state_dir: PathBuf,
}

/// The counts, as kept in the state file.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct State {
    format: u32,
    /// Answers by `backend outcome cache`.
    requests: BTreeMap<String, u64>,
    /// Failures (a stale answer's failed refresh included) by `backend kind`.
    errors: BTreeMap<String, u64>,
    /// Upstream fetches by `backend outcome`.
    upstream: BTreeMap<String, Histogram>,
}

/// A histogram of durations in seconds over [`BUCKETS`].
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Histogram {
    /// Counts per bucket, not cumulative; one more than [`BUCKETS`] for `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Metrics {
    /// Metrics rendered into `dir`, their state kept in `state_dir`.
    pub fn new(dir: &Path, state_dir: &Path) -> Metrics {
        Metrics {
            dir: dir.to_owned(),
            state_dir: state_dir.to_owned(),
        }
    }

    /// The directory the metrics are rendered into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counts `record` and renders the metrics file anew.
    pub fn add(&self, record: &Record) -> io::Result<()> {
        if !self.dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the metrics directory does not exist",
            ));
        }
        crate::cache::prepare_dir(&self.dir)?;
        crate::cache::prepare_dir(&self.state_dir)?;
        let state_path = self.state_dir.join(STATE_NAME);
        let file = open_state(&state_path)?;
        lock(&file)?;
        let mut state = read_state(&file).unwrap_or_else(|error| {
            tracing::info!(path = %state_path.display(), %error, "metrics state unreadable; counting from zero");
            State::default()
        });
        state.count(record);
        let json = serde_json::to_vec(&state).expect("the state always serialises");
        file.write_all_at(&json, 0)?;
        file.set_len(json.len() as u64)?;
        replace(&self.dir.join(FILE_NAME), state.render().as_bytes(), 0o644)
    }
}

impl State {
    /// Adds one answer.
    fn count(&mut self, record: &Record) {
        self.format = FORMAT;
        let backend = record.backend_label();
        let key = format!(
            "{backend} {} {}",
            record.outcome.as_str(),
            record.cache.as_str()
        );
        *self.requests.entry(key).or_default() += 1;
        if let Some(problem) = record.problem {
            *self
                .errors
                .entry(format!("{backend} {}", problem.kind))
                .or_default() += 1;
        }
        if let Some(took) = record.upstream {
            let outcome = if record.upstream_failed {
                "error"
            } else {
                "success"
            };
            let histogram = self
                .upstream
                .entry(format!("{backend} {outcome}"))
                .or_default();
            histogram.buckets.resize(BUCKETS.len() + 1, 0);
            let seconds = took.as_secs_f64();
            let bucket = BUCKETS
                .iter()
                .position(|bound| seconds <= *bound)
                .unwrap_or(BUCKETS.len());
            histogram.buckets[bucket] += 1;
            histogram.sum += seconds;
            histogram.count += 1;
        }
    }

    /// The Prometheus text format of the counts.
    fn render(&self) -> String {
        let mut out = String::new();
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {PREFIX}_{name} {help}");
            let _ = writeln!(out, "# TYPE {PREFIX}_{name} {kind}");
        };
        header(
            &mut out,
            "requests_total",
            "counter",
            "Requests answered, by backend, outcome (served, empty, error) and token cache use (hit, miss, stale, off, none).",
        );
        for (key, count) in &self.requests {
            if let Some([backend, outcome, cache]) = labels::<3>(key) {
                let _ = writeln!(
                    out,
                    "{PREFIX}_requests_total{{backend=\"{backend}\",outcome=\"{outcome}\",cache=\"{cache}\"}} {count}"
                );
            }
        }
        header(
            &mut out,
            "errors_total",
            "counter",
            "Failed answers and failed refreshes behind stale answers, by backend and error kind.",
        );
        for (key, count) in &self.errors {
            if let Some([backend, kind]) = labels::<2>(key) {
                let _ = writeln!(
                    out,
                    "{PREFIX}_errors_total{{backend=\"{backend}\",kind=\"{kind}\"}} {count}"
                );
            }
        }
        header(
            &mut out,
            "upstream_duration_seconds",
            "histogram",
            "Time of upstream token fetches, by backend and outcome (success, error).",
        );
        for (key, histogram) in &self.upstream {
            let Some([backend, outcome]) = labels::<2>(key) else {
                continue;
            };
            let name = format!("{PREFIX}_upstream_duration_seconds");
            let labels = format!("backend=\"{backend}\",outcome=\"{outcome}\"");
            let mut cumulative = 0;
            for (index, bound) in BUCKETS.iter().enumerate() {
                cumulative += histogram.buckets.get(index).copied().unwrap_or(0);
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", histogram.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {}", histogram.count);
        }
        out
    }
}

/// The `N` label values of a state key, when it has that many and each is a plain name
/// (lowercase letters, digits and `-`), as every value this module writes is; `None` for
/// anything else in a state file, which is left out rather than rendered.
fn labels<const N: usize>(key: &str) -> Option<[&str; N]> {
    let parts: Vec<&str> = key.split(' ').collect();
    let plain = |part: &&str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    <[&str; N]>::try_from(parts)
        .ok()
        .filter(|values| values.iter().all(plain))
}

/// Opens the state file for reading and writing, creating it 0600; only a regular file of
/// this user's, never through a symlink.
fn open_state(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the metrics state is not a regular file of this user's",
        ));
    }
    Ok(file)
}

/// Reads the state from `file`; an empty file (a new one) is an empty state.
fn read_state(file: &File) -> io::Result<State> {
    let bytes = icp_core::io::read_capped(file, MAX_STATE_SIZE)?;
    if bytes.is_empty() {
        return Ok(State::default());
    }
    let state: State = serde_json::from_slice(&bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "corrupt state"))?;
    if state.format != FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "another state format",
        ));
    }
    Ok(state)
}

/// Takes the exclusive lock on `file`, waiting at most [`LOCK_WAIT`].
fn lock(file: &File) -> io::Result<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "another process held the metrics lock too long",
                ));
            }
            Err(fs::TryLockError::Error(error)) => return Err(error),
        }
    }
}

/// Replaces `target` with `content` atomically: a temporary file beside it (a dot name
/// node_exporter does not read, created anew: a stale one of this process id is removed
/// first), renamed over it. Not synced.
fn replace(target: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("metrics");
    let temporary = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temporary);
    icp_core::io::replace_atomically(target, &temporary, content, mode)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CacheUse, Outcome, Problem};
    use std::time::SystemTime;

    fn record(cache: CacheUse, upstream: Option<u64>) -> Record {
        let mut record = Record::new(SystemTime::now(), Some("r.example/app"));
        record.backend = Some("ecr".into());
        record.cache = cache;
        record.outcome = Outcome::Served;
        record.upstream = upstream.map(Duration::from_millis);
        record
    }

    #[test]
    fn counts_and_renders_across_instances() {
        let root = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(root.path(), root.path());
        metrics.add(&record(CacheUse::Miss, Some(70))).unwrap();
        metrics.add(&record(CacheUse::Hit, None)).unwrap();
        let mut failed = record(CacheUse::Stale, Some(40_000));
        failed.upstream_failed = true;
        failed.problem = Some(Problem {
            kind: "timeout",
            transient: true,
        });
        Metrics::new(root.path(), root.path()).add(&failed).unwrap();
        let text = fs::read_to_string(root.path().join(FILE_NAME)).unwrap();
        for line in [
            "image_credential_provider_requests_total{backend=\"ecr\",outcome=\"served\",cache=\"hit\"} 1",
            "image_credential_provider_requests_total{backend=\"ecr\",outcome=\"served\",cache=\"stale\"} 1",
            "image_credential_provider_errors_total{backend=\"ecr\",kind=\"timeout\"} 1",
            "image_credential_provider_upstream_duration_seconds_bucket{backend=\"ecr\",outcome=\"success\",le=\"0.05\"} 0",
            "image_credential_provider_upstream_duration_seconds_bucket{backend=\"ecr\",outcome=\"success\",le=\"0.1\"} 1",
            "image_credential_provider_upstream_duration_seconds_bucket{backend=\"ecr\",outcome=\"error\",le=\"30\"} 0",
            "image_credential_provider_upstream_duration_seconds_bucket{backend=\"ecr\",outcome=\"error\",le=\"+Inf\"} 1",
            "image_credential_provider_upstream_duration_seconds_count{backend=\"ecr\",outcome=\"error\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let mode = fs::metadata(root.path().join(FILE_NAME)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn a_corrupt_or_hostile_state_starts_from_zero_and_renders_nothing_foreign() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join(STATE_NAME);
        fs::write(&state, b"\xffgarbage").unwrap();
        let metrics = Metrics::new(root.path(), root.path());
        metrics.add(&record(CacheUse::Hit, None)).unwrap();
        let text = fs::read_to_string(root.path().join(FILE_NAME)).unwrap();
        assert!(text.contains("cache=\"hit\"} 1\n"), "{text}");
        let forged = r#"{"format":1,"requests":{"x\"} 1\nevil{a=\"b served hit":5},"errors":{},"upstream":{}}"#;
        fs::write(&state, forged).unwrap();
        metrics.add(&record(CacheUse::Hit, None)).unwrap();
        let text = fs::read_to_string(root.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("evil"), "{text}");
    }

    #[test]
    fn a_missing_or_untrusted_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("missing");
        assert!(
            Metrics::new(&missing, root.path())
                .add(&record(CacheUse::Hit, None))
                .is_err()
        );
        assert!(!missing.exists());
        use std::os::unix::fs::PermissionsExt;
        let open = root.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let error = Metrics::new(&open, root.path())
            .add(&record(CacheUse::Hit, None))
            .unwrap_err();
        assert!(error.to_string().contains("writable by others"), "{error}");
        assert!(!open.join(FILE_NAME).exists());
    }
}
