//! `uninstall`: what `install` wrote taken out of the node, what it replaced put back
//! (`crate::install`), each change printed as one line.

use super::Outcome;
use crate::install::{self, UninstallOptions};

/// Uninstalls, then prints what was done (or, with `--dry-run`, would be).
pub fn run(options: &UninstallOptions) -> Outcome {
    Outcome::of(
        install::uninstall(options).map(|report| super::install::print(&report, options.dry_run)),
    )
}
