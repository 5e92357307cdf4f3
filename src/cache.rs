//! The token cache on disk that every plugin process shares.
//!
//! The kubelet starts one plugin process per image pull it has no cached answer for,
//! many at once, and forgets its own cache when it restarts. This cache lets them share
//! one fetched token per [`TokenKey`] (backend, identity, scope):
//!
//! - one file per key, `<hash>.json`, served while the token has more than the safety
//!   margin left; the key is stored in the file and checked, so a collision or a foreign
//!   file is a miss, as is anything corrupt, truncated, not owned by this user, readable by
//!   others, or reached through a symlink;
//! - single flight: a process that misses takes an exclusive lock on `<hash>.lock`, looks
//!   again, and only then fetches; the others wait on the lock (for at most
//!   [`LOCK_WAIT`], then fetch themselves) and read what the holder wrote. A holder that
//!   dies releases its lock with its file descriptors;
//! - the directory is 0700 and entries 0600, written atomically (temporary file, fsync,
//!   rename). A directory that is not a directory of this user's is replaced.
//!
//! Nothing here is fatal: a cache that cannot be used is logged at `-v` and the plugin
//! answers uncached.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use icp_core::{Secret, Token, TokenKey};
use sha2::{Digest, Sha256};

/// What is taken off a token's remaining lifetime before anyone may use it: a cached
/// token is served only while more than this remains, and the `cacheDuration` the
/// kubelet gets is what remains less this, so the kubelet never uses a token in its last
/// minutes.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(5 * 60);
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
pub fn dir(settings: &CacheSettings, flag: Option<&Path>, no_cache: bool) -> Option<PathBuf> {
    if no_cache || !settings.enabled {
        return None;
    }
    let from_env = std::env::var_os(DIR_VARIABLE)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    flag.map(Path::to_owned)
        .or(from_env)
        .or_else(|| settings.dir.clone())
        .or_else(default_dir)
}

/// The default cache directory: `/var/cache/image-credential-provider` for root, else
/// under `$XDG_CACHE_HOME` or `~/.cache`.
fn default_dir() -> Option<PathBuf> {
    if euid() == 0 {
        return Some(PathBuf::from("/var/cache/image-credential-provider"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("image-credential-provider"))
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// An open cache directory.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
}

/// One entry on disk.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    format: u32,
    backend: String,
    identity: String,
    scope: String,
    username: String,
    password: String,
    /// Seconds since the Unix epoch.
    expires_at: u64,
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
    /// Opens the cache at `dir`, creating it 0700, tightening its mode, or replacing what
    /// is there when it is not a directory of this user's. `None` when it cannot be used.
    pub fn open(dir: &Path) -> Option<Cache> {
        match prepare_dir(dir) {
            Ok(()) => Some(Cache {
                dir: dir.to_owned(),
            }),
            Err(error) => {
                tracing::info!(dir = %dir.display(), %error, "token cache unusable; answering uncached");
                None
            }
        }
    }

    fn file_stem(backend: &str, key: &TokenKey) -> String {
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

    /// The cached token for `key`, if there is a sound one with more than the safety
    /// margin left.
    pub fn get(&self, backend: &str, key: &TokenKey) -> Option<Token> {
        let path = self
            .dir
            .join(format!("{}.json", Self::file_stem(backend, key)));
        match read_entry(&path) {
            Ok(entry)
                if entry.backend == backend
                    && entry.identity == key.identity
                    && entry.scope == key.scope =>
            {
                let expires_at = UNIX_EPOCH + Duration::from_secs(entry.expires_at);
                let left = expires_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                if left > SAFETY_MARGIN {
                    tracing::info!(backend, scope = %key.scope, "token cache hit");
                    return Some(Token {
                        username: entry.username,
                        password: Secret::new(entry.password),
                        expires_at: Some(expires_at),
                    });
                }
                tracing::info!(backend, scope = %key.scope, "cached token is too close to expiry");
            }
            Ok(_) => {
                tracing::info!(path = %path.display(), "cache entry belongs to another key; ignored")
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(backend, scope = %key.scope, "token cache miss")
            }
            Err(error) => tracing::info!(path = %path.display(), %error, "cache entry ignored"),
        }
        None
    }

    /// Takes the single-flight lock of `key`, waiting at most [`LOCK_WAIT`]. `None` when
    /// the wait ran out or the lock file is unusable: the caller then fetches uncoordinated.
    pub fn lock(&self, backend: &str, key: &TokenKey) -> Option<Lock> {
        let path = self
            .dir
            .join(format!("{}.lock", Self::file_stem(backend, key)));
        let file = open_lock_file(&path)
            .map_err(|error| tracing::info!(path = %path.display(), %error, "cache lock unusable"))
            .ok()?;
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(2);
        loop {
            match file.try_lock() {
                Ok(()) => return Some(Lock { _file: file }),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    tracing::warn!(backend, scope = %key.scope, "another plugin process held the token lock for {}s; fetching without it", LOCK_WAIT.as_secs());
                    return None;
                }
                Err(fs::TryLockError::Error(error)) => {
                    tracing::info!(path = %path.display(), %error, "cache lock failed");
                    return None;
                }
            }
        }
    }

    /// Stores `token` for `key`, atomically, unless it would never be served (no expiry,
    /// or less than the safety margin left). Failures are logged, not returned: the
    /// answer does not depend on them.
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
        let entry = Entry {
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
        };
        let stem = Self::file_stem(backend, key);
        let json = serde_json::to_vec(&entry).expect("an entry always serialises");
        if let Err(error) = write_atomically(&self.dir, &stem, &json) {
            tracing::info!(dir = %self.dir.display(), %error, "could not store the token in the cache");
        }
    }

    /// Every sound entry, for `cache list`.
    pub fn list(&self) -> io::Result<Vec<Summary>> {
        let mut summaries = Vec::new();
        for item in fs::read_dir(&self.dir)? {
            let path = item?.path();
            let Some(stem) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if let Ok(entry) = read_entry(&path) {
                summaries.push(Summary {
                    key: stem.to_owned(),
                    backend: entry.backend,
                    scope: entry.scope,
                    identity: entry.identity,
                    expires_at: UNIX_EPOCH + Duration::from_secs(entry.expires_at),
                });
            }
        }
        summaries
            .sort_by(|a, b| (&a.backend, &a.scope, &a.key).cmp(&(&b.backend, &b.scope, &b.key)));
        Ok(summaries)
    }

    /// Removes every entry and leftover temporary file; lock files stay, as a process may
    /// hold one. Returns how many entries were removed.
    pub fn clear(&self) -> io::Result<usize> {
        let mut removed = 0;
        for item in fs::read_dir(&self.dir)? {
            let path = item?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.ends_with(".json") || name.starts_with(".tmp-") {
                fs::remove_file(&path)?;
                removed += usize::from(name.ends_with(".json"));
            }
        }
        Ok(removed)
    }
}

