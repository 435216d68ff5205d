//! Background tasks that never vanish silently.
//!
//! Every task `app::serve` runs beside the receiver is started through a [`Supervisor`]:
//!
//! - a **restartable** task (the sequencer of a stream, retention, the gauges) is built
//!   afresh by its factory whenever it ends or panics before shutdown: the exit is logged at
//!   ERROR, the task is marked down on the [`TaskBoard`] (so `/healthz` answers 503 naming
//!   it), and after a delay (1 s, doubling up to 30 s while it keeps failing) it runs again;
//! - an **essential** task (a server that owns its listening socket, the intake) cannot be
//!   rebuilt in place: when it ends or panics before shutdown, the exit is logged, the whole
//!   process is told to stop, and `serve` returns [`Failed`], so the gateway exits non-zero
//!   and its service manager restarts it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The first delay before a restart; it doubles while the task keeps failing.
pub const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
/// The longest delay before a restart.
pub const LONGEST_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A task that ran this long before ending starts again from [`FIRST_RESTART_DELAY`].
const STABLE_RUN: Duration = Duration::from_secs(60);

/// What a supervised task is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Running (again, after `restarts` restarts).
    Running {
        /// How many times it was restarted.
        restarts: u32,
    },
    /// Ended or panicked; waiting to be restarted (or the process is stopping).
    Down {
        /// How it ended.
        why: String,
        /// When.
        since: OffsetDateTime,
    },
}

/// The supervised tasks by name, for the health check. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct TaskBoard {
    tasks: Arc<Mutex<BTreeMap<String, TaskState>>>,
}

impl TaskBoard {
    /// A poisoned lock still guards a consistent map: every update is one insert.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, TaskState>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, name: &str, state: TaskState) {
        self.lock().insert(name.to_owned(), state);
    }

    /// Every task and its state, by name.
    pub fn snapshot(&self) -> BTreeMap<String, TaskState> {
        self.lock().clone()
    }

    /// The tasks that are down, each with how it ended.
    pub fn down(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter_map(|(name, state)| match state {
                TaskState::Down { why, since } => Some((
                    name.clone(),
                    format!("{why} (at {})", crate::store::timestamp::format(*since)),
                )),
                TaskState::Running { .. } => None,
            })
            .collect()
    }
}

/// An essential task ended before shutdown: the process stopped because of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {task} task {why}; the gateway stopped")]
pub struct Failed {
    /// The task.
    pub task: String,
    /// How it ended.
    pub why: String,
}

/// Starts and watches the background tasks of one process. See the [module docs](self).
pub struct Supervisor {
    board: TaskBoard,
    stopping: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    failed: Arc<Mutex<Option<Failed>>>,
    tasks: JoinSet<()>,
    first_delay: Duration,
}

/// Resolves once the process is stopping.
pub async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

impl Supervisor {
    /// A supervisor whose tasks stop when `stop` is set; an essential task that fails sets it.
    pub fn new(stop: watch::Sender<bool>, board: TaskBoard) -> Self {
        Self {
            board,
            stopping: stop.subscribe(),
            stop,
            failed: Arc::default(),
            tasks: JoinSet::new(),
            first_delay: FIRST_RESTART_DELAY,
        }
    }

    /// Restart sooner (tests).
    pub fn with_first_restart_delay(mut self, delay: Duration) -> Self {
        self.first_delay = delay;
        self
    }

    /// The board the health check reads.
    pub fn board(&self) -> &TaskBoard {
        &self.board
    }

