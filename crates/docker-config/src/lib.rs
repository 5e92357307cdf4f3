//! Static registry credentials from docker `config.json` and legacy `.dockercfg` files.
//!
//! The backend reads the file on every call (it is small, and the kubelet calls rarely),
//! normalises its keys and matches them against the image as the kubelet's own keyring
//! does, and answers with every entry the kubelet will need for the images it reuses the
//! answer for (see [`icp_docker_auth::keyring::select`]). Credentials do not expire: the binary picks the
//! cache duration.

use std::path::{Path, PathBuf};

use icp_core::{AuthEntry, Credentials, Provider, Request};
use icp_docker_auth::{file, keyring};

pub use icp_docker_auth::Error;

/// The `dockerConfig` section of a rule.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// The docker `config.json` or `.dockercfg` file; relative to the rules file.
    pub path: PathBuf,
}

/// The docker-config backend for one file.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
}

impl DockerConfig {
    /// A backend reading `config.path`, resolved against `base_dir` when relative. The
    /// file is read when credentials are asked for, or by `check`.
    pub fn new(config: Config, base_dir: &Path) -> Self {
        DockerConfig {
            path: base_dir.join(config.path),
        }
    }

    /// The file this backend reads.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Provider for DockerConfig {
    type Error = Error;

    /// Reads and parses the file.
    fn check(&self) -> Result<(), Error> {
        file::load(&self.path).map(drop)
    }

    fn provide(&self, request: &Request<'_>) -> Result<Credentials, Error> {
        let entries = file::load(&self.path)?.auths;
        let mut keys = keyring::select(
            entries.keys().map(String::as_str),
            request.image,
            request.cache_key_type,
        );
        // The kubelet tries keys in reverse lexical order, so more specific paths come first.
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let auth = keys
            .into_iter()
            .map(|key| AuthEntry {
                pattern: key.to_owned(),
                username: entries[key].username.clone(),
                password: entries[key].password.clone(),
            })
            .collect();
        Ok(Credentials {
            auth,
            expires_at: None,
        })
    }
}
