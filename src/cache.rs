//! The token cache on disk that every plugin process shares.
//!
//! The kubelet starts one plugin process per image pull it has no cached answer for,
//! many at once, and forgets its own cache when it restarts. This cache lets them share
//! one fetched token per [`TokenKey`] (backend, identity, scope):
//!
//! - one file per key, `<hash>.json`, served while the token has more than the safety
//!   margin left; the key is stored in the file and checked, so a collision or a foreign
//!   file is a miss, as is anything corrupt, truncated, not owned by this user, readable by
//!   others, reached through a symlink, or claiming an expiry further away than
//!   [`expiry::MAX_LIFETIME`];
//! - single flight: a process that misses takes an exclusive lock on `<hash>.lock`, looks
//!   again, and only then fetches; the others wait on the lock (for at most
//!   [`LOCK_WAIT`], then fetch themselves) and read what the holder wrote. A holder that
//!   dies releases its lock with its file descriptors;
//! - entries are 0600, written atomically (temporary file, rename) and not synced: one a
//!   crash of the machine leaves empty or cut short is a miss.
//!
//! The directory is the plugin's own when it creates it (0700, missing parents 0755 as
//! `mkdir -p` makes them). A directory that already exists is used as it is, and only if
//! it can be trusted: a real directory (not a symlink) that passes [`icp_core::trust`]
//! (it and every directory above it owned by root or the running user, and writable by no
//! one else). A shared sticky directory such as `/tmp` is refused too:
//! other users could plant files under the names of entries and locks, which the plugin
//! could then neither use nor replace. Nothing here ever deletes, empties or changes the
//! mode of a directory or file the plugin did not create: `clear` removes only
//! well-formed entries of this user, their lock files and leftover temporary files.
//!
//! Nothing here is fatal to an answer: a cache that cannot be used is logged at `-v` and
//! the plugin answers uncached; `cache list` and `cache clear` report it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use icp_core::trust::euid;
use icp_core::{Environment, Secret, Token, TokenKey, expiry};
use sha2::{Digest, Sha256};

pub use crate::refresh::SAFETY_MARGIN;
/// The environment variable that names the token cache directory.
pub const DIR_VARIABLE: &str = "IMAGE_CREDENTIAL_PROVIDER_CACHE_DIR";
/// The longest a process waits for another's fetch of the same token before it fetches
/// itself. Backends bound a fetch well below this, so waiting and then fetching still
/// ends inside the kubelet's one-minute limit.
pub const LOCK_WAIT: Duration = Duration::from_secs(20);
/// Largest entry file read.
const MAX_ENTRY_SIZE: u64 = 64 * 1024;
/// Version of the entry format; entries of another version are misses.
const FORMAT: u32 = 1;

/// The `cache` section of a rules file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheSettings {
    /// Whether tokens are cached on disk at all.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The cache directory; relative to the rules file.
    pub dir: Option<PathBuf>,
}

fn enabled() -> bool {
    true
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            dir: None,
        }
    }
}

/// The token cache directory in force, or `None` when caching is off: off with
/// `--no-cache` or the rules file's `cache.enabled: false`; else `flag` (`--cache-dir`),
/// else the environment's [`DIR_VARIABLE`] (for drop-in modes, which take no such flag,
/// and the kubelet's `env:` entries), else the rules file's `cache.dir`, else
/// [`default_dir`].
pub fn dir(
    settings: &CacheSettings,
    flag: Option<&Path>,
    no_cache: bool,
    env: &Environment,
) -> Option<PathBuf> {
    if no_cache || !settings.enabled {
        return None;
    }
    let from_env = env
        .get_os(DIR_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    flag.map(Path::to_owned)
        .or(from_env)
        .or_else(|| settings.dir.clone())
        .or_else(|| default_dir(env))
}

/// The default cache directory: `/var/cache/image-credential-provider` for root, else
/// under `$XDG_CACHE_HOME` or `~/.cache`.
fn default_dir(env: &Environment) -> Option<PathBuf> {
    if euid() == 0 {
        return Some(PathBuf::from("/var/cache/image-credential-provider"));
    }
    let base = env
        .get_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env.get_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("image-credential-provider"))
}

