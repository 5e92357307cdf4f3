//! Reproducible archives: POSIX ustar with sorted entries, one fixed mtime, uid and gid 0
//! and no user or group names; gzip with no file name and no time in its header.

use std::io::Write;

use anyhow::{Result, bail};
use flate2::{Compression, GzBuilder};

/// What an archive entry is.
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file with its content.
    File(Vec<u8>),
}

/// One archive entry.
pub struct Entry {
    /// The path inside the archive, relative, `/`-separated, without a trailing `/`.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// What it is.
    pub kind: Kind,
}

impl Entry {
    /// A directory with mode 0755.
    pub fn dir(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            mode: 0o755,
            kind: Kind::Dir,
        }
    }

    /// A file with `mode`.
    pub fn file(path: impl Into<String>, mode: u32, content: Vec<u8>) -> Self {
        Self {
            path: path.into(),
            mode,
            kind: Kind::File(content),
        }
    }
}

const BLOCK: usize = 512;

/// A ustar archive of `entries`, sorted by path, each with `mtime` (seconds since the epoch).
pub fn tar(mut entries: Vec<Entry>, mtime: u64) -> Result<Vec<u8>> {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = Vec::new();
    for entry in &entries {
        let (type_flag, name, content): (u8, String, &[u8]) = match &entry.kind {
            Kind::Dir => (b'5', format!("{}/", entry.path), &[]),
            Kind::File(content) => (b'0', entry.path.clone(), content),
        };
        if name.len() > 100 {
            bail!("archive path too long for ustar: {name}");
        }
        let mut header = [0u8; BLOCK];
        header[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut header[100..108], u64::from(entry.mode));
        octal(&mut header[108..116], 0); // uid
        octal(&mut header[116..124], 0); // gid
        octal(&mut header[124..136], content.len() as u64);
        octal(&mut header[136..148], mtime);
        header[156] = type_flag;
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        // uname and gname stay empty: no user names.
        octal(&mut header[329..337], 0); // devmajor
        octal(&mut header[337..345], 0); // devminor
        header[148..156].fill(b' ');
        let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(content);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    Ok(out)
}

/// Writes `value` as zero-padded octal digits and a NUL into `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[digits.len()] = 0;
}

/// `data` gzip-compressed at the best level, with mtime 0, no file name, OS "unknown".
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_sorted_and_headers_carry_no_owner() {
        let archive = tar(
            vec![
                Entry::file("d/b", 0o644, b"bee".to_vec()),
                Entry::dir("d"),
                Entry::file("d/a", 0o755, Vec::new()),
            ],
            1_700_000_000,
        )
        .unwrap();
        let names: Vec<&[u8]> = archive
            .chunks(BLOCK)
            .filter(|block| &block[257..262] == b"ustar")
            .map(|block| &block[..block.iter().position(|b| *b == 0).unwrap()])
            .collect();
        assert_eq!(names, [&b"d/"[..], b"d/a", b"d/b"]);
        for header in archive.chunks(BLOCK).filter(|b| &b[257..262] == b"ustar") {
            assert_eq!(&header[108..116], b"0000000\0", "uid 0");
            assert_eq!(&header[116..124], b"0000000\0", "gid 0");
            assert!(header[265..329].iter().all(|b| *b == 0), "no user names");
            assert_eq!(&header[136..148], b"14524770400\0", "the given mtime");
        }
        assert_eq!(archive.len() % BLOCK, 0);
    }

    #[test]
    fn gzip_header_has_no_name_and_no_time() {
        let compressed = gzip(b"hello").unwrap();
        assert_eq!(
            &compressed[..4],
            [0x1f, 0x8b, 8, 0],
            "deflate, no flags (no name)"
        );
        assert_eq!(&compressed[4..8], [0, 0, 0, 0], "mtime 0");
        assert_eq!(gzip(b"hello").unwrap(), compressed);
    }
}
