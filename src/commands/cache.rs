//! `cache list`, `cache clear`: the token cache, shown or emptied. Neither creates it: a
//! directory that does not exist holds nothing (and may be a mistyped `--cache-dir`).

use std::io::Write;

use anyhow::Context;

use super::{CacheAction, Globals, Outcome};
use crate::cache::Cache;
use crate::duration;
use crate::plural::count;

/// The first line of `cache list`.
const HEADER: &str = "KEY\tBACKEND\tSCOPE\tIDENTITY\tEXPIRES";

/// Lists or clears the token cache in force.
pub fn run(globals: &Globals, action: &CacheAction) -> Outcome {
    Outcome::of(cache(globals, action))
}

fn cache(globals: &Globals, action: &CacheAction) -> anyhow::Result<()> {
    let rules = globals.rules()?;
    let dir = globals
        .cache_dir(&rules)
        .context("the token cache is turned off")?;
    if let Err(error) = std::fs::symlink_metadata(&dir)
        && error.kind() == std::io::ErrorKind::NotFound
    {
        if let CacheAction::List = action {
            println!("{HEADER}");
        }
        eprintln!(
            "no token cache at {}: nothing is cached there",
            icp_core::quote::path(&dir)
        );
        return Ok(());
    }
    let cache = Cache::open(&dir)
        .with_context(|| format!("token cache {} is unusable", icp_core::quote::path(&dir)))?;
    match action {
        CacheAction::List => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{HEADER}")?;
            for entry in cache
                .list()
                .with_context(|| format!("listing {}", icp_core::quote::path(&dir)))?
            {
                let expires = match entry
                    .expires_at
                    .duration_since(std::time::SystemTime::now())
                {
                    Ok(left) => format!("in {}", duration::format(left)),
                    Err(_) => "expired".to_owned(),
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{expires}",
                    entry.key, entry.backend, entry.scope, entry.identity
                )?;
            }
        }
        CacheAction::Clear => {
            let removed = cache
                .clear()
                .with_context(|| format!("clearing {}", icp_core::quote::path(&dir)))?;
            println!(
                "removed {} from {}",
                count(removed, "cached token"),
                icp_core::quote::path(&dir)
            );
        }
    }
    Ok(())
}