/// An open cache directory.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// One entry on disk.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CacheEntry {
    format: u32,
    backend: String,
    identity: String,
    scope: String,
    username: String,
    password: String,
    /// Seconds since the Unix epoch.
    expires_at: u64,
    /// When the token is due for refresh ([`crate::refresh`]), in seconds since the Unix
    /// epoch; entries written without one are due at the safety margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_at: Option<u64>,
}

/// A token served from the cache, and when it is due for refresh.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The token, with more than the safety margin left.
    pub token: Token,
    /// From when a process should fetch a new one; until its expiry less the safety
    /// margin, the token is still served when that fetch fails.
    pub refresh_at: SystemTime,
}

/// What `cache list` shows of an entry: never the token.
#[derive(Debug)]
pub struct Summary {
    /// The file name without `.json`.
    pub key: String,
    /// Backend name.
    pub backend: String,
    /// What the token is good for.
    pub scope: String,
    /// Who the token was fetched as.
    pub identity: String,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// Holds the single-flight lock of one key until dropped.
pub struct Lock {
    _file: File,
}

impl Cache {
    /// Opens the cache at `dir`: creates it 0700 (and missing parents 0755) when it does
    /// not exist, else uses it as it is if it can be trusted (see the module
    /// documentation). The error says why it cannot be used; nothing is changed then.
    pub fn open(dir: &Path) -> io::Result<Cache> {
        prepare_dir(dir)?;
        Ok(Cache {
            dir: dir.to_owned(),
        })
    }

    /// Opens the cache at `dir` only to read it: it must exist and be trusted, and
    /// nothing is created or changed.
    pub fn open_existing(dir: &Path) -> io::Result<Cache> {
        trusted(dir, &fs::symlink_metadata(dir)?)?;
        Ok(Cache {
            dir: dir.to_owned(),
        })
    }

