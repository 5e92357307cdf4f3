//! `kubelet-config [--name NAME] [--output DIR] [--service-account-tokens]`: the kubelet
//! configuration that installs this binary for the rules in force, printed or written.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{Globals, Outcome};
use crate::kubelet_config;

/// Prints the configuration for provider `name`, or writes it to `output/name.yaml`.
pub fn run(
    globals: &Globals,
    name: &str,
    output: Option<&Path>,
    service_account_tokens: bool,
) -> Outcome {
    Outcome::of((|| {
        let text = kubelet_config::configuration(
            globals.config.as_deref(),
            name,
            service_account_tokens,
            &globals.env,
        )?;
        match output {
            None => {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .context("writing to stdout")
            }
            Some(dir) => {
                let file = kubelet_config::write_into(dir, name, &text)?;
                println!("wrote {}", icp_core::quote::path(&file));
                Ok(())
            }
        }
    })())
}
