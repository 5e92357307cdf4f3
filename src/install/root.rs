//! The node's filesystem as `--root` shows it: a node path (absolute, as the kubelet sees
//! it) is resolved inside the root, its symbolic links followed as the node would follow
//! them but never out of the root (an absolute link starts again at the root, `..` stops
//! at it); and the trust rule for every directory written into.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};

/// The most symbolic links followed for one path, as Linux allows.
const MAX_LINKS: usize = 40;
/// The largest file read (flags files, the kubelet's configuration).
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The directory taken as the node's `/`.
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// `dir` as the node's `/`: an existing directory.
    pub fn new(dir: &Path) -> anyhow::Result<Root> {
        let dir = std::path::absolute(dir).with_context(|| dir.display().to_string())?;
        match fs::metadata(&dir) {
            Ok(metadata) if metadata.is_dir() => Ok(Root { dir }),
            Ok(_) => bail!("--root {}: not a directory", dir.display()),
            Err(error) => bail!("--root {}: {error}", dir.display()),
        }
    }

    /// The path on this machine of the node path `node`, which [`Root::resolve`] returned.
    pub fn host(&self, node: &Path) -> PathBuf {
        self.dir.join(node.strip_prefix("/").unwrap_or(node))
    }

    /// `node` with the symbolic links of its directories resolved inside the root; its last
    /// component is not followed (the path names the link itself, which is replaced, never
    /// written through).
    pub fn resolve(&self, node: &Path) -> anyhow::Result<PathBuf> {
        self.walk(node, false)
    }

    /// `node` with every symbolic link resolved inside the root, the last one included.
    pub fn resolve_all(&self, node: &Path) -> anyhow::Result<PathBuf> {
        self.walk(node, true)
    }

    fn walk(&self, node: &Path, follow_last: bool) -> anyhow::Result<PathBuf> {
        if !node.is_absolute() {
            bail!("{}: a path on the node must be absolute", node.display());
        }
        let mut done: Vec<OsString> = Vec::new();
        let mut todo: VecDeque<OsString> = VecDeque::new();
        push_front(&mut todo, node);
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                done.pop();
                continue;
            }
            let candidate: PathBuf = done.iter().chain([&name]).collect();
            let host = self.dir.join(&candidate);
            let is_link = fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_symlink());
            if is_link && (follow_last || !todo.is_empty()) {
                links += 1;
                if links > MAX_LINKS {
                    bail!("{}: too many levels of symbolic links", node.display());
                }
                let target = fs::read_link(&host).with_context(|| host.display().to_string())?;
                if target.is_absolute() {
                    done.clear();
                }
                push_front(&mut todo, &target);
            } else {
                done.push(name);
            }
        }
        Ok(Path::new("/").join(done.iter().collect::<PathBuf>()))
    }

    /// The text of the node file `node` (its links followed inside the root), or `None`
    /// when there is none.
    pub fn read(&self, node: &Path) -> anyhow::Result<Option<String>> {
        let host = self.host(&self.resolve_all(node)?);
        read_host(&host)
    }

    /// The node paths of the files in the node directory `dir` whose names end with
    /// `suffix`, sorted; none when there is no such directory.
    pub fn list(&self, dir: &Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
        let dir = self.resolve_all(dir)?;
        let entries = match fs::read_dir(self.host(&dir)) {
            Ok(entries) => entries,
            Err(error) if is_absent(&error) => return Ok(Vec::new()),
            Err(error) => return Err(error).with_context(|| dir.display().to_string()),
        };
        let mut files = Vec::new();
        for entry in entries {
            let name = entry
                .with_context(|| dir.display().to_string())?
                .file_name();
            if name.as_bytes().ends_with(suffix.as_bytes()) {
                files.push(dir.join(name));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Fails unless every existing directory from the root down to the node directory `dir`
    /// (resolved) can be trusted with what is written there: a directory owned by root or
    /// by the running user, writable by no one else.
    pub fn check_trusted(&self, dir: &Path) -> anyhow::Result<()> {
        let mut node = PathBuf::from("/");
        let mut components = dir
            .components()
            .filter(|c| matches!(c, Component::Normal(_)));
        loop {
            let host = self.host(&node);
            match fs::symlink_metadata(&host) {
                Ok(metadata) => trusted(&node, &metadata)?,
                Err(error) if is_absent(&error) => return Ok(()),
                Err(error) => return Err(error).with_context(|| node.display().to_string()),
            }
            match components.next() {
                Some(component) => node.push(component),
                None => return Ok(()),
            }
        }
    }
}

/// The text of the file `host`, or `None` when there is none.
pub fn read_host(host: &Path) -> anyhow::Result<Option<String>> {
    let file = match fs::File::open(host) {
        Ok(file) => file,
        Err(error) if is_absent(&error) => return Ok(None),
        Err(error) => return Err(error).with_context(|| host.display().to_string()),
    };
    let bytes = icp_core::io::read_capped(file, MAX_FILE_SIZE)
        .with_context(|| host.display().to_string())?;
    String::from_utf8(bytes)
        .map(Some)
        .with_context(|| format!("{}: not UTF-8", host.display()))
}

/// Whether `error` says there is no such file.
pub fn is_absent(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
}

/// The components of `path` in front of `todo`, in order.
fn push_front(todo: &mut VecDeque<OsString>, path: &Path) {
    for component in path.components().rev() {
        match component {
            Component::Normal(name) => todo.push_front(name.to_owned()),
            Component::ParentDir => todo.push_front("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// Whether what `metadata` describes is owned by root or by the running user, and
/// writable by no one else: the trust rule for what `install` writes into or reads its
/// orders from.
pub fn owned_by_us(metadata: &fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    (metadata.uid() == 0 || metadata.uid() == euid) && metadata.mode() & 0o022 == 0
}

/// The trust rule for the directory at node path `node`.
fn trusted(node: &Path, metadata: &fs::Metadata) -> anyhow::Result<()> {
    if !metadata.is_dir() {
        bail!("{} is not a directory", node.display());
    }
    if owned_by_us(metadata) {
        return Ok(());
    }
    // SAFETY: as above.
    let euid = unsafe { libc::geteuid() };
    if metadata.uid() != 0 && metadata.uid() != euid {
        bail!(
            "not writing under {}: it is owned by uid {}, neither root nor the running user",
            node.display(),
            metadata.uid()
        );
    }
    if metadata.mode() & 0o022 != 0 {
        bail!(
            "not writing under {}: its mode {:04o} lets others write to it",
            node.display(),
            metadata.mode() & 0o7777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_inside_the_root_and_never_out_of_it() {
        let dir = std::env::temp_dir().join(format!("icp-root-{}", std::process::id()));
        fs::create_dir_all(dir.join("usr/lib")).unwrap();
        fs::create_dir_all(dir.join("etc")).unwrap();
        symlink("/usr/lib", dir.join("lib")).unwrap();
        symlink("../../../../..", dir.join("etc/up")).unwrap();
        symlink("/etc/loop", dir.join("etc/loop")).unwrap();
        let root = Root::new(&dir).unwrap();
        let resolve = |p: &str| root.resolve(Path::new(p)).unwrap();
        assert_eq!(resolve("/lib/x"), Path::new("/usr/lib/x"));
        assert_eq!(resolve("/lib"), Path::new("/lib"));
        assert_eq!(
            root.resolve_all(Path::new("/lib")).unwrap(),
            Path::new("/usr/lib")
        );
        assert_eq!(resolve("/etc/up/etc/x"), Path::new("/etc/x"));
        assert_eq!(resolve("/../../etc"), Path::new("/etc"));
        assert!(root.resolve(Path::new("/etc/loop/x")).is_err());
        assert!(root.resolve(Path::new("etc")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