    /// The name of `key`'s entry of `backend`, without `.json`: what `cache list` shows as
    /// the key.
    pub fn file_stem(backend: &str, key: &TokenKey) -> String {
        let mut hash = Sha256::new();
        for part in [backend, &key.identity, &key.scope] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        hash.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached token for `key`, if there is a sound one with more than the safety
    /// margin left.
    pub fn get(&self, backend: &str, key: &TokenKey) -> Option<Cached> {
        self.get_with(backend, key, SAFETY_MARGIN)
    }

    /// The cached token for `key`, if there is a sound one that has not expired, inside
    /// the safety margin or not (its refresh point then past): the token a refresh
    /// replaces, which a stale answer may use when the refresh fails (`crate::stale`). An
    /// entry stays on disk until a fresh token replaces it.
    pub fn get_stale(&self, backend: &str, key: &TokenKey) -> Option<Cached> {
        self.get_with(backend, key, Duration::ZERO)
    }

    /// The cached token for `key`, if there is a sound one with more than `margin` left.
    fn get_with(&self, backend: &str, key: &TokenKey, margin: Duration) -> Option<Cached> {
        let path = self
            .dir
            .join(format!("{}.json", Self::file_stem(backend, key)));
        match read_entry(&path) {
            Ok(entry)
                if entry.backend == backend
                    && entry.identity == key.identity
                    && entry.scope == key.scope =>
            {
                let Some(expires_at) = entry.expiry(SystemTime::now()) else {
                    tracing::info!(path = %icp_core::quote::path(&path), "cache entry ignored: implausible expiry");
                    return None;
                };
                let left = expires_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                if left > margin {
                    tracing::info!(backend, scope = %key.scope, "token cache hit");
                    let last = expires_at - SAFETY_MARGIN;
                    let refresh_at = entry
                        .refresh_at
                        .and_then(|at| UNIX_EPOCH.checked_add(Duration::from_secs(at)))
                        .map_or(last, |at| at.min(last));
                    return Some(Cached {
                        token: Token {
                            username: entry.username,
                            password: Secret::new(entry.password),
                            expires_at: Some(expires_at),
                        },
                        refresh_at,
                    });
                }
                tracing::info!(backend, scope = %key.scope, "cached token is too close to expiry");
            }
            Ok(_) => {
                tracing::info!(path = %icp_core::quote::path(&path), "cache entry belongs to another key; ignored")
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(backend, scope = %key.scope, "token cache miss")
            }
            Err(error) => {
                tracing::info!(path = %icp_core::quote::path(&path), %error, "cache entry ignored")
            }
        }
        None
    }

    /// Takes the single-flight lock of `key`, waiting at most [`LOCK_WAIT`]. `None` when
    /// the wait ran out or the lock file is unusable: the caller then fetches uncoordinated.
    pub fn lock(&self, backend: &str, key: &TokenKey) -> Option<Lock> {
        self.lock_within(backend, key, LOCK_WAIT)
    }

    fn lock_within(&self, backend: &str, key: &TokenKey, wait: Duration) -> Option<Lock> {
        let path = self
            .dir
            .join(format!("{}.lock", Self::file_stem(backend, key)));
        let file = open_lock_file(&path)
            .map_err(|error| tracing::info!(path = %icp_core::quote::path(&path), %error, "cache lock unusable"))
            .ok()?;
        let failed = |error: io::Error| {
            tracing::info!(path = %icp_core::quote::path(&path), %error, "cache lock failed");
        };
        match file.try_lock() {
            Ok(()) => return Some(Lock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(error)) => {
                failed(error);
                return None;
            }
        }
        match wait_for_lock(&file, wait) {
            Ok(true) => Some(Lock { _file: file }),
            Ok(false) => {
                // Info, not a warning: the fetch goes on and its own outcome is what the
                // one line at default verbosity reports.
                tracing::info!(backend, scope = %key.scope, "another plugin process held the token lock for {}s; fetching without it", wait.as_secs());
                None
            }
            Err(error) => {
                failed(error);
                None
            }
        }
    }

    /// Stores `token` for `key`, just fetched, atomically, with its refresh point
    /// ([`crate::refresh::point`]), unless it would never be served (no expiry, or less
    /// than the safety margin left). Failures are logged, not returned: the answer does
    /// not depend on them.
    pub fn put(&self, backend: &str, key: &TokenKey, token: &Token) {
        let Some(expires_at) = token.expires_at else {
            return;
        };
        if expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            <= SAFETY_MARGIN
        {
            tracing::info!(backend, scope = %key.scope, "token expires within the safety margin; not cached");
            return;
        }
        let entry = CacheEntry {
            format: FORMAT,
            backend: backend.to_owned(),
            identity: key.identity.clone(),
            scope: key.scope.clone(),
            username: token.username.clone(),
            password: token.password.expose().to_owned(),
            expires_at: expires_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            refresh_at: crate::refresh::point(backend, key, token)
                .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                .map(|at| at.as_secs()),
        };
        let stem = Self::file_stem(backend, key);
        let json = serde_json::to_vec(&entry).expect("an entry always serialises");
        if let Err(error) = write_entry(&self.dir, &stem, &json) {
            tracing::info!(dir = %icp_core::quote::path(&self.dir), %error, "could not store the token in the cache");
        }
    }

    /// Every sound entry, for `cache list`.
    pub fn list(&self) -> io::Result<Vec<Summary>> {
        let mut summaries = Vec::new();
        let now = SystemTime::now();
        for item in fs::read_dir(&self.dir)? {
            let path = item?.path();
            let Some(stem) = entry_stem(&path, ".json") else {
                continue;
            };
            if let Ok(entry) = read_entry(&path)
                && let Some(expires_at) = entry.expiry(now)
            {
                summaries.push(Summary {
                    key: stem.to_owned(),
                    backend: entry.backend,
                    scope: entry.scope,
                    identity: entry.identity,
                    expires_at,
                });
            }
        }
        summaries
            .sort_by(|a, b| (&a.backend, &a.scope, &a.key).cmp(&(&b.backend, &b.scope, &b.key)));
        Ok(summaries)
    }

    /// Removes every well-formed entry of this user (named and shaped as [`Cache::put`]
    /// writes them, owned by this user, in this entry format), with its lock file; lock
    /// files left without an entry and leftover temporary files of this cache go too.
    /// Nothing else in the directory is touched. A process that still holds a removed
    /// lock keeps it on the removed file, so at worst two processes fetch at once.
    /// Returns how many entries were removed.
    pub fn clear(&self) -> io::Result<usize> {
        let mut removed = 0;
        for item in fs::read_dir(&self.dir)? {
            let path = item?.path();
            if let Some(stem) = entry_stem(&path, ".json") {
                if read_entry(&path).is_ok() {
                    remove_if_present(&path)?;
                    let lock = self.dir.join(format!("{stem}.lock"));
                    if is_own_empty_file(&lock) {
                        remove_if_present(&lock)?;
                    }
                    removed += 1;
                }
            } else if let Some(stem) = entry_stem(&path, ".lock") {
                let entry = self.dir.join(format!("{stem}.json"));
                if !entry.exists() && is_own_empty_file(&path) {
                    remove_if_present(&path)?;
                }
            } else if is_temporary_name(&path) && is_own_file(&path) {
                remove_if_present(&path)?;
            }
        }
        Ok(removed)
    }
}

impl CacheEntry {
    /// When the entry's token expires; `None` when that is no time a clock holds, or
    /// further away than any token is taken to live: a corrupt entry, never an answer.
    fn expiry(&self, now: SystemTime) -> Option<SystemTime> {
        let expires_at = UNIX_EPOCH.checked_add(Duration::from_secs(self.expires_at))?;
        let latest = now.checked_add(expiry::MAX_LIFETIME)?;
        (expires_at <= latest).then_some(expires_at)
    }
}

/// The hash in `path`'s file name when it is `<hash><suffix>` as this cache names files:
/// 32 lowercase hex digits.
fn entry_stem<'a>(path: &'a Path, suffix: &str) -> Option<&'a str> {
    path.file_name()?
        .to_str()?
        .strip_suffix(suffix)
        .filter(|stem| is_stem(stem))
}

