//! The manifest `install` keeps beside the kubelet's configuration: every path it wrote,
//! what it wrote there, and the backup of what was there before, each by its fingerprint,
//! so that `uninstall` removes only what is still as `install` left it and puts back what
//! was replaced.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::root::{is_absent, owned_by_us};

/// The manifest's file name, beside the kubelet's configuration (the kubelet reads only
/// `*.json`, `*.yaml` and `*.yml` files of a configuration directory).
pub const FILE_NAME: &str = "image-credential-provider.install-manifest";
/// What a replaced file's backup is named after: `PATH` + this.
pub const BACKUP_SUFFIX: &str = ".before-image-credential-provider";
/// The fingerprint of a directory.
pub const DIRECTORY: &str = "directory";
/// The largest manifest read.
const MAX_SIZE: u64 = 1024 * 1024;

/// What `install` wrote, in the order it wrote it.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The entries, directories created first.
    pub entries: Vec<Entry>,
}

/// One path `install` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The node path.
    pub path: PathBuf,
    /// What it is: `the binary`, `drop-in NAME`, ...
    pub what: String,
    /// The fingerprint of what `install` wrote there ([`fingerprint`]).
    pub wrote: String,
    /// The fingerprint of what was there before, kept at the backup path
    /// ([`backup_path`]); none when nothing was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
}

impl Manifest {
    /// The manifest at `host`, or `None` when there is none. Only a regular file owned
    /// by root (or the running user) that no one else can write is read: what it lists is
    /// removed and replaced.
    pub fn read(host: &Path) -> anyhow::Result<Option<Manifest>> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host)
        {
            Ok(file) => file,
            Err(error) if is_absent(&error) => return Ok(None),
            Err(error) => return Err(error).with_context(|| host.display().to_string()),
        };
        let metadata = file
            .metadata()
            .with_context(|| host.display().to_string())?;
        if !metadata.is_file() || !owned_by_us(&metadata) {
            bail!(
                "{}: not trusted (a manifest is a regular file of root's that only root can write)",
                host.display()
            );
        }
        let bytes = icp_core::io::read_capped(file, MAX_SIZE)
            .with_context(|| host.display().to_string())?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{}: not a manifest install wrote", host.display()))
    }

    /// The entry for the node path `path`, if `install` wrote it.
    pub fn entry(&self, path: &Path) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.path == path)
    }

    /// The manifest's text.
    pub fn text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serializes");
        text.push('\n');
        text
    }
}

/// The backup of the file at `path`: `PATH.before-image-credential-provider`, beside it.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(BACKUP_SUFFIX);
    PathBuf::from(name)
}

/// What is at `host`, as one comparable string: `sha256:HEX` of a file's bytes, `symlink:`
/// and a link's target, [`DIRECTORY`]; `None` when there is nothing.
pub fn fingerprint(host: &Path) -> anyhow::Result<Option<String>> {
    let metadata = match fs::symlink_metadata(host) {
        Ok(metadata) => metadata,
        Err(error) if is_absent(&error) => return Ok(None),
        Err(error) => return Err(error).with_context(|| host.display().to_string()),
    };
    let kind = metadata.file_type();
    Ok(Some(if kind.is_symlink() {
        let target = fs::read_link(host).with_context(|| host.display().to_string())?;
        symlink_fingerprint(&target)
    } else if kind.is_dir() {
        DIRECTORY.to_owned()
    } else if kind.is_file() {
        let mut file = File::open(host).with_context(|| host.display().to_string())?;
        let mut hash = Sha256::new();
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = file
                .read(&mut buffer)
                .with_context(|| host.display().to_string())?;
            if read == 0 {
                break;
            }
            hash.update(&buffer[..read]);
        }
        hex(&hash.finalize())
    } else {
        "other".to_owned()
    }))
}

/// The fingerprint of a file holding `bytes`.
pub fn file_fingerprint(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The fingerprint of a symbolic link to `target`.
pub fn symlink_fingerprint(target: &Path) -> String {
    format!(
        "symlink:{}",
        String::from_utf8_lossy(target.as_os_str().as_bytes())
    )
}

fn hex(digest: &[u8]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
