//! `default-rules`: the embedded default rules, the rules in force without `--config`,
//! printed as a commented rules file to start from.

use std::io::Write;

use anyhow::Context;

use super::Outcome;
use crate::backends::section_key;
use crate::rules;

/// Prints the embedded default rules as a rules file.
pub fn run() -> Outcome {
    Outcome::of(
        std::io::stdout()
            .lock()
            .write_all(text().as_bytes())
            .context("writing to stdout"),
    )
}

/// The rules file: one rule per backend of the embedded rules, in their order, each with
/// its patterns and a comment on where its settings go.
fn text() -> String {
    let mut out = String::from(
        "# The embedded default rules of image-credential-provider: the rules in force\n\
         # without --config. Each rule serves its backend's well-known registry hosts with the\n\
         # backend's default settings (the node's own identity); the first rule whose\n\
         # matchImages match an image serves it. Edit, check with\n\
         #   image-credential-provider check-config --config FILE\n\
         # and give the file to the plugin with --config FILE. Every setting: docs/rules.md.\n",
    );
    let rows: Vec<_> = rules::embedded_backends().collect();
    if rows.is_empty() {
        out.push_str(
            "# None here: no backend built into this binary serves well-known hosts without\n\
             # settings, so plugin mode without --config answers every image with no credentials.\n\
             rules: []\n",
        );
    } else {
        out.push_str("rules:\n");
    }
    for row in rows {
        out.push_str(&format!(
            "  # The {name} backend; its settings, all optional here, go under `{key}:`.\n  \
             - provider: {name}\n    matchImages:\n",
            name = row.name,
            key = section_key(row.name)
        ));
        for pattern in row.default_patterns {
            let quoted = serde_json::to_string(pattern).unwrap_or_default();
            out.push_str(&format!("      - {quoted}\n"));
        }
    }
    out.push_str(
        "# Optional sections besides rules: cache (the token cache's dir), audit (a JSON line\n\
         # per answer), metrics (node_exporter's textfile collector).\n",
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_every_embedded_rule_in_order() {
        let text = super::text();
        let providers: Vec<&str> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("- provider: "))
            .collect();
        let embedded = crate::rules::embedded(&icp_core::Environment::empty());
        let names: Vec<&str> = embedded
            .rules
            .iter()
            .map(|rule| rule.backend_name.as_str())
            .collect();
        assert_eq!(providers, names);
    }
}
