//! Faults a cross-process test injects into a running gateway (feature `fault-injection`,
//! which only the test suites enable: a gateway binary built on its own never has it).
//!
//! Nothing an operator can do stops a stream's sequencer: it retries every store and
//! transport failure and ends only at shutdown ([`crate::queue::Sequencer::run`]). A task
//! that ends anyway (a bug, a panic) is what [`crate::supervise`] and `/healthz` exist for,
//! so the tests that show them in a real gateway process stop it here: while
//! [`stop_sequencer`] is set, the running sequencer ends and every restart ends at once.

use std::future::Future;
use std::sync::LazyLock;

use tokio::sync::watch;

/// Whether the sequencers are to stop; one value for the process.
static SEQUENCER_STOPPED: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// Stops (`true`) the process's sequencers, which then stay down; `false` lets the
/// supervisor's next restart run normally.
pub fn stop_sequencer(stop: bool) {
    SEQUENCER_STOPPED.send_replace(stop);
}

/// Runs a sequencer until it ends by itself or [`stop_sequencer`] stops it.
pub(crate) async fn unless_sequencer_stopped(run: impl Future<Output = ()>) {
    let mut stopped = SEQUENCER_STOPPED.subscribe();
    tokio::select! {
        () = run => {}
        _ = stopped.wait_for(|stop| *stop) => {
            tracing::warn!("fault injection: the sequencer is stopped");
        }
    }
}