fn is_stem(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `path` is named as [`write_entry`] names its temporary files:
/// `.tmp-<hash>-<pid>-<nanos>`.
fn is_temporary_name(path: &Path) -> bool {
    let Some(rest) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(".tmp-"))
    else {
        return false;
    };
    let mut parts = rest.split('-');
    let digits = |part: Option<&str>| {
        part.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    parts.next().is_some_and(is_stem)
        && digits(parts.next())
        && digits(parts.next())
        && parts.next().is_none()
}

/// Whether `path` is a regular file (not a symlink) of this user's.
fn is_own_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file() && meta.uid() == euid())
}

/// Whether `path` is an empty regular file of this user's, as lock files are.
fn is_own_empty_file(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.uid() == euid() && meta.len() == 0)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Creates `dir` (0700, missing parents 0755) or checks that the one there can be trusted:
/// the rule for every directory the plugin writes into (the audit log's and the metrics'
/// too).
pub(crate) fn prepare_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) => return trusted(dir, &meta),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        // Another process may have created it first; then it must pass the same checks.
        Err(error) if error.kind() != io::ErrorKind::AlreadyExists => Err(error),
        _ => trusted(dir, &fs::symlink_metadata(dir)?),
    }
}

/// Whether an existing cache directory can be trusted: a directory, not a symlink, that
/// passes [`icp_core::trust::check`] (it and every directory above it owned by root or the
/// running user and writable by no one else). The error says which it is not.
fn trusted(dir: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let refuse = |why: &str| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    if meta.file_type().is_symlink() {
        return refuse("it is a symbolic link; name the directory itself");
    }
    if !meta.is_dir() {
        return refuse("it is not a directory");
    }
    icp_core::trust::check(dir).map(drop)
}

