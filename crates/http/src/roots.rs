//! Where the trusted root certificates are, and reading them.
//!
//! As OpenSSL (and `rustls-native-certs`) find them: `SSL_CERT_FILE` and `SSL_CERT_DIR`
//! (a `:`-separated list) when either is set, read *instead* of the platform's; else the
//! distribution's bundle file and `/etc/ssl/certs`. The bundle is read first, alone: the
//! directories hold the same roots on every distribution (and hundreds of files to open),
//! so they are read only when a server's certificate has an issuer the bundle lacks (see
//! `tls`), or when there is no bundle at all.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64_simd::STANDARD;
use memchr::memmem;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use crate::Error;

/// The distributions' bundle files, the first that exists being the platform's (the list
/// of `openssl-probe`, which `rustls-native-certs` reads).
const BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Gentoo
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", // CentOS, RHEL 7 and later
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL 6
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/pki/tls/cacert.pem",            // OpenELEC
    "/etc/ssl/cert.pem",                  // Alpine
];

/// The platform's certificate directory, as OpenSSL's `openssl rehash` fills it.
const PLATFORM_DIR: &str = "/etc/ssl/certs";

/// Where the roots are: one bundle file and the directories read when it is not enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sources {
    /// The bundle file, read first.
    pub file: Option<PathBuf>,
    /// The directories, read only when needed.
    pub dirs: Vec<PathBuf>,
}

impl Sources {
    /// The sources the process's `SSL_CERT_FILE` and `SSL_CERT_DIR` name, or the
    /// platform's.
    pub fn from_process() -> Sources {
        Sources::from_vars(
            std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
            std::env::var_os("SSL_CERT_DIR"),
            |path| path.exists(),
        )
    }

    fn from_vars(
        file: Option<PathBuf>,
        dirs: Option<std::ffi::OsString>,
        exists: impl Fn(&Path) -> bool,
    ) -> Sources {
        if file.is_none() && dirs.is_none() {
            return Sources {
                file: BUNDLES.iter().map(PathBuf::from).find(|path| exists(path)),
                dirs: vec![PathBuf::from(PLATFORM_DIR)],
            };
        }
        Sources {
            file,
            dirs: dirs
                .map(|dirs| {
                    std::env::split_paths(&dirs)
                        .filter(|dir| !dir.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// How much of a bundle file is read at a time: the file (about 220 KB on Debian) is
/// parsed as it is read, so neither it nor its decoded certificates are ever held whole
/// (each would cost the process a page fault per 4 KB it touches).
const CHUNK: usize = 32 * 1024;

/// The largest bundle file read: distributions' are about 220 KB. A larger one (a special
/// file named by mistake, `/dev/zero`, say) is an error rather than unbounded memory.
const MAX_FILE: u64 = 16 * 1024 * 1024;

/// Adds the certificates of the PEM file `path` to `roots`. A file that cannot be read is
/// an error; certificates that do not parse are skipped, as `rustls-native-certs` does.
pub(crate) fn add_file(roots: &mut RootCertStore, path: &Path) -> Result<(), Error> {
    std::fs::File::open(path)
        .and_then(|file| {
            read_in_chunks(file, CHUNK, MAX_FILE, |text| {
                roots.add_parsable_certificates(certificates(text));
            })
        })
        .map_err(|error| Error::Roots(format!("cannot read {}: {error}", path.display())))
}

/// Reads the PEM text `reader` gives, `chunk` bytes at a time, and hands `parse` the text
/// read so far up to its last end marker, then the rest at the end. The text after an end
/// marker is parsed the same whether or not what came before it is still at hand (see
/// `certificates`), so the pieces give exactly the certificates of the whole text. A text
/// longer than `max` bytes is an error.
fn read_in_chunks(
    reader: impl Read,
    chunk: usize,
    max: u64,
    mut parse: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let mut reader = reader.take(max + 1);
    let mut buffer = vec![0; chunk];
    let mut filled = 0;
    loop {
        if reader.limit() == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {} MB", max / (1024 * 1024)),
            ));
        }
        if filled == buffer.len() {
            // A block longer than the buffer: take more of it at once.
            buffer.resize(buffer.len() * 2, 0);
        }
        let read = match reader.read(&mut buffer[filled..]) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if read == 0 {
            parse(&buffer[..filled]);
            return Ok(());
        }
        filled += read;
        if let Some(end) = memmem::rfind(&buffer[..filled], END) {
            let parsed = end + END.len();
            parse(&buffer[..parsed]);
            buffer.copy_within(parsed..filled, 0);
            filled -= parsed;
        }
    }
}

/// Adds the certificates of every file in the directories `dirs` (symbolic links followed,
/// each file read once) to `roots`; an unreadable directory or file is skipped.
pub(crate) fn add_dirs(roots: &mut RootCertStore, dirs: &[PathBuf]) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if !metadata.is_file() || !seen.insert((metadata.dev(), metadata.ino())) {
                continue;
            }
            if let Ok(text) = std::fs::read(&path) {
                roots.add_parsable_certificates(certificates(&text));
            }
        }
    }
}

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

