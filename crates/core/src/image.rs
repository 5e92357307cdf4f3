//! Container image references, parsed and normalised as the kubelet does.
//!
//! The grammar is the one of `github.com/distribution/reference`, which the kubelet uses
//! (`ParseNormalizedNamed`): an optional registry domain, a lowercase repository path, an
//! optional tag and an optional digest. A name with no domain is on Docker Hub
//! (`docker.io`), and a Docker Hub name of one component gets `library/`.

use std::fmt;

use crate::quote;

/// The registry of images that name none.
pub const DOCKER_HUB: &str = "docker.io";
/// The legacy name of Docker Hub, normalised to [`DOCKER_HUB`].
pub const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Longest repository name (domain and path) the reference grammar allows.
pub const NAME_MAX: usize = 255;

/// Why a string is not an image reference. The offending part is quoted with
/// [`crate::quote`], so a huge or hostile reference never floods a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The reference is the empty string.
    #[error("image reference is empty")]
    Empty,
    /// The repository name is over [`NAME_MAX`] characters.
    #[error("repository name is longer than {NAME_MAX} characters")]
    TooLong,
    /// The registry domain is not a valid host, IP address or port (1 to 65535).
    #[error("invalid registry domain {}", quote(.0))]
    Domain(String),
    /// A path component breaks the grammar (lowercase letters, digits and separators).
    #[error("invalid repository path component {}", quote(.0))]
    Path(String),
    /// The path has uppercase letters.
    #[error("repository path must be lowercase")]
    Uppercase,
    /// The tag breaks the grammar.
    #[error("invalid tag {}", quote(.0))]
    Tag(String),
    /// The digest breaks the grammar.
    #[error("invalid digest {}", quote(.0))]
    Digest(String),
    /// The name is a bare 64-character hex string, which references an image ID.
    #[error("repository name cannot be a 64-character hexadecimal ID")]
    HexId,
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises a reference: `busybox` becomes `docker.io/library/busybox`,
    /// `index.docker.io/x/y` becomes `docker.io/x/y`.
    pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
        if reference.is_empty() {
            return Err(ImageError::Empty);
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, digest)) => (rest, Some(parse_digest(digest)?)),
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(parse_tag(&rest[last_slash + i + 1..])?),
            ),
            None => (rest, None),
        };
        if name.len() > NAME_MAX {
            return Err(ImageError::TooLong);
        }
        if is_hex_id(name) {
            return Err(ImageError::HexId);
        }
        let (domain, path) = split_domain(name);
        validate_domain(domain)?;
        validate_path(path)?;
        let (domain, path) = if domain == DOCKER_HUB_LEGACY || domain == DOCKER_HUB {
            let path = if path.contains('/') {
                path.to_owned()
            } else {
                format!("library/{path}")
            };
            (DOCKER_HUB.to_owned(), path)
        } else {
            (domain.to_owned(), path.to_owned())
        };
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(ImageError::TooLong);
        }
        Ok(ImageRef {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry: host and optional port, as in `registry.example:5000`. This is what
    /// the kubelet's `Registry` cache key is made of.
    pub fn registry(&self) -> &str {
        &self.domain
    }

    /// The host without its port (IPv6 addresses keep their brackets).
    pub fn host(&self) -> &str {
        split_port(&self.domain).0
    }

    /// The port, when the reference names one; [`ImageRef::parse`] refuses any port that is
    /// not a number from 1 to 65535, so a port that is there is always returned.
    pub fn port(&self) -> Option<u16> {
        split_port(&self.domain).1.and_then(|p| p.parse().ok())
    }

    /// The repository path within the registry, as in `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference has one.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The repository name without tag or digest, as the kubelet puts it in a
    /// `CredentialProviderRequest`: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits `host[:port]` into the host and the digits after its last colon; bracketed IPv6
/// hosts keep their brackets.
fn split_port(domain: &str) -> (&str, Option<&str>) {
    let host_end = if domain.starts_with('[') {
        domain.find(']').map_or(0, |i| i + 1)
    } else {
        0
    };
    match domain[host_end..].rfind(':') {
        Some(i) => (&domain[..host_end + i], Some(&domain[host_end + i + 1..])),
        None => (domain, None),
    }
}

/// The kubelet's (distribution's) rule: the first component is a domain when it has a
/// dot or a colon, is `localhost`, or has uppercase letters.
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn validate_domain(domain: &str) -> Result<(), ImageError> {
    let bad = || ImageError::Domain(domain.to_owned());
    let (host, port) = split_port(domain);
    // The grammar allows any digits, but a port that is no TCP port names no registry,
    // and a host check must never read it as "no port".
    if let Some(port) = port
        && !(port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Err(bad());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(bad)?;
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(bad());
        }
        return Ok(());
    }
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-'
    };
    if host.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(bad())
    }
}

