//! Logs on stderr, for people: this project's crates at the level `-v` asks for, other
//! crates silent.

/// The prefix of the crates every backend shares (`icp_core`, `icp_http`, ...): targets
/// are module paths. The backends' own crates come from the backend table.
const CRATE_PREFIX: &str = "icp_";

/// Logs of this project's crates at the level `verbosity` (`-v` counted) asks for: 0
/// warnings, 1 info, 2 debug, 3 and more trace. Other crates (SDKs, HTTP and TLS stacks)
/// are silent by default, so an error stays one line, and with `-v` log warnings only: no
/// library's debug output, which may carry headers or bodies, ever reaches stderr.
pub fn init(verbosity: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
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
    let filter = crate::backends::log_targets().fold(
        Targets::new()
            .with_default(others)
            .with_target(env!("CARGO_CRATE_NAME"), ours)
            .with_target(CRATE_PREFIX, ours),
        |filter, target| filter.with_target(target, ours),
    );
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .without_time(),
        )
        .with(filter)
        .init();
}