/// Reads an entry without following a symlink, and only if it is a regular file of this
/// user's that no one else can read.
fn read_entry(path: &Path) -> io::Result<CacheEntry> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let refuse = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidData, why.to_owned()));
    if !meta.is_file() {
        return refuse("not a regular file");
    }
    if meta.uid() != euid() {
        return refuse("owned by another user");
    }
    if meta.mode() & 0o077 != 0 {
        return refuse("readable or writable by others");
    }
    let bytes = icp_core::io::read_capped(file, MAX_ENTRY_SIZE)?;
    let entry: CacheEntry =
        serde_json::from_slice(&bytes).or_else(|_| refuse("corrupt or truncated"))?;
    if entry.format != FORMAT {
        return refuse("another entry format");
    }
    Ok(entry)
}

/// Waits for the exclusive lock of `file` (a blocking `flock`, woken the moment the holder
/// releases it), at most `wait`: `Ok(true)` once held. The wait runs on a thread with its
/// own descriptor of the same open file, and the lock belongs to that open file, so it is
/// `file`'s too. A wait that runs out leaves the thread blocked: when it gets the lock
/// after all, nobody takes it, and the lock goes with the thread's descriptor and
/// `file`'s, both dropped by then.
fn wait_for_lock(file: &File, wait: Duration) -> io::Result<bool> {
    let waiter = file.try_clone()?;
    let (held, taken) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("cache-lock".into())
        .spawn(move || {
            // The lock belongs to the open file, which `file` keeps open: this descriptor
            // is closed before the caller hears, so that dropping the caller's `Lock`
            // releases the lock at once.
            let locked = waiter.lock();
            drop(waiter);
            let _ = held.send(locked);
        })?;
    match taken.recv_timeout(wait) {
        Ok(result) => result.map(|()| true),
        Err(_) => Ok(false),
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    // A symlink or anything else in the way makes the open fail; it is left alone, and
    // the caller fetches without the lock.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "lock file is not a regular file of this user's",
        ));
    }
    Ok(file)
}

