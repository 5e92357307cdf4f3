//! Which registry hosts are Google's, strictly: the only hosts a Google token is sent to.

use icp_core::ImageRef;
use icp_core::names::is_dns1123_label;

/// The kubelet-glob patterns of the embedded default rule: Container Registry (`gcr.io`
/// and its regional hosts), Artifact Registry's docker repositories in every location,
/// and the GKE registry. The globs are coarse; [`is_google_registry`] is the strict check.
pub const DEFAULT_PATTERNS: &[&str] = &[
    "gcr.io",
    "*.gcr.io",
    "*-docker.pkg.dev",
    "container.cloud.google.com",
];

/// Whether `image` is on one of Google's container registries: `gcr.io`, a host of one
/// label under `gcr.io` (`us.gcr.io`, `marketplace.gcr.io`), an Artifact Registry docker
/// host `<location>-docker.pkg.dev`, or `container.cloud.google.com`.
///
/// The host must be written in lowercase and have no port: `gcr.io.evil.example`,
/// `evil-docker.pkg.dev.example`, `gcr.io:5000` and `a.b.gcr.io` are not Google's.
pub fn is_google_registry(image: &ImageRef) -> bool {
    if image.port().is_some() || image.registry() != image.host() {
        return false;
    }
    let host = image.host();
    if host == "gcr.io" || host == "container.cloud.google.com" {
        return true;
    }
    if let Some(label) = host.strip_suffix(".gcr.io") {
        return is_dns1123_label(label);
    }
    if let Some(label) = host.strip_suffix(".pkg.dev") {
        return label
            .strip_suffix("-docker")
            .is_some_and(|location| !location.is_empty() && is_dns1123_label(label));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use icp_core::Pattern;

    fn google(reference: &str) -> bool {
        is_google_registry(&ImageRef::parse(reference).unwrap())
    }

    #[test]
    fn google_hosts_are_served() {
        for reference in [
            "gcr.io/project/app:v1",
            "us.gcr.io/project/app",
            "eu.gcr.io/project/app",
            "asia.gcr.io/project/app",
            "marketplace.gcr.io/google/app",
            "us-central1-docker.pkg.dev/project/repo/app",
            "europe-west4-docker.pkg.dev/project/repo/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "us-docker.pkg.dev/project/repo/app",
            "container.cloud.google.com/project/app",
        ] {
            assert!(google(reference), "{reference} should be served");
        }
    }

    #[test]
    fn look_alikes_are_not_served() {
        for reference in [
            "gcr.io.evil.example/project/app",
            "evil-docker.pkg.dev.example/project/app",
            "evilgcr.io/project/app",
            "gcr.io:5000/project/app",
            "gcr.io:443/project/app",
            "us.gcr.io:8443/project/app",
            "a.b.gcr.io/project/app",
            "docker.pkg.dev/project/app",
            "us-maven.pkg.dev/project/app",
            "us.docker.pkg.dev/project/app",
            "a.us-docker.pkg.dev/project/app",
            "pkg.dev/project/app",
            "GCR.IO/project/app",
            "Us-Docker.pkg.dev/project/app",
            "container.cloud.google.com.evil.example/app",
            "evil.container.cloud.google.com/app",
            "cloud.google.com/app",
            "docker.io/library/gcr.io",
            "gcr/app",
            "localhost/gcr.io",
            "[::1]:5000/app",
            "127.0.0.1/app",
        ] {
            assert!(!google(reference), "{reference} must not be served");
        }
    }

    #[test]
    fn default_patterns_are_valid_and_cover_every_google_host_kind() {
        let patterns: Vec<Pattern> = DEFAULT_PATTERNS
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect();
        for name in [
            "gcr.io/p/a",
            "us.gcr.io/p/a",
            "us-central1-docker.pkg.dev/p/r/a",
            "container.cloud.google.com/p/a",
        ] {
            assert!(
                patterns.iter().any(|p| p.matches(name)),
                "{name} is not covered"
            );
        }
    }
}
