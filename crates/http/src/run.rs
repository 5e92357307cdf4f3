//! One fetch on an async runtime of its own, bounded by a deadline: the one way a
//! synchronous backend runs its network calls.

use std::future::Future;
use std::time::{Duration, Instant};

/// When a whole fetch must be over: every request, retry and wait inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// The time left, zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn is_past(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The whole budget it was set with, for messages ("took longer than 20s").
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The instant it falls at.
    pub fn instant(&self) -> Instant {
        self.at
    }
}

/// Why [`run`] gave no result.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The runtime could not be started (out of threads or file descriptors).
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The future was still running when the deadline passed; it has been dropped.
    #[error("took longer than {}s", .0.as_secs_f32())]
    Elapsed(Duration),
}

/// Runs the future `fetch` makes on a current-thread runtime built for it, and shuts the
/// runtime down, and everything still in it, when the future ends or `deadline` passes,
/// without waiting for a blocking thread still at work. Nothing of the kind exists before
/// the call: a cache hit never pays for it.
pub fn run<F: Future>(
    deadline: Deadline,
    fetch: impl FnOnce(Deadline) -> F,
) -> Result<F::Output, RunError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let result = runtime.block_on(async {
        tokio::time::timeout(deadline.remaining(), fetch(deadline))
            .await
            .map_err(|_| RunError::Elapsed(deadline.budget()))
    });
    // Dropped, the runtime would wait for its blocking threads, such as a host name lookup
    // that the deadline cut short but `getaddrinfo` still runs (up to the resolver's own
    // timeouts): they are left to end on their own, or with the process.
    runtime.shutdown_background();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_that_ends_in_time_gives_its_result() {
        let result = run(
            Deadline::after(Duration::from_secs(5)),
            |deadline| async move {
                assert!(!deadline.is_past());
                7
            },
        );
        assert_eq!(result.unwrap(), 7);
    }

    #[test]
    fn a_blocking_task_still_running_does_not_hold_the_caller_past_the_deadline() {
        let started = std::time::Instant::now();
        let result = run(Deadline::after(Duration::from_millis(100)), |_| async {
            tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_secs(30))).await
        });
        assert!(matches!(result, Err(RunError::Elapsed(_))));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_fetch_past_its_deadline_is_dropped() {
        let started = Instant::now();
        let result = run(Deadline::after(Duration::from_millis(50)), |_| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        assert!(
            matches!(result, Err(RunError::Elapsed(budget)) if budget == Duration::from_millis(50))
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
