//! The docker configs of the official provider's `dockercfg` flows: a legacy `.dockercfg`
//! map, or a `config.json` with `auths`, matched against the image as the kubelet's
//! keyring matches docker config keys.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use icp_core::pattern::urls_match_str;
use icp_core::{ImageRef, Secret, Token};
use icp_http::{Client, Request};
use serde::Deserialize;

use crate::retry::{self, Retry};
use crate::{DOCKERCFG_URL_ATTRIBUTE, Error};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Retry = Retry {
    attempts: 2,
    backoff: Duration::from_millis(250),
    unreachable: true,
};

/// One entry of a docker config, as written.
#[derive(Deserialize)]
struct RawEntry {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
}

/// Why a docker config gave no credentials; messages never quote its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockercfgError {
    /// Not JSON of the shape of a docker config.
    #[error("not a docker config (expected a JSON object of registries, or one with \"auths\")")]
    Shape,
    /// An entry's `auth` is not base64 of `user:password`.
    #[error("entry {0:?} has an \"auth\" that is not base64 of user:password")]
    Auth(String),
    /// No entry serves the image.
    #[error("it has no entry for {0}")]
    NoEntry(String),
}

/// The credentials `config` holds for `image`: of the keys that match the image's name
/// (scheme and `/v1/`, `/v2/` dropped), the last in lexical order, which the kubelet's
/// keyring tries first (so `a.example/team` before `a.example` before `*.example`). `auth` wins over `username` and `password`. Such credentials state no
/// expiry.
pub fn lookup(config: &[u8], image: &ImageRef) -> Result<Token, DockercfgError> {
    let value: serde_json::Value =
        serde_json::from_slice(config).map_err(|_| DockercfgError::Shape)?;
    let entries = match value.get("auths") {
        Some(auths) => auths,
        None => &value,
    };
    let serde_json::Value::Object(entries) = entries else {
        return Err(DockercfgError::Shape);
    };
    let name = image.name();
    let mut matching = BTreeMap::new();
    for (key, entry) in entries {
        let normalised = normalize_key(key);
        if urls_match_str(&normalised, &name).unwrap_or(false) {
            matching.entry(normalised).or_insert((key, entry));
        }
    }
    let Some((key, entry)) = matching.into_values().next_back() else {
        return Err(DockercfgError::NoEntry(image.registry().to_owned()));
    };
    let entry = RawEntry::deserialize(entry).map_err(|_| DockercfgError::Shape)?;
    let (username, password) = match entry.auth.filter(|a| !a.is_empty()) {
        Some(auth) => {
            let decoded = STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            let (user, password) = decoded
                .as_deref()
                .and_then(|d| d.split_once(':'))
                .ok_or_else(|| DockercfgError::Auth(key.clone()))?;
            (user.to_owned(), password.to_owned())
        }
        None => (
            entry.username.unwrap_or_default(),
            entry.password.unwrap_or_default(),
        ),
    };
    Ok(Token {
        username,
        password: Secret::new(password),
        expires_at: None,
    })
}

/// Downloads the docker config at `url` (the value of the `google-dockercfg-url`
/// attribute, which must be an `http://` or `https://` URL, as for the official provider).
/// Returns it with the URL less its query and fragment, which may hold a signature, to
/// name it by in messages.
pub async fn download(client: &Client, url: &str) -> Result<(Vec<u8>, String), Error> {
    let shown = url.split(['?', '#']).next().unwrap_or_default().to_owned();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::BadAnswer {
            endpoint: format!("instance attribute {DOCKERCFG_URL_ATTRIBUTE}"),
            problem: "not an http:// or https:// URL".into(),
        });
    }
    let endpoint = format!("docker config URL {shown}");
    let request = || {
        Request::get(url)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
    };
    let response = retry::send(client, RETRY, request)
        .await
        .map_err(|cause| Error::Http {
            endpoint: endpoint.clone(),
            cause,
        })?;
    match response.status {
        200 => Ok((response.body, shown)),
        status @ (401 | 403) => Err(Error::Denied {
            endpoint,
            status,
            detail: String::new(),
        }),
        429 => Err(Error::Throttled { endpoint }),
        status => Err(Error::Status { endpoint, status }),
    }
}

/// A docker config key as the kubelet's keyring stores it: no scheme, and a path of
/// `/v1/...` or `/v2/...` without its version, so `https://quay.io/v1/` is `quay.io`.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = key.split_at(key.find('/').unwrap_or(key.len()));
    let path = if path.starts_with("/v1/") || path.starts_with("/v2/") {
        &path[3..]
    } else {
        path
    };
    let path = path.trim_end_matches('/');
    format!("{host}{path}")
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
        let token = lookup(legacy, &image("registry.example/app")).unwrap();
        assert_eq!(
            (token.username.as_str(), token.password.expose()),
            ("user", "pass")
        );
        assert_eq!(token.expires_at, None);
        let auths = br#"{"auths":{"quay.io":{"username":"robot","password":"tok:en"}}}"#;
        let token = lookup(auths, &image("quay.io/team/app:v1")).unwrap();
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
            lookup(config, &image("a.registry.example/team/app"))
                .unwrap()
                .username,
            "team"
        );
        assert_eq!(
            lookup(config, &image("a.registry.example/other"))
                .unwrap()
                .username,
            "host"
        );
        assert_eq!(
            lookup(config, &image("b.registry.example/other"))
                .unwrap()
                .username,
            "any"
        );
        assert_eq!(
            lookup(config, &image("registry.example.evil.example/x")),
            Err(DockercfgError::NoEntry(
                "registry.example.evil.example".into()
            ))
        );
        assert_eq!(
            lookup(config, &image("a.registry.example:5000/x")),
            Err(DockercfgError::NoEntry("a.registry.example:5000".into()))
        );
    }

    #[test]
    fn malformed_configs_are_errors_that_quote_nothing() {
        assert_eq!(
            lookup(b"[]", &image("r.example/a")),
            Err(DockercfgError::Shape)
        );
        assert_eq!(
            lookup(b"not json", &image("r.example/a")),
            Err(DockercfgError::Shape)
        );
        let bad_auth = br#"{"r.example":{"auth":"bm9jb2xvbg=="}}"#;
        let message = lookup(bad_auth, &image("r.example/a"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "entry \"r.example\" has an \"auth\" that is not base64 of user:password"
        );
    }
}
