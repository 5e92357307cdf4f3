//! The kubelet's keyring rules for docker config keys: how a key is normalised, and
//! which images it serves (`pkg/credentialprovider/keyring.go`).

use icp_core::pattern::{check_url, urls_match_str};
use icp_core::{CacheKeyType, ImageRef, PatternError};

/// The key Docker Hub credentials are stored under once normalised
/// (`https://index.docker.io/v1/` becomes this).
pub const DOCKER_HUB_KEY: &str = "index.docker.io";

/// The server docker sends a credential helper for Docker Hub, and stores Docker Hub
/// credentials under.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// An image's registry as docker config keys name it: Docker Hub (`docker.io`) as
/// [`DOCKER_HUB_KEY`], any other registry as itself.
pub fn registry_key(registry: &str) -> &str {
    if registry == icp_core::image::DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        registry
    }
}

/// The server string docker sends a credential helper for the registry `key` (a
/// [`registry_key`]): [`DOCKER_HUB_SERVER`] for Docker Hub, the registry's host and port
/// for any other, as `docker login` stores them.
pub fn helper_server(key: &str) -> &str {
    if key == DOCKER_HUB_KEY {
        DOCKER_HUB_SERVER
    } else {
        key
    }
}

/// The [`registry_key`] a normalised key names when it is a plain registry (a host and
/// an optional port, as an image reference writes them), `None` for a key with a path, a
/// pattern, or anything else no image's registry can equal.
pub fn plain_registry(key: &str) -> Option<String> {
    if key.contains('/') {
        return None;
    }
    let image = ImageRef::parse(&format!("{key}/x")).ok()?;
    let registry = registry_key(image.registry());
    (registry == key || (registry == DOCKER_HUB_KEY && key == icp_core::image::DOCKER_HUB))
        .then(|| registry.to_owned())
}

/// Normalises a docker config key as the kubelet's `BasicDockerKeyring.Add` does: the
/// scheme is dropped, and a path of `/v1/...` or `/v2/...` loses its version prefix, so
/// `https://index.docker.io/v1/` becomes `index.docker.io` and `https://quay.io/v2/team`
/// becomes `quay.io/team`. A key the kubelet's URL parser refuses is an error.
pub fn normalize_key(key: &str) -> Result<String, PatternError> {
    let schemeless = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    check_url(schemeless)?;
    let (host, path) = match schemeless.find(['/', '?', '#']) {
        Some(i) => (&schemeless[..i], &schemeless[i..]),
        None => (schemeless, ""),
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        &path[3..]
    } else {
        path
    };
    Ok(if path.is_empty() || path == "/" {
        host.to_owned()
    } else {
        format!("{host}{path}")
    })
}

/// The kubelet's `isDefaultRegistryMatch`: whether `image` is on Docker Hub, so that
/// credentials under [`DOCKER_HUB_KEY`] serve it when no other key does.
pub fn is_docker_hub(image: &str) -> bool {
    let mut parts = image.splitn(2, '/');
    let first = parts.next().unwrap_or_default();
    match parts.next() {
        _ if first.is_empty() => false,
        None => true,
        Some(_) => first == "docker.io" || first == DOCKER_HUB_KEY || !first.contains(['.', ':']),
    }
}

/// Whether a normalised key `key` serves `image` on its own, as one key of a kubelet
/// keyring does: by glob match, or as the Docker Hub fallback.
pub fn key_serves(key: &str, image: &str) -> bool {
    urls_match_str(key, image).unwrap_or(false) || (key == DOCKER_HUB_KEY && is_docker_hub(image))
}

