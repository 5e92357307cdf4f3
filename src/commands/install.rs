//! `install`: this binary into a node's kubelet plugin directory, with the drop-in names
//! and the kubelet's configuration (`crate::install`), each change printed as one line.

use super::{Globals, Outcome};
use crate::install::{self, Action, Options, Report};

/// Installs, then prints what was done (or, with `--dry-run`, would be) and the kubelet
/// flags still missing.
pub fn run(globals: &Globals, mut options: Options) -> Outcome {
    options.rules = globals.config.clone();
    let dry_run = options.dry_run;
    Outcome::of(install::install(&options, &globals.env).map(|report| print(&report, dry_run)))
}

/// Prints `report`, one line per change, then the notes, the missing kubelet flags, and
/// whether the kubelet must restart.
pub(super) fn print(report: &Report, dry_run: bool) {
    for step in &report.steps {
        let (done, planned) = match step.action {
            Action::Create => ("created", "would create"),
            Action::Write => ("wrote", "would write"),
            Action::Replace => ("replaced", "would replace"),
            Action::Unchanged => ("unchanged", "unchanged"),
            Action::Restore => ("restored", "would restore"),
            Action::Remove => ("removed", "would remove"),
        };
        let verb = if dry_run { planned } else { done };
        let kept = if step.action == Action::Replace {
            format!(
                "; the node's own kept as {}{}",
                step.path.display(),
                install::BACKUP_SUFFIX
            )
        } else {
            String::new()
        };
        println!("{verb} {} ({}{kept})", step.path.display(), step.what);
    }
    for note in &report.notes {
        println!("{note}");
    }
    for (flag, place) in &report.missing_flags {
        println!(
            "missing kubelet flag: {flag} (add it to {place}, or run install with --set-kubelet-flags)"
        );
    }
    if !report.missing_flags.is_empty() {
        println!(
            "restart the kubelet once the flags above are set: it reads them, and its \
             credential provider configuration, only when it starts (this command never \
             restarts it)"
        );
    } else if report.restart {
        println!(
            "restart the kubelet to apply this: it reads its flags and credential provider \
             configuration only when it starts (this command never restarts it)"
        );
    }
}
