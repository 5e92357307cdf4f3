//! The docker configs of the official provider's `dockercfg` flows: a legacy `.dockercfg`
//! map, or a `config.json` with `auths`, matched against the image as the kubelet's
//! keyring matches docker config keys.

use icp_core::{CacheKeyType, ImageRef, Token};
use icp_docker_auth::{file, keyring};
use icp_http::Request;

use crate::fetch::Fetch;
use crate::{DOCKERCFG_URL_ATTRIBUTE, Error};

/// Attempts of a download: a URL someone else serves gets one more try, not two.
const ATTEMPTS: u32 = 2;

/// The credentials the docker config `config`, which came from `origin`, holds for
/// `image`: parsed and matched by the docker-config backend's own code, the entry the
/// kubelet's keyring tries first for this image (so `a.example/team` before `a.example`
/// before `*.example`). Such credentials state no expiry.
pub fn lookup(config: &[u8], origin: &str, image: &ImageRef) -> Result<Token, Error> {
    let entries = file::parse(config, origin).map_err(Error::DockerConfig)?;
    let keys = keyring::select(
        entries.keys().map(String::as_str),
        image,
        CacheKeyType::Image,
    );
    let key = keys
        .into_iter()
        .max()
        .ok_or_else(|| Error::NoDockercfgEntry {
            origin: origin.to_owned(),
            registry: image.registry().to_owned(),
        })?;
    Ok(Token {
        username: entries[key].username.clone(),
        password: entries[key].password.clone(),
        expires_at: None,
    })
}

/// Downloads the docker config at `url` (the value of the `google-dockercfg-url`
/// attribute, which must be an `http://` or `https://` URL, as for the official provider).
/// Returns it with the URL less its query and fragment, which may hold a signature, to
/// name it by in messages.
pub async fn download(fetch: &Fetch<'_>, url: &str) -> Result<(Vec<u8>, String), Error> {
    let shown = url.split(['?', '#']).next().unwrap_or_default().to_owned();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::BadResponse {
            endpoint: format!("instance attribute {DOCKERCFG_URL_ATTRIBUTE}"),
            problem: "not an http:// or https:// URL".into(),
        });
    }
    let endpoint = format!("docker config URL {shown}");
    let retry = fetch.retry().attempts(ATTEMPTS);
    let response = fetch
        .send_to(&retry, &endpoint, || Request::get(url))
        .await?;
    match response.status {
        200 => Ok((response.body, shown)),
        status @ (401 | 403) => Err(Error::AccessDenied {
            endpoint,
            status,
            detail: String::new(),
        }),
        429 => Err(Error::Throttled {
            endpoint,
            retry_after: response.retry_after(std::time::SystemTime::now()),
        }),
        status => Err(Error::Status { endpoint, status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(reference: &str) -> ImageRef {
        ImageRef::parse(reference).unwrap()
    }

    #[test]
    fn legacy_and_auths_formats() {
        let legacy = br#"{"https://registry.example/v1/":{"auth":"dXNlcjpwYXNz","email":"a@b"}}"#;
        let token = lookup(legacy, "test", &image("registry.example/app")).unwrap();
        assert_eq!(
            (token.username.as_str(), token.password.expose()),
            ("user", "pass")
        );
        assert_eq!(token.expires_at, None);
        let auths = br#"{"auths":{"quay.io":{"username":"robot","password":"tok:en"}}}"#;
        let token = lookup(auths, "test", &image("quay.io/team/app:v1")).unwrap();
        assert_eq!(
            (token.username.as_str(), token.password.expose()),
            ("robot", "tok:en")
        );
    }

    #[test]
    fn most_specific_key_wins_and_globs_match_like_the_kubelet() {
        let config = br#"{"*.registry.example":{"username":"any","password":"1"},
            "a.registry.example/team":{"username":"team","password":"2"},
            "a.registry.example":{"username":"host","password":"3"}}"#;
        assert_eq!(
            lookup(config, "test", &image("a.registry.example/team/app"))
                .unwrap()
                .username,
            "team"
        );
        assert_eq!(
            lookup(config, "test", &image("a.registry.example/other"))
                .unwrap()
                .username,
            "host"
        );
        assert_eq!(
            lookup(config, "test", &image("b.registry.example/other"))
                .unwrap()
                .username,
            "any"
        );
        for elsewhere in [
            "registry.example.evil.example/x",
            "a.registry.example:5000/x",
        ] {
            let message = lookup(config, "test", &image(elsewhere))
                .unwrap_err()
                .to_string();
            let registry = elsewhere.split('/').next().unwrap();
            assert_eq!(
                message,
                format!("docker config from test: it has no entry for {registry}")
            );
        }
    }

    #[test]
    fn malformed_configs_are_errors_that_quote_nothing() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"[\"s3cret\"]",
                "docker config test: top level: expected a JSON object",
            ),
            (
                b"not json s3cret",
                "docker config test: invalid JSON at line 1 column 2",
            ),
            (
                br#"{"r.example":{"auth":"czNjcmV0"}}"#,
                "docker config test: \"r.example\".auth: decoded value has no ':'",
            ),
        ];
        for (config, expected) in cases {
            let message = lookup(config, "test", &image("r.example/a"))
                .unwrap_err()
                .to_string();
            assert!(message.starts_with(expected), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
    }
}