/// Writes the entry `<stem>.json` atomically, through a temporary file of the name
/// [`is_temporary_name`] recognises. Not synced to disk: an entry is worth nothing after a
/// crash of the machine (one left empty or cut short reads as a miss, and a miss costs one
/// fetch), while a sync cost about 1 ms, and up to 9 ms, in every fetching process.
fn write_entry(dir: &Path, stem: &str, content: &[u8]) -> io::Result<()> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let temporary = dir.join(format!(".tmp-{stem}-{}-{nanos}", std::process::id()));
    icp_core::io::replace_atomically(
        &dir.join(format!("{stem}.json")),
        &temporary,
        content,
        0o600,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key(scope: &str) -> TokenKey {
        TokenKey {
            identity: "role/a".into(),
            scope: scope.into(),
        }
    }

    fn token(expires_in: u64) -> Token {
        Token {
            username: "AWS".into(),
            password: Secret::new("tok"),
            expires_at: Some(SystemTime::now() + Duration::from_secs(expires_in)),
        }
    }

    fn entry_path(cache: &Cache, scope: &str) -> PathBuf {
        cache
            .dir
            .join(format!("{}.json", Cache::file_stem("ecr", &key(scope))))
    }

    #[test]
    fn round_trips_with_private_modes() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(&root.path().join("c")).unwrap();
        assert_eq!(fs::metadata(&cache.dir).unwrap().mode() & 0o777, 0o700);
        assert!(cache.get("ecr", &key("1-us-east-1")).is_none());
        cache.put("ecr", &key("1-us-east-1"), &token(3600));
        assert_eq!(
            fs::metadata(entry_path(&cache, "1-us-east-1"))
                .unwrap()
                .mode()
                & 0o777,
            0o600
        );
        let hit = cache.get("ecr", &key("1-us-east-1")).unwrap();
        assert_eq!(
            (hit.token.username.as_str(), hit.token.password.expose()),
            ("AWS", "tok")
        );
        assert!(cache.get("ecr", &key("1-us-west-2")).is_none());
        assert!(
            cache
                .get(
                    "ecr",
                    &TokenKey {
                        identity: "role/b".into(),
                        scope: "1-us-east-1".into()
                    }
                )
                .is_none()
        );
        assert!(cache.get("acr", &key("1-us-east-1")).is_none());
        assert_eq!(cache.list().unwrap().len(), 1);
        assert_eq!(cache.clear().unwrap(), 1);
        assert!(cache.get("ecr", &key("1-us-east-1")).is_none());
    }

    #[test]
    fn unsound_entries_are_misses() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(&root.path().join("c")).unwrap();
        let path = entry_path(&cache, "s");
        let good = || cache.put("ecr", &key("s"), &token(3600));

        good();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.get("ecr", &key("s")).is_none(), "world-readable");

        good();
        let content = fs::read(&path).unwrap();
        fs::write(&path, &content[..content.len() / 2]).unwrap();
        assert!(cache.get("ecr", &key("s")).is_none(), "truncated");
        fs::write(&path, b"\xff\x00garbage").unwrap();
        assert!(cache.get("ecr", &key("s")).is_none(), "corrupt");

        good();
        let target = root.path().join("elsewhere.json");
        fs::rename(&path, &target).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(cache.get("ecr", &key("s")).is_none(), "symlink");
        good();
        assert!(
            !fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink(),
            "the symlink is replaced"
        );

        let mut entry: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        let soon = SystemTime::now() + Duration::from_secs(60);
        entry["expiresAt"] = soon.duration_since(UNIX_EPOCH).unwrap().as_secs().into();
        fs::write(&path, entry.to_string()).unwrap();
        assert!(
            cache.get("ecr", &key("s")).is_none(),
            "inside the safety margin"
        );

        fs::remove_file(&path).unwrap();
        cache.put("ecr", &key("s"), &token(60));
        assert!(
            !path.exists(),
            "a token that would never be served is not stored"
        );
    }

    #[test]
    fn an_untrusted_directory_is_refused_and_left_as_it_is() {
        let root = tempfile::tempdir().unwrap();
        let open_to_all = root.path().join("c");
        fs::create_dir(&open_to_all).unwrap();
        for mode in [0o777, 0o1777, 0o775, 0o757] {
            fs::set_permissions(&open_to_all, fs::Permissions::from_mode(mode)).unwrap();
            let error = Cache::open(&open_to_all).unwrap_err();
            assert!(error.to_string().contains("writable by others"), "{error}");
            assert_eq!(fs::metadata(&open_to_all).unwrap().mode() & 0o7777, mode);
        }
        let file = root.path().join("f");
        fs::write(&file, "x").unwrap();
        let error = Cache::open(&file).unwrap_err();
        assert!(error.to_string().contains("not a directory"), "{error}");
        assert_eq!(fs::read(&file).unwrap(), b"x");
        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path(), &link).unwrap();
        let error = Cache::open(&link).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        assert!(Cache::open(Path::new("/proc/self/no-such-cache")).is_err());
    }

    #[test]
    fn a_private_directory_below_one_others_can_write_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let open_to_all = root.path().join("open");
        fs::create_dir(&open_to_all).unwrap();
        fs::set_permissions(&open_to_all, fs::Permissions::from_mode(0o777)).unwrap();
        let error = Cache::open(&open_to_all.join("c")).unwrap_err();
        assert!(
            error.to_string().contains("open\" is writable by others"),
            "{error}"
        );
        assert!(
            Cache::open(&open_to_all.join("c")).is_err(),
            "created, still refused"
        );
        fs::set_permissions(&open_to_all, fs::Permissions::from_mode(0o1777)).unwrap();
        Cache::open(&open_to_all.join("c")).unwrap();
    }

    #[test]
    fn a_new_directory_is_private_and_an_existing_one_keeps_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b/c");
        Cache::open(&nested).unwrap();
        assert_eq!(fs::metadata(&nested).unwrap().mode() & 0o777, 0o700);
        let readable = root.path().join("r");
        fs::create_dir(&readable).unwrap();
        fs::set_permissions(&readable, fs::Permissions::from_mode(0o755)).unwrap();
        Cache::open(&readable).unwrap();
        assert_eq!(fs::metadata(&readable).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn clear_removes_only_its_own_entries_locks_and_temporary_files() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        cache.put("ecr", &key("s"), &token(3600));
        drop(cache.lock("ecr", &key("s")));
        let stem = Cache::file_stem("ecr", &key("s"));
        fs::write(root.path().join(format!(".tmp-{stem}-12-34")), "x").unwrap();
        fs::write(root.path().join(format!("{}.lock", "0".repeat(32))), "").unwrap();
        let keep = [
            "azure.json",
            "config.json",
            ".tmp-notes",
            "0123456789abcdef0123456789abcdef.json",
            "fedcba9876543210fedcba9876543210.lock",
        ];
        for name in keep {
            fs::write(root.path().join(name), "{\"keep\": true}").unwrap();
        }
        assert_eq!(cache.clear().unwrap(), 1);
        let mut left: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = keep.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn a_huge_or_far_expiry_is_a_miss_not_a_crash() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let path = entry_path(&cache, "s");
        let far = SystemTime::now() + expiry::MAX_LIFETIME + Duration::from_secs(3600);
        let far = far.duration_since(UNIX_EPOCH).unwrap().as_secs();
        for expires_at in [u64::MAX, i64::MAX as u64, 1 << 40, far] {
            cache.put("ecr", &key("s"), &token(3600));
            let mut entry: serde_json::Value =
                serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            entry["expiresAt"] = expires_at.into();
            fs::write(&path, entry.to_string()).unwrap();
            assert!(cache.get("ecr", &key("s")).is_none(), "{expires_at}");
            assert!(cache.list().unwrap().is_empty(), "{expires_at}");
        }
    }

    #[test]
    fn a_waiter_gets_the_lock_when_it_is_released_or_gives_up_at_its_bound() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let held = cache.lock("ecr", &key("s")).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        let taken = cache.lock_within("ecr", &key("s"), Duration::from_secs(10));
        assert!(taken.is_some());
        releaser.join().unwrap();
        let path = cache
            .dir
            .join(format!("{}.lock", Cache::file_stem("ecr", &key("s"))));
        let other = File::open(&path).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        drop(taken);
        assert!(other.try_lock().is_ok());
        // Another key, held for good: the waiter gives up at its bound. (Its blocked
        // wait goes on in a thread of its own, which takes and drops the lock once it is
        // free; a key of its own keeps that from racing the checks above.)
        let _held = cache.lock("ecr", &key("t")).unwrap();
        assert!(
            cache
                .lock_within("ecr", &key("t"), Duration::from_millis(100))
                .is_none()
        );
    }

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::open(root.path()).unwrap();
        let held = cache.lock("ecr", &key("s")).unwrap();
        let path = cache
            .dir
            .join(format!("{}.lock", Cache::file_stem("ecr", &key("s"))));
        let other = File::open(&path).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        drop(held);
        assert!(other.try_lock().is_ok());
    }
}
