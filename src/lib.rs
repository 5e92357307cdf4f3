//! `image-credential-provider`: a kubelet image credential provider exec plugin, as a
//! library the binary's command line (and the tests) drive.
//!
//! The main path, top to bottom, as the kubelet runs the plugin: the command line
//! ([`commands`], or a drop-in mode in `dropin`) loads the rules (`rules`) and calls
//! [`serve`] (`plugin.rs`), which reads one `CredentialProviderRequest` (`protocol`),
//! finds the first rule that serves the image, builds its backend if this is the rule's
//! first use (`backends`), asks it through the shared token cache (`cache`), and writes
//! one `CredentialProviderResponse`, and records the answer in the audit log (`audit`)
//! and the node metrics (`metrics`) when they are on (`record`). A command returns its [`Outcome`]: an error is one
//! line on stderr, a non-zero exit, nothing on stdout.

mod audience;
mod audit;
mod backends;
mod cache;
pub mod commands;
mod document;
mod dropin;
mod duration;
pub mod explain;
mod in_flight;
mod install;
mod kubelet_config;
mod logging;
mod metrics;
mod own_identity;
pub mod pause;
mod plugin;
mod plural;
mod protocol;
mod record;
mod recorders;
pub mod refresh;
mod rules;
mod stale;

pub use backends::Backend;
pub use commands::Outcome;
pub use plugin::serve;
pub use recorders::Recorders;
pub use rules::{Rule, Rules};
