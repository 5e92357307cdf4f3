//! The one rule for whether a file or directory could have been planted or changed by
//! someone else: what the plugin runs (credential helpers), writes into (the token cache,
//! `kubelet-config --output`) or keeps secrets in must pass it.
//!
//! A path is trusted when it, and every directory on the way to it, is owned by root or by
//! the running user and writable by no one else (neither its group nor others). A
//! directory on the way may be writable by others when it is sticky (`/tmp`): there only
//! the owner of an entry may rename or remove it, and the entry is checked in turn. The
//! path itself is never allowed to be writable by others, sticky or not: others could
//! plant files in it. Symbolic links are followed one component at a time, so the
//! directory holding each link is checked too (the link could be changed by whoever can
//! write there).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::quote;

/// Most symbolic links followed for one path, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// The user this process runs as.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Checks `path` (which must exist) by the rule of this module and returns it with its
/// symbolic links resolved. The error ([`io::ErrorKind::PermissionDenied`] for a refusal)
/// names the first component that fails and why, its path quoted as messages quote input.
pub fn check(path: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut pending: Vec<OsString> = components(&absolute);
    let mut resolved = PathBuf::from("/");
    directory_on_the_way(&resolved, &fs::metadata(&resolved)?)?;
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&name);
        let meta = fs::symlink_metadata(&candidate)?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: too many symbolic links", show(path)),
                ));
            }
            let target = fs::read_link(&candidate)?;
            if target.is_absolute() {
                resolved = PathBuf::from("/");
            }
            pending.extend(components(&target));
            continue;
        }
        resolved = candidate;
        if !pending.is_empty() {
            directory_on_the_way(&resolved, &meta)?;
        }
    }
    let meta = fs::symlink_metadata(&resolved)?;
    owned(&resolved, &meta)?;
    if meta.mode() & 0o022 != 0 {
        return Err(refusal(format!(
            "{} is writable by others (mode {:o}); only its owner may write to it",
            show(&resolved),
            meta.mode() & 0o7777
        )));
    }
    Ok(resolved)
}

/// The names of `path`'s components in reverse order (the next one last), `.` dropped.
fn components(path: &Path) -> Vec<OsString> {
    let mut names: Vec<OsString> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    names.reverse();
    names
}

/// A directory the path passes through: owned by root or us, and writable by no one else
/// unless sticky.
fn directory_on_the_way(dir: &Path, meta: &fs::Metadata) -> io::Result<()> {
    owned(dir, meta)?;
    if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 {
        return refuse(format!(
            "{} is writable by others (mode {:o}) and not sticky",
            show(dir),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

fn owned(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.uid() != 0 && meta.uid() != euid() {
        return refuse(format!(
            "{} is owned by uid {}, not by the running user (uid {}) or root",
            show(path),
            meta.uid(),
            euid()
        ));
    }
    Ok(())
}

fn refuse(why: String) -> io::Result<()> {
    Err(refusal(why))
}

fn refusal(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why)
}

fn show(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::check;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn chmod(path: &std::path::Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_path_under_a_sticky_directory_is_trusted_and_resolved() {
        let root = tempfile_dir();
        let file = root.join("bin/tool");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(&file, "x").unwrap();
        chmod(&file, 0o755);
        symlink("bin", root.join("link")).unwrap();
        assert_eq!(check(&root.join("link/tool")).unwrap(), file);
        assert_eq!(check(&root.join("bin/../bin/tool")).unwrap(), file);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn anything_others_can_write_on_the_way_is_refused() {
        let root = tempfile_dir();
        let dir = root.join("bin");
        let file = dir.join("tool");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&file, "x").unwrap();
        for (path, mode, problem) in [
            (&file, 0o757, "tool\" is writable by others (mode 757)"),
            (&file, 0o775, "tool\" is writable by others (mode 775)"),
            (
                &dir,
                0o777,
                "bin\" is writable by others (mode 777) and not sticky",
            ),
            (&dir, 0o1777, ""),
        ] {
            chmod(path, mode);
            let result = check(&file);
            if problem.is_empty() {
                result.unwrap();
            } else {
                let error = result.unwrap_err();
                assert_eq!(error.kind(), std::io::ErrorKind::PermissionDenied);
                assert!(error.to_string().contains(problem), "{error}");
            }
            chmod(path, 0o755);
        }
        chmod(&dir, 0o1777);
        let error = check(&dir).unwrap_err().to_string();
        assert!(error.contains("writable by others (mode 1777)"), "{error}");
        chmod(&dir, 0o755);

        // A link in a directory others can write could be changed; its target is fine.
        let open = root.join("open");
        fs::create_dir(&open).unwrap();
        symlink(&dir, open.join("link")).unwrap();
        chmod(&open, 0o777);
        let error = check(&open.join("link/tool")).unwrap_err().to_string();
        assert!(error.contains("open\" is writable by others"), "{error}");
        chmod(&open, 0o755);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_foreign_owner_is_refused_and_a_name_cannot_forge_a_line() {
        if super::euid() != 0 {
            return;
        }
        let root = tempfile_dir();
        let file = root.join("a\nerror: forged");
        fs::write(&file, "x").unwrap();
        std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
        let error = check(&file).unwrap_err().to_string();
        assert!(
            error.contains("a\\nerror: forged\" is owned by uid 65534, not by the running user"),
            "{error}"
        );
        assert!(!error.contains('\n'));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn link_loops_end() {
        let root = tempfile_dir();
        symlink("b", root.join("a")).unwrap();
        symlink("a", root.join("b")).unwrap();
        assert!(check(&root.join("a")).is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "icp-core-trust-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        chmod(&dir, 0o755);
        dir
    }
}
