//! Where the trusted root certificates are, and reading them.
//!
//! As OpenSSL (and `rustls-native-certs`) find them: `SSL_CERT_FILE` and `SSL_CERT_DIR`
//! (a `:`-separated list) when either is set, read *instead* of the platform's; else the
//! distribution's bundle file and `/etc/ssl/certs`. The bundle is read first, alone: the
//! directories hold the same roots on every distribution (and hundreds of files to open),
//! so they are read only when a server's certificate has an issuer the bundle lacks (see
//! `tls`), or when there is no bundle at all.

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

/// Adds the certificates of the PEM file `path` to `roots`. A file that cannot be read is
/// an error; certificates that do not parse are skipped, as `rustls-native-certs` does.
pub(crate) fn add_file(roots: &mut RootCertStore, path: &Path) -> Result<(), Error> {
    let text = std::fs::read(path)
        .map_err(|error| Error::Roots(format!("cannot read {}: {error}", path.display())))?;
    roots.add_parsable_certificates(certificates(&text));
    Ok(())
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

/// The `CERTIFICATE` blocks of a PEM text, decoded; a block that is not base64 is
/// skipped. A fast (SIMD, not constant-time) base64 decoder: root certificates are public.
pub(crate) fn certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let mut found = Vec::new();
    let mut rest = pem;
    let mut encoded = Vec::with_capacity(4096);
    while let Some(start) = memmem::find(rest, BEGIN) {
        rest = &rest[start + BEGIN.len()..];
        let Some(end) = memmem::find(rest, END) else {
            break;
        };
        let block = &rest[..end];
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
            found.push(CertificateDer::from(der));
        }
        rest = &rest[end + END.len()..];
    }
    found
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
        let found = certificates(pem);
        let found: Vec<&[u8]> = found.iter().map(|der| der.as_ref()).collect();
        assert_eq!(found, vec![&[1u8, 2, 3, 4][..], &[7, 8][..]]);
    }

    #[test]
    fn whitespace_inside_a_line_is_dropped_as_at_its_ends() {
        let pem = b"-----BEGIN CERTIFICATE-----\n  AQ ID\t\n BA==  \n-----END CERTIFICATE-----\n";
        let found = certificates(pem);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].as_ref(), [1u8, 2, 3, 4]);
    }
}
