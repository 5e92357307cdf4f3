//! Logs on stderr, for people: this project's crates at the level `-v` asks for, other
//! crates silent. One line per event, `LEVEL message field=value ...`, written at once; no
//! span is kept (this project opens none, and other crates' spans are not shown). The
//! subscriber is this small one rather than `tracing-subscriber`'s registry, whose
//! set-up costs a plugin process more than everything it logs.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The prefix of the crates every backend shares (`icp_core`, `icp_http`, ...): targets
/// are module paths. The backends' own crates come from the backend table.
const CRATE_PREFIX: &str = "icp_";

/// Logs of this project's crates at the level `verbosity` (`-v` counted) asks for: 0
/// warnings, 1 info, 2 debug, 3 and more trace. Other crates (SDKs, HTTP and TLS stacks)
/// are silent by default, so an error stays one line, and with `-v` log warnings only: no
/// library's debug output, which may carry headers or bodies, ever reaches stderr.
pub fn init(verbosity: u8) {
    let ours = match verbosity {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let others = if verbosity == 0 {
        LevelFilter::OFF
    } else {
        LevelFilter::WARN
    };
    // Set once per process; a second call (tests call commands in one process) keeps
    // the first.
    let _ = tracing::subscriber::set_global_default(Stderr { ours, others });
}

/// The subscriber: events of enabled levels to stderr, one line each.
struct Stderr {
    /// The level of this project's crates.
    ours: LevelFilter,
    /// The level of every other crate.
    others: LevelFilter,
}

impl Stderr {
    /// The level in force for events of `target`.
    fn level(&self, target: &str) -> LevelFilter {
        let ours = target.starts_with(CRATE_PREFIX)
            || is_crate(target, env!("CARGO_CRATE_NAME"))
            || crate::backends::log_targets().any(|name| is_crate(target, name));
        if ours { self.ours } else { self.others }
    }
}

/// Whether `target`, a module path, is in crate `name`.
fn is_crate(target: &str, name: &str) -> bool {
    target
        .strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

impl Subscriber for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Events, and `tracing::enabled!`'s hints (whether an event of that level would be
        // shown): spans never.
        !metadata.is_span() && *metadata.level() <= self.level(metadata.target())
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.ours.max(self.others))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Never called: `enabled` refuses every span.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line(String::with_capacity(128));
        line.0.push_str(match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => " WARN",
            Level::INFO => " INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        });
        event.record(&mut line);
        line.0.push('\n');
        // A log line that cannot be written is not worth failing a pull for.
        let _ = std::io::stderr().lock().write_all(line.0.as_bytes());
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// One log line being written: the message as it is, other fields `name=value`, a
/// string's value quoted.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = match field.name() {
            "message" => write!(self.0, " {value:?}"),
            name => write!(self.0, " {name}={value:?}"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_crates_and_others_each_at_their_level() {
        let stderr = Stderr {
            ours: LevelFilter::DEBUG,
            others: LevelFilter::WARN,
        };
        assert_eq!(stderr.level("icp_http::client"), LevelFilter::DEBUG);
        assert_eq!(stderr.level(env!("CARGO_CRATE_NAME")), LevelFilter::DEBUG);
        assert_eq!(
            stderr.level(&format!("{}::plugin", env!("CARGO_CRATE_NAME"))),
            LevelFilter::DEBUG
        );
        assert_eq!(
            stderr.level("aws_smithy_runtime::client"),
            LevelFilter::WARN
        );
        assert_eq!(stderr.level("hyper"), LevelFilter::WARN);
    }

    #[test]
    fn a_line_is_the_level_the_message_and_the_fields() {
        struct Capture(std::sync::Mutex<Vec<String>>);
        impl Subscriber for Capture {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &Attributes<'_>) -> Id {
                Id::from_u64(1)
            }
            fn record(&self, _: &Id, _: &Record<'_>) {}
            fn record_follows_from(&self, _: &Id, _: &Id) {}
            fn event(&self, event: &Event<'_>) {
                let mut line = Line(String::new());
                event.record(&mut line);
                self.0.lock().unwrap().push(line.0);
            }
            fn enter(&self, _: &Id) {}
            fn exit(&self, _: &Id) {}
        }
        let capture = std::sync::Arc::new(Capture(std::sync::Mutex::new(Vec::new())));
        tracing::subscriber::with_default(capture.clone(), || {
            let path = std::path::Path::new("/etc/rules.yaml");
            tracing::info!(rule = 2, role = "arn:aws:iam::1:role/x", path = %path.display(), "served {}", "it");
        });
        assert_eq!(
            capture.0.lock().unwrap().as_slice(),
            [" served it rule=2 role=\"arn:aws:iam::1:role/x\" path=/etc/rules.yaml"]
        );
    }
}