fn validate_path(path: &str) -> Result<(), ImageError> {
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ImageError::Uppercase);
    }
    path.split('/').try_for_each(|component| {
        if path_component_ok(component) {
            Ok(())
        } else {
            Err(ImageError::Path(component.to_owned()))
        }
    })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn path_component_ok(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[sep_start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok || i == bytes.len() {
            return false;
        }
    }
    false
}

/// `[\w][\w.-]{0,127}`
fn parse_tag(tag: &str) -> Result<String, ImageError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(tag.to_owned())
    } else {
        Err(ImageError::Tag(tag.to_owned()))
    }
}

/// `algorithm ":" encoded`, algorithm components `[A-Za-z][A-Za-z0-9]*` joined by
/// `[+._-]`, encoded `[a-fA-F0-9]{32,}`; and for an algorithm registered with go-digest,
/// as the kubelet's and containerd's parsers check it, exactly its length in lowercase hex
/// (sha256 64, sha384 96, sha512 128).
fn parse_digest(digest: &str) -> Result<String, ImageError> {
    let bad = || ImageError::Digest(digest.to_owned());
    let (algorithm, encoded) = digest.split_once(':').ok_or_else(bad)?;
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|component| {
        let mut bytes = component.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric())
    });
    let registered = match algorithm {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    };
    let encoded_ok = match registered {
        Some(length) => {
            encoded.len() == length
                && encoded
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        None => encoded.len() >= 32 && encoded.bytes().all(|b| b.is_ascii_hexdigit()),
    };
    if algorithm_ok && encoded_ok {
        Ok(digest.to_owned())
    } else {
        Err(bad())
    }
}

