//! Reading input whole, but never more of it than a limit, and files only when they are
//! regular files; writing a file whole, or not at all.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Reads the file at `path` whole, or fails at once: when it is not a regular file (a
/// FIFO, a device, a directory, or a link to one such as `/proc/self/fd/0`),
/// with [`io::ErrorKind::InvalidInput`] ("not a regular file: a FIFO"), and when it holds
/// more than `max` bytes, as [`read_capped`]. The file is opened without blocking, so
/// opening a FIFO no one writes to returns, and only then judged by what it is: the one
/// way every file the plugin is given is read.
pub fn read_file(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let file_type = file.metadata()?.file_type();
    if !file_type.is_file() {
        let what = if file_type.is_dir() {
            "a directory"
        } else if file_type.is_fifo() {
            "a FIFO"
        } else if file_type.is_char_device() {
            "a character device"
        } else if file_type.is_block_device() {
            "a block device"
        } else {
            "a special file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file: {what}"),
        ));
    }
    read_capped(file, max)
}

/// Reads `input` to its end, or fails with [`io::ErrorKind::FileTooLarge`] ("larger than
/// `max` bytes") as soon as it holds more than `max` bytes; a hostile or broken file or
/// stream is never read whole.
pub fn read_capped(input: impl Read, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Writes `content` to `target` so that a reader sees the old file or the new one, never
/// part of one: into `temporary` (a new file next to `target`, created with `mode`; an
/// existing file or symlink of that name fails the write), synced, renamed over `target`,
/// and the directory synced. The temporary file is removed when any step fails.
pub fn write_atomically(
    target: &Path,
    temporary: &Path,
    content: &[u8],
    mode: u32,
) -> io::Result<()> {
    write_through(target, temporary, content, mode, true)
}

/// [`write_atomically`] without the syncs: readers still see the old file or the new one,
/// but after a crash of the machine the new one may be empty or cut short. For files that
/// are worth nothing then (a reader takes a broken one for no file), where a sync would
/// cost more than the file is worth.
pub fn replace_atomically(
    target: &Path,
    temporary: &Path,
    content: &[u8],
    mode: u32,
) -> io::Result<()> {
    write_through(target, temporary, content, mode, false)
}

fn write_through(
    target: &Path,
    temporary: &Path,
    content: &[u8],
    mode: u32,
    sync: bool,
) -> io::Result<()> {
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(temporary)?;
        file.write_all(content)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(temporary, target)?;
        if !sync {
            return Ok(());
        }
        let dir = target
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::{read_capped, read_file, replace_atomically, write_atomically};
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn reads_up_to_the_limit_and_no_further() {
        assert_eq!(read_capped(&b"12345"[..], 5).unwrap(), b"12345");
        let error = read_capped(&b"123456"[..], 5).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(error.to_string(), "larger than 5 bytes");
    }

    #[test]
    fn only_regular_files_are_read_and_special_ones_fail_at_once() {
        let dir = std::env::temp_dir().join(format!("icp-core-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "12345").unwrap();
        assert_eq!(read_file(&file, 5).unwrap(), b"12345");
        assert_eq!(
            read_file(&file, 4).unwrap_err().kind(),
            std::io::ErrorKind::FileTooLarge
        );
        let fifo = dir.join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let stdin = dir.join("stdin");
        symlink("/proc/self/fd/0", &stdin).unwrap();
        let socket = dir.join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (std::path::Path::new("/dev/zero"), "a character device"),
            (dir.as_path(), "a directory"),
        ] {
            let error = read_file(path, 5).unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{what}");
            assert_eq!(error.to_string(), format!("not a regular file: {what}"));
        }
        // Opening a socket fails (ENXIO) before it can be judged.
        assert!(read_file(&socket, 5).is_err());
        // Whatever the test's stdin is (a pipe, a terminal, /dev/null), it is no regular file.
        if !std::fs::metadata("/proc/self/fd/0").is_ok_and(|m| m.is_file()) {
            assert!(read_file(&stdin, 5).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_atomic_write_replaces_the_file_or_leaves_it() {
        let dir = std::env::temp_dir().join(format!("icp-core-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (target, temporary) = (dir.join("f"), dir.join(".f.tmp"));
        std::fs::write(&target, "old").unwrap();
        write_atomically(&target, &temporary, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        assert!(!temporary.exists());
        symlink(dir.join("elsewhere"), &temporary).unwrap();
        assert!(write_atomically(&target, &temporary, b"newer", 0o600).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(!dir.join("elsewhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unsynced_replace_is_as_atomic_for_readers() {
        let dir = std::env::temp_dir().join(format!("icp-core-io-r-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (target, temporary) = (dir.join("f"), dir.join(".f.tmp"));
        std::fs::write(&target, "old").unwrap();
        replace_atomically(&target, &temporary, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        assert!(!temporary.exists());
        symlink(dir.join("elsewhere"), &temporary).unwrap();
        assert!(replace_atomically(&target, &temporary, b"newer", 0o600).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(!dir.join("elsewhere").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