fn prepare_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() && meta.uid() == euid() => {
            if meta.mode() & 0o077 != 0 {
                tracing::info!(dir = %dir.display(), "token cache directory was open to others; made 0700");
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            return Ok(());
        }
        Ok(meta) => {
            tracing::info!(dir = %dir.display(), "token cache path is not a directory of this user's; replacing it");
            if meta.is_dir() {
                fs::remove_dir_all(dir)?
            } else {
                fs::remove_file(dir)?
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                fs::create_dir_all(parent)?;
            }
        }
        Err(error) => return Err(error),
    }
    fs::DirBuilder::new().mode(0o700).create(dir)
}

/// Reads an entry without following a symlink, and only if it is a regular file of this
/// user's that no one else can read.
fn read_entry(path: &Path) -> io::Result<Entry> {
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
    let entry: Entry =
        serde_json::from_slice(&bytes).or_else(|_| refuse("corrupt or truncated"))?;
    if entry.format != FORMAT {
        return refuse("another entry format");
    }
    Ok(entry)
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    let file = match open() {
        Ok(file) => file,
        Err(_) => {
            // A symlink or something else in the way: replace it.
            fs::remove_file(path)?;
            open()?
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "lock file is not a regular file of this user's",
        ));
    }
    Ok(file)
}

fn write_atomically(dir: &Path, stem: &str, content: &[u8]) -> io::Result<()> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let temporary = dir.join(format!(".tmp-{stem}-{}-{nanos}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        file.write_all(content)?;
        file.sync_all()?;
        fs::rename(&temporary, dir.join(format!("{stem}.json")))?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (hit.username.as_str(), hit.password.expose()),
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
    fn a_directory_open_to_others_is_tightened_and_a_file_in_the_way_replaced() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("c");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        Cache::open(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let in_the_way = root.path().join("f");
        fs::write(&in_the_way, "x").unwrap();
        Cache::open(&in_the_way).unwrap();
        assert!(fs::metadata(&in_the_way).unwrap().is_dir());
        assert!(Cache::open(Path::new("/proc/self/no-such-cache")).is_none());
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