    /// Runs `make(stopping)` now and again whenever it ends or panics before shutdown. The
    /// future it builds must end once `stopping` resolves.
    pub fn restartable<F, Fut>(&mut self, name: impl Into<String>, mut make: F)
    where
        F: FnMut(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let board = self.board.clone();
        let stopping = self.stopping.clone();
        let first_delay = self.first_delay;
        self.tasks.spawn(async move {
            let mut delay = first_delay;
            let mut restarts = 0u32;
            loop {
                board.set(&name, TaskState::Running { restarts });
                let started = tokio::time::Instant::now();
                let run = tokio::spawn(make(Box::pin(stopped(stopping.clone()))));
                let why = ended(run.await);
                if *stopping.borrow() {
                    return;
                }
                tracing::error!(task = %name, "background task {why}; restarting it in {} s", delay.as_secs_f64());
                board.set(
                    &name,
                    TaskState::Down {
                        why: why.clone(),
                        since: OffsetDateTime::now_utc(),
                    },
                );
                if started.elapsed() >= STABLE_RUN {
                    delay = first_delay;
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stopped(stopping.clone()) => return,
                }
                delay = (delay * 2).min(LONGEST_RESTART_DELAY.max(first_delay));
                restarts = restarts.saturating_add(1);
            }
        });
    }

    /// Runs `task`, which must end once the process is stopping; ending or panicking before
    /// that stops the process with [`Failed`].
    pub fn essential<Fut>(&mut self, name: impl Into<String>, task: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        let board = self.board.clone();
        let stopping = self.stopping.clone();
        let stop = self.stop.clone();
        let failed = self.failed.clone();
        board.set(&name, TaskState::Running { restarts: 0 });
        self.tasks.spawn(async move {
            let why = ended(tokio::spawn(task).await);
            if *stopping.borrow() {
                return;
            }
            tracing::error!(task = %name, "essential task {why}; stopping the gateway");
            board.set(
                &name,
                TaskState::Down {
                    why: why.clone(),
                    since: OffsetDateTime::now_utc(),
                },
            );
            failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(Failed { task: name, why });
            let _ = stop.send(true);
        });
    }

    /// Waits for every task to end (after the stop), then says whether an essential task
    /// failed.
    pub async fn join(mut self) -> Result<(), Failed> {
        while self.tasks.join_next().await.is_some() {}
        match self.failed.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(failed) => Err(failed),
            None => Ok(()),
        }
    }
}

/// How a task's run ended, in words.
fn ended(result: Result<(), tokio::task::JoinError>) -> String {
    match result {
        Ok(()) => "ended".to_owned(),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            format!("panicked: {text}")
        }
        Err(_) => "was cancelled".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_task_that_panics_is_marked_down_and_restarted() {
        let (stop, _) = watch::channel(false);
        let mut supervisor = Supervisor::new(stop.clone(), TaskBoard::default())
            .with_first_restart_delay(Duration::from_millis(200));
        let board = supervisor.board().clone();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor.restartable("flaky", move |stopping| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if run == 0 {
                    panic!("first run fails");
                }
                stopping.await;
            }
        });
        until("the panic to be seen", || !board.down().is_empty()).await;
        let down = board.down();
        assert_eq!(down[0].0, "flaky");
        assert!(down[0].1.contains("panicked: first run fails"), "{down:?}");
        until("the restart", || board.down().is_empty()).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(
            board.snapshot().get("flaky"),
            Some(&TaskState::Running { restarts: 1 })
        );
        let _ = stop.send(true);
        assert_eq!(supervisor.join().await, Ok(()));
    }

    #[tokio::test]
    async fn an_essential_task_that_ends_stops_the_process_with_an_error() {
        let (stop, mut stopping) = watch::channel(false);
        let mut supervisor = Supervisor::new(stop, TaskBoard::default());
        let other = stopped(stopping.clone());
        supervisor.essential("listener", async {});
        supervisor.essential("other", other);
        tokio::time::timeout(Duration::from_secs(5), stopping.wait_for(|s| *s))
            .await
            .unwrap()
            .unwrap();
        let failed = supervisor.join().await.unwrap_err();
        assert_eq!(failed.task, "listener");
        assert_eq!(
            failed.to_string(),
            "the listener task ended; the gateway stopped"
        );
    }
}
