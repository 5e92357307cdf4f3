//! Docker config files as the kubelet reads them, for every backend that serves
//! credentials from one.
//!
//! Not a backend itself: the docker-config backend reads such files from disk, and the
//! Google backend's `dockercfg` flows fetch them from the metadata server; both parse and
//! match them here, so neither depends on the other.
//!
//! - [`file`]: a `config.json` or legacy `.dockercfg`, parsed into normalised entries;
//! - [`keyring`]: the kubelet's keyring rules: how a key is normalised and which images
//!   it serves.

pub mod file;
pub mod keyring;

pub use file::{Entry, Error};
