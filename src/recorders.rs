//! Where answers are recorded: the audit log and the node metrics, each when configured.

use std::path::Path;

use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::record::Record;

/// Where answers are recorded: the audit log and the metrics, each when configured.
#[derive(Debug, Default)]
pub struct Recorders {
    /// The audit log, one JSON line per answer.
    pub audit: Option<AuditLog>,
    /// The node metrics, rendered for node_exporter's textfile collector.
    pub metrics: Option<Metrics>,
}

impl Recorders {
    /// The recorders for an audit log at `audit_log` and metrics rendered into
    /// `metrics_dir`, their state kept in `cache_dir` (the token cache directory, when
    /// caching is on) or else in `metrics_dir`.
    pub fn new(
        audit_log: Option<&Path>,
        metrics_dir: Option<&Path>,
        cache_dir: Option<&Path>,
    ) -> Recorders {
        Recorders {
            audit: audit_log.map(AuditLog::new),
            metrics: metrics_dir.map(|dir| Metrics::new(dir, cache_dir.unwrap_or(dir))),
        }
    }

    /// Records `record` everywhere configured. A failure is a warning on stderr, never
    /// the answer's failure: the pull goes on.
    pub fn record(&self, record: &Record) {
        if let Some(audit) = &self.audit
            && let Err(error) = audit.append(record)
        {
            tracing::warn!(path = %audit.path().display(), %error, "could not write the audit log");
        }
        if let Some(metrics) = &self.metrics
            && let Err(error) = metrics.add(record)
        {
            tracing::warn!(dir = %metrics.dir().display(), %error, "could not update the metrics");
        }
    }
}