/// The `CERTIFICATE` blocks of a PEM text, each decoded as it is reached; a block that is
/// not base64 is skipped. A block runs from a begin marker to the first end marker after
/// it, and the search for the next begins after that end marker. A fast (SIMD, not
/// constant-time) base64 decoder: root certificates are public.
pub(crate) fn certificates(pem: &[u8]) -> impl Iterator<Item = CertificateDer<'static>> + '_ {
    let mut rest = pem;
    let mut encoded = Vec::with_capacity(4096);
    std::iter::from_fn(move || {
        loop {
            let start = memmem::find(rest, BEGIN)?;
            rest = &rest[start + BEGIN.len()..];
            let end = memmem::find(rest, END)?;
            let block = &rest[..end];
            rest = &rest[end + END.len()..];
            encoded.clear();
            // A PEM line is whole base64 with whitespace at its ends only; whitespace
            // anywhere else is dropped too, on a second try.
            let mut line = 0;
            for newline in memchr::memchr_iter(b'\n', block).chain([block.len()]) {
                encoded.extend_from_slice(block[line..newline].trim_ascii());
                line = newline + 1;
            }
            let der = STANDARD.decode_to_vec(&encoded).or_else(|_| {
                encoded.retain(|byte| !byte.is_ascii_whitespace());
                STANDARD.decode_to_vec(&encoded)
            });
            if let Ok(der) = der {
                return Some(CertificateDer::from(der));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_replace_the_platform_sources() {
        let all = |_: &Path| true;
        let platform = Sources::from_vars(None, None, all);
        assert_eq!(
            platform,
            Sources {
                file: Some(PathBuf::from(BUNDLES[0])),
                dirs: vec![PathBuf::from("/etc/ssl/certs")],
            }
        );
        let rhel = Sources::from_vars(None, None, |path| path != Path::new(BUNDLES[0]));
        assert_eq!(rhel.file.as_deref(), Some(Path::new(BUNDLES[1])));
        let file_only = Sources::from_vars(Some("/ca.pem".into()), None, all);
        assert_eq!(
            file_only,
            Sources {
                file: Some(PathBuf::from("/ca.pem")),
                dirs: vec![],
            },
            "SSL_CERT_FILE alone: no directory"
        );
        let dirs_only = Sources::from_vars(None, Some("/a::/b".into()), all);
        assert_eq!(
            dirs_only,
            Sources {
                file: None,
                dirs: vec![PathBuf::from("/a"), PathBuf::from("/b")],
            }
        );
    }

    #[test]
    fn reads_certificate_blocks_only() {
        let pem = b"junk\n-----BEGIN CERTIFICATE-----\nAQID\nBA==\n-----END CERTIFICATE-----\n\
            -----BEGIN PRIVATE KEY-----\nBQY=\n-----END PRIVATE KEY-----\n\
            -----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n\
            -----BEGIN CERTIFICATE-----\r\nBwg=\r\n-----END CERTIFICATE-----\r\n\
            -----BEGIN CERTIFICATE-----\nCQ==\n";
        let found: Vec<_> = certificates(pem).collect();
        let found: Vec<&[u8]> = found.iter().map(|der| der.as_ref()).collect();
        assert_eq!(found, vec![&[1u8, 2, 3, 4][..], &[7, 8][..]]);
    }

    #[test]
    fn whitespace_inside_a_line_is_dropped_as_at_its_ends() {
        let pem = b"-----BEGIN CERTIFICATE-----\n  AQ ID\t\n BA==  \n-----END CERTIFICATE-----\n";
        let found: Vec<_> = certificates(pem).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].as_ref(), [1u8, 2, 3, 4]);
    }

    #[test]
    fn a_text_read_in_chunks_gives_the_certificates_of_the_whole_text() {
        let mut texts: Vec<Vec<u8>> = vec![
            b"junk\n-----BEGIN CERTIFICATE-----\nAQID\nBA==\n-----END CERTIFICATE-----\n\
              -----END CERTIFICATE----- an end without a begin\n\
              -----BEGIN CERTIFICATE-----\nBQY=\n-----BEGIN CERTIFICATE-----\nBwg=\n-----END CERTIFICATE-----\n\
              -----BEGIN CERTIFICATE-----\r\nCQ==\r\n-----END CERTIFICATE-----BEGIN CERTIFICATE-----\nCg==\n\
              -----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nCw==\n"
                .to_vec(),
            Vec::new(),
            b"-----END CERTIFICATE-----".to_vec(),
        ];
        // A block longer than the chunk, and the system's bundle where there is one.
        let long = STANDARD.encode_to_string(vec![7u8; 3000]);
        texts.push(
            format!("-----BEGIN CERTIFICATE-----\n{long}\n-----END CERTIFICATE-----\n")
                .into_bytes(),
        );
        texts.extend(std::fs::read(BUNDLES[0]).ok());
        for text in &texts {
            let whole: Vec<_> = certificates(text).collect();
            for chunk in [1, 7, 26, 100, 4096] {
                let mut pieces = Vec::new();
                read_in_chunks(&text[..], chunk, MAX_FILE, |piece| {
                    pieces.extend(certificates(piece))
                })
                .unwrap();
                assert_eq!(pieces, whole, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn a_file_larger_than_the_bound_is_an_error_not_unbounded_memory() {
        let error = read_in_chunks(std::io::repeat(b'-'), CHUNK, MAX_FILE, |_| {}).unwrap_err();
        assert_eq!(error.to_string(), "larger than 16 MB");
        let text = [b' '; 100];
        read_in_chunks(&text[..], 7, 100, |_| {}).unwrap();
        read_in_chunks(&text[..], 7, 99, |_| {}).unwrap_err();
        let mut roots = RootCertStore::empty();
        let error = add_file(&mut roots, Path::new("/dev/zero")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no trusted root certificates: cannot read /dev/zero: larger than 16 MB"
        );
    }
}