/// Which of the normalised `keys` an answer for `image` must carry, given that the kubelet
/// will reuse the answer for every image under `cache_key_type`:
///
/// - `Image`: the keys that serve this image, as the kubelet's lookup picks them (glob
///   matches; the Docker Hub key only when nothing else matches);
/// - `Registry`: every key whose host and port match the image's registry, whatever its
///   path, and the Docker Hub key for Docker Hub images: the kubelet reuses the answer for
///   all images of the registry and picks per image by path itself;
/// - `Global`: every key.
pub fn select<'k>(
    keys: impl IntoIterator<Item = &'k str>,
    image: &ImageRef,
    cache_key_type: CacheKeyType,
) -> Vec<&'k str> {
    let name = image.name();
    let keys = keys.into_iter();
    match cache_key_type {
        CacheKeyType::Global => keys.collect(),
        CacheKeyType::Registry => {
            let hub = is_docker_hub(&name);
            keys.filter(|key| {
                let host = key.split('/').next().unwrap_or_default();
                urls_match_str(host, image.registry()).unwrap_or(false)
                    || (hub && *key == DOCKER_HUB_KEY)
            })
            .collect()
        }
        CacheKeyType::Image => {
            let keys: Vec<&str> = keys.collect();
            let direct: Vec<&str> = keys
                .iter()
                .copied()
                .filter(|key| urls_match_str(key, &name).unwrap_or(false))
                .collect();
            if !direct.is_empty() {
                return direct;
            }
            keys.into_iter()
                .filter(|key| *key == DOCKER_HUB_KEY && is_docker_hub(&name))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_keys_as_the_kubelet_does() {
        let cases = [
            ("https://index.docker.io/v1/", "index.docker.io"),
            ("http://quay.io", "quay.io"),
            ("quay.io/v2/", "quay.io"),
            ("https://quay.io/v2/team", "quay.io/team"),
            ("registry.example:5000/team/", "registry.example:5000/team/"),
            ("*.docker.io/path:1111", "*.docker.io/path:1111"),
        ];
        for (key, normalised) in cases {
            assert_eq!(normalize_key(key).unwrap(), normalised, "{key}");
        }
        assert!(normalize_key("quay.io:port").is_err());
    }

    #[test]
    fn registry_scope_keeps_path_keys_of_the_host_only() {
        let keys = [
            "registry.example/team",
            "registry.example",
            "other.example",
            "registry.example:5000",
        ];
        let image = ImageRef::parse("registry.example/elsewhere/app").unwrap();
        assert_eq!(
            select(keys, &image, CacheKeyType::Image),
            ["registry.example"]
        );
        assert_eq!(
            select(keys, &image, CacheKeyType::Registry),
            ["registry.example/team", "registry.example"]
        );
        assert_eq!(select(keys, &image, CacheKeyType::Global).len(), 4);
    }

    #[test]
    fn plain_registries_are_hosts_with_an_optional_port() {
        let cases = [
            ("quay.io", Some("quay.io")),
            ("registry.example:5000", Some("registry.example:5000")),
            ("localhost:5000", Some("localhost:5000")),
            ("docker.io", Some(DOCKER_HUB_KEY)),
            (DOCKER_HUB_KEY, Some(DOCKER_HUB_KEY)),
            ("quay.io/team", None),
            ("*.quay.io", None),
            ("Quay.io", Some("Quay.io")),
            ("quay", None),
        ];
        for (key, expected) in cases {
            assert_eq!(plain_registry(key).as_deref(), expected, "{key}");
        }
        assert_eq!(helper_server(DOCKER_HUB_KEY), DOCKER_HUB_SERVER);
        assert_eq!(helper_server("quay.io"), "quay.io");
        assert_eq!(registry_key("docker.io"), DOCKER_HUB_KEY);
    }

    #[test]
    fn docker_hub_key_is_a_fallback() {
        let image = ImageRef::parse("nginx").unwrap();
        assert_eq!(
            select([DOCKER_HUB_KEY], &image, CacheKeyType::Image),
            [DOCKER_HUB_KEY]
        );
        assert_eq!(
            select([DOCKER_HUB_KEY, "docker.io"], &image, CacheKeyType::Image),
            ["docker.io"]
        );
        assert_eq!(
            select(
                [DOCKER_HUB_KEY, "docker.io"],
                &image,
                CacheKeyType::Registry
            ),
            [DOCKER_HUB_KEY, "docker.io"]
        );
        let elsewhere = ImageRef::parse("quay.io/x").unwrap();
        assert!(select([DOCKER_HUB_KEY], &elsewhere, CacheKeyType::Registry).is_empty());
    }
}