fn is_hex_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(reference: &str) -> (String, String, Option<String>, Option<String>) {
        let image = ImageRef::parse(reference).unwrap();
        (
            image.registry().to_owned(),
            image.path().to_owned(),
            image.tag().map(str::to_owned),
            image.digest().map(str::to_owned),
        )
    }

    /// A reference and the registry, path, tag and digest it parses into.
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    #[test]
    fn parses_the_kubernetes_examples() {
        let digest = "sha256:1ff6c18fbef2045af6b9c16bf034cc421a29027b800e4f9b68ae9b1cb3e9ae07";
        let cases: &[Case] = &[
            ("busybox", "docker.io", "library/busybox", None, None),
            (
                "busybox:1.32.0",
                "docker.io",
                "library/busybox",
                Some("1.32.0"),
                None,
            ),
            (
                "registry.k8s.io/pause:3.5",
                "registry.k8s.io",
                "pause",
                Some("3.5"),
                None,
            ),
            (
                &format!("registry.k8s.io/pause:3.5@{digest}"),
                "registry.k8s.io",
                "pause",
                Some("3.5"),
                Some(digest),
            ),
            (
                "fictional.registry.example:10443/imagename",
                "fictional.registry.example:10443",
                "imagename",
                None,
                None,
            ),
            (
                "index.docker.io/nginx",
                "docker.io",
                "library/nginx",
                None,
                None,
            ),
            (
                "docker.io/bitnami/redis",
                "docker.io",
                "bitnami/redis",
                None,
                None,
            ),
            ("bitnami/redis", "docker.io", "bitnami/redis", None, None),
            ("localhost/app", "localhost", "app", None, None),
            (
                "localhost:5000/a/b/c:v1",
                "localhost:5000",
                "a/b/c",
                Some("v1"),
                None,
            ),
            ("[::1]:5000/app", "[::1]:5000", "app", None, None),
            (
                "Registry.Example/app",
                "Registry.Example",
                "app",
                None,
                None,
            ),
            (
                "a.io/x__y/z-----w/v.u",
                "a.io",
                "x__y/z-----w/v.u",
                None,
                None,
            ),
        ];
        for (reference, domain, path, tag, digest) in cases {
            assert_eq!(
                parts(reference),
                (
                    domain.to_string(),
                    path.to_string(),
                    tag.map(str::to_owned),
                    digest.map(str::to_owned)
                ),
                "{reference}"
            );
        }
    }

    #[test]
    fn a_registered_digest_has_its_exact_length_in_lowercase_hex() {
        let image = |digest: String| ImageRef::parse(&format!("registry.example/app@{digest}"));
        for (algorithm, length) in [("sha256", 64), ("sha384", 96), ("sha512", 128)] {
            assert!(image(format!("{algorithm}:{}", "a".repeat(length))).is_ok());
            for wrong in [
                "a".repeat(length - 1),
                "a".repeat(length + 1),
                "a".repeat(1_000_000),
                "A".repeat(length),
            ] {
                assert!(
                    matches!(
                        image(format!("{algorithm}:{wrong}")),
                        Err(ImageError::Digest(_))
                    ),
                    "{algorithm} with {} characters",
                    wrong.len()
                );
            }
        }
        assert!(image(format!("other+alg:{}", "A".repeat(40))).is_ok());
    }

    #[test]
    fn name_drops_tag_and_digest_and_host_and_port_split() {
        let image = ImageRef::parse("fictional.registry.example:10443/imagename:v1").unwrap();
        assert_eq!(image.name(), "fictional.registry.example:10443/imagename");
        assert_eq!(image.host(), "fictional.registry.example");
        assert_eq!(image.port(), Some(10443));
        assert_eq!(
            image.to_string(),
            "fictional.registry.example:10443/imagename:v1"
        );
        let image = ImageRef::parse("[::1]:5000/app").unwrap();
        assert_eq!((image.host(), image.port()), ("[::1]", Some(5000)));
        let image = ImageRef::parse("registry.example:65535/app").unwrap();
        assert_eq!(image.port(), Some(65535));
    }

    #[test]
    fn errors_quote_a_short_excerpt_of_the_offending_part() {
        let long_tag = "t".repeat(1 << 20);
        let digest = format!("sha256:{}", "z".repeat(1 << 20));
        for reference in [
            format!("registry.example/app:{long_tag}"),
            format!("registry.example/app@{digest}"),
        ] {
            let message = ImageRef::parse(&reference).unwrap_err().to_string();
            assert!(message.len() < 200, "{} bytes", message.len());
        }
        assert_eq!(
            ImageRef::parse("a.io/app:bad\ntag")
                .unwrap_err()
                .to_string(),
            "invalid tag \"bad\\ntag\"",
            "a line break in the input stays escaped on one line"
        );
    }

    #[test]
    fn rejects_malformed_references() {
        let long = format!("registry.example/{}", "a".repeat(250));
        let bad = [
            "",
            "docker.io/Library/nginx",
            "registry.example/",
            "registry.example//app",
            "registry.example/app:",
            "registry.example/app:-tag",
            "registry.example/app@sha256:abc",
            "registry.example/app@sha256",
            "registry.example:port/app",
            "registry.example:123456/app",
            "registry.example:99999/app",
            "registry.example:65536/app",
            "registry.example:0/app",
            "registry.example:+80/app",
            "-registry.example/app",
            "registry..example/app",
            "registry.example/a b",
            "registry.example/app\n",
            "registry.example/../etc/passwd",
            "regi$try.example/app",
            "registry.example/app/",
            "registry.example/_app",
            "registry.example/app.",
            "registry.example/a..b",
            "[zz]:5000/app",
            "registry.example/\u{e9}",
            long.as_str(),
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ];
        for reference in bad {
            assert!(
                ImageRef::parse(reference).is_err(),
                "{reference:?} should not parse"
            );
        }
    }
}
