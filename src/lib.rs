//! `image-credential-provider`: a kubelet image credential provider exec plugin, as a
//! library the binary's command line (and the tests) drive.
//!
//! The main path, top to bottom, as the kubelet runs the plugin: the command line
//! (`main.rs`, or a drop-in mode in [`dropin`]) loads the [`rules`] and calls
//! [`plugin::serve`], which reads one `CredentialProviderRequest` ([`protocol`]), finds the
//! first rule that serves the image, asks its backend ([`backends`]) through the shared
//! token [`cache`], and writes one `CredentialProviderResponse`. Any error ends the
//! process through [`exit::finish`]: one line on stderr, a non-zero exit, nothing on
//! stdout.

pub mod backends;
pub mod cache;
pub mod document;
pub mod dropin;
pub mod duration;
pub mod exit;
pub mod kubelet_config;
pub mod logging;
pub mod plugin;
pub mod protocol;
pub mod rules;

pub use plugin::serve;
